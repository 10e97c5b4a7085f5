#include "tokenizer/decoder.h"

#include "tokenizer/utf8.h"

namespace kt::tok {

namespace {

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool valid_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    size_t l = utf8_seq_len(s, i);
    if (!l) return false;
    i += l;
  }
  return true;
}

// The code points of `s` as (begin, length) byte spans; an ill-formed byte is
// a span of its own.
std::vector<std::pair<size_t, size_t>> chars_of(const std::string& s) {
  std::vector<std::pair<size_t, size_t>> out;
  for (size_t i = 0; i < s.size();) {
    size_t l = utf8_seq_len(s, i);
    if (!l) l = 1;
    out.emplace_back(i, l);
    i += l;
  }
  return out;
}

bool char_is(const std::string& s, std::pair<size_t, size_t> c, uint32_t cp) {
  const size_t l = utf8_seq_len(s, c.first);
  return l == c.second && decode_utf8(s, c.first, l) == cp;
}

void strip(std::string& t, uint32_t ch, size_t start, size_t stop) {
  const auto cs = chars_of(t);
  size_t from = 0, to = cs.size();
  while (from < start && from < to && char_is(t, cs[from], ch)) ++from;
  size_t cut = 0;
  while (cut < stop && to > from && char_is(t, cs[to - 1], ch)) --to, ++cut;
  const size_t b = from < cs.size() ? cs[from].first : t.size();
  const size_t e = to > 0 && to > from ? cs[to - 1].first + cs[to - 1].second : b;
  t = t.substr(b, e - b);
}

std::string replace_matches(const std::string& t, const Regex& re, const std::string& content) {
  std::string out;
  size_t prev = 0;
  for (auto [b, e] : re.find_all(t)) {
    out.append(t, prev, b - prev);
    out += content;
    prev = e;
  }
  out.append(t, prev, std::string::npos);
  return out;
}

}  // namespace

bool byte_piece_value(const std::string& token, uint8_t* byte) {
  if (token.size() != 6 || token.compare(0, 3, "<0x") != 0 || token[5] != '>') return false;
  int v;
  if (token[3] == '+') {
    v = hex_digit(token[4]);
  } else {
    int hi = hex_digit(token[3]), lo = hex_digit(token[4]);
    v = hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
  }
  if (v < 0) return false;
  *byte = static_cast<uint8_t>(v);
  return true;
}

std::string decode_tokens(const std::vector<DecodeStep>& steps, std::vector<std::string> tokens) {
  if (steps.empty()) {
    std::string out;
    for (size_t i = 0; i < tokens.size(); ++i) out += (i ? " " : "") + tokens[i];
    return out;
  }
  for (const DecodeStep& st : steps) {
    switch (st.kind) {
      case DecodeStep::Kind::Replace:
        for (std::string& t : tokens) t = replace_matches(t, *st.pattern, st.content);
        break;
      case DecodeStep::Kind::ByteFallback: {
        std::vector<std::string> out;
        std::string bytes;
        size_t n_bytes = 0;
        auto flush = [&] {
          if (!n_bytes) return;
          if (valid_utf8(bytes)) {
            out.push_back(bytes);
          } else {
            for (size_t i = 0; i < n_bytes; ++i) out.emplace_back("\xEF\xBF\xBD");
          }
          bytes.clear();
          n_bytes = 0;
        };
        for (std::string& t : tokens) {
          uint8_t b;
          if (byte_piece_value(t, &b)) {
            bytes += static_cast<char>(b);
            ++n_bytes;
          } else {
            flush();
            out.push_back(std::move(t));
          }
        }
        flush();
        tokens = std::move(out);
        break;
      }
      case DecodeStep::Kind::Fuse: {
        std::string all;
        for (const std::string& t : tokens) all += t;
        tokens.assign(1, std::move(all));
        break;
      }
      case DecodeStep::Kind::Strip:
        for (std::string& t : tokens) strip(t, st.ch, st.start, st.stop);
        break;
      case DecodeStep::Kind::Metaspace:
        for (size_t i = 0; i < tokens.size(); ++i) {
          const bool drop = i == 0 && st.scheme != PrependScheme::Never;
          std::string out;
          size_t prev = 0;
          const std::string& t = tokens[i];
          for (size_t p = st.content.empty() ? std::string::npos : t.find(st.content); p != std::string::npos;
               p = t.find(st.content, p + st.content.size())) {
            out.append(t, prev, p - prev);
            if (!drop) out += ' ';
            prev = p + st.content.size();
          }
          out.append(t, prev, std::string::npos);
          tokens[i] = std::move(out);
        }
        break;
    }
  }
  std::string out;
  for (const std::string& t : tokens) out += t;
  return out;
}

}  // namespace kt::tok
