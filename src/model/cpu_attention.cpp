#include "model/cpu_attention.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "model/cpu_kernels.h"

namespace kt {
namespace {

// Scalars: a bfloat16 is its 16 bits, widened exactly, narrowed to the
// nearest (ties to even, NaN stays NaN) as ATen's float -> bfloat16
// conversion does.
using bf16 = uint16_t;

inline float widen(float x) { return x; }
inline float widen(bf16 x) {
  const uint32_t bits = static_cast<uint32_t>(x) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

inline void narrow(float x, float* out) { *out = x; }
inline void narrow(float x, bf16* out) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  *out = std::isnan(x) ? bf16(0x7fc0) : bf16((bits + 0x7fff + ((bits >> 16) & 1)) >> 16);
}

// x rounded to the dtype T stands for (the pointer only selects it).
inline float round_as(float x, const float*) { return x; }
inline float round_as(float x, const bf16*) {
  bf16 b;
  narrow(x, &b);
  return widen(b);
}

// Element (i0, i1, i2, d) of a 4-d tensor whose last dimension is contiguous.
template <typename T>
struct Rows {
  T* p;
  int64_t s0, s1, s2;
  T* at(int64_t i0, int64_t i1, int64_t i2) const { return p + i0 * s0 + i1 * s1 + i2 * s2; }
};
template <typename T>
Rows<T> rows_of(const at::Tensor& t) {  // an undefined tensor: no rows
  if (!t.defined()) return {nullptr, 0, 0, 0};
  return {static_cast<T*>(t.data_ptr()), t.stride(0), t.stride(1), t.stride(2)};
}

// kLanes floats as one value (GCC's vector extension): one ymm register
// in the AVX-512 and Haswell clones, two xmm in the default one.
constexpr int64_t kLanes = 8;
typedef float Lanes __attribute__((vector_size(kLanes * sizeof(float))));
__attribute__((always_inline)) inline Lanes load_lanes(const float* p) {
  Lanes v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// The tensors of a call: the queries, the shared prefix's keys / values
// (no rows without one), the rows' own keys / values and the output.
template <typename T>
struct Operands {
  Rows<const T> q, pk, pv, k, v;
  Rows<T> out;
};
template <typename T>
Operands<T> operands(const at::Tensor& q, const KvPrefix& prefix, const at::Tensor& k, const at::Tensor& v,
                     const at::Tensor& out) {
  return {rows_of<const T>(q), rows_of<const T>(prefix.k), rows_of<const T>(prefix.v),
          rows_of<const T>(k), rows_of<const T>(v),        rows_of<T>(out)};
}

struct Job {
  int64_t nh, nkv, Tq, Tk, hd;  // Tk: the prefix's keys and the row's own
  int64_t P, Tp;                // prefix rows and keys (0, 0 without one)
  AttendShape shape;
  const bool* blocked;  // [B, nh, Tq, Tk] through bs, or null
  int64_t bs[4];
};

// The keys and values of one kv head, widened to float32: keys transposed
// ([hd, Tkp], Tk padded to whole blocks of lanes), values as they are.
struct KvHead {
  const float* kt;
  const float* v;
  int64_t Tk, Tkp, hd;
};

// NQ queries of one head (positions i0 .. i0 + NQ - 1) at once: each block
// of lanes of k or v is loaded once for all of them, and the NQ sums in
// flight hide the adds' latency. A query's scores are blocks of lanes of
// keys summed over d, its output blocks of lanes of d summed over the keys,
// each as two sums in order (even and odd terms) added at the end: no
// horizontal sums, and about as close to the exact answer as ATen's BLAS
// products (test_cpu_attention). The few output elements past the last
// whole block of lanes (head sizes not a multiple of kLanes) keep one sum
// over the keys. The sums are fused multiply-adds
// where the CPU has them (this file is compiled with contraction, unlike
// cpu_kernels.cpp), one rounding per term as in a BLAS product.
template <int NQ, typename T>
__attribute__((always_inline)) inline void attend_queries(const Job& job, const KvHead& kv, Rows<const T> q,
                                                           Rows<T> out, int64_t b, int64_t h, int64_t i0,
                                                           float* qf, float* p) {
  const int64_t Tk = kv.Tk, Tkp = kv.Tkp, hd = kv.hd;
  for (int r = 0; r < NQ; ++r) {
    const T* qr = q.at(b, h, i0 + r);
    for (int64_t d = 0; d < hd; ++d) qf[r * hd + d] = widen(qr[d]);
  }
  for (int64_t j0 = 0; j0 < Tkp; j0 += kLanes) {
    // two partial sums per query (even and odd d), added at the end: a
    // shorter chain of roundings than one running sum over all of d
    Lanes acc[NQ] = {}, acc1[NQ] = {};
    int64_t d = 0;
    for (; d + 2 <= hd; d += 2) {
      const Lanes k0 = load_lanes(kv.kt + d * Tkp + j0), k1 = load_lanes(kv.kt + (d + 1) * Tkp + j0);
      for (int r = 0; r < NQ; ++r) acc[r] += qf[r * hd + d] * k0, acc1[r] += qf[r * hd + d + 1] * k1;
    }
    if (d < hd) {
      const Lanes kd = load_lanes(kv.kt + d * Tkp + j0);
      for (int r = 0; r < NQ; ++r) acc[r] += qf[r * hd + d] * kd;
    }
    for (int r = 0; r < NQ; ++r) {
      const Lanes sum = acc[r] + acc1[r];
      std::memcpy(p + r * Tkp + j0, &sum, sizeof sum);
    }
  }
  const float scale = static_cast<float>(job.shape.scale), cap = static_cast<float>(job.shape.softcap);
  const float minus_inf = -std::numeric_limits<float>::infinity();
  for (int r = 0; r < NQ; ++r) {
    float* pr = p + r * Tkp;
    const int64_t i = i0 + r, pos = job.shape.q_pos0 + i;
    const bool* blk = job.blocked ? job.blocked + b * job.bs[0] + h * job.bs[1] + i * job.bs[2] : nullptr;
    float top = minus_inf;
    for (int64_t j = 0; j < Tk; ++j) {
      const bool hidden =
          j > pos || (job.shape.window > 0 && j <= pos - job.shape.window) || (blk && blk[j * job.bs[3]]);
      float s = pr[j] * scale;
      if (cap > 0) s = std::tanh(s / cap) * cap;
      pr[j] = hidden ? minus_inf : s;
      top = std::max(top, pr[j]);
    }
    // softmax as ATen's: exp(s - max), times 1 / sum; rounded to T
    float sum = 0;
    for (int64_t j = 0; j < Tk; ++j) sum += (pr[j] = std::exp(pr[j] - top));
    const float inv = 1 / sum;
    for (int64_t j = 0; j < Tk; ++j) pr[j] = round_as(pr[j] * inv, static_cast<const T*>(nullptr));
  }
  int64_t d0 = 0;
  for (; d0 + kLanes <= hd; d0 += kLanes) {
    Lanes acc[NQ] = {}, acc1[NQ] = {};  // even and odd keys, as the scores
    int64_t j = 0;
    for (; j + 2 <= Tk; j += 2) {
      const Lanes v0 = load_lanes(kv.v + j * hd + d0), v1 = load_lanes(kv.v + (j + 1) * hd + d0);
      for (int r = 0; r < NQ; ++r) acc[r] += p[r * Tkp + j] * v0, acc1[r] += p[r * Tkp + j + 1] * v1;
    }
    if (j < Tk) {
      const Lanes vj = load_lanes(kv.v + j * hd + d0);
      for (int r = 0; r < NQ; ++r) acc[r] += p[r * Tkp + j] * vj;
    }
    for (int r = 0; r < NQ; ++r) {
      const Lanes sum = acc[r] + acc1[r];
      T* o = out.at(b, i0 + r, h) + d0;
      for (int64_t l = 0; l < kLanes; ++l) narrow(sum[l], o + l);
    }
  }
  for (; d0 < hd; ++d0) {
    for (int r = 0; r < NQ; ++r) {
      float acc = 0;
      for (int64_t j = 0; j < Tk; ++j) acc += p[r * Tkp + j] * kv.v[j * hd + d0];
      narrow(acc, out.at(b, i0 + r, h) + d0);
    }
  }
}

// Every query of row b, four at a time.
constexpr int kQueries = 4;
template <typename T>
__attribute__((always_inline)) inline void attend_row(const Job& job, const Operands<T>& o, int64_t b,
                                                       std::vector<float>& scratch) {
  const int64_t Tk = job.Tk, hd = job.hd, g = job.nh / job.nkv, nkv = job.nkv;
  const int64_t Tkp = (Tk + kLanes - 1) / kLanes * kLanes, per_kv = hd * Tkp + Tk * hd;
  // Only the keys and values are written per row: the keys' padding
  // columns stay the zeros resize gave them (every row of a call has the
  // same shapes), and the query / score blocks are written before read.
  scratch.resize(static_cast<size_t>(nkv * per_kv + kQueries * (hd + Tkp)));
  for (int64_t kvh = 0; kvh < nkv; ++kvh) {
    float* kt = scratch.data() + kvh * per_kv;
    float* vf = kt + hd * Tkp;
    for (int64_t j = 0; j < Tk; ++j) {
      const bool shared = j < job.Tp;
      const T* kr = shared ? o.pk.at(b % job.P, kvh, j) : o.k.at(b, kvh, j - job.Tp);
      const T* vr = shared ? o.pv.at(b % job.P, kvh, j) : o.v.at(b, kvh, j - job.Tp);
      for (int64_t d = 0; d < hd; ++d) kt[d * Tkp + j] = widen(kr[d]), vf[j * hd + d] = widen(vr[d]);
    }
  }
  float* qf = scratch.data() + nkv * per_kv;  // [kQueries, hd]
  float* p = qf + kQueries * hd;              // [kQueries, Tkp]
  for (int64_t h = 0; h < job.nh; ++h) {
    const float* kt = scratch.data() + (h / g) * per_kv;
    const KvHead kv{kt, kt + hd * Tkp, Tk, Tkp, hd};
    int64_t i0 = 0;
    for (; i0 + kQueries <= job.Tq; i0 += kQueries) attend_queries<kQueries>(job, kv, o.q, o.out, b, h, i0, qf, p);
    switch (job.Tq - i0) {
      case 3: attend_queries<3>(job, kv, o.q, o.out, b, h, i0, qf, p); break;
      case 2: attend_queries<2>(job, kv, o.q, o.out, b, h, i0, qf, p); break;
      case 1: attend_queries<1>(job, kv, o.q, o.out, b, h, i0, qf, p); break;
      default: break;
    }
  }
}

// One clone per instruction set (Haswell's: AVX2 and FMA); the loader picks
// the CPU's.
#define KT_CLONES __attribute__((target_clones("avx512f", "arch=haswell", "default")))
KT_CLONES void attend_f32(const Job& job, const Operands<float>& o, int64_t b, std::vector<float>& scratch) {
  attend_row(job, o, b, scratch);
}
KT_CLONES void attend_bf16(const Job& job, const Operands<bf16>& o, int64_t b, std::vector<float>& scratch) {
  attend_row(job, o, b, scratch);
}
#undef KT_CLONES

bool takes(const at::Tensor& t, at::ScalarType dt) {
  return t.defined() && t.device().is_cpu() && t.dim() == 4 && t.scalar_type() == dt && t.stride(3) == 1;
}

}  // namespace

at::Tensor fused_attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& blocked,
                        const AttendShape& shape, const KvPrefix& prefix) {
  const at::ScalarType dt = v.defined() ? v.scalar_type() : at::kFloat;
  if (!fused_passes_allowed() || (dt != at::kFloat && dt != at::kBFloat16) || !takes(q, dt) || !takes(k, dt) ||
      !takes(v, dt))
    return {};
  const int64_t B = q.size(0), nh = q.size(1), Tq = q.size(2), hd = q.size(3);
  const int64_t nkv = k.size(1);
  if (nkv < 1 || nh % nkv != 0 || k.size(0) != B || k.size(3) != hd || !v.sizes().equals(k.sizes())) return {};
  int64_t P = 0, Tp = 0;
  if (prefix.k.defined() || prefix.v.defined()) {
    if (!takes(prefix.k, dt) || !takes(prefix.v, dt) || !prefix.v.sizes().equals(prefix.k.sizes())) return {};
    P = prefix.k.size(0), Tp = prefix.k.size(2);
    if (P < 1 || B % P != 0 || prefix.k.size(1) != nkv || prefix.k.size(3) != hd) return {};
  }
  const int64_t Tk = Tp + k.size(2);
  Job job{nh, nkv, Tq, Tk, hd, P, Tp, shape, nullptr, {0, 0, 0, 0}};
  at::Tensor mask;
  if (blocked.defined()) {
    if (!blocked.device().is_cpu() || blocked.scalar_type() != at::kBool || blocked.dim() > 4) return {};
    mask = blocked.expand({B, nh, Tq, Tk});
    job.blocked = mask.data_ptr<bool>();
    for (int i = 0; i < 4; ++i) job.bs[i] = mask.stride(i);
  }
  at::Tensor out = at::empty({B, Tq, nh, hd}, v.options());
  const int64_t work = std::max<int64_t>(1, nh * Tq * Tk * hd);  // multiply-adds of a row, twice
  at::parallel_for(0, B, std::max<int64_t>(1, 32768 / work), [&](int64_t lo, int64_t hi) {
    std::vector<float> scratch;
    if (dt == at::kFloat) {
      const auto o = operands<float>(q, prefix, k, v, out);
      for (int64_t b = lo; b < hi; ++b) attend_f32(job, o, b, scratch);
    } else {
      const auto o = operands<bf16>(q, prefix, k, v, out);
      for (int64_t b = lo; b < hi; ++b) attend_bf16(job, o, b, scratch);
    }
  });
  return out.view({B, Tq, nh * hd});
}

}  // namespace kt
