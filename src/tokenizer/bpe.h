// The BPE model of tokenizer.json: turns one pre-token into vocabulary ids by
// applying ranked merges, starting from bytes (byte-level BPE: GPT-2,
// Llama-3, Qwen2) or from characters with "<0xXX>" byte fallback
// (SentencePiece-style BPE: Llama 2, Mistral, Gemma). Private to src/tokenizer.
#pragma once
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tokenizer/vocab.h"

namespace kt::tok {

struct BpeOptions {
  Spelling spelling = Spelling::ByteLevel;
  bool byte_fallback = false;  // Pieces: a character missing from the vocabulary -> its byte pieces
  bool ignore_merges = false;  // a pre-token that is itself a token is emitted whole
  std::optional<int32_t> unk_id;
  bool fuse_unk = false;
};

class BpeModel : public WordModel {
 public:
  // `tokens[id]` is the text of each id ("" for unused ids); `merges` are
  // (left, right) token texts, highest priority first. Throws
  // std::invalid_argument naming the offending entry ("merges[12]: ...") on a
  // merge whose parts or result are not in the vocabulary.
  BpeModel(std::vector<std::string> tokens,
           const std::vector<std::pair<std::string, std::string>>& merges, const BpeOptions& opts);

  void tokenize(std::string_view word, std::vector<BpePiece>& out) const override;

 private:
  struct Sym {
    int32_t id;
    int32_t prev, next;
    uint32_t begin, end;
  };
  void initial_symbols(std::string_view word, std::vector<Sym>& syms) const;
  void merge_word(std::string_view word, std::vector<BpePiece>& out) const;

  std::unordered_map<std::string, int32_t> by_raw_;  // raw bytes -> id (byte-level ignore_merges)
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;  // pair -> (rank, new id)
  int32_t byte_id_[256];  // byte-level: id of each byte's character
  BpeOptions opts_;

  // Per-word cache (results of merge_word with begin/end relative to the word).
  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<BpePiece>> cache_;
};

}  // namespace kt::tok
