// A compiled PCRE2 pattern (UTF + Unicode properties, JIT where available)
// used by the pre-tokenizer splits. Private to src/tokenizer.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kt::tok {

class Regex {
 public:
  // Throws std::invalid_argument with PCRE2's message (and offset) when the
  // pattern does not compile; callers turn it into a kt::Error naming the field.
  explicit Regex(const std::string& pattern, bool literal = false);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // All non-empty, non-overlapping matches [begin, end) in `text`, left to
  // right. Ill-formed UTF-8 in `text` never matches (it is left between
  // matches).
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;

  const std::string& pattern() const { return pattern_; }

 private:
  std::string pattern_;
  void* code_ = nullptr;  // pcre2_code_8*
  bool jit_ = false;
};

}  // namespace kt::tok
