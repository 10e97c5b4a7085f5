#include "model/cpu_rotary.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "model/cpu_kernels.h"
#include "model/cpu_scalar.h"

namespace kt {
namespace {

using namespace scalar;

// x * c rounded to T, plus partner * s in float32 as one fused multiply-add
// (ATen's vector addcmul), rounded to T.
template <typename T>
__attribute__((always_inline)) inline void rotate(const T& x, const T& c, float partner, float s, T* out) {
  narrow(std::fma(partner, s, round_as(widen(x) * widen(c), &x)), out);
}

// The H rows of heads at one position (row h at x + h * stride): the first
// rd of each rotated, with -sin on the first of a pair and +sin on the
// second; the rest copied.
template <typename T>
__attribute__((always_inline)) inline void rotate_heads(const T* x, int64_t stride, int64_t H, const T* c,
                                                         const T* s, T* out, int64_t rd, int64_t hd,
                                                         bool interleaved) {
  const int64_t half = rd / 2;
  for (int64_t h = 0; h < H; ++h, x += stride, out += hd) {
    if (interleaved) {
      for (int64_t i = 0; i < half; ++i) {
        const int64_t d = 2 * i;
        rotate(x[d], c[d], widen(x[d + 1]), -widen(s[d]), out + d);
        rotate(x[d + 1], c[d + 1], widen(x[d]), widen(s[d + 1]), out + d + 1);
      }
    } else {
      for (int64_t d = 0; d < half; ++d) rotate(x[d], c[d], widen(x[d + half]), -widen(s[d]), out + d);
      for (int64_t d = half; d < rd; ++d) rotate(x[d], c[d], widen(x[d - half]), widen(s[d]), out + d);
    }
    std::memcpy(out + rd, x + rd, static_cast<size_t>(hd - rd) * sizeof(T));
  }
}

// One clone per instruction set (Haswell's: AVX2 and FMA); the loader picks
// the CPU's. The file is compiled without contraction: the one fma is written.
#define KT_CLONES __attribute__((target_clones("avx512f", "arch=haswell", "default")))
KT_CLONES void rotate_f32(const float* x, int64_t stride, int64_t H, const float* c, const float* s, float* out,
                          int64_t rd, int64_t hd, bool interleaved) {
  rotate_heads(x, stride, H, c, s, out, rd, hd, interleaved);
}
KT_CLONES void rotate_bf16(const bf16* x, int64_t stride, int64_t H, const bf16* c, const bf16* s, bf16* out,
                           int64_t rd, int64_t hd, bool interleaved) {
  rotate_heads(x, stride, H, c, s, out, rd, hd, interleaved);
}
#undef KT_CLONES

}  // namespace

at::Tensor fused_rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, bool interleaved) {
  const at::ScalarType dt = x.defined() ? x.scalar_type() : at::kFloat;
  if (!fused_passes_allowed() || (dt != at::kFloat && dt != at::kBFloat16) || !x.device().is_cpu() ||
      x.dim() != 4 || x.stride(3) != 1 || x.numel() == 0)
    return {};
  const int64_t B = x.size(0), H = x.size(1), T = x.size(2), hd = x.size(3);
  for (const at::Tensor* t : {&cos, &sin})
    if (!t->defined() || !t->device().is_cpu() || t->scalar_type() != dt || t->dim() != 2 || t->size(0) != T ||
        !t->is_contiguous())
      return {};
  const int64_t rd = cos.size(1);
  if (rd % 2 != 0 || rd > hd || sin.size(1) != rd) return {};
  at::Tensor out = at::empty({B, T, H, hd}, x.options());
  const int64_t s0 = x.stride(0), s1 = x.stride(1), s2 = x.stride(2);
  at::parallel_for(0, B * T, std::max<int64_t>(1, 16384 / (H * hd)), [&](int64_t lo, int64_t hi) {
    for (int64_t bt = lo; bt < hi; ++bt) {
      const int64_t b = bt / T, t = bt % T;
      const int64_t in = b * s0 + t * s2, o = bt * H * hd, tab = t * rd;
      if (dt == at::kFloat)
        rotate_f32(x.data_ptr<float>() + in, s1, H, cos.data_ptr<float>() + tab, sin.data_ptr<float>() + tab,
                   out.data_ptr<float>() + o, rd, hd, interleaved);
      else
        rotate_bf16(static_cast<const bf16*>(x.data_ptr()) + in, s1, H, static_cast<const bf16*>(cos.data_ptr()) + tab,
                    static_cast<const bf16*>(sin.data_ptr()) + tab, static_cast<bf16*>(out.data_ptr()) + o, rd, hd,
                    interleaved);
    }
  });
  return out.permute({0, 2, 1, 3});
}

}  // namespace kt
