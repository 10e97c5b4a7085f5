// links: kt_model
// The fused CPU passes (model/cpu_kernels.h) against the same arithmetic
// written as ATen ops, one op at a time.
#include <gtest/gtest.h>

#include <cstdio>

#include "model/cpu_kernels.h"

namespace {

bool fused_here() { return kt::fused_rms_norm(at::ones({4}), at::ones({4}), 1e-6).defined(); }

// Rows of odd widths (tails of 1..15 lanes) with values over several decades.
at::Tensor sample(int64_t rows, int64_t width, at::ScalarType dt, uint64_t seed) {
  at::manual_seed(seed);
  return (at::randn({rows, width}) * at::exp(at::randn({rows, 1}))).to(dt);
}

// Number of elements of a and b (same dtype) that are not bit-identical,
// and the largest difference in units of the last place of b's dtype.
std::pair<int64_t, double> mismatch(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor af = a.to(at::kDouble), bf = b.to(at::kDouble);
  const int64_t differ = (af != bf).sum().item<int64_t>();
  const double eps = b.scalar_type() == at::kBFloat16 ? 1.0 / 128 : 1.0 / (1 << 23);
  const at::Tensor ulp = bf.abs().clamp_min(1e-30).log2().floor().exp2() * eps;
  return {differ, ((af - bf).abs() / ulp).max().item<double>()};
}

class Fused : public ::testing::TestWithParam<at::ScalarType> {
 protected:
  void SetUp() override {
    if (!fused_here()) GTEST_SKIP() << "neither AVX-512 nor AVX2+FMA here (or KNOWTRACE_FUSED=0): the ATen ops run instead";
  }
};

TEST_P(Fused, RmsNormRoundsLikeTheUnfusedOps) {
  const at::ScalarType dt = GetParam();
  for (int64_t width : {1, 15, 64, 577, 960}) {
    const at::Tensor x = sample(37, width, dt, 1 + width), w = (1 + 0.1 * at::randn({width})).to(dt);
    const double eps = 1e-5;
    const at::Tensor got = kt::fused_rms_norm(x, w, eps);
    ASSERT_TRUE(got.defined());
    ASSERT_EQ(got.scalar_type(), dt);
    ASSERT_EQ(got.sizes(), x.sizes());
    // the scale in double: only the sum's order differs from the kernel
    const at::Tensor xd = x.to(at::kDouble);
    const at::Tensor scale = at::rsqrt(xd.square().mean(-1, true) + eps);
    const at::Tensor want = ((xd * scale).to(dt) * w).to(dt);
    auto [differ, ulps] = mismatch(got, want);
    std::printf("[fused] rms_norm %s width %lld: %lld of %lld differ, max %.2g ulp\n", c10::toString(dt),
                static_cast<long long>(width), static_cast<long long>(differ), static_cast<long long>(x.numel()),
                ulps);
    // float32: a scale a few ulps off; bfloat16: a rounding tie broken the other way now and then
    EXPECT_LE(ulps, dt == at::kFloat ? 4.0 : 1.0);
    if (dt == at::kBFloat16) EXPECT_LE(differ, x.numel() / 50 + 1);
  }
}

TEST_P(Fused, ActTimesUpRoundsLikeTheUnfusedOps) {
  const at::ScalarType dt = GetParam();
  for (kt::Act act : {kt::Act::SiLU, kt::Act::GeluTanh}) {
    for (int64_t I : {1, 17, 64, 1536}) {
      const at::Tensor gu = sample(11, 2 * I, dt, 7 + I);
      const at::Tensor got = kt::fused_act_mul(gu, I, act);
      ASSERT_TRUE(got.defined());
      ASSERT_EQ(got.sizes(), (std::vector<int64_t>{11, I}));
      // transformers' rounding: act in float32, to the dtype, times up, to the dtype
      const at::Tensor g = gu.narrow(-1, 0, I).to(at::kFloat), u = gu.narrow(-1, I, I).to(at::kFloat);
      const at::Tensor a = act == kt::Act::SiLU ? at::silu(g) : at::gelu(g, "tanh");
      const at::Tensor want = (a.to(dt).to(at::kFloat) * u).to(dt);
      auto [differ, ulps] = mismatch(got, want);
      std::printf("[fused] %s*up %s I %lld: %lld of %lld differ, max %.2g ulp\n",
                  act == kt::Act::SiLU ? "silu" : "gelu_tanh", c10::toString(dt), static_cast<long long>(I),
                  static_cast<long long>(differ), static_cast<long long>(got.numel()), ulps);
      // the same formula and exp / tanh as ATen's vector kernels; ATen's
      // scalar tail (std::exp) may differ in the float's last place
      EXPECT_LE(ulps, dt == at::kFloat ? 4.0 : 1.0);
      EXPECT_LE(differ, got.numel() / 50 + 1);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, Fused, ::testing::Values(at::kFloat, at::kBFloat16),
                         [](const auto& info) { return std::string(info.param == at::kFloat ? "f32" : "bf16"); });

TEST(FusedKernels, DeclineWhatTheyDoNotTake) {
  const at::Tensor x = at::randn({4, 32});
  EXPECT_FALSE(kt::fused_rms_norm(x.t(), at::ones({4}), 1e-6).defined());              // not contiguous
  EXPECT_FALSE(kt::fused_rms_norm(x.to(at::kDouble), at::ones({32}, at::kDouble), 1e-6).defined());  // float64
  EXPECT_FALSE(kt::fused_rms_norm(x, at::ones({31}), 1e-6).defined());                 // weight of another width
  EXPECT_FALSE(kt::fused_rms_norm(x, at::ones({32}, at::kBFloat16), 1e-6).defined());  // mixed dtypes
  EXPECT_FALSE(kt::fused_act_mul(x, 15, kt::Act::SiLU).defined());                     // 2I != width
  EXPECT_FALSE(kt::fused_act_mul(x, 16, kt::Act::Gelu).defined());                     // erf GELU: ATen's
  EXPECT_FALSE(kt::fused_act_mul(x.narrow(1, 0, 16), 8, kt::Act::SiLU).defined());     // a strided view
}

}  // namespace
