// Which tokens of a prompt are the subject.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace kt {

// Half-open token range [b, e) of the first occurrence of `subject` in the
// prompt, from the tokens' byte offsets: the first token ending after the
// subject's first byte to the first token reaching its last byte. Works for
// multi-byte characters split across tokens. kt::Error when the subject is
// empty or not in the prompt.
std::pair<int64_t, int64_t> subject_token_range(const Encoding& enc, const std::string& prompt,
                                                const std::string& subject);

// ROME's method (find_token_range): decode each token, join, find the
// subject's character position, walk token lengths. Kept to show both
// agree on ASCII prompts (a test does); it breaks on split characters.
std::pair<int64_t, int64_t> rome_token_range(const Tokenizer& tok, const std::vector<int32_t>& ids,
                                             const std::string& subject);

}  // namespace kt
