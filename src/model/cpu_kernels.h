// Fused elementwise passes of a block on the CPU (AVX-512 or AVX2), for
// the two that libtorch 1.13 runs as several passes over memory: RMSNorm
// and the gated MLP's act(gate) * up. Each reads its input once and writes
// once, computing in float32 and rounding where transformers rounds. Both
// return an undefined tensor when they do not apply (not the CPU, a dtype
// other than float32 / bfloat16, a layout they do not take, a CPU with
// neither AVX-512 nor AVX2 + FMA, or KNOWTRACE_FUSED=0); the caller then
// runs its ATen ops.
#pragma once
#include <ATen/ATen.h>

#include "model/config.h"

namespace kt {

// False when KNOWTRACE_FUSED=0: every fused CPU pass declines (the ATen ops run).
bool fused_passes_allowed();

// RMSNorm of each row of x [..., n] (contiguous): y = x * rsqrt(mean(x^2) + eps)
// in float32, rounded to x's dtype, then times w [n] in x's dtype.
at::Tensor fused_rms_norm(const at::Tensor& x, const at::Tensor& w, double eps);

// gu [..., 2I] (contiguous; gate columns first): act(gate) rounded to gu's
// dtype, times up, rounded again: [..., I]. SiLU and tanh-GELU only.
at::Tensor fused_act_mul(const at::Tensor& gu, int64_t I, Act act);

}  // namespace kt
