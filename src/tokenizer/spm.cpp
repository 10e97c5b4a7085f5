#include "tokenizer/spm.h"

#include <queue>

namespace kt::tok {

SpmModel::SpmModel(std::vector<std::string> tokens, std::vector<float> scores,
                   std::optional<int32_t> unk_id)
    : WordModel(std::move(tokens), Spelling::Pieces), scores_(std::move(scores)), unk_id_(unk_id) {}

void SpmModel::tokenize(std::string_view word, std::vector<BpePiece>& out) const {
  if (word.empty()) return;
  // Symbols: byte ranges linked in a list; a merged-away symbol is empty.
  struct Sym {
    uint32_t begin, end;
    int32_t prev, next;
  };
  std::vector<Sym> syms;
  for (size_t i = 0; i < word.size();) {
    // A character's length from its lead byte alone, as llama.cpp reads it.
    static const uint8_t kLen[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    size_t len = std::min<size_t>(word.size() - i, kLen[static_cast<unsigned char>(word[i]) >> 4]);
    int32_t n = static_cast<int32_t>(syms.size());
    syms.push_back({static_cast<uint32_t>(i), static_cast<uint32_t>(i + len), n - 1, n + 1});
    i += len;
  }
  syms.back().next = -1;

  struct Bigram {
    float score;
    int32_t left, right;
    uint32_t size;  // bytes of the merged text when queued
    bool operator<(const Bigram& o) const {  // best score first, then the leftmost
      return score != o.score ? score < o.score : left > o.left;
    }
  };
  std::priority_queue<Bigram> queue;
  std::string text;
  auto try_pair = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    const Sym& a = syms[static_cast<size_t>(l)];
    const Sym& b = syms[static_cast<size_t>(r)];
    text.assign(word.substr(a.begin, b.end - a.begin));
    auto it = by_text_.find(text);
    if (it == by_text_.end()) return;
    queue.push({scores_[static_cast<size_t>(it->second)], l, r, static_cast<uint32_t>(text.size())});
  };
  for (int32_t i = 1; i < static_cast<int32_t>(syms.size()); ++i) try_pair(i - 1, i);

  while (!queue.empty()) {
    Bigram bg = queue.top();
    queue.pop();
    Sym& a = syms[static_cast<size_t>(bg.left)];
    Sym& b = syms[static_cast<size_t>(bg.right)];
    // Stale: one side was merged into something else since it was queued.
    if (a.begin == a.end || b.begin == b.end || a.next != bg.right ||
        (a.end - a.begin) + (b.end - b.begin) != bg.size)
      continue;
    a.end = b.end;
    b.begin = b.end;
    a.next = b.next;
    if (b.next >= 0) syms[static_cast<size_t>(b.next)].prev = bg.left;
    try_pair(a.prev, bg.left);
    try_pair(bg.left, a.next);
  }

  for (int32_t i = 0; i >= 0; i = syms[static_cast<size_t>(i)].next) {
    const Sym& s = syms[static_cast<size_t>(i)];
    text.assign(word.substr(s.begin, s.end - s.begin));
    auto it = by_text_.find(text);
    if (it != by_text_.end()) {
      out.push_back({it->second, s.begin, s.end});
      continue;
    }
    for (uint32_t k = s.begin; k < s.end; ++k) {
      int32_t id = byte_piece_[static_cast<unsigned char>(word[k])];
      if (id < 0 && unk_id_) id = *unk_id_;
      if (id >= 0) out.push_back({id, k, k + 1});
    }
  }
}

}  // namespace kt::tok
