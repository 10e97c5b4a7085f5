// links: kt_io
// .npy / .npz writer and reader: round trips, numpy-written fixtures
// (tests/fixtures/npz/, made by tests/reference/make_npz_fixtures.py), and
// hostile input. Files it writes are left in <build>/test_npz_out/ with JSON
// sidecars, so `python3 tests/reference/check_npz.py --expect X.json X.npz`
// can confirm numpy reads them.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "io/npz.h"
#include "util/error.h"

namespace {

using kt::NpyArray;
using Arrays = std::vector<std::pair<std::string, NpyArray>>;

std::string source_dir() {
  const char* env = std::getenv("KT_SOURCE_DIR");
  return env ? env : KT_SOURCE_DIR;
}
std::string fixture(const std::string& name) { return source_dir() + "/tests/fixtures/npz/" + name; }

std::string out_dir() {
  static const std::string dir = [] {
    std::string d = std::string(KT_BINARY_DIR) + "/test_npz_out";
    ::mkdir(d.c_str(), 0755);
    return d;
  }();
  return dir;
}

// A scratch directory unique to this process, for files the tests corrupt.
std::string scratch() {
  static const std::string dir = [] {
    std::string d = out_dir() + "/scratch." + std::to_string(::getpid());
    ::mkdir(d.c_str(), 0755);
    return d;
  }();
  return dir;
}

// Removes this process's scratch directory when the test binary ends.
class ScratchCleanup : public ::testing::Environment {
 public:
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(out_dir() + "/scratch." + std::to_string(::getpid()), ec);
  }
};
const auto* const kCleanup = ::testing::AddGlobalTestEnvironment(new ScratchCleanup);

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  ASSERT_TRUE(out.good()) << path;
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

const nlohmann::json& expected() {
  static const nlohmann::json j = [] {
    std::ifstream in(fixture("expected.json"));
    return nlohmann::json::parse(in);
  }();
  return j;
}

// Expects kt::Error whose one-line message contains `path` and `needle`.
template <typename F>
void expect_error(F&& f, const std::string& path, const std::string& needle = "") {
  try {
    f();
    ADD_FAILURE() << "no kt::Error for " << path << " (wanted '" << needle << "')";
  } catch (const kt::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    if (!needle.empty()) {
      EXPECT_NE(msg.find(needle), std::string::npos) << msg;
    }
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

Arrays sample_arrays() {
  Arrays a;
  a.emplace_back("scores", NpyArray::from_f32({0.5f, -1.25f, 3.0f, 1e-30f, 7.0f, -0.0f}, {2, 3}));
  a.emplace_back("low_score", NpyArray::scalar_f32(0.0123f));
  a.emplace_back("high_score", NpyArray::scalar_f64(0.875));
  a.emplace_back("input_ids", NpyArray::from_i64({50256, 464, -3, INT64_MAX, INT64_MIN}));
  a.emplace_back("input_tokens",
                 NpyArray::from_strings({"<|endoftext|>", "The", " caf\xc3\xa9", "", "\xf0\x9f\x98\x80!"}));
  a.emplace_back("subject_range", NpyArray::from_i64({1, 3}));
  a.emplace_back("answer", NpyArray::scalar_string(" Paris"));
  a.emplace_back("window", NpyArray::scalar_i64(10));
  a.emplace_back("correct_prediction", NpyArray::scalar_bool(true));
  a.emplace_back("kind", NpyArray::scalar_string(""));
  a.emplace_back("half", NpyArray::from_f16({1.0f, -2.5f, 65504.0f, 0.1f, 1e-7f}));
  a.emplace_back("f64_cube", NpyArray::from_f64({1, 2, 3, 4, 5, 6, 7, 8}, {2, 2, 2}));
  a.emplace_back("i32", NpyArray::from_i32({INT32_MIN, -1, 0, INT32_MAX}, {2, 2}));
  a.emplace_back("u8", NpyArray::from_u8({0, 1, 200, 255}));
  a.emplace_back("mask", NpyArray::from_bool({true, false, false, true, true, false}, {3, 2}));
  a.emplace_back("scalar_i32", NpyArray::scalar_i32(-5));
  a.emplace_back("empty", NpyArray::from_f32({}, {0, 4}));
  a.emplace_back("empty_str", NpyArray::from_strings({}));
  a.emplace_back("str_matrix", NpyArray::from_strings({"a", "bb", "ccc", "dddd"}, {2, 2}));
  return a;
}

// JSON sidecar in check_npz.py's --expect format.
nlohmann::json describe(const NpyArray& a) {
  nlohmann::json j;
  j["dtype"] = a.dtype;
  j["shape"] = a.shape;
  nlohmann::json values = nlohmann::json::array();
  if (a.dtype[1] == 'U') {
    for (const auto& s : a.to_strings()) values.push_back(s);
  } else if (a.dtype == "|b1") {
    for (bool b : a.to_bool()) values.push_back(b);
  } else if (a.dtype == "<i8" || a.dtype == "<i4" || a.dtype == "|u1") {
    for (int64_t v : a.to_i64()) values.push_back(v);
  } else {
    for (double v : a.to_f64()) values.push_back(v);
  }
  j["values"] = values;
  return j;
}

void write_sidecar(const std::string& npz, const Arrays& arrays) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& kv : arrays) j[kv.first] = describe(kv.second);
  std::ofstream(npz.substr(0, npz.size() - 4) + ".json") << j.dump(1) << "\n";
}

void expect_same(const Arrays& want, const std::map<std::string, NpyArray>& got) {
  ASSERT_EQ(got.size(), want.size());
  for (const auto& kv : want) {
    auto it = got.find(kv.first);
    ASSERT_NE(it, got.end()) << kv.first;
    EXPECT_EQ(it->second.dtype, kv.second.dtype) << kv.first;
    EXPECT_EQ(it->second.shape, kv.second.shape) << kv.first;
    EXPECT_EQ(it->second.data, kv.second.data) << kv.first;
  }
}

// ---------------------------------------------------------------- round trips

TEST(Npz, RoundTripEveryDtype) {
  const Arrays arrays = sample_arrays();
  const std::string path = out_dir() + "/written.npz";
  kt::write_npz(path, arrays);
  write_sidecar(path, arrays);
  const auto got = kt::read_npz(path);
  expect_same(arrays, got);

  // Typed read-back.
  EXPECT_EQ(kt::npz_get(got, "scores", path).to_f32(),
            (std::vector<float>{0.5f, -1.25f, 3.0f, 1e-30f, 7.0f, -0.0f}));
  EXPECT_EQ(got.at("low_score").item_f64(), static_cast<double>(0.0123f));
  EXPECT_EQ(got.at("high_score").item_f64(), 0.875);
  EXPECT_EQ(got.at("input_ids").to_i64(),
            (std::vector<int64_t>{50256, 464, -3, INT64_MAX, INT64_MIN}));
  EXPECT_EQ(got.at("input_tokens").dtype, "<U13");
  EXPECT_EQ(got.at("input_tokens").to_strings(),
            (std::vector<std::string>{"<|endoftext|>", "The", " caf\xc3\xa9", "",
                                      "\xf0\x9f\x98\x80!"}));
  EXPECT_EQ(got.at("answer").item_string(), " Paris");
  EXPECT_EQ(got.at("answer").shape, std::vector<int64_t>{});
  EXPECT_EQ(got.at("kind").dtype, "<U1");
  EXPECT_EQ(got.at("kind").item_string(), "");
  EXPECT_EQ(got.at("window").item_i64(), 10);
  EXPECT_TRUE(got.at("correct_prediction").item_bool());
  EXPECT_EQ(got.at("half").to_f32()[2], 65504.0f);
  EXPECT_EQ(got.at("half").to_f32()[1], -2.5f);
  EXPECT_EQ(got.at("i32").to_i32(), (std::vector<int32_t>{INT32_MIN, -1, 0, INT32_MAX}));
  EXPECT_EQ(got.at("u8").to_u8(), (std::vector<uint8_t>{0, 1, 200, 255}));
  EXPECT_EQ(got.at("mask").to_bool(), (std::vector<bool>{true, false, false, true, true, false}));
  EXPECT_EQ(got.at("scalar_i32").item_i64(), -5);
  EXPECT_EQ(got.at("empty").numel(), 0);
  EXPECT_EQ(got.at("str_matrix").to_strings()[3], "dddd");

  // No temporary file is left behind.
  EXPECT_FALSE(exists(path + ".tmp." + std::to_string(::getpid())));
}

TEST(Npz, RoundTripForcedZip64) {
  const Arrays arrays = sample_arrays();
  const std::string path = out_dir() + "/written_zip64.npz";
  kt::NpzWriteOptions opt;
  opt.force_zip64 = true;
  kt::write_npz(path, arrays, opt);
  write_sidecar(path, arrays);
  expect_same(arrays, kt::read_npz(path));
}

TEST(Npz, RoundTripNoArraysAndNonAsciiKey) {
  const std::string empty = out_dir() + "/written_empty.npz";
  kt::write_npz(empty, {});
  EXPECT_TRUE(kt::read_npz(empty).empty());
  const std::string uni = out_dir() + "/written_unicode_key.npz";
  Arrays a;
  a.emplace_back("caf\xc3\xa9", NpyArray::scalar_i64(1));
  kt::write_npz(uni, a);
  write_sidecar(uni, a);
  expect_same(a, kt::read_npz(uni));
}

TEST(Npz, OverwriteIsAtomicAndFailuresLeaveOldFile) {
  const std::string path = scratch() + "/over.npz";
  Arrays a;
  a.emplace_back("x", NpyArray::from_f64({1, 2, 3}));
  kt::write_npz(path, a);
  Arrays b;
  b.emplace_back("y", NpyArray::scalar_string("new"));
  kt::write_npz(path, b);
  expect_same(b, kt::read_npz(path));

  // An invalid array: nothing written, the old file intact, no temp file.
  Arrays bad;
  NpyArray broken = NpyArray::from_f32({1, 2, 3});
  broken.shape = {4};
  bad.emplace_back("z", broken);
  expect_error([&] { kt::write_npz(path, bad); }, path, "'z'");
  expect_same(b, kt::read_npz(path));
  EXPECT_FALSE(exists(path + ".tmp." + std::to_string(::getpid())));

  const std::string missing_dir = scratch() + "/no/such/dir/x.npz";
  expect_error([&] { kt::write_npz(missing_dir, a); }, missing_dir, "cannot create");
}

TEST(Npz, WriterRejectsBadNamesAndValues) {
  const std::string path = scratch() + "/bad.npz";
  for (const std::string& key : {std::string(""), std::string("a/b"), std::string("a\\b"),
                                std::string("a\0b", 3)}) {
    Arrays a;
    a.emplace_back(key, NpyArray::scalar_i64(1));
    expect_error([&] { kt::write_npz(path, a); }, path, "invalid array name");
  }
  Arrays dup;
  dup.emplace_back("k", NpyArray::scalar_i64(1));
  dup.emplace_back("k", NpyArray::scalar_i64(2));
  expect_error([&] { kt::write_npz(path, dup); }, path, "duplicate");
  Arrays bad_dtype;
  NpyArray c = NpyArray::scalar_i64(1);
  c.dtype = "<c8";
  bad_dtype.emplace_back("c", c);
  expect_error([&] { kt::write_npz(path, bad_dtype); }, path, "unsupported dtype");
  EXPECT_FALSE(exists(path));

  EXPECT_THROW(NpyArray::from_strings({"ok", "\xff"}), kt::Error);
  EXPECT_THROW(NpyArray::from_strings({"\xc0\x80"}), kt::Error);      // overlong NUL
  EXPECT_THROW(NpyArray::from_strings({"\xed\xa0\x80"}), kt::Error);  // surrogate
  EXPECT_THROW(NpyArray::from_strings({std::string("a\0b", 3)}), kt::Error);
  EXPECT_THROW(NpyArray::from_f32({1, 2, 3}, {2, 2}), kt::Error);
  EXPECT_THROW(NpyArray::from_f32({1, 2}, {-1, -2}), kt::Error);
}

TEST(Npz, ConversionRules) {
  const NpyArray f = NpyArray::from_f32({1.5f});
  EXPECT_EQ(f.to_f64(), std::vector<double>{1.5});
  EXPECT_THROW(f.to_i64(), kt::Error);
  EXPECT_THROW(f.to_strings(), kt::Error);
  const NpyArray i = NpyArray::from_i64({1, 2});
  EXPECT_THROW(i.to_f64(), kt::Error);  // not exact in general
  EXPECT_THROW(i.item_i64(), kt::Error);  // two elements
  EXPECT_EQ(NpyArray::scalar_i64(7).item_f64(), 7.0);
  EXPECT_EQ(NpyArray::from_bool({true, false}).to_i64(), (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(NpyArray::from_u8({3}).to_i32(), std::vector<int32_t>{3});
  try {
    NpyArray::scalar_string("x").item_f64("rome.npz: 'low_score'");
    ADD_FAILURE();
  } catch (const kt::Error& e) {
    EXPECT_NE(std::string(e.what()).find("rome.npz: 'low_score'"), std::string::npos);
  }
  std::map<std::string, NpyArray> m;
  m.emplace("a", f);
  m.emplace("b", i);
  expect_error([&] { kt::npz_get(m, "scores", "r.npz"); }, "r.npz", "(has: a, b)");
}

TEST(Npz, NpyHeaderLayout) {
  const std::vector<uint8_t> img = kt::npy_encode(NpyArray::from_f32({1, 2, 3, 4, 5, 6}, {2, 3}));
  ASSERT_GE(img.size(), 10u);
  EXPECT_EQ(std::memcmp(img.data(), "\x93NUMPY\x01\x00", 8), 0);
  const size_t hlen = img[8] | (img[9] << 8);
  EXPECT_EQ((10 + hlen) % 64, 0u);
  EXPECT_EQ(img[10 + hlen - 1], '\n');
  const std::string header(img.begin() + 10, img.begin() + 10 + static_cast<long>(hlen));
  EXPECT_EQ(header.rfind("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 0), 0u)
      << header;
  EXPECT_EQ(img.size(), 10 + hlen + 24);
  const NpyArray back = kt::npy_decode(img.data(), img.size(), "mem");
  EXPECT_EQ(back.to_f32(), (std::vector<float>{1, 2, 3, 4, 5, 6}));

  const std::vector<uint8_t> s = kt::npy_encode(NpyArray::scalar_i64(3));
  EXPECT_NE(std::string(s.begin(), s.end()).find("'shape': (), }"), std::string::npos);
  const std::vector<uint8_t> v = kt::npy_encode(NpyArray::from_u8({1}));
  EXPECT_NE(std::string(v.begin(), v.end()).find("'descr': '|u1', 'fortran_order': False, 'shape': (1,), }"),
            std::string::npos);
}

// ---------------------------------------------------------------- numpy fixtures

void check_against_expected(const std::string& file, const std::string& expected_key) {
  const std::string path = fixture(file);
  const auto got = kt::read_npz(path);
  const auto& want = expected().at(expected_key);
  ASSERT_EQ(got.size(), want.size()) << file;
  for (auto it = want.begin(); it != want.end(); ++it) {
    const std::string key = it.key();
    const auto& w = it.value();
    const NpyArray& a = kt::npz_get(got, key, path);
    const std::string ctx = file + ":" + key;
    EXPECT_EQ(a.dtype, w.at("dtype").get<std::string>()) << ctx;
    EXPECT_EQ(a.shape, w.at("shape").get<std::vector<int64_t>>()) << ctx;
    const auto& values = w.at("values");
    ASSERT_EQ(static_cast<size_t>(a.numel()), values.size()) << ctx;
    if (a.dtype[1] == 'U') {
      EXPECT_EQ(a.to_strings(), values.get<std::vector<std::string>>()) << ctx;
    } else if (a.dtype == "|b1") {
      EXPECT_EQ(a.to_bool(), values.get<std::vector<bool>>()) << ctx;
    } else if (a.dtype == "<i8" || a.dtype == "<i4" || a.dtype == "|u1") {
      EXPECT_EQ(a.to_i64(), values.get<std::vector<int64_t>>()) << ctx;
    } else {
      const auto d = a.to_f64();
      for (size_t i = 0; i < d.size(); ++i) EXPECT_EQ(d[i], values[i].get<double>()) << ctx << "[" << i << "]";
    }
  }
}

TEST(NpzNumpy, ReadsRomeResult) {
  check_against_expected("rome.npz", "rome.npz");
  const auto r = kt::read_npz(fixture("rome.npz"));
  EXPECT_EQ(r.at("kind").item_string(), "mlp");
  EXPECT_EQ(r.at("answer").item_string(), " Paris");
  EXPECT_EQ(r.at("window").item_i64(), 10);
  EXPECT_TRUE(r.at("correct_prediction").item_bool());
  EXPECT_EQ(r.at("input_tokens").to_strings().back(), " \xf0\x9f\x98\x80");
  EXPECT_EQ(r.at("scores").shape, (std::vector<int64_t>{6, 4}));
}

TEST(NpzNumpy, ReadsAllDtypesStored) { check_against_expected("all_dtypes.npz", "all_dtypes.npz"); }

TEST(NpzNumpy, ReadsAllDtypesCompressed) {
  check_against_expected("all_dtypes_compressed.npz", "all_dtypes.npz");
  const auto a = kt::read_npz(fixture("all_dtypes.npz"));
  const auto b = kt::read_npz(fixture("all_dtypes_compressed.npz"));
  ASSERT_EQ(a.size(), b.size());
  for (const auto& kv : a) EXPECT_EQ(kv.second.data, b.at(kv.first).data) << kv.first;
}

TEST(NpzNumpy, ReadsLargeCompressedMembers) {
  const auto m = kt::read_npz(fixture("big_compressed.npz"));
  const auto zeros = m.at("zeros").to_f64();
  ASSERT_EQ(zeros.size(), 100000u);
  EXPECT_TRUE(std::all_of(zeros.begin(), zeros.end(), [](double v) { return v == 0.0; }));
  const auto ramp = m.at("ramp").to_i64();
  ASSERT_EQ(ramp.size(), 200000u);
  for (size_t i = 0; i < ramp.size(); ++i) ASSERT_EQ(ramp[i], static_cast<int64_t>(i % 7)) << i;
}

TEST(NpzNumpy, UnsupportedDtypesNameFileAndMember) {
  const std::string c = fixture("complex.npz");
  expect_error([&] { kt::read_npz(c); }, c, "member 'c.npy': unsupported dtype '<c8'");
  const std::string s = fixture("structured.npz");
  expect_error([&] { kt::read_npz(s); }, s, "structured dtypes are not supported");
}

TEST(NpzNumpy, Float16MatchesNumpy) {
  const auto& t = expected().at("f16");
  const auto f32 = t.at("f32_bits").get<std::vector<uint32_t>>();
  const auto f16 = t.at("f16_bits").get<std::vector<uint16_t>>();
  ASSERT_EQ(f32.size(), f16.size());
  ASSERT_GT(f32.size(), 1000u);
  for (size_t i = 0; i < f32.size(); ++i) {
    float f;
    std::memcpy(&f, &f32[i], 4);
    EXPECT_EQ(kt::float_to_half(f), f16[i]) << "f32 bits 0x" << std::hex << f32[i];
  }
  // Every half survives half -> float -> half.
  for (uint32_t h = 0; h < 65536; ++h)
    ASSERT_EQ(kt::float_to_half(kt::half_to_float(static_cast<uint16_t>(h))), h) << h;
  EXPECT_EQ(kt::half_to_float(0x3c00), 1.0f);
  EXPECT_EQ(kt::half_to_float(0x0001), std::ldexp(1.0f, -24));
  EXPECT_TRUE(std::isinf(kt::half_to_float(0xfc00)));
}

// ---------------------------------------------------------------- malformed input

std::string make_valid(const std::string& name) {
  const std::string path = scratch() + "/" + name;
  kt::write_npz(path, sample_arrays());
  return path;
}

TEST(NpzErrors, MissingEmptyAndNotAZip) {
  const std::string none = scratch() + "/does_not_exist.npz";
  expect_error([&] { kt::read_npz(none); }, none, "cannot open");
  expect_error([&] { kt::read_npz(scratch()); }, scratch(), "not a regular file");
  const std::string empty = scratch() + "/empty.npz";
  write_bytes(empty, {});
  expect_error([&] { kt::read_npz(empty); }, empty, "not an npz file");
  const std::string text = scratch() + "/text.npz";
  const std::string junk(5000, 'x');
  write_bytes(text, std::vector<uint8_t>(junk.begin(), junk.end()));
  expect_error([&] { kt::read_npz(text); }, text, "not an npz file");
}

TEST(NpzErrors, EveryTruncationIsAnError) {
  const std::string good = make_valid("trunc_src.npz");
  const std::vector<uint8_t> bytes = read_bytes(good);
  const std::string path = scratch() + "/trunc.npz";
  for (size_t len = 0; len < bytes.size(); len += (len < 64 || bytes.size() - len < 300) ? 1 : 97) {
    write_bytes(path, std::vector<uint8_t>(bytes.begin(), bytes.begin() + static_cast<long>(len)));
    expect_error([&] { kt::read_npz(path); }, path);
  }
  // Deflate member cut short (and its central directory kept): inflate error.
  const std::vector<uint8_t> comp = read_bytes(fixture("all_dtypes_compressed.npz"));
  const std::string cpath = scratch() + "/comp_trunc.npz";
  for (size_t len = 0; len < comp.size(); len += 53) {
    write_bytes(cpath, std::vector<uint8_t>(comp.begin(), comp.begin() + static_cast<long>(len)));
    expect_error([&] { kt::read_npz(cpath); }, cpath);
  }
}

// Offsets of the central directory entries in a stored npz we wrote.
size_t find_sig(const std::vector<uint8_t>& b, uint32_t sig, size_t from = 0) {
  for (size_t i = from; i + 4 <= b.size(); ++i) {
    const uint32_t v = b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (static_cast<uint32_t>(b[i + 3]) << 24);
    if (v == sig) return i;
  }
  return std::string::npos;
}

TEST(NpzErrors, FlippedDataByteAndBadCrc) {
  const std::string good = make_valid("crc_src.npz");
  std::vector<uint8_t> bytes = read_bytes(good);
  const std::string path = scratch() + "/crc.npz";
  // A byte inside the first member's float data.
  std::vector<uint8_t> flipped = bytes;
  const size_t first_data = 30 + std::string("scores.npy").size() + 128 + 4;
  flipped[first_data] ^= 0x01;
  write_bytes(path, flipped);
  expect_error([&] { kt::read_npz(path); }, path, "member 'scores.npy': CRC-32 mismatch");
  // The CRC field of the first central directory entry.
  std::vector<uint8_t> badcrc = bytes;
  const size_t cd = find_sig(bytes, 0x02014b50);
  ASSERT_NE(cd, std::string::npos);
  badcrc[cd + 16] ^= 0x80;
  write_bytes(path, badcrc);
  expect_error([&] { kt::read_npz(path); }, path, "CRC-32 mismatch");
  // Compressed member: flip inside the deflate stream.
  std::vector<uint8_t> comp = read_bytes(fixture("all_dtypes_compressed.npz"));
  comp[200] ^= 0x10;
  write_bytes(path, comp);
  expect_error([&] { kt::read_npz(path); }, path, "member '");
}

// Writes a well-formed zip whose single member holds `npy` verbatim.
std::string zip_with_member(const std::string& name, const std::string& member,
                            const std::vector<uint8_t>& npy) {
  const std::string path = scratch() + "/" + name;
  kt::npz_detail::ZipMember m;
  m.name = member;
  m.parts.push_back({npy.data(), npy.size()});
  kt::npz_detail::write_zip_stored(path, {m});
  return path;
}

std::vector<uint8_t> npy_with_header(const std::string& dict, size_t data_bytes,
                                     uint8_t major = 1) {
  std::vector<uint8_t> b = {0x93, 'N', 'U', 'M', 'P', 'Y', major, 0};
  std::string h = dict;
  while ((10 + h.size() + 1) % 64) h += ' ';
  h += '\n';
  b.push_back(static_cast<uint8_t>(h.size()));
  b.push_back(static_cast<uint8_t>(h.size() >> 8));
  b.insert(b.end(), h.begin(), h.end());
  b.resize(b.size() + data_bytes, 0);
  return b;
}

TEST(NpzErrors, BadNpyHeaders) {
  struct Case {
    const char* name;
    std::vector<uint8_t> npy;
    const char* needle;
  };
  const std::string ok = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
  std::vector<uint8_t> bad_magic = npy_with_header(ok, 8);
  bad_magic[1] = 'X';
  std::vector<uint8_t> bad_version = npy_with_header(ok, 8, 7);
  std::vector<uint8_t> long_hlen = npy_with_header(ok, 8);
  long_hlen[8] = 0xff;
  long_hlen[9] = 0xff;
  const std::vector<Case> cases = {
      {"magic.npz", bad_magic, "bad magic"},
      {"version.npz", bad_version, "unsupported .npy format version 7.0"},
      {"hlen.npz", long_hlen, "truncated .npy header"},
      {"short.npz", {0x93, 'N', 'U'}, "bad magic"},
      {"size.npz", npy_with_header(ok, 7), "does not match"},
      {"size2.npz", npy_with_header(ok, 9), "does not match"},
      {"dtype.npz", npy_with_header("{'descr': '<c16', 'fortran_order': False, 'shape': (1,), }", 16),
       "unsupported dtype '<c16'"},
      {"obj.npz", npy_with_header("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", 8),
       "unsupported dtype '|O'"},
      {"nokey.npz", npy_with_header("{'descr': '<f4', 'shape': (2,), }", 8), "lacks"},
      {"extra.npz", npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", 8),
       "unexpected key 'x'"},
      {"dupkey.npz", npy_with_header("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", 8),
       "duplicate key"},
      {"shape.npz", npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (2), }", 8),
       "not a tuple"},
      {"neg.npz", npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }", 8),
       "non-integer"},
      {"huge.npz", npy_with_header("{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904, 4611686018427387904), }", 8),
       "does not match"},
      {"fortran.npz", npy_with_header("{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2,), }", 8),
       "True or False"},
      {"unterminated.npz", npy_with_header("{'descr': '<f4", 0), "unterminated"},
      {"trailing.npz", npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), } x", 8),
       "after the header"},
      {"u0.npz", npy_with_header("{'descr': '<U0', 'fortran_order': False, 'shape': (2,), }", 0),
       "unsupported dtype '<U0'"},
      {"pipe.npz", npy_with_header("{'descr': '|f4', 'fortran_order': False, 'shape': (2,), }", 8),
       "unsupported dtype '|f4'"},
  };
  for (const auto& c : cases) {
    const std::string path = zip_with_member(c.name, "arr.npy", c.npy);
    expect_error([&] { kt::read_npz(path); }, path, "member 'arr.npy'");
    expect_error([&] { kt::read_npz(path); }, path, c.needle);
  }
  // Valid header, '<U2' with an invalid code point: reading works, decoding names the problem.
  std::vector<uint8_t> badcp =
      npy_with_header("{'descr': '<U1', 'fortran_order': False, 'shape': (1,), }", 4);
  badcp[badcp.size() - 2] = 0x11;  // 0x00110000 > U+10FFFF
  const std::string p = zip_with_member("codepoint.npz", "s.npy", badcp);
  const auto m = kt::read_npz(p);
  EXPECT_THROW(m.at("s").to_strings(), kt::Error);
  // Member names: not .npy, and names with control characters stay on one line.
  const std::vector<uint8_t> good = npy_with_header("{'descr': '|u1', 'fortran_order': False, 'shape': (1,), }", 1);
  const std::string notnpy = zip_with_member("notnpy.npz", "readme.txt", good);
  expect_error([&] { kt::read_npz(notnpy); }, notnpy, "is not a .npy array");
  const std::string ctl = zip_with_member("ctl.npz", "a\nb.txt", good);
  expect_error([&] { kt::read_npz(ctl); }, ctl, "a\\x0ab.txt");
}

TEST(NpzErrors, ZipStructureDamage) {
  const std::string good = make_valid("zip_src.npz");
  const std::vector<uint8_t> bytes = read_bytes(good);
  const std::string path = scratch() + "/zipdmg.npz";
  const size_t cd = find_sig(bytes, 0x02014b50);
  const size_t eocd = find_sig(bytes, 0x06054b50, cd);
  ASSERT_NE(eocd, std::string::npos);
  auto with = [&](size_t off, uint8_t v) {
    std::vector<uint8_t> b = bytes;
    b[off] = v;
    write_bytes(path, b);
  };
  with(cd + 10, 99);  // compression method
  expect_error([&] { kt::read_npz(path); }, path, "compression method 99");
  with(cd + 8, 1);  // encrypted flag
  expect_error([&] { kt::read_npz(path); }, path, "encrypted");
  with(0, 'Q');  // local header signature
  expect_error([&] { kt::read_npz(path); }, path, "bad local header signature");
  {
    std::vector<uint8_t> b = bytes;  // entry count far beyond the directory
    b[eocd + 8] = b[eocd + 10] = 0xEE;
    write_bytes(path, b);
    expect_error([&] { kt::read_npz(path); }, path, "entry count does not fit");
  }
  with(eocd + 19, 0x7F);  // central directory offset
  expect_error([&] { kt::read_npz(path); }, path, "central directory out of bounds");
  with(cd, 'Q');  // central directory signature
  expect_error([&] { kt::read_npz(path); }, path, "central directory entry 0 is corrupt");
  with(eocd + 4, 1);  // disk number
  expect_error([&] { kt::read_npz(path); }, path, "multi-disk");
  // Garbage appended after the archive: the end record no longer ends the file.
  std::vector<uint8_t> tail = bytes;
  tail.push_back(0);
  write_bytes(path, tail);
  expect_error([&] { kt::read_npz(path); }, path, "no zip end-of-central-directory");
  // Duplicate members.
  const std::vector<uint8_t> npy = kt::npy_encode(NpyArray::scalar_i64(1));
  const std::string dup = scratch() + "/dupmember.npz";
  kt::npz_detail::ZipMember a{"x.npy", {{npy.data(), npy.size()}}};
  kt::npz_detail::ZipMember b{"x.npy", {{npy.data(), npy.size()}}};
  expect_error([&] { kt::npz_detail::write_zip_stored(dup, {a, b}); }, dup, "duplicate");
}

// Random damage: every outcome is either a clean read or a one-line kt::Error
// naming the file, never a crash, hang or other exception.
void fuzz(const std::string& src, const std::string& tag, int rounds, uint32_t seed) {
  const std::vector<uint8_t> bytes = read_bytes(src);
  ASSERT_FALSE(bytes.empty());
  const std::string path = scratch() + "/fuzz_" + tag + ".npz";
  std::mt19937 rng(seed);
  int errors = 0, reads = 0;
  for (int r = 0; r < rounds; ++r) {
    std::vector<uint8_t> b = bytes;
    const int mode = static_cast<int>(rng() % 4);
    if (mode == 0 || mode == 3) {  // flip 1..4 bits or bytes anywhere
      const int n = 1 + static_cast<int>(rng() % 4);
      for (int k = 0; k < n; ++k) b[rng() % b.size()] ^= static_cast<uint8_t>(1 + rng() % 255);
    }
    if (mode == 1 || mode == 3) b.resize(rng() % b.size());  // truncate
    if (mode == 2) {  // damage the last 200 bytes (central directory, end record)
      const size_t from = b.size() > 200 ? b.size() - 200 : 0;
      b[from + rng() % (b.size() - from)] = static_cast<uint8_t>(rng());
    }
    write_bytes(path, b);
    try {
      const auto m = kt::read_npz(path);
      ++reads;
      for (const auto& kv : m) kv.second.validate(path);
    } catch (const kt::Error& e) {
      ++errors;
      const std::string msg = e.what();
      ASSERT_NE(msg.find(path), std::string::npos) << msg;
      ASSERT_EQ(msg.find('\n'), std::string::npos) << msg;
    } catch (const std::exception& e) {
      FAIL() << "round " << r << ": non-kt exception " << e.what();
    }
  }
  EXPECT_GT(errors, rounds / 2) << tag;
  (void)reads;
}

TEST(NpzFuzz, StoredNeverCrashes) { fuzz(make_valid("fuzz_src.npz"), "stored", 400, 1); }

TEST(NpzFuzz, Zip64NeverCrashes) {
  const std::string src = scratch() + "/fuzz_src64.npz";
  kt::NpzWriteOptions opt;
  opt.force_zip64 = true;
  kt::write_npz(src, sample_arrays(), opt);
  fuzz(src, "zip64", 300, 2);
}

TEST(NpzFuzz, NumpyStoredAndCompressedNeverCrash) {
  fuzz(fixture("rome.npz"), "numpy", 300, 3);
  fuzz(fixture("all_dtypes_compressed.npz"), "deflate", 300, 4);
}

// Damage inside the .npy image with a valid CRC, so the NPY parser itself
// meets the hostile bytes (the zip layer would otherwise stop them first).
TEST(NpzFuzz, NpyImagesWithValidCrc) {
  std::mt19937 rng(6);
  const Arrays arrays = sample_arrays();
  int errors = 0;
  for (int r = 0; r < 600; ++r) {
    const NpyArray& a = arrays[rng() % arrays.size()].second;
    std::vector<uint8_t> img = kt::npy_encode(a);
    const size_t hdr_end = 10 + (img[8] | (img[9] << 8));
    const int n = 1 + static_cast<int>(rng() % 3);
    for (int k = 0; k < n; ++k) {
      // Mostly inside the header text; sometimes anywhere.
      const size_t at = (rng() % 4) ? rng() % hdr_end : rng() % img.size();
      img[at] = (rng() % 2) ? static_cast<uint8_t>(rng())
                            : static_cast<uint8_t>("{}(),: '\"0123456789<>|=UfibL\n"[rng() % 29]);
    }
    if (rng() % 5 == 0) img.resize(rng() % img.size());
    const std::string path = zip_with_member("npyfuzz.npz", "m.npy", img);
    try {
      for (const auto& kv : kt::read_npz(path)) kv.second.validate(path);
    } catch (const kt::Error& e) {
      ++errors;
      const std::string msg = e.what();
      ASSERT_NE(msg.find(path), std::string::npos) << msg;
      ASSERT_EQ(msg.find('\n'), std::string::npos) << msg;
    }
  }
  EXPECT_GT(errors, 100);
}

TEST(NpzFuzz, RandomGarbage) {
  std::mt19937 rng(5);
  const std::string path = scratch() + "/garbage.npz";
  for (int r = 0; r < 100; ++r) {
    std::vector<uint8_t> b(rng() % 2000);
    for (auto& x : b) x = static_cast<uint8_t>(rng());
    // Sometimes give it a plausible end record so the parser goes deeper.
    if (b.size() > 22 && (r % 2)) {
      const size_t e = b.size() - 22;
      b[e] = 0x50, b[e + 1] = 0x4b, b[e + 2] = 0x05, b[e + 3] = 0x06;
      b[e + 4] = b[e + 5] = b[e + 6] = b[e + 7] = 0;
      b[e + 20] = b[e + 21] = 0;
    }
    write_bytes(path, b);
    expect_error([&] { kt::read_npz(path); }, path);
  }
}

}  // namespace
