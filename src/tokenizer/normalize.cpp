#include "tokenizer/normalize.h"

#include <algorithm>
#include <string_view>

#include "tokenizer/nfc.h"

namespace kt::tok {

namespace {

using Range = std::pair<size_t, size_t>;

// The input range of text bytes [b, e): the union of their ranges, ignoring
// the empty ranges of inserted text unless nothing else is there.
Range span_of(const Normalized& n, size_t base, size_t b, size_t e) {
  if (n.align.empty()) return {base + b, base + e};
  Range r{SIZE_MAX, 0};
  for (size_t k = b; k < e; ++k) {
    const Range& a = n.align[k];
    if (a.first == a.second) continue;
    r.first = std::min(r.first, a.first);
    r.second = std::max(r.second, a.second);
  }
  if (r.first == SIZE_MAX) return b < n.align.size() ? Range{n.align[b].first, n.align[b].first} : Range{base, base};
  return r;
}

// Every match in `matches` (byte ranges of n.text, left to right) becomes
// `content`, each of its bytes aligned with the whole match.
void replace_all(Normalized& n, size_t base, const std::vector<std::pair<size_t, size_t>>& matches,
                 const std::string& content) {
  if (matches.empty()) return;
  Normalized r;
  r.text.reserve(n.text.size() + matches.size() * content.size());
  r.align.reserve(r.text.capacity());
  size_t prev = 0;
  auto copy = [&](size_t b, size_t e) {
    r.text.append(n.text, b, e - b);
    for (size_t k = b; k < e; ++k) r.align.push_back(span_of(n, base, k, k + 1));
  };
  for (auto [mb, me] : matches) {
    copy(prev, mb);
    const Range whole = span_of(n, base, mb, me);
    r.text += content;
    r.align.insert(r.align.end(), content.size(), whole);
    prev = me;
  }
  copy(prev, n.text.size());
  n = std::move(r);
}

void prepend(Normalized& n, size_t base, const std::string& content) {
  const Range at = span_of(n, base, 0, 0);  // empty, where the text begins
  if (n.align.empty()) {
    n.align.resize(n.text.size());
    for (size_t k = 0; k < n.text.size(); ++k) n.align[k] = {base + k, base + k + 1};
  }
  n.text.insert(0, content);
  n.align.insert(n.align.begin(), content.size(), Range{at.first, at.first});
}

std::vector<std::pair<size_t, size_t>> find_bytes(const std::string& text, std::string_view what) {
  std::vector<std::pair<size_t, size_t>> out;
  if (what.empty()) return out;
  for (size_t p = text.find(what); p != std::string::npos; p = text.find(what, p + what.size()))
    out.emplace_back(p, p + what.size());
  return out;
}

}  // namespace

void normalize(const std::vector<NormStep>& steps, const std::string& input, size_t begin,
               size_t end, bool at_start, Normalized& out) {
  out.text.assign(input, begin, end - begin);
  out.align.clear();
  for (const NormStep& st : steps) {
    switch (st.kind) {
      case NormStep::Kind::NFC:
      case NormStep::Kind::NFKC: {
        std::string t;
        std::vector<Range> al;
        nfc_normalize(out.text, 0, out.text.size(), t, al, st.kind == NormStep::Kind::NFKC);
        if (al.empty()) break;  // already normalized
        std::vector<Range> composed(al.size());
        for (size_t k = 0; k < al.size(); ++k) composed[k] = span_of(out, begin, al[k].first, al[k].second);
        out.text = std::move(t);
        out.align = std::move(composed);
        break;
      }
      case NormStep::Kind::Prepend:
        if (!out.text.empty()) prepend(out, begin, st.content);
        break;
      case NormStep::Kind::Replace:
        replace_all(out, begin, st.pattern->find_all(out.text), st.content);
        break;
      case NormStep::Kind::Metaspace: {
        replace_all(out, begin, find_bytes(out.text, " "), st.content);
        const bool want = st.scheme == PrependScheme::Always ||
                          (st.scheme == PrependScheme::First && at_start);
        if (want && out.text.compare(0, st.content.size(), st.content) != 0) prepend(out, begin, st.content);
        break;
      }
    }
  }
}

}  // namespace kt::tok
