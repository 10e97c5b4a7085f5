#include "tokenizer/bpe.h"

#include <queue>
#include <stdexcept>

#include "tokenizer/byte_level.h"

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
                   bool ignore_merges, std::optional<int32_t> unk_id, bool fuse_unk)
    : tokens_(std::move(tokens)), ignore_merges_(ignore_merges), unk_id_(unk_id),
      fuse_unk_(fuse_unk) {
  const auto& alpha = ByteLevelAlphabet::get();
  raw_.resize(tokens_.size());
  by_text_.reserve(tokens_.size());
  by_raw_.reserve(tokens_.size());
  for (size_t id = 0; id < tokens_.size(); ++id) {
    const std::string& t = tokens_[id];
    if (t.empty()) continue;
    by_text_.emplace(t, static_cast<int32_t>(id));
    auto raw = alpha.decode(t);
    raw_[id] = raw ? *raw : t;
    by_raw_.emplace(raw_[id], static_cast<int32_t>(id));
  }
  for (int b = 0; b < 256; ++b) {
    auto it = by_text_.find(alpha.char_of(static_cast<uint8_t>(b)));
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

std::optional<int32_t> BpeModel::find(const std::string& byte_level_text) const {
  auto it = by_text_.find(byte_level_text);
  if (it == by_text_.end()) return std::nullopt;
  return it->second;
}

void BpeModel::tokenize(std::string_view word, std::vector<BpePiece>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    auto it = by_raw_.find(std::string(word));
    if (it != by_raw_.end()) {
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

void BpeModel::merge_word(std::string_view word, std::vector<BpePiece>& out) const {
  // Symbols start as single bytes, linked in a list; merges consume the right
  // neighbour (len 0 marks a consumed symbol).
  struct Sym {
    int32_t id;
    int32_t prev, next;
    uint32_t begin, end;
  };
  std::vector<Sym> syms;
  syms.reserve(word.size());
  for (size_t i = 0; i < word.size(); ++i) {
    int32_t id = byte_id_[static_cast<unsigned char>(word[i])];
    if (id < 0) {
      // Byte missing from the vocabulary: the unknown token, or nothing.
      if (!unk_id_) continue;
      if (fuse_unk_ && !syms.empty() && syms.back().id == *unk_id_ &&
          syms.back().end == static_cast<uint32_t>(i)) {
        syms.back().end = static_cast<uint32_t>(i + 1);
        continue;
      }
      id = *unk_id_;
    }
    int32_t n = static_cast<int32_t>(syms.size());
    syms.push_back({id, n - 1, n + 1, static_cast<uint32_t>(i), static_cast<uint32_t>(i + 1)});
  }
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
