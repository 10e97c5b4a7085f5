// Scalar float32 / bfloat16 helpers of the portable CPU passes
// (cpu_attention.cpp, cpu_rotary.cpp): a bfloat16 is its 16 bits, widened
// exactly, narrowed to the nearest (ties to even, NaN stays NaN) as ATen's
// float -> bfloat16 conversion does. Plain code the compiler vectorizes.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace kt::scalar {

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

}  // namespace kt::scalar
