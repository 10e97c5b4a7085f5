#include "tokenizer/nfc.h"

#include <utf8proc.h>

#include <algorithm>
#include <cstdlib>

namespace kt::tok {

// NFC through utf8proc, one grapheme cluster at a time: composition never
// crosses a cluster boundary, so every output byte can be traced back to
// the input bytes of the cluster it came from.
void nfc_normalize(const std::string& text, size_t begin, size_t end, std::string& out,
                   std::vector<std::pair<size_t, size_t>>& align, bool compat) {
  out.clear();
  align.clear();
  const auto* s = reinterpret_cast<const utf8proc_uint8_t*>(text.data());
  bool ascii = true;
  for (size_t i = begin; i < end && ascii; ++i) ascii = s[i] < 0x80;
  if (ascii) {
    out.assign(text, begin, end - begin);
    return;
  }
  struct Cluster {
    size_t b, e;
    bool valid;
  };
  std::vector<Cluster> clusters;
  utf8proc_int32_t prev = -1, state = 0;
  for (size_t i = begin; i < end;) {
    utf8proc_int32_t cp;
    utf8proc_ssize_t n = utf8proc_iterate(s + i, static_cast<utf8proc_ssize_t>(end - i), &cp);
    if (n <= 0) {  // an ill-formed byte passes through on its own
      clusters.push_back({i, i + 1, false});
      prev = -1, state = 0, ++i;
      continue;
    }
    bool brk = prev < 0 || utf8proc_grapheme_break_stateful(prev, cp, &state);
    if (brk || clusters.empty() || !clusters.back().valid) clusters.push_back({i, i + n, true});
    else clusters.back().e = i + n;
    prev = cp, i += n;
  }
  bool changed = false;
  std::vector<std::pair<size_t, size_t>> al;
  for (const Cluster& c : clusters) {
    utf8proc_uint8_t* res = nullptr;
    utf8proc_ssize_t n = c.valid ? utf8proc_map(s + c.b, static_cast<utf8proc_ssize_t>(c.e - c.b), &res,
                                                static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE |
                                                                              (compat ? UTF8PROC_COMPAT : 0)))
                                 : -1;
    if (n < 0 || (static_cast<size_t>(n) == c.e - c.b && std::equal(res, res + n, s + c.b))) {
      // Unchanged: each byte keeps its own character's range.
      for (size_t i = c.b; i < c.e;) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t m = c.valid ? utf8proc_iterate(s + i, static_cast<utf8proc_ssize_t>(c.e - i), &cp) : 1;
        if (m <= 0) m = 1;
        for (utf8proc_ssize_t k = 0; k < m; ++k) al.emplace_back(i, i + m);
        i += m;
      }
      out.append(text, c.b, c.e - c.b);
    } else {
      // Changed: characters the cluster shares at its start and end keep
      // their own ranges; the composed middle maps to the input middle.
      changed = true;
      const size_t in_len = c.e - c.b, out_len = static_cast<size_t>(n);
      const utf8proc_uint8_t* in = s + c.b;
      auto is_lead = [](utf8proc_uint8_t b) { return (b & 0xC0) != 0x80; };
      size_t pre = 0;
      while (pre < in_len && pre < out_len && in[pre] == res[pre]) ++pre;
      while (pre > 0 && !(pre == in_len || is_lead(in[pre]))) --pre;
      size_t suf = 0;
      while (suf < in_len - pre && suf < out_len - pre && in[in_len - 1 - suf] == res[out_len - 1 - suf]) ++suf;
      while (suf > 0 && !is_lead(in[in_len - suf])) --suf;
      for (size_t i = 0; i < pre;) {  // shared prefix, character by character
        size_t m = 1;
        while (i + m < pre && !is_lead(in[i + m])) ++m;
        for (size_t k = 0; k < m; ++k) al.emplace_back(c.b + i, c.b + i + m);
        i += m;
      }
      for (size_t k = pre; k < out_len - suf; ++k) al.emplace_back(c.b + pre, c.e - suf);
      for (size_t i = in_len - suf; i < in_len;) {  // shared suffix
        size_t m = 1;
        while (i + m < in_len && !is_lead(in[i + m])) ++m;
        for (size_t k = 0; k < m; ++k) al.emplace_back(c.b + i, c.b + i + m);
        i += m;
      }
      out.append(reinterpret_cast<const char*>(res), out_len);
    }
    std::free(res);
  }
  if (changed) align = std::move(al);
}

}  // namespace kt::tok
