// links: kt_model
// The one-pass CPU rotary embedding (model/cpu_kernels.h) against the ATen
// ops Model runs without it (kt::rotary_ops): both pair
// conventions, partial rotary, q as a strided view of the packed product.
#include <gtest/gtest.h>

#include <cstdio>

#include "model/cpu_kernels.h"
#include "model/model.h"

namespace {

bool fused_here() { return kt::fused_rms_norm(at::ones({4}), at::ones({4}), 1e-6).defined(); }
#define SKIP_WITHOUT_FUSED_PASSES() \
  if (!fused_here()) GTEST_SKIP() << "neither AVX-512 nor AVX2+FMA here (or KNOWTRACE_FUSED=0): the ATen ops run instead"

struct Case {
  const char* name;
  int64_t hd, rd;
  bool interleaved;
};

class FusedRotary : public ::testing::TestWithParam<at::ScalarType> {};

TEST_P(FusedRotary, MatchesTheAtenOps) {
  SKIP_WITHOUT_FUSED_PASSES();
  const at::ScalarType dt = GetParam();
  const int64_t B = 3, T = 7, H = 5;
  for (const Case& c : {Case{"llama, halves", 64, 64, false}, Case{"phi-3-like, partial halves", 48, 32, false},
                        Case{"gpt-j, partial pairs", 64, 16, true}, Case{"pairs, whole head", 20, 20, true}}) {
    at::manual_seed(c.hd + c.rd);
    // q as Model::qkv sees it: columns of the packed [B, T, width] product
    const at::Tensor packed = (at::randn({B, T, H * c.hd + 24}) * 3).to(dt);
    const at::Tensor x = packed.narrow(-1, 8, H * c.hd).view({B, T, H, c.hd}).transpose(1, 2);
    const at::Tensor angle = at::arange(T).unsqueeze(1).to(at::kFloat) * at::rand({c.rd}) * 3;
    const at::Tensor cos = angle.cos().to(dt), sin = angle.sin().to(dt);
    const at::Tensor got = kt::fused_rotary(x, cos, sin, c.interleaved);
    ASSERT_TRUE(got.defined()) << c.name;
    ASSERT_EQ(got.sizes(), x.sizes()) << c.name;
    ASSERT_EQ(got.scalar_type(), dt);
    const at::Tensor want = kt::rotary_ops(x, cos, sin, c.interleaved ? kt::RopeStyle::Interleaved : kt::RopeStyle::Half);
    // One rounding of the sum apart at most (a fused multiply-add or not):
    // an ulp of the terms' size, |x cos| + |partner sin| <= 2 max|x| here.
    const double ulp = (dt == at::kFloat ? 1.0 / (1 << 23) : 1.0 / 128) * 2 * x.abs().max().item<double>();
    const at::Tensor diff = (got.to(at::kDouble) - want.to(at::kDouble)).abs();
    const double worst = diff.max().item<double>(), differ = (diff > 0).to(at::kDouble).mean().item<double>();
    std::printf("[fused] rotary %s %s: max |diff| %.3g (an ulp of the terms: %.3g), %.2f%% not identical\n",
                c10::toString(dt), c.name, worst, ulp, 100 * differ);
    EXPECT_LE(worst, ulp) << c.name;
    EXPECT_LE(differ, 0.02) << c.name;
    // the part past rd is copied exactly
    if (c.rd < c.hd)
      EXPECT_TRUE(at::equal(got.narrow(-1, c.rd, c.hd - c.rd), x.narrow(-1, c.rd, c.hd - c.rd))) << c.name;
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, FusedRotary, ::testing::Values(at::kFloat, at::kBFloat16),
                         [](const auto& info) { return std::string(info.param == at::kFloat ? "f32" : "bf16"); });

TEST(FusedRotaryInput, DeclinesWhatItDoesNotTake) {
  SKIP_WITHOUT_FUSED_PASSES();
  const at::Tensor x = at::randn({1, 2, 3, 8}), cos = at::randn({3, 8}), sin = at::randn({3, 8});
  EXPECT_TRUE(kt::fused_rotary(x, cos, sin, false).defined());
  EXPECT_FALSE(kt::fused_rotary(x.to(at::kDouble), cos.to(at::kDouble), sin.to(at::kDouble), false).defined());
  EXPECT_FALSE(kt::fused_rotary(x, cos.to(at::kBFloat16), sin, false).defined());        // table of another dtype
  EXPECT_FALSE(kt::fused_rotary(x, at::randn({4, 8}), at::randn({4, 8}), false).defined());  // 4 positions, 3 rows
  EXPECT_FALSE(kt::fused_rotary(x, at::randn({3, 7}), at::randn({3, 7}), false).defined());  // odd rotary width
  EXPECT_FALSE(kt::fused_rotary(at::randn({1, 2, 8, 3}).transpose(2, 3), cos, sin, false).defined());  // strided hd
}

}  // namespace
