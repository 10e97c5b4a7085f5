#include "model/cpu_kernels.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#if defined(KT_HAVE_SLEEF) && defined(__x86_64__) && defined(__GNUC__)
#define KT_FUSED_SIMD 1
#include <immintrin.h>
#endif

namespace kt {
namespace {

using bf16 = uint16_t;  // the bits of a bfloat16

// The row loops of one instruction set (cpu_kernels_rows.inc).
struct Kernels {
  void (*rms_norm_f32)(const float*, const float*, float*, int64_t rows, int64_t n, float eps);
  void (*rms_norm_bf16)(const bf16*, const bf16*, bf16*, int64_t rows, int64_t n, float eps);
  void (*silu_mul_f32)(const float*, float*, int64_t rows, int64_t I);
  void (*gelu_mul_f32)(const float*, float*, int64_t rows, int64_t I);
  void (*silu_mul_bf16)(const bf16*, bf16*, int64_t rows, int64_t I);
  void (*gelu_mul_bf16)(const bf16*, bf16*, int64_t rows, int64_t I);
  void (*rotary_f32)(const float* x, int64_t stride, int64_t H, const float* cos, const float* sin, float* out,
                     int64_t rd, int64_t hd, bool interleaved);
  void (*rotary_bf16)(const bf16* x, int64_t stride, int64_t H, const bf16* cos, const bf16* sin, bf16* out,
                      int64_t rd, int64_t hd, bool interleaved);
};

#if KT_FUSED_SIMD
// ---- The row loops, compiled once for AVX-512 and once for AVX2 + FMA;
// each runs only where the CPU has its set (kernels() below). Sleef's exp
// and tanh are the ones ATen's vector kernels of that set call (libtorch
// links libsleef), so an activation rounds as ATen's does on the same CPU.
// The file is compiled with -ffp-contract=off: a multiply and an add stay
// two roundings unless written as fma, which is where ATen's own kernels
// (compiled with contraction) fuse them: the tanh-GELU's x + k x^3.
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq")
extern "C" __m512 Sleef_expf16_u10avx512f(__m512);
extern "C" __m512 Sleef_tanhf16_u10avx512f(__m512);
namespace avx512 {
using vf = __m512;
inline vf fma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
inline vf vexp(vf x) { return Sleef_expf16_u10avx512f(x); }
inline vf vtanh(vf x) { return Sleef_tanhf16_u10avx512f(x); }
#include "model/cpu_kernels_rows.inc"
}  // namespace avx512
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma")
extern "C" __m256 Sleef_expf8_u10avx2(__m256);
extern "C" __m256 Sleef_tanhf8_u10avx2(__m256);
namespace avx2 {
using vf = __m256;
inline vf fma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
inline vf vexp(vf x) { return Sleef_expf8_u10avx2(x); }
inline vf vtanh(vf x) { return Sleef_tanhf8_u10avx2(x); }
#include "model/cpu_kernels_rows.inc"
}  // namespace avx2
#pragma GCC pop_options
#endif  // KT_FUSED_SIMD

// The widest set this CPU has, or null (none, or KNOWTRACE_FUSED=0).
const Kernels* kernels() {
#if !KT_FUSED_SIMD
  return nullptr;
#else
  static const Kernels* const picked = []() -> const Kernels* {
    if (!fused_passes_allowed()) return nullptr;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
      return &avx512::kernels;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return &avx2::kernels;
    return nullptr;
  }();
  return picked;
#endif
}

// float32 or bfloat16 on the CPU, contiguous, and kernels for this CPU.
bool takes(const at::Tensor& t) {
  return kernels() && t.defined() && t.device().is_cpu() && t.is_contiguous() && t.dim() >= 1 && t.numel() > 0 &&
         (t.scalar_type() == at::kFloat || t.scalar_type() == at::kBFloat16);
}

template <typename T>
T* bits(const at::Tensor& t) {
  return static_cast<T*>(t.data_ptr());
}

// Rows of `width` elements per task: at least ~16k elements each.
int64_t grain(int64_t width) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, width)); }

}  // namespace

bool fused_passes_allowed() {
  static const bool on = [] {
    const char* e = std::getenv("KNOWTRACE_FUSED");
    return !(e && std::strcmp(e, "0") == 0);
  }();
  return on;
}

at::Tensor fused_rms_norm(const at::Tensor& x, const at::Tensor& w, double eps) {
  if (!takes(x) || !takes(w) || w.scalar_type() != x.scalar_type() || w.dim() != 1 || w.size(0) != x.size(-1))
    return {};
  const Kernels& k = *kernels();
  const int64_t n = x.size(-1), rows = x.numel() / n;
  at::Tensor y = at::empty(x.sizes(), x.options());
  const bool f32 = x.scalar_type() == at::kFloat;
  at::parallel_for(0, rows, grain(n), [&](int64_t lo, int64_t hi) {
    if (f32)
      k.rms_norm_f32(bits<float>(x) + lo * n, bits<float>(w), bits<float>(y) + lo * n, hi - lo, n, float(eps));
    else
      k.rms_norm_bf16(bits<bf16>(x) + lo * n, bits<bf16>(w), bits<bf16>(y) + lo * n, hi - lo, n, float(eps));
  });
  return y;
}

at::Tensor fused_act_mul(const at::Tensor& gu, int64_t I, Act act) {
  if (!takes(gu) || I < 1 || gu.size(-1) != 2 * I || (act != Act::SiLU && act != Act::GeluTanh)) return {};
  const Kernels& k = *kernels();
  std::vector<int64_t> shape(gu.sizes().begin(), gu.sizes().end());
  shape.back() = I;
  at::Tensor out = at::empty(shape, gu.options());
  const int64_t rows = gu.numel() / (2 * I);
  const bool f32 = gu.scalar_type() == at::kFloat, is_silu = act == Act::SiLU;
  at::parallel_for(0, rows, grain(2 * I), [&](int64_t lo, int64_t hi) {
    if (f32)
      (is_silu ? k.silu_mul_f32 : k.gelu_mul_f32)(bits<float>(gu) + lo * 2 * I, bits<float>(out) + lo * I, hi - lo, I);
    else
      (is_silu ? k.silu_mul_bf16 : k.gelu_mul_bf16)(bits<bf16>(gu) + lo * 2 * I, bits<bf16>(out) + lo * I, hi - lo, I);
  });
  return out;
}

at::Tensor fused_rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, bool interleaved) {
  const at::ScalarType dt = x.defined() ? x.scalar_type() : at::kFloat;
  if (!kernels() || (dt != at::kFloat && dt != at::kBFloat16) || !x.device().is_cpu() || x.dim() != 4 ||
      x.stride(3) != 1 || x.numel() == 0)
    return {};
  const int64_t B = x.size(0), H = x.size(1), T = x.size(2), hd = x.size(3);
  for (const at::Tensor* t : {&cos, &sin})
    if (!takes(*t) || t->scalar_type() != dt || t->dim() != 2 || t->size(0) != T) return {};
  const int64_t rd = cos.size(1);
  if (rd % 2 != 0 || rd > hd || sin.size(1) != rd) return {};
  const Kernels& k = *kernels();
  at::Tensor out = at::empty({B, T, H, hd}, x.options());  // position-major, as ATen's result
  const int64_t s0 = x.stride(0), s1 = x.stride(1), s2 = x.stride(2);
  const bool f32 = dt == at::kFloat;
  at::parallel_for(0, B * T, grain(H * hd), [&](int64_t lo, int64_t hi) {
    for (int64_t bt = lo; bt < hi; ++bt) {
      const int64_t in = bt / T * s0 + bt % T * s2, o = bt * H * hd, tab = bt % T * rd;
      if (f32)
        k.rotary_f32(bits<float>(x) + in, s1, H, bits<float>(cos) + tab, bits<float>(sin) + tab, bits<float>(out) + o,
                     rd, hd, interleaved);
      else
        k.rotary_bf16(bits<bf16>(x) + in, s1, H, bits<bf16>(cos) + tab, bits<bf16>(sin) + tab, bits<bf16>(out) + o,
                      rd, hd, interleaved);
    }
  });
  return out.permute({0, 2, 1, 3});
}

}  // namespace kt
