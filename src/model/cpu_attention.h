// The attention of a block on the CPU as one pass per row:
// scores, mask, softmax and the probabilities times v without the dozen
// ATen ops (and their allocations) that Model::attend otherwise runs on
// matrices of a few dozen elements. Arithmetic as Model::attend's ATen
// path: scores in float32, scaled, soft-capped (Gemma-2), masked, softmax
// in float32, probabilities rounded to v's dtype, times v accumulated in
// float32 and rounded once. Returns an undefined tensor when it does not
// apply (not the CPU, a dtype other than float32 / bfloat16, mixed dtypes,
// a last dimension that is not contiguous, or KNOWTRACE_FUSED=0).
#pragma once
#include <ATen/ATen.h>

namespace kt {

struct AttendShape {
  double scale = 1.0;        // scores times this
  double softcap = 0.0;      // > 0: tanh(s / softcap) * softcap
  int64_t q_pos0 = 0;        // query i sits at position q_pos0 + i
  int64_t window = 0;        // > 0: a query sees only its last `window` keys
};

// Keys and values that groups of rows share before their own: with a
// prefix k / v [P, nkv, Tp, hd] (B a multiple of P), row b's keys are
// prefix row b % P's followed by its own (a restoration's S rows over the
// corrupted run's S rows), without copying the prefix B / P times.
struct KvPrefix {
  at::Tensor k, v;
};

// q [B, nh, Tq, hd], k / v [B, nkv, Tk, hd] (nh a multiple of nkv; key j at
// position j, after the prefix's Tp: Tp + j), blocked: undefined or bool
// broadcastable to [B, nh, Tq, Tp + Tk] (true: the edge is removed).
// Returns [B, Tq, nh * hd] in v's dtype.
at::Tensor fused_attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& blocked,
                        const AttendShape& shape, const KvPrefix& prefix = {});

}  // namespace kt
