// Fused elementwise passes of a block on the CPU (AVX-512 or AVX2), for
// the three that libtorch 1.13 runs as several passes over memory:
// RMSNorm, the gated MLP's act(gate) * up and the rotary embedding. Each
// reads its input once and writes once, computing in float32 and rounding
// where transformers rounds. They return an undefined tensor when they do
// not apply (not the CPU, a dtype other than float32 / bfloat16, a layout
// they do not take, a CPU with neither AVX-512 nor AVX2 + FMA, or
// KNOWTRACE_FUSED=0); the caller then runs its ATen ops.
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

// Rotary embedding of q or k, rounding as Model's ATen path (rotary_ops):
// x * cos rounded to x's dtype, then + partner * (-+sin) as one fused
// multiply-add in float32 (ATen's vector addcmul), rounded. x [B, H, T, hd]
// (any strides but the last), cos / sin [T, rd] (rd even, <= hd;
// contiguous, x's dtype): the first rd of each row rotated, in halves
// (d, d + rd/2) or, interleaved, pairs (2i, 2i + 1); the rest copied. The
// result has x's sizes, its memory position-major ([B, T, H, hd]) as
// ATen's would be.
at::Tensor fused_rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, bool interleaved);

}  // namespace kt
