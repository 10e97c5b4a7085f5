// GPT-2's reversible byte <-> printable-character mapping ("byte-level"
// alphabet): every byte value is shown as one Unicode character so that
// vocabularies can be stored as text. Private to src/tokenizer.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>

namespace kt::tok {

class ByteLevelAlphabet {
 public:
  static const ByteLevelAlphabet& get();
  // UTF-8 text of the character standing for byte `b`.
  const std::string& char_of(uint8_t b) const { return chars_[b]; }
  // The byte a character stands for, or nullopt when `cp` is not in the alphabet.
  std::optional<uint8_t> byte_of(uint32_t cp) const {
    if (cp < 324 && rev_[cp] >= 0) return static_cast<uint8_t>(rev_[cp]);
    return std::nullopt;
  }
  // Byte-level text of raw bytes.
  std::string encode(const std::string& raw) const;
  // Raw bytes of a byte-level text; nullopt when a character is not in the
  // alphabet.
  std::optional<std::string> decode(const std::string& text) const;

 private:
  ByteLevelAlphabet();
  std::array<std::string, 256> chars_;
  std::array<int16_t, 324> rev_;
};

}  // namespace kt::tok
