#include "tokenizer/byte_level.h"

#include "tokenizer/utf8.h"

namespace kt::tok {

ByteLevelAlphabet::ByteLevelAlphabet() {
  rev_.fill(-1);
  // Printable Latin-1 bytes stand for themselves; the others (controls,
  // space, DEL, NBSP, soft hyphen...) are shifted to 256, 257, ... in order.
  auto printable = [](int b) {
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
  };
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    uint32_t cp = printable(b) ? static_cast<uint32_t>(b) : static_cast<uint32_t>(next++);
    std::string s;
    append_utf8(s, cp);
    chars_[b] = s;
    rev_[cp] = static_cast<int16_t>(b);
  }
}

const ByteLevelAlphabet& ByteLevelAlphabet::get() {
  static const ByteLevelAlphabet instance;
  return instance;
}

std::string ByteLevelAlphabet::encode(const std::string& raw) const {
  std::string out;
  out.reserve(raw.size() * 2);
  for (unsigned char c : raw) out += chars_[c];
  return out;
}

std::optional<std::string> ByteLevelAlphabet::decode(const std::string& text) const {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    size_t len = utf8_seq_len(text, i);
    if (!len) return std::nullopt;
    auto b = byte_of(decode_utf8(text, i, len));
    if (!b) return std::nullopt;
    out += static_cast<char>(*b);
    i += len;
  }
  return out;
}

}  // namespace kt::tok
