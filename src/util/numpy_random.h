// numpy.random.RandomState (the legacy generator), reproduced bit for bit.
//
// ROME draws its corruption noise as numpy.random.RandomState(1).randn(S, n, d);
// to compare traces number for number we must draw the very same doubles.
// The state is MT19937 seeded with init_genrand(seed) plus the one-value
// Gaussian cache of the legacy polar method. As in numpy, the cache belongs
// to the state: a Gaussian left over by an odd-length draw is returned by the
// next Gaussian call, even when uniform draws happened in between (they
// consume the MT stream but never touch the cache).
//
// Bit-exactness relies on IEEE double arithmetic without FMA contraction
// (the .cpp disables contraction for itself) and on the C library's log(),
// which numpy calls as well.
#pragma once
#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

namespace kt {

class NumpyRandomState {
 public:
  // Same as numpy.random.RandomState(seed) for an integer seed in [0, 2^32).
  explicit NumpyRandomState(uint32_t seed);

  // Re-seeds and clears the Gaussian cache, like RandomState.seed(seed).
  void seed(uint32_t seed);

  // One raw 32-bit MT19937 output (numpy's bit_generator.random_raw()).
  uint32_t next_uint32();

  // RandomState.random_sample(): a double in [0, 1) with 53 random bits.
  double random_sample();
  void random_sample(double* out, size_t n);

  // RandomState.standard_normal() / randn(): Marsaglia polar method.
  double standard_normal();
  void standard_normal(double* out, size_t n);
  // randn(d0, d1, ...) flattened in C order is simply n consecutive draws.
  std::vector<double> randn(size_t n);

  // RandomState.uniform(low, high): low + (high - low) * random_sample().
  double uniform(double low, double high);
  void uniform(double* out, size_t n, double low, double high);

  // Whether a Gaussian is cached for the next standard_normal() call.
  bool has_cached_gaussian() const { return has_gauss_; }

 private:
  std::mt19937 mt_;
  bool has_gauss_ = false;
  double gauss_ = 0.0;
};

}  // namespace kt
