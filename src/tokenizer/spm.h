// SentencePiece's BPE rule as llama.cpp applies it to a GGUF vocabulary
// (`tokenizer.ggml.model = llama`): start from the characters of the text,
// repeatedly merge the adjacent pair whose concatenation is the
// best-scoring piece (ties: the leftmost), and spell what is left that is no
// piece as its "<0xXX>" byte pieces. Private to src/tokenizer.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/vocab.h"

namespace kt::tok {

class SpmModel : public WordModel {
 public:
  // scores.size() == tokens.size() (checked by the caller).
  SpmModel(std::vector<std::string> tokens, std::vector<float> scores, std::optional<int32_t> unk_id);

  void tokenize(std::string_view word, std::vector<BpePiece>& out) const override;

 private:
  std::vector<float> scores_;
  std::optional<int32_t> unk_id_;
};

}  // namespace kt::tok
