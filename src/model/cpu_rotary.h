// Rotary position embedding of q or k on the CPU in one pass: read once,
// written once, instead of ATen's product, partner gather, sign flip and
// addcmul over a strided view. Rounds as that ATen path does: x * cos
// rounded to x's dtype, then + partner * (+-sin) as one fused multiply-add
// in float32 (as ATen's vector addcmul), rounded.
// Returns an undefined tensor when it does not apply (not the CPU, a dtype
// other than float32 / bfloat16, a table of another dtype or shape, a last
// dimension that is not contiguous, or KNOWTRACE_FUSED=0).
#pragma once
#include <ATen/ATen.h>

namespace kt {

// x [B, H, T, hd] (any strides but the last), cos / sin [T, rd] (rd even,
// <= hd; contiguous): the first rd of each row rotated, in pairs (d, d +
// rd/2) or, interleaved, (2i, 2i + 1); the rest copied. The result has x's
// sizes, its memory position-major ([B, T, H, hd]) as ATen's would be.
at::Tensor fused_rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, bool interleaved);

}  // namespace kt
