// links: kt_util
// kt::NumpyRandomState against numpy.random.RandomState, bit for bit.
// Goldens: tests/fixtures/noise/, made by tests/reference/make_noise_goldens.py.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "util/numpy_random.h"

namespace {

std::string fixture_dir() {
  const char* env = std::getenv("KT_SOURCE_DIR");
  std::string root = env ? env : KT_SOURCE_DIR;
  return root + "/tests/fixtures/noise";
}

std::vector<double> read_f64(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(bytes.size() % 8, 0u) << path;
  std::vector<double> v(bytes.size() / 8);
  for (size_t i = 0; i < v.size(); ++i) {
    uint64_t u = 0;
    for (int k = 7; k >= 0; --k) u = (u << 8) | static_cast<uint8_t>(bytes[i * 8 + k]);
    std::memcpy(&v[i], &u, 8);
  }
  return v;
}

nlohmann::json read_index() {
  std::ifstream in(fixture_dir() + "/index.json");
  EXPECT_TRUE(in.good()) << "missing " << fixture_dir() << "/index.json";
  return nlohmann::json::parse(in);
}

uint64_t bits(double d) {
  uint64_t u;
  std::memcpy(&u, &d, 8);
  return u;
}

// Replays one golden case's operations and returns everything drawn.
std::vector<double> replay(const nlohmann::json& c) {
  kt::NumpyRandomState rs(c.at("seed").get<uint32_t>());
  std::vector<double> out;
  for (const auto& op : c.at("ops")) {
    const std::string kind = op.at("op");
    size_t n = 1;
    if (op.contains("shape")) {
      for (const auto& d : op.at("shape")) n *= d.get<size_t>();
    } else {
      n = op.at("n").get<size_t>();
    }
    const size_t at = out.size();
    if (kind == "randn" || kind == "standard_normal") {
      if (n == 1) {
        out.push_back(rs.standard_normal());
      } else {
        out.resize(at + n);
        rs.standard_normal(out.data() + at, n);
      }
    } else if (kind == "random_sample") {
      if (n == 1) {
        out.push_back(rs.random_sample());
      } else {
        out.resize(at + n);
        rs.random_sample(out.data() + at, n);
      }
    } else if (kind == "uniform") {
      const double lo = op.at("low"), hi = op.at("high");
      if (n == 1) {
        out.push_back(rs.uniform(lo, hi));
      } else {
        out.resize(at + n);
        rs.uniform(out.data() + at, n, lo, hi);
      }
    } else if (kind == "raw") {
      for (size_t i = 0; i < n; ++i) out.push_back(static_cast<double>(rs.next_uint32()));
    } else {
      ADD_FAILURE() << "unknown op " << kind;
    }
  }
  return out;
}

TEST(NumpyRandom, GoldensBitExact) {
  const auto index = read_index();
  ASSERT_GE(index.at("cases").size(), 8u);
  for (const auto& c : index.at("cases")) {
    const std::string name = c.at("name");
    const auto want = read_f64(fixture_dir() + "/" + c.at("file").get<std::string>());
    ASSERT_EQ(want.size(), c.at("count").get<size_t>()) << name;
    const auto got = replay(c);
    ASSERT_EQ(got.size(), want.size()) << name;
    size_t mismatches = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      if (bits(got[i]) != bits(want[i])) {
        if (++mismatches <= 5)
          ADD_FAILURE() << name << "[" << i << "]: got " << got[i] << " want " << want[i];
      }
    }
    EXPECT_EQ(mismatches, 0u) << name;
  }
}

TEST(NumpyRandom, RomeDrawMatchesPiecewise) {
  // randn(10, 3, 64) as one bulk call equals 1920 scalar calls.
  kt::NumpyRandomState a(1), b(1);
  const auto bulk = a.randn(10 * 3 * 64);
  for (size_t i = 0; i < bulk.size(); ++i) ASSERT_EQ(bits(bulk[i]), bits(b.standard_normal())) << i;
}

TEST(NumpyRandom, KnownFirstValues) {
  // numpy.random.RandomState(1).randn(4) and RandomState(0).random_sample().
  kt::NumpyRandomState rs(1);
  EXPECT_NEAR(rs.standard_normal(), 1.6243453636632417, 0.0);
  EXPECT_TRUE(rs.has_cached_gaussian());
  EXPECT_NEAR(rs.standard_normal(), -0.6117564136500754, 0.0);
  EXPECT_FALSE(rs.has_cached_gaussian());
  kt::NumpyRandomState r0(0);
  EXPECT_EQ(r0.random_sample(), 0.5488135039273248);
}

TEST(NumpyRandom, CacheSurvivesUniformAndIsClearedBySeed) {
  kt::NumpyRandomState rs(1);
  kt::NumpyRandomState ref(1);
  const auto four = ref.randn(4);
  rs.standard_normal();
  rs.standard_normal();
  rs.standard_normal();  // leaves four[3] cached
  ASSERT_TRUE(rs.has_cached_gaussian());
  rs.uniform(-0.5, 0.5);
  rs.random_sample();
  EXPECT_EQ(bits(rs.standard_normal()), bits(four[3]));
  rs.standard_normal();  // caches again
  rs.seed(1);
  EXPECT_FALSE(rs.has_cached_gaussian());
  EXPECT_EQ(bits(rs.standard_normal()), bits(four[0]));
}

TEST(NumpyRandom, RawStreamIsMt19937) {
  kt::NumpyRandomState rs(5489);
  std::mt19937 mt(5489);
  for (int i = 0; i < 10000; ++i) ASSERT_EQ(rs.next_uint32(), static_cast<uint32_t>(mt()));
  // The 10000th output of the default-seeded MT19937 (C++ standard's check).
  kt::NumpyRandomState d(5489);
  uint32_t last = 0;
  for (int i = 0; i < 10000; ++i) last = d.next_uint32();
  EXPECT_EQ(last, 4123659995u);
}

TEST(NumpyRandom, RangesAndMoments) {
  kt::NumpyRandomState rs(3);
  double sum = 0, sq = 0;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    const double u = rs.random_sample();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    const double w = rs.uniform(-0.5, 0.5);
    ASSERT_GE(w, -0.5);
    ASSERT_LT(w, 0.5);
    const double g = rs.standard_normal();
    ASSERT_TRUE(std::isfinite(g));
    sum += g;
    sq += g * g;
  }
  EXPECT_NEAR(sum / n, 0.0, 0.01);
  EXPECT_NEAR(sq / n, 1.0, 0.02);
}

}  // namespace
