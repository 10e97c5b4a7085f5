// What every tokenizer model shares: the vocabulary (id -> token text), the
// raw bytes each token stands for, and one pre-token -> ids step. Private to
// src/tokenizer.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace kt::tok {

struct BpePiece {
  int32_t id;
  uint32_t begin, end;  // byte range within the pre-token
};

// How token texts spell bytes: GPT-2's byte-level alphabet, or SentencePiece
// pieces ("▁" for a space, "<0xXX>" for a raw byte, UTF-8 otherwise).
enum class Spelling { ByteLevel, Pieces };

class WordModel {
 public:
  virtual ~WordModel() = default;
  WordModel(const WordModel&) = delete;
  WordModel& operator=(const WordModel&) = delete;

  // Appends the tokens of one pre-token (normalized bytes) to `out`.
  virtual void tokenize(std::string_view word, std::vector<BpePiece>& out) const = 0;

  size_t size() const { return tokens_.size(); }
  // The token as the vocabulary spells it.
  const std::string& token(int32_t id) const { return tokens_[static_cast<size_t>(id)]; }
  // Raw bytes of a token: the byte-level alphabet reversed, or a piece with
  // "▁" as a space and "<0xXX>" as its byte (the text itself when it is
  // neither, as Hugging Face's decoders do).
  const std::string& raw(int32_t id) const { return raw_[static_cast<size_t>(id)]; }
  std::optional<int32_t> find(const std::string& text) const {
    auto it = by_text_.find(text);
    if (it == by_text_.end()) return std::nullopt;
    return it->second;
  }

 protected:
  // Takes the vocabulary and fills raw_, by_text_ and the byte-piece table.
  WordModel(std::vector<std::string> tokens, Spelling spelling);

  std::vector<std::string> tokens_;
  std::vector<std::string> raw_;
  std::unordered_map<std::string, int32_t> by_text_;
  int32_t byte_piece_[256];  // id of "<0xXX>" (Pieces), or -1
};

}  // namespace kt::tok
