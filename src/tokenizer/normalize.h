// The normalizer steps of a tokenizer (Hugging Face `normalizers`, plus the
// text rewrite of the Metaspace pre-tokenizer), applied to one segment of the
// input with, for every output byte, the input bytes it came from.
// Private to src/tokenizer.
#pragma once
#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/regex.h"

namespace kt::tok {

// When Metaspace puts its replacement character in front of a segment.
enum class PrependScheme { Always, First, Never };

struct NormStep {
  enum class Kind {
    NFC,
    NFKC,
    Prepend,    // `content` in front of a non-empty segment
    Replace,    // every match of `pattern` becomes `content`
    Metaspace,  // ' ' -> `content`, then `content` in front as `scheme` says
  } kind = Kind::NFC;
  std::shared_ptr<const Regex> pattern;  // Replace
  std::string content;
  PrependScheme scheme = PrependScheme::Always;  // Metaspace
};

// A normalized segment. `align[k]` is the half-open range of input bytes
// (absolute positions) that byte k of `text` came from; text a step inserted
// (a prepended "▁") has an empty range where it was inserted. `align` is
// empty when no step changed anything: byte k then came from begin + k.
struct Normalized {
  std::string text;
  std::vector<std::pair<size_t, size_t>> align;
};

// Applies `steps` in order to input[begin, end). `at_start`: the segment
// begins the input (Metaspace's `first` scheme prepends only there).
void normalize(const std::vector<NormStep>& steps, const std::string& input, size_t begin,
               size_t end, bool at_start, Normalized& out);

}  // namespace kt::tok
