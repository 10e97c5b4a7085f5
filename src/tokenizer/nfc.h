// Unicode NFC / NFKC normalization with alignment back to the input bytes
// (for tokenizers whose tokenizer.json has an NFC normalizer, e.g. Qwen2, or
// an NFKC one). Private to src/tokenizer.
#pragma once
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace kt::tok {

// Normalizes text[begin, end) to NFC (NFKC when `compat`) into `out`. When the result differs from
// the input, `align` receives, for each byte of `out`, the range of input
// bytes (absolute positions in `text`) its character came from; when the
// input is already NFC, `out` is a copy and `align` is left empty.
// Ill-formed UTF-8 bytes pass through unchanged.
void nfc_normalize(const std::string& text, size_t begin, size_t end, std::string& out,
                   std::vector<std::pair<size_t, size_t>>& align, bool compat = false);

}  // namespace kt::tok
