#include "tokenizer/bpe.h"

#include <queue>
#include <stdexcept>

#include "tokenizer/byte_level.h"
#include "tokenizer/utf8.h"

namespace kt::tok {

namespace {

constexpr size_t kCacheCapacity = 50000;
constexpr size_t kCacheMaxWordBytes = 256;

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

}  // namespace

BpeModel::BpeModel(std::vector<std::string> tokens,
                   const std::vector<std::pair<std::string, std::string>>& merges,
                   const BpeOptions& opts)
    : WordModel(std::move(tokens), opts.spelling), opts_(opts) {
  const auto& alpha = ByteLevelAlphabet::get();
  if (opts_.spelling == Spelling::ByteLevel) {
    by_raw_.reserve(tokens_.size());
    for (size_t id = 0; id < tokens_.size(); ++id)
      if (!tokens_[id].empty()) by_raw_.emplace(raw_[id], static_cast<int32_t>(id));
  }
  for (int b = 0; b < 256; ++b) {
    auto it = opts_.spelling == Spelling::ByteLevel ? by_text_.find(alpha.char_of(static_cast<uint8_t>(b)))
                                                    : by_text_.end();
    byte_id_[b] = it == by_text_.end() ? -1 : it->second;
  }
  merges_.reserve(merges.size());
  for (size_t r = 0; r < merges.size(); ++r) {
    const auto& [a, b] = merges[r];
    auto ia = by_text_.find(a);
    auto ib = by_text_.find(b);
    auto in = by_text_.find(a + b);
    const std::string where = "merges[" + std::to_string(r) + "]: ";
    if (ia == by_text_.end()) throw std::invalid_argument(where + "\"" + a + "\" is not in the vocabulary");
    if (ib == by_text_.end()) throw std::invalid_argument(where + "\"" + b + "\" is not in the vocabulary");
    if (in == by_text_.end())
      throw std::invalid_argument(where + "merged token \"" + a + b + "\" is not in the vocabulary");
    // The first occurrence of a pair keeps its (higher) priority.
    merges_.emplace(pair_key(ia->second, ib->second),
                    std::make_pair(static_cast<int32_t>(r), in->second));
  }
}

void BpeModel::tokenize(std::string_view word, std::vector<BpePiece>& out) const {
  if (word.empty()) return;
  if (opts_.ignore_merges) {
    const auto& whole = opts_.spelling == Spelling::ByteLevel ? by_raw_ : by_text_;
    auto it = whole.find(std::string(word));
    if (it != whole.end()) {
      out.push_back({it->second, 0, static_cast<uint32_t>(word.size())});
      return;
    }
  }
  if (word.size() > kCacheMaxWordBytes) {
    merge_word(word, out);
    return;
  }
  std::string key(word);
  {
    std::lock_guard<std::mutex> lock(cache_mu_);
    auto it = cache_.find(key);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  size_t first = out.size();
  merge_word(word, out);
  std::vector<BpePiece> result(out.begin() + static_cast<std::ptrdiff_t>(first), out.end());
  std::lock_guard<std::mutex> lock(cache_mu_);
  if (cache_.size() >= kCacheCapacity) cache_.clear();
  cache_.emplace(std::move(key), std::move(result));
}

void BpeModel::initial_symbols(std::string_view word, std::vector<Sym>& syms) const {
  syms.reserve(word.size());
  auto push = [&](int32_t id, size_t b, size_t e) {
    int32_t n = static_cast<int32_t>(syms.size());
    syms.push_back({id, n - 1, n + 1, static_cast<uint32_t>(b), static_cast<uint32_t>(e)});
  };
  if (opts_.spelling == Spelling::ByteLevel) {
    for (size_t i = 0; i < word.size(); ++i) {
      int32_t id = byte_id_[static_cast<unsigned char>(word[i])];
      if (id < 0) {
        // Byte missing from the vocabulary: the unknown token, or nothing.
        if (!opts_.unk_id) continue;
        if (opts_.fuse_unk && !syms.empty() && syms.back().id == *opts_.unk_id &&
            syms.back().end == static_cast<uint32_t>(i)) {
          syms.back().end = static_cast<uint32_t>(i + 1);
          continue;
        }
        id = *opts_.unk_id;
      }
      push(id, i, i + 1);
    }
    return;
  }
  // Pieces: one symbol per character; a character missing from the
  // vocabulary becomes its byte pieces (all must exist) or the unknown
  // token. As in Hugging Face, a pending unknown token is emitted only when
  // the next known character (or the end) comes, after any byte pieces.
  const std::string w(word);
  std::optional<std::pair<size_t, size_t>> unk;  // its byte range
  auto flush_unk = [&] {
    if (unk) push(*opts_.unk_id, unk->first, unk->second);
    unk.reset();
  };
  auto has_byte_pieces = [&](size_t b, size_t e) {
    for (size_t k = b; k < e; ++k)
      if (byte_piece_[static_cast<unsigned char>(w[k])] < 0) return false;
    return true;
  };
  std::string ch;
  for (size_t i = 0; i < w.size();) {
    size_t len = utf8_seq_len(w, i);
    if (!len) len = 1;  // an ill-formed byte stands alone
    ch.assign(w, i, len);
    auto it = by_text_.find(ch);
    if (it != by_text_.end()) {
      flush_unk();
      push(it->second, i, i + len);
    } else if (opts_.byte_fallback && has_byte_pieces(i, i + len)) {
      for (size_t k = i; k < i + len; ++k) push(byte_piece_[static_cast<unsigned char>(w[k])], k, k + 1);
    } else if (opts_.unk_id) {
      if (unk && opts_.fuse_unk) {
        unk->second = i + len;
      } else {
        flush_unk();
        unk = std::make_pair(i, i + len);
      }
    }
    i += len;
  }
  flush_unk();
}

void BpeModel::merge_word(std::string_view word, std::vector<BpePiece>& out) const {
  // Symbols (bytes or characters) are linked in a list; merges consume the
  // right neighbour (an empty range marks a consumed symbol).
  std::vector<Sym> syms;
  initial_symbols(word, syms);
  if (syms.empty()) return;
  syms.back().next = -1;

  struct Cand {
    int32_t rank;
    int32_t pos;
    int32_t new_id;
    bool operator>(const Cand& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> queue;
  auto push_pair = [&](int32_t left) {
    if (left < 0) return;
    int32_t right = syms[static_cast<size_t>(left)].next;
    if (right < 0) return;
    auto it = merges_.find(pair_key(syms[static_cast<size_t>(left)].id,
                                    syms[static_cast<size_t>(right)].id));
    if (it != merges_.end()) queue.push({it->second.first, left, it->second.second});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(syms.size()); ++i) push_pair(i);

  while (!queue.empty()) {
    Cand c = queue.top();
    queue.pop();
    Sym& left = syms[static_cast<size_t>(c.pos)];
    if (left.begin == left.end || left.next < 0) continue;  // consumed or last
    Sym& right = syms[static_cast<size_t>(left.next)];
    auto it = merges_.find(pair_key(left.id, right.id));
    if (it == merges_.end() || it->second.first != c.rank || it->second.second != c.new_id)
      continue;  // stale: one side changed since this pair was queued
    left.id = c.new_id;
    left.end = right.end;
    right.begin = right.end;  // consumed
    left.next = right.next;
    if (left.next >= 0) syms[static_cast<size_t>(left.next)].prev = c.pos;
    push_pair(left.prev);
    push_pair(c.pos);
  }
  for (int32_t i = 0; i >= 0; i = syms[static_cast<size_t>(i)].next) {
    const Sym& s = syms[static_cast<size_t>(i)];
    out.push_back({s.id, s.begin, s.end});
  }
}

}  // namespace kt::tok
