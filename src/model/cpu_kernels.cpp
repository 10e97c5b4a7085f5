#include "model/cpu_kernels.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>

#if defined(KT_HAVE_SLEEF) && defined(__x86_64__) && defined(__GNUC__)
#define KT_FUSED_AVX512 1
#include <immintrin.h>
#endif

namespace kt {
namespace {

#if KT_FUSED_AVX512
// ---- The AVX-512 kernels. Only the functions between push_options and
// pop_options are compiled for AVX-512 (the headers above keep the
// default target), and they run only where the CPU has it. The file is
// compiled with -ffp-contract=off: a multiply and an add stay two
// roundings unless written as one fma, which is where ATen's own AVX-512
// kernels (compiled with contraction) fuse them: the tanh-GELU's x + k x^3.
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq")

// Sleef's exp and tanh, the ones ATen's Vectorized<float> calls (libtorch
// links libsleef), so an activation rounds as ATen's does.
extern "C" __m512 Sleef_expf16_u10avx512f(__m512);
extern "C" __m512 Sleef_tanhf16_u10avx512f(__m512);

using bf16 = uint16_t;  // the bits of a bfloat16

inline __mmask16 lanes(int64_t left) { return left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1); }

// Loads and stores of 16 lanes, or of the first lanes `m` names (a row's
// tail: full vectors go unmasked, masked stores being slow on some CPUs).
inline __m512 load(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 load(const float* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
inline __m512 widen(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }
inline __m512 load(const bf16* p) { return widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
inline __m512 load(const bf16* p, __mmask16 m) { return widen(_mm256_maskz_loadu_epi16(m, p)); }

// The bfloat16 nearest each lane (ties to even, NaN stays NaN), as a float.
inline __m512 nearest_bf16(__m512 v) {
  const __m512i b = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_add_epi32(b, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
  r = _mm512_and_si512(r, _mm512_set1_epi32(static_cast<int>(0xffff0000u)));
  const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  return _mm512_castsi512_ps(_mm512_mask_blend_epi32(nan, r, _mm512_set1_epi32(0x7fc00000)));
}

inline __m512 round_to(__m512 v, const float*) { return v; }
inline __m512 round_to(__m512 v, const bf16*) { return nearest_bf16(v); }

inline __m256i narrow(__m512 v) { return _mm512_cvtepi32_epi16(_mm512_srli_epi32(_mm512_castps_si512(nearest_bf16(v)), 16)); }
inline void store(float* p, __m512 v) { _mm512_storeu_ps(p, v); }
inline void store(float* p, __m512 v, __mmask16 m) { _mm512_mask_storeu_ps(p, m, v); }
inline void store(bf16* p, __m512 v) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), narrow(v)); }
inline void store(bf16* p, __m512 v, __mmask16 m) { _mm256_mask_storeu_epi16(p, m, narrow(v)); }

template <bool kTail, typename T>
inline __m512 get(const T* p, __mmask16 m) {
  if constexpr (kTail) return load(p, m);
  else return load(p);
}
template <bool kTail, typename T>
inline void put(T* p, __m512 v, __mmask16 m) {
  if constexpr (kTail) store(p, v, m);
  else store(p, v);
}

// f(tail, i, m) over [0, n) in steps of 16 lanes, m = those in range: the
// full vectors, then the tail (tail: std::true_type) with its mask.
template <typename F>
inline void over_lanes(int64_t n, F&& f) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) f(std::false_type{}, i, __mmask16(0xffff));
  if (i < n) f(std::true_type{}, i, lanes(n - i));
}

template <typename T>
void rms_norm_rows(const T* x, const T* w, T* y, int64_t rows, int64_t n, float eps) {
  for (int64_t r = 0; r < rows; ++r, x += n, y += n) {
    __m512 acc = _mm512_setzero_ps();
    over_lanes(n, [&](auto tail, int64_t i, __mmask16 m) {
      const __m512 a = get<decltype(tail)::value>(x + i, m);
      acc = _mm512_fmadd_ps(a, a, acc);
    });
    const float mean = _mm512_reduce_add_ps(acc) / static_cast<float>(n);
    const __m512 scale = _mm512_set1_ps(1.0f / __builtin_sqrtf(mean + eps));
    over_lanes(n, [&](auto tail, int64_t i, __mmask16 m) {
      constexpr bool kTail = decltype(tail)::value;
      const __m512 normed = round_to(_mm512_mul_ps(get<kTail>(x + i, m), scale), x);
      put<kTail>(y + i, _mm512_mul_ps(normed, get<kTail>(w + i, m)), m);
    });
  }
}

inline __m512 silu(__m512 x) {  // x / (1 + exp(-x)), as ATen
  const __m512 minus_x = _mm512_xor_ps(x, _mm512_set1_ps(-0.0f));
  return _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), Sleef_expf16_u10avx512f(minus_x)));
}

inline __m512 gelu_tanh(__m512 x) {  // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), as ATen
  const __m512 beta = _mm512_set1_ps(static_cast<float>(M_SQRT2 * M_2_SQRTPI * 0.5));
  const __m512 cube = _mm512_mul_ps(_mm512_mul_ps(x, x), x);
  const __m512 inner = _mm512_mul_ps(beta, _mm512_fmadd_ps(_mm512_set1_ps(0.044715f), cube, x));
  const __m512 half_x = _mm512_mul_ps(_mm512_set1_ps(0.5f), x);
  return _mm512_mul_ps(half_x, _mm512_add_ps(_mm512_set1_ps(1.0f), Sleef_tanhf16_u10avx512f(inner)));
}

template <typename T, bool kSilu>
void act_mul_rows(const T* gu, T* out, int64_t rows, int64_t I) {
  for (int64_t r = 0; r < rows; ++r, gu += 2 * I, out += I) {
    over_lanes(I, [&](auto tail, int64_t i, __mmask16 m) {
      constexpr bool kTail = decltype(tail)::value;
      const __m512 g = get<kTail>(gu + i, m);
      const __m512 act = round_to(kSilu ? silu(g) : gelu_tanh(g), gu);
      put<kTail>(out + i, _mm512_mul_ps(act, get<kTail>(gu + I + i, m)), m);
    });
  }
}

#pragma GCC pop_options
#endif  // KT_FUSED_AVX512

bool enabled() {
#if !KT_FUSED_AVX512
  return false;
#else
  static const bool on = [] {
    if (!fused_passes_allowed()) return false;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  }();
  return on;
#endif
}

// float32 or bfloat16 on the CPU, contiguous, and the kernels enabled.
bool takes(const at::Tensor& t) {
  return enabled() && t.defined() && t.device().is_cpu() && t.is_contiguous() && t.dim() >= 1 && t.numel() > 0 &&
         (t.scalar_type() == at::kFloat || t.scalar_type() == at::kBFloat16);
}

#if KT_FUSED_AVX512
template <typename T>
T* bits(const at::Tensor& t) {
  return static_cast<T*>(t.data_ptr());
}

// Rows of `width` elements per task: at least ~16k elements each.
int64_t grain(int64_t width) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, width)); }
#endif

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
#if KT_FUSED_AVX512
  const int64_t n = x.size(-1), rows = x.numel() / n;
  at::Tensor y = at::empty(x.sizes(), x.options());
  const bool f32 = x.scalar_type() == at::kFloat;
  at::parallel_for(0, rows, grain(n), [&](int64_t lo, int64_t hi) {
    if (f32)
      rms_norm_rows(bits<float>(x) + lo * n, bits<float>(w), bits<float>(y) + lo * n, hi - lo, n, float(eps));
    else
      rms_norm_rows(bits<bf16>(x) + lo * n, bits<bf16>(w), bits<bf16>(y) + lo * n, hi - lo, n, float(eps));
  });
  return y;
#else
  return {};
#endif
}

at::Tensor fused_act_mul(const at::Tensor& gu, int64_t I, Act act) {
  if (!takes(gu) || I < 1 || gu.size(-1) != 2 * I || (act != Act::SiLU && act != Act::GeluTanh)) return {};
#if KT_FUSED_AVX512
  std::vector<int64_t> shape(gu.sizes().begin(), gu.sizes().end());
  shape.back() = I;
  at::Tensor out = at::empty(shape, gu.options());
  const int64_t rows = gu.numel() / (2 * I);
  const bool f32 = gu.scalar_type() == at::kFloat, is_silu = act == Act::SiLU;
  at::parallel_for(0, rows, grain(2 * I), [&](int64_t lo, int64_t hi) {
    if (f32) {
      const float* in = bits<float>(gu) + lo * 2 * I;
      float* o = bits<float>(out) + lo * I;
      is_silu ? act_mul_rows<float, true>(in, o, hi - lo, I) : act_mul_rows<float, false>(in, o, hi - lo, I);
    } else {
      const bf16* in = bits<bf16>(gu) + lo * 2 * I;
      bf16* o = bits<bf16>(out) + lo * I;
      is_silu ? act_mul_rows<bf16, true>(in, o, hi - lo, I) : act_mul_rows<bf16, false>(in, o, hi - lo, I);
    }
  });
  return out;
#else
  return {};
#endif
}

}  // namespace kt
