// The byte-level BPE model: turns one pre-token (raw bytes) into vocabulary
// ids by applying ranked merges. Private to src/tokenizer.
#pragma once
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace kt::tok {

struct BpePiece {
  int32_t id;
  uint32_t begin, end;  // byte range within the pre-token
};

class BpeModel {
 public:
  // `tokens[id]` is the byte-level text of each id ("" for unused ids).
  // `merges` are (left, right) byte-level texts, highest priority first.
  // Throws std::invalid_argument naming the offending entry ("merges[12]: ...")
  // on a merge whose parts or result are not in the vocabulary.
  BpeModel(std::vector<std::string> tokens,
           const std::vector<std::pair<std::string, std::string>>& merges, bool ignore_merges,
           std::optional<int32_t> unk_id, bool fuse_unk);

  BpeModel(const BpeModel&) = delete;
  BpeModel& operator=(const BpeModel&) = delete;

  // Appends the tokens of one pre-token (raw bytes) to `out`.
  void tokenize(std::string_view word, std::vector<BpePiece>& out) const;

  size_t size() const { return tokens_.size(); }
  const std::string& token(int32_t id) const { return tokens_[static_cast<size_t>(id)]; }
  // Raw bytes of a token: the byte-level alphabet reversed (or the text
  // itself when it is not byte-level text, as Hugging Face's decoder does).
  const std::string& raw(int32_t id) const { return raw_[static_cast<size_t>(id)]; }
  std::optional<int32_t> find(const std::string& byte_level_text) const;

 private:
  void merge_word(std::string_view word, std::vector<BpePiece>& out) const;

  std::vector<std::string> tokens_;
  std::vector<std::string> raw_;
  std::unordered_map<std::string, int32_t> by_text_;  // byte-level text -> id
  std::unordered_map<std::string, int32_t> by_raw_;   // raw bytes -> id
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;  // pair -> (rank, new id)
  int32_t byte_id_[256];
  bool ignore_merges_;
  std::optional<int32_t> unk_id_;
  bool fuse_unk_;

  // Per-word cache (results of merge_word with begin/end relative to the word).
  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<BpePiece>> cache_;
};

}  // namespace kt::tok
