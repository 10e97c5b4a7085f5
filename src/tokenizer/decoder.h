// The decoder steps of a SentencePiece-style tokenizer (Hugging Face
// `decoders`): token strings in, text out. Byte-level tokenizers do not use
// these (their tokens map back to raw bytes directly). Private to
// src/tokenizer.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tokenizer/normalize.h"
#include "tokenizer/regex.h"

namespace kt::tok {

struct DecodeStep {
  enum class Kind {
    Replace,       // every match of `pattern` in each token becomes `content`
    ByteFallback,  // runs of "<0xXX>" tokens become their bytes (U+FFFD each if not UTF-8)
    Fuse,          // all tokens joined into one
    Strip,         // up to `start` leading / `stop` trailing `ch` removed from each token
    Metaspace,     // `content` -> ' ', and dropped in the first token unless scheme is Never
  } kind = Kind::Fuse;
  std::shared_ptr<const Regex> pattern;
  std::string content;
  uint32_t ch = ' ';
  size_t start = 0, stop = 0;
  PrependScheme scheme = PrependScheme::Always;
};

// Runs the steps over `tokens` and joins what is left. Without steps the
// tokens are joined with single spaces, as Hugging Face does.
std::string decode_tokens(const std::vector<DecodeStep>& steps, std::vector<std::string> tokens);

// The byte a "<0xXX>" piece stands for (Hugging Face's parse: exactly six
// characters, two hexadecimal digits as Rust's from_str_radix reads them).
bool byte_piece_value(const std::string& token, uint8_t* byte);

}  // namespace kt::tok
