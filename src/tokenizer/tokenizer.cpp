#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string_view>

#include "tokenizer/byte_level.h"
#include "tokenizer/spm.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/utf8.h"
#include "util/error.h"

namespace kt::tok {

const char* const kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
const char* const kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

std::shared_ptr<const Regex> shared_regex(const std::string& pattern, bool literal) {
  static std::mutex mu;
  static std::map<std::pair<std::string, bool>, std::shared_ptr<const Regex>> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto key = std::make_pair(pattern, literal);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  auto re = std::make_shared<const Regex>(pattern, literal);
  cache.emplace(key, re);
  return re;
}

namespace {

// Code point ending just before byte `pos` of `s` (pos > 0), by walking back
// over continuation bytes; *len receives its length. Ill-formed bytes count
// as one non-whitespace unit.
uint32_t prev_code_point(const std::string& s, size_t pos, size_t* len) {
  size_t start = pos - 1;
  while (start > 0 && pos - start < 4 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80)
    --start;
  size_t l = utf8_seq_len(s, start);
  if (l && start + l == pos) {
    *len = l;
    return decode_utf8(s, start, l);
  }
  *len = 1;
  return 0xFFFD;
}

uint32_t next_code_point(const std::string& s, size_t pos, size_t* len) {
  size_t l = utf8_seq_len(s, pos);
  if (!l) {
    *len = 1;
    return 0xFFFD;
  }
  *len = l;
  return decode_utf8(s, pos, l);
}

bool is_word_char_at(const std::string& s, size_t pos, size_t len) {
  static const auto word = shared_regex(R"(^\w$)");
  return !word->find_all(std::string_view(s).substr(pos, len)).empty();
}

// A pre-token: bytes [b, e) of the normalized segment, optionally preceded by
// a space the ByteLevel pre-tokenizer added (not present in the input).
struct Piece {
  uint32_t b, e;
  bool prefix;
  size_t size() const { return e - b + (prefix ? 1 : 0); }
};

void apply_step(const PreStep& st, const std::string& ntext, const std::vector<Piece>& in,
                std::vector<Piece>& out) {
  out.clear();
  std::string tmp;
  std::vector<std::pair<std::pair<size_t, size_t>, bool>> splits;
  std::vector<std::pair<size_t, size_t>> ranges;
  for (Piece q : in) {
    if (st.kind == PreStep::Kind::ByteLevel && st.add_prefix_space && !q.prefix &&
        !(q.e > q.b && ntext[q.b] == ' '))
      q.prefix = true;
    if (!st.regex) {
      out.push_back(q);
      continue;
    }
    std::string_view v;
    if (q.prefix) {
      tmp.assign(1, ' ');
      tmp.append(ntext, q.b, q.e - q.b);
      v = tmp;
    } else {
      v = std::string_view(ntext).substr(q.b, q.e - q.b);
    }
    // (range, is_match) covering all of v, as Hugging Face's Pattern does.
    splits.clear();
    size_t prev = 0;
    for (auto [mb, me] : st.regex->find_all(v)) {
      if (prev != mb) splits.push_back({{prev, mb}, false});
      splits.push_back({{mb, me}, true});
      prev = me;
    }
    if (prev != v.size()) splits.push_back({{prev, v.size()}, false});
    if (st.invert)
      for (auto& s : splits) s.second = !s.second;

    ranges.clear();
    switch (st.behavior) {
      case SplitBehavior::Removed:
        for (auto& s : splits)
          if (!s.second) ranges.push_back(s.first);
        break;
      case SplitBehavior::Isolated:
        for (auto& s : splits) ranges.push_back(s.first);
        break;
      case SplitBehavior::MergedWithPrevious: {
        bool prev_match = false;
        for (auto& s : splits) {
          if (s.second && !prev_match && !ranges.empty())
            ranges.back().second = s.first.second;
          else
            ranges.push_back(s.first);
          prev_match = s.second;
        }
        break;
      }
      case SplitBehavior::MergedWithNext: {
        bool prev_match = false;
        for (auto it = splits.rbegin(); it != splits.rend(); ++it) {
          if (it->second && !prev_match && !ranges.empty())
            ranges.back().first = it->first.first;
          else
            ranges.push_back(it->first);
          prev_match = it->second;
        }
        std::reverse(ranges.begin(), ranges.end());
        break;
      }
      case SplitBehavior::Contiguous: {
        bool prev_match = false;
        for (auto& s : splits) {
          if (s.second == prev_match && !ranges.empty())
            ranges.back().second = s.first.second;
          else
            ranges.push_back(s.first);
          prev_match = s.second;
        }
        break;
      }
    }
    for (auto [a, c] : ranges) {
      if (a >= c) continue;
      if (!q.prefix) {
        out.push_back({static_cast<uint32_t>(q.b + a), static_cast<uint32_t>(q.b + c), false});
      } else if (a == 0) {
        out.push_back({q.b, static_cast<uint32_t>(q.b + c - 1), true});
      } else {
        out.push_back(
            {static_cast<uint32_t>(q.b + a - 1), static_cast<uint32_t>(q.b + c - 1), false});
      }
    }
  }
}

size_t count_leading(const std::string& s, size_t b, size_t e, bool ascii_ws) {
  size_t n = 0;
  for (size_t i = b; i < e; ++i) {
    char c = s[i];
    bool ws = c == ' ' || (ascii_ws && (c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'));
    if (!ws) break;
    ++n;
  }
  return n;
}

size_t count_trailing(const std::string& s, size_t b, size_t e, bool ascii_ws) {
  size_t n = 0;
  for (size_t i = e; i > b; --i) {
    char c = s[i - 1];
    bool ws = c == ' ' || (ascii_ws && (c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'));
    if (!ws) break;
    ++n;
  }
  return n;
}

}  // namespace
}  // namespace kt::tok

namespace kt {

using namespace kt::tok;

void Tokenizer::Impl::finish() {
  added_by_id.clear();
  added_by_first_byte.assign(256, {});
  size_t max_id = model ? model->size() : 0;
  for (size_t i = 0; i < added.size(); ++i) {
    added_by_id[added[i].id] = i;
    max_id = std::max(max_id, static_cast<size_t>(added[i].id) + 1);
    if (!added[i].content.empty())
      added_by_first_byte[static_cast<unsigned char>(added[i].content[0])].push_back(i);
  }
  for (auto& bucket : added_by_first_byte)
    std::stable_sort(bucket.begin(), bucket.end(), [&](size_t a, size_t b) {
      return added[a].content.size() > added[b].content.size();
    });
  vocab_size = max_id;
}

std::vector<Tokenizer::Impl::Segment> Tokenizer::Impl::split_added(const std::string& text) const {
  std::vector<Segment> segs;
  size_t start_offset = 0;  // end of the previous added token (with its strip)
  size_t pos = 0;
  const size_t n = text.size();
  while (pos < n) {
    const auto& bucket = added_by_first_byte[static_cast<unsigned char>(text[pos])];
    const AddedToken* hit = nullptr;
    for (size_t idx : bucket) {
      const AddedToken& t = added[idx];
      if (t.content.size() <= n - pos && text.compare(pos, t.content.size(), t.content) == 0) {
        hit = &t;
        break;  // bucket is sorted longest first
      }
    }
    if (!hit) {
      ++pos;
      continue;
    }
    size_t start = pos, stop = pos + hit->content.size();
    if (hit->single_word) {
      size_t l = 0;
      bool word_before = start > 0 && [&] {
        prev_code_point(text, start, &l);
        return is_word_char_at(text, start - l, l);
      }();
      bool word_after = stop < n && [&] {
        next_code_point(text, stop, &l);
        return is_word_char_at(text, stop, l);
      }();
      if (word_before || word_after) {
        pos = stop;  // like an automaton's non-overlapping scan: go on after it
        continue;
      }
    }
    if (hit->lstrip) {
      while (start > start_offset) {
        size_t l = 0;
        uint32_t cp = prev_code_point(text, start, &l);
        if (!is_unicode_whitespace(cp) || start - l < start_offset) break;
        start -= l;
      }
    }
    if (hit->rstrip) {
      while (stop < n) {
        size_t l = 0;
        uint32_t cp = next_code_point(text, stop, &l);
        if (!is_unicode_whitespace(cp)) break;
        stop += l;
      }
    }
    if (start_offset < start) segs.push_back({false, 0, start_offset, start});
    segs.push_back({true, hit->id, start, stop});
    start_offset = stop;
    pos = stop;
  }
  if (start_offset < n) segs.push_back({false, 0, start_offset, n});
  return segs;
}

void Tokenizer::Impl::encode_segment(const std::string& text, size_t begin, size_t end,
                                     Encoding& enc, std::vector<int32_t>& lead,
                                     std::vector<int32_t>& trail) const {
  // Normalized text and, for each of its bytes, the input bytes it came from.
  Normalized norm;
  normalize(norm_steps, text, begin, end, begin == 0, norm);
  const std::string& ntext = norm.text;
  const bool identity = norm.align.empty();
  auto orig = [&](size_t k) -> std::pair<size_t, size_t> {
    if (identity) return {begin + k, begin + k + 1};
    return norm.align[k];
  };

  std::vector<Piece> pieces{{0, static_cast<uint32_t>(ntext.size()), false}}, next;
  for (const PreStep& st : pre_steps) {
    apply_step(st, ntext, pieces, next);
    pieces.swap(next);
  }

  std::vector<BpePiece> toks;
  std::string word;
  for (const Piece& p : pieces) {
    if (p.size() == 0) continue;
    std::string_view w;
    if (p.prefix) {
      word.assign(1, ' ');
      word.append(ntext, p.b, p.e - p.b);
      w = word;
    } else {
      w = std::string_view(ntext).substr(p.b, p.e - p.b);
    }
    toks.clear();
    model->tokenize(w, toks);
    const size_t shift = p.prefix ? 1 : 0;
    for (const BpePiece& t : toks) {
      size_t ob = SIZE_MAX, oe = 0;
      size_t real_b = t.begin, real_e = t.end;  // in word coordinates
      if (p.prefix && t.begin == 0) {
        // The added space is aligned with the first character after it, as
        // Hugging Face's NormalizedString::prepend does.
        size_t k = p.b;
        if (k < ntext.size()) {
          size_t cl = utf8_seq_len(ntext, k);
          if (!cl) cl = 1;
          for (size_t j = k; j < k + cl && j < ntext.size(); ++j) {
            auto r = orig(j);
            ob = std::min(ob, r.first);
            oe = std::max(oe, r.second);
          }
        } else {
          ob = oe = begin + 0;  // nothing follows: empty range
          if (!identity) ob = oe = norm.align.back().second;
          if (identity) ob = oe = end;
        }
        real_b = 1;
      }
      for (size_t j = real_b; j < real_e; ++j) {
        auto r = orig(p.b + j - shift);
        ob = std::min(ob, r.first);
        oe = std::max(oe, r.second);
      }
      if (ob == SIZE_MAX) ob = oe = begin;
      enc.ids.push_back(t.id);
      enc.offsets.emplace_back(ob, oe);
      if (trim_offsets) {
        // Spaces inside the token that are really in the input.
        size_t nb = p.b + real_b - shift, ne = p.b + real_e - shift;
        lead.push_back(static_cast<int32_t>(real_b < real_e ? count_leading(ntext, nb, ne, false) : 0));
        trail.push_back(static_cast<int32_t>(real_b < real_e ? count_trailing(ntext, nb, ne, false) : 0));
      }
    }
  }
}

Encoding Tokenizer::Impl::encode(const std::string& text, bool add_special) const {
  Encoding enc;
  std::vector<int32_t> lead, trail;
  for (const Segment& s : split_added(text)) {
    if (s.is_added) {
      enc.ids.push_back(s.id);
      enc.offsets.emplace_back(s.begin, s.end);
      if (trim_offsets) {
        const std::string& c = added[added_by_id.at(s.id)].content;
        lead.push_back(static_cast<int32_t>(count_leading(c, 0, c.size(), true)));
        trail.push_back(static_cast<int32_t>(count_trailing(c, 0, c.size(), true)));
      }
    } else {
      encode_segment(text, s.begin, s.end, enc, lead, trail);
    }
  }
  if (trim_offsets) {
    for (size_t i = 0; i < enc.offsets.size(); ++i) {
      auto& [b, e] = enc.offsets[i];
      size_t l = static_cast<size_t>(lead[i]), t = static_cast<size_t>(trail[i]);
      if (l) b = std::min(b + l, e);
      if (t && e >= t) e = std::max(e - t, b);
    }
  }
  if (add_special && (!prefix_ids.empty() || !suffix_ids.empty())) {
    Encoding full;
    full.ids.reserve(enc.ids.size() + prefix_ids.size() + suffix_ids.size());
    full.offsets.reserve(full.ids.capacity());
    for (int32_t id : prefix_ids) {
      full.ids.push_back(id);
      full.offsets.emplace_back(0, 0);
    }
    full.ids.insert(full.ids.end(), enc.ids.begin(), enc.ids.end());
    full.offsets.insert(full.offsets.end(), enc.offsets.begin(), enc.offsets.end());
    for (int32_t id : suffix_ids) {
      full.ids.push_back(id);
      full.offsets.emplace_back(text.size(), text.size());
    }
    return full;
  }
  return enc;
}

std::string Tokenizer::Impl::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  // Byte-level tokens are their raw bytes; SentencePiece-style ones go
  // through the decoder steps. Ids outside the vocabulary are skipped, as
  // Hugging Face does.
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    auto it = added_by_id.find(id);
    if (it != added_by_id.end()) {
      const AddedToken& t = added[it->second];
      if (!(skip_special && t.special)) tokens.push_back(t.content);
    } else if (id >= 0 && static_cast<size_t>(id) < model->size()) {
      tokens.push_back(byte_level ? model->raw(id) : model->token(id));
    }
  }
  if (!byte_level) return utf8_lossy(decode_tokens(decoder, std::move(tokens)));
  std::string raw;
  for (const std::string& t : tokens) raw += t;
  return utf8_lossy(raw);
}

std::string Tokenizer::Impl::token_text(int32_t id) const {
  auto it = added_by_id.find(id);
  if (it != added_by_id.end()) return added[it->second].content;
  if (id < 0 || static_cast<size_t>(id) >= vocab_size)
    throw Error("tokenizer: token id " + std::to_string(id) + " is out of range (vocabulary has " +
                std::to_string(vocab_size) + " tokens)");
  if (static_cast<size_t>(id) < model->size()) return model->raw(id);
  return std::string();
}

// ---------------------------------------------------------------------------

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

Encoding Tokenizer::encode(const std::string& text, bool add_special) const {
  return impl_->encode(text, add_special);
}
std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  return impl_->decode(ids, skip_special);
}
std::string Tokenizer::token_text(int32_t id) const { return impl_->token_text(id); }
size_t Tokenizer::vocab_size() const { return impl_->vocab_size; }
const std::string& Tokenizer::kind() const { return impl_->kind; }
std::optional<int32_t> Tokenizer::bos_id() const { return impl_->bos; }
std::optional<int32_t> Tokenizer::eos_id() const { return impl_->eos; }

Tokenizer Tokenizer::from_spec(const BpeSpec& spec) {
  const std::string src = spec.source.empty() ? std::string("tokenizer spec") : spec.source;
  const bool spm = spec.kind == BpeSpec::Kind::SentencePieceBpe;
  if (spec.tokens.empty()) throw Error(src + ": tokens: the vocabulary is empty");
  if (spm && spec.scores.size() != spec.tokens.size())
    throw Error(src + ": scores: expected " + std::to_string(spec.tokens.size()) +
                " entries (one per token), got " + std::to_string(spec.scores.size()));
  if (!spec.token_types.empty() && spec.token_types.size() != spec.tokens.size())
    throw Error(src + ": token_types: expected " + std::to_string(spec.tokens.size()) +
                " entries, got " + std::to_string(spec.token_types.size()));
  const int32_t n = static_cast<int32_t>(spec.tokens.size());
  auto check_id = [&](std::optional<int32_t> id, const char* what) {
    if (id && (*id < 0 || *id >= n))
      throw Error(src + ": " + what + ": id " + std::to_string(*id) + " is out of range (" +
                  std::to_string(n) + " tokens)");
  };
  check_id(spec.bos_id, "bos_id");
  check_id(spec.eos_id, "eos_id");
  check_id(spec.unk_id, "unk_id");

  auto impl = std::make_unique<Impl>();
  // Control (3) and user-defined (4) tokens -- and for SentencePiece the
  // unknown token (2) --, and the listed special ids, are matched in the raw
  // text; their text is stored as is (not byte-level).
  std::vector<char> kind(spec.tokens.size(), 0);  // 0 normal, 1 special, 2 user-defined
  for (size_t i = 0; i < spec.token_types.size(); ++i) {
    if (spec.token_types[i] == 3 || (spm && spec.token_types[i] == 2)) kind[i] = 1;
    if (spec.token_types[i] == 4) kind[i] = 2;
  }
  for (int32_t id : spec.special_ids) {
    check_id(id, "special_ids");
    kind[static_cast<size_t>(id)] = 1;
  }
  std::vector<std::string> tokens = spec.tokens;
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (!kind[i]) continue;
    AddedToken t;
    t.content = spec.tokens[i];
    t.id = static_cast<int32_t>(i);
    t.special = kind[i] == 1;
    impl->added.push_back(std::move(t));
  }
  if (spm) {
    // llama.cpp's SPM text handling: each text segment gets a "▁" in front
    // when add_space_prefix, spaces become "▁", the whole segment is one word.
    const std::string meta = "\xE2\x96\x81";
    if (spec.add_space_prefix) impl->norm_steps.push_back({NormStep::Kind::Prepend, nullptr, meta});
    impl->norm_steps.push_back({NormStep::Kind::Replace, shared_regex(" ", true), meta});
    impl->model = std::make_unique<SpmModel>(std::move(tokens), spec.scores, spec.unk_id);
    impl->byte_level = false;
    // What llama.cpp's detokenizer does, as Hugging Face decoder steps.
    DecodeStep rep;
    rep.kind = DecodeStep::Kind::Replace;
    rep.pattern = shared_regex(meta, true);
    rep.content = " ";
    impl->decoder.push_back(rep);
    impl->decoder.push_back({DecodeStep::Kind::ByteFallback});
    impl->decoder.push_back({DecodeStep::Kind::Fuse});
    if (spec.add_space_prefix) {
      DecodeStep strip;
      strip.kind = DecodeStep::Kind::Strip;
      strip.start = 1;
      impl->decoder.push_back(strip);
    }
    impl->kind = "SentencePiece (piece scores, llama.cpp's rule)";
  } else {
    std::vector<std::pair<std::string, std::string>> merges;
    merges.reserve(spec.merges.size());
    for (size_t i = 0; i < spec.merges.size(); ++i) {
      const std::string& m = spec.merges[i];
      size_t sp = m.find(' ');
      if (sp == std::string::npos || sp == 0 || sp + 1 >= m.size() ||
          m.find(' ', sp + 1) != std::string::npos)
        throw Error(src + ": merges[" + std::to_string(i) + "]: expected \"left right\", got \"" + m +
                    "\"");
      merges.emplace_back(m.substr(0, sp), m.substr(sp + 1));
    }
    bool ignore_merges = spec.ignore_merges.value_or(spec.pattern == SplitPattern::Llama3);
    try {
      BpeOptions opts;
      opts.ignore_merges = ignore_merges;
      impl->model = std::make_unique<BpeModel>(std::move(tokens), merges, opts);
    } catch (const std::invalid_argument& e) {
      throw Error(src + ": " + e.what());
    }

    PreStep split;
    split.kind = PreStep::Kind::Split;
    split.behavior = SplitBehavior::Isolated;
    switch (spec.pattern) {
      case SplitPattern::Gpt2:
        split.regex = shared_regex(kGpt2Pattern);
        break;
      case SplitPattern::Llama3:
        split.regex = shared_regex(kLlama3Pattern);
        break;
      case SplitPattern::Qwen2:
        split.regex = shared_regex(kQwen2Pattern);
        break;
      case SplitPattern::SmolLM: {
        PreStep digits = split;
        digits.regex = shared_regex(R"(\p{N})");
        impl->pre_steps.push_back(digits);
        split.regex = shared_regex(kGpt2Pattern);
        break;
      }
    }
    impl->pre_steps.push_back(split);
    impl->kind = "byte-level BPE";
  }
  impl->bos = spec.bos_id;
  impl->eos = spec.eos_id;
  if (spec.add_bos && spec.bos_id) impl->prefix_ids.push_back(*spec.bos_id);
  if (spec.add_eos && spec.eos_id) impl->suffix_ids.push_back(*spec.eos_id);
  impl->finish();
  return Tokenizer(std::move(impl));
}

}  // namespace kt
