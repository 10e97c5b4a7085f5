#include "tokenizer/vocab.h"

#include <cstdio>

#include "tokenizer/byte_level.h"
#include "tokenizer/decoder.h"

namespace kt::tok {

namespace {

const std::string kMetaspace = "\xE2\x96\x81";  // U+2581, SentencePiece's space

std::string piece_raw(const std::string& t) {
  uint8_t b;
  if (byte_piece_value(t, &b)) return std::string(1, static_cast<char>(b));
  std::string out;
  size_t prev = 0;
  for (size_t p = t.find(kMetaspace); p != std::string::npos; p = t.find(kMetaspace, prev)) {
    out.append(t, prev, p - prev);
    out += ' ';
    prev = p + kMetaspace.size();
  }
  out.append(t, prev, std::string::npos);
  return out;
}

}  // namespace

WordModel::WordModel(std::vector<std::string> tokens, Spelling spelling) : tokens_(std::move(tokens)) {
  const auto& alpha = ByteLevelAlphabet::get();
  raw_.resize(tokens_.size());
  by_text_.reserve(tokens_.size());
  for (size_t id = 0; id < tokens_.size(); ++id) {
    const std::string& t = tokens_[id];
    if (t.empty()) continue;
    by_text_.emplace(t, static_cast<int32_t>(id));
    if (spelling == Spelling::ByteLevel) {
      auto raw = alpha.decode(t);
      raw_[id] = raw ? *raw : t;
    } else {
      raw_[id] = piece_raw(t);
    }
  }
  for (int b = 0; b < 256; ++b) {
    byte_piece_[b] = -1;
    if (spelling != Spelling::Pieces) continue;
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    auto it = by_text_.find(name);
    if (it != by_text_.end()) byte_piece_[b] = it->second;
  }
}

}  // namespace kt::tok
