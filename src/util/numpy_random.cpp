#include "util/numpy_random.h"

#include <cmath>

// numpy computes r2 = x1*x1 + x2*x2 with separate multiply and add; a fused
// multiply-add (which GCC emits under -march=native and its default
// -ffp-contract=fast) would change the last bit of r2 and so of the noise.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace kt {

NumpyRandomState::NumpyRandomState(uint32_t seed) { this->seed(seed); }

void NumpyRandomState::seed(uint32_t seed) {
  // std::mt19937(seed) is init_genrand(seed), exactly numpy's mt19937_seed.
  mt_.seed(seed);
  has_gauss_ = false;
  gauss_ = 0.0;
}

uint32_t NumpyRandomState::next_uint32() { return static_cast<uint32_t>(mt_()); }

double NumpyRandomState::random_sample() {
  const uint32_t a = next_uint32() >> 5;  // 27 bits
  const uint32_t b = next_uint32() >> 6;  // 26 bits
  return (static_cast<double>(a) * 67108864.0 + static_cast<double>(b)) / 9007199254740992.0;
}

void NumpyRandomState::random_sample(double* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = random_sample();
}

double NumpyRandomState::standard_normal() {
  if (has_gauss_) {
    const double g = gauss_;
    has_gauss_ = false;
    gauss_ = 0.0;
    return g;
  }
  double x1, x2, r2;
  do {
    x1 = 2.0 * random_sample() - 1.0;
    x2 = 2.0 * random_sample() - 1.0;
    const double p1 = x1 * x1;
    const double p2 = x2 * x2;
    r2 = p1 + p2;
  } while (r2 >= 1.0 || r2 == 0.0);
  const double f = std::sqrt(-2.0 * std::log(r2) / r2);
  gauss_ = f * x1;
  has_gauss_ = true;
  return f * x2;
}

void NumpyRandomState::standard_normal(double* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = standard_normal();
}

std::vector<double> NumpyRandomState::randn(size_t n) {
  std::vector<double> v(n);
  standard_normal(v.data(), n);
  return v;
}

double NumpyRandomState::uniform(double low, double high) {
  const double range = high - low;
  return low + range * random_sample();
}

void NumpyRandomState::uniform(double* out, size_t n, double low, double high) {
  const double range = high - low;
  for (size_t i = 0; i < n; ++i) out[i] = low + range * random_sample();
}

}  // namespace kt
