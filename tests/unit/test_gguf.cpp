// links: kt_io
// GGUF reader and dequantizer. Goldens come from the `gguf` Python package
// (tests/reference/make_gguf_fixtures.py).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "io/dequant.h"
#include "io/gguf.h"
#include "util/error.h"

namespace fs = std::filesystem;
using kt::GgmlType;
using kt::GgufFile;
using kt::GgufType;

namespace {

std::string src_dir() {
  if (const char* e = std::getenv("KT_SOURCE_DIR")) return e;
  return KT_SOURCE_DIR;
}
std::string fixture(const std::string& rel) { return src_dir() + "/tests/fixtures/gguf/" + rel; }

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  EXPECT_TRUE(f.good()) << "cannot open " << path;
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream f(path);
  return nlohmann::json::parse(f);
}

uint32_t f32_bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

void put_u32(std::vector<uint8_t>& b, size_t at, uint32_t v) {
  for (int k = 0; k < 4; ++k) b[at + k] = static_cast<uint8_t>(v >> (8 * k));
}
void put_u64(std::vector<uint8_t>& b, size_t at, uint64_t v) {
  for (int k = 0; k < 8; ++k) b[at + k] = static_cast<uint8_t>(v >> (8 * k));
}

// A scratch directory removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::temp_directory_path() /
            ("kt_gguf_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

// Expects constructing (and, if given, using) the file to throw kt::Error
// whose single-line message names the file and contains `needle`.
template <class F>
void expect_error(const std::string& path, const std::string& needle, F&& use) {
  try {
    use();
    ADD_FAILURE() << "no error for " << path << " (expected '" << needle << "')";
  } catch (const kt::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << "message: " << msg << "\nexpected: " << needle;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}
void expect_load_error(const std::string& path, const std::string& needle) {
  expect_error(path, needle, [&] { GgufFile f(path); });
}

// Offset of the tensor-info record of `name` in a GGUF byte image (its
// u64 length prefix). The fixture names are unique byte strings.
size_t tensor_info_at(const std::vector<uint8_t>& b, const std::string& name) {
  std::vector<uint8_t> pat(8 + name.size());
  for (int k = 0; k < 8; ++k) pat[k] = static_cast<uint8_t>(name.size() >> (8 * k));
  std::memcpy(pat.data() + 8, name.data(), name.size());
  auto it = std::search(b.begin(), b.end(), pat.begin(), pat.end());
  EXPECT_NE(it, b.end()) << name;
  return static_cast<size_t>(it - b.begin());
}
struct TiFields {
  size_t n_dims, type, offset;
};
TiFields tensor_fields(const std::vector<uint8_t>& b, const std::string& name) {
  const size_t at = tensor_info_at(b, name) + 8 + name.size();
  uint32_t n_dims = b[at] | (b[at + 1] << 8);
  return {at, at + 4 + 8 * n_dims, at + 4 + 8 * n_dims + 4};
}

}  // namespace

// ---- tiny.gguf: metadata -----------------------------------------------------

TEST(GgufTiny, Header) {
  GgufFile f(fixture("tiny.gguf"));
  const auto expect = read_json(fixture("tiny.json"));
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.data_offset(), expect["data_offset"].get<uint64_t>());
  EXPECT_EQ(f.tensors().size(), expect["tensors"].size());
  EXPECT_EQ(f.architecture(), "llama");
  EXPECT_EQ(f.get_string("general.name"), "knowtrace tiny fixture");
}

TEST(GgufTiny, ScalarMetadata) {
  GgufFile f(fixture("tiny.gguf"));
  EXPECT_EQ(f.get_u32("llama.block_count"), 2u);
  EXPECT_EQ(f.get_u32("llama.context_length"), 128u);
  EXPECT_EQ(f.get_f32("llama.rope.freq_base"), 10000.0f);
  EXPECT_EQ(f.get_f32("llama.attention.layer_norm_rms_epsilon"), 1e-5f);

  EXPECT_EQ(f.find("test.u8")->type, GgufType::UINT8);
  EXPECT_EQ(f.get_u32("test.u8"), 200u);
  EXPECT_EQ(f.find("test.i8")->type, GgufType::INT8);
  EXPECT_EQ(f.get_i32("test.i8"), -100);
  EXPECT_EQ(f.find("test.u16")->type, GgufType::UINT16);
  EXPECT_EQ(f.get_u32("test.u16"), 60000u);
  EXPECT_EQ(f.find("test.i16")->type, GgufType::INT16);
  EXPECT_EQ(f.get_i32("test.i16"), -30000);
  EXPECT_EQ(f.find("test.u32")->type, GgufType::UINT32);
  EXPECT_EQ(f.get_u32("test.u32"), 4000000000u);
  EXPECT_EQ(f.get_i64("test.u32"), 4000000000ll);
  EXPECT_EQ(f.find("test.i32")->type, GgufType::INT32);
  EXPECT_EQ(f.get_i32("test.i32"), -2000000000);
  EXPECT_EQ(f.find("test.f32")->type, GgufType::FLOAT32);
  EXPECT_EQ(f.get_f32("test.f32"), 3.25f);
  EXPECT_EQ(f.find("test.u64")->type, GgufType::UINT64);
  EXPECT_EQ(f.get_u64("test.u64"), (1ull << 63) + 5);
  EXPECT_EQ(f.find("test.i64")->type, GgufType::INT64);
  EXPECT_EQ(f.get_i64("test.i64"), -(1ll << 62));
  EXPECT_EQ(f.find("test.f64")->type, GgufType::FLOAT64);
  EXPECT_EQ(f.get_f64("test.f64"), -1.0 / 3.0);
  EXPECT_EQ(f.find("test.bool_true")->type, GgufType::BOOL);
  EXPECT_TRUE(f.get_bool("test.bool_true"));
  EXPECT_FALSE(f.get_bool("test.bool_false"));
  EXPECT_EQ(f.get_string("test.string"), "h\xc3\xa9llo w\xc3\xb6rld");
  EXPECT_EQ(f.get_string("test.empty_string"), "");
  EXPECT_TRUE(f.get_bool("tokenizer.ggml.add_bos_token"));
  EXPECT_EQ(f.get_u32("tokenizer.ggml.bos_token_id"), 0u);

  // metadata() keeps file order; the writer puts general.architecture first.
  ASSERT_FALSE(f.metadata().empty());
  EXPECT_EQ(f.metadata().front().first, "general.architecture");
  EXPECT_EQ(f.find("test.u32")->to_string(), "4000000000");
  EXPECT_EQ(f.find("test.string")->type_name(), "string");
}

TEST(GgufTiny, ArrayMetadata) {
  GgufFile f(fixture("tiny.gguf"));
  EXPECT_EQ(f.get_string_array("test.str_array"),
            (std::vector<std::string>{"a", "bc", "", "\xc3\xbcn\xc3\xaf"}));
  EXPECT_EQ(f.get_string_array("tokenizer.ggml.tokens"),
            (std::vector<std::string>{"<s>", "</s>", "a", "b"}));
  EXPECT_EQ(f.get_i32_array("test.i32_array"), (std::vector<int32_t>{1, -2, 3, 2147483647}));
  EXPECT_EQ(f.get_f32_array("test.f32_array"), (std::vector<float>{0.5f, -1.5f, 1e-3f}));
  EXPECT_EQ(f.find("test.u8_array")->type_name(), "array[uint8]");
  EXPECT_EQ(f.get_i32_array("test.u8_array"), (std::vector<int32_t>{0, 7, 255}));
  EXPECT_EQ(f.get_u32_array("test.u32_array"), (std::vector<uint32_t>{1, 4000000000u}));
  EXPECT_EQ(f.get_f32_array("test.f64_array"), (std::vector<float>{0.25f, -2.0f}));
  const kt::GgufValue* i64 = f.find("test.i64_array");
  ASSERT_NE(i64, nullptr);
  EXPECT_EQ(i64->elem_type, GgufType::INT64);
  ASSERT_EQ(i64->items.size(), 2u);
  EXPECT_EQ(i64->items[0].i, -(1ll << 40));
  const kt::GgufValue* bools = f.find("test.bool_array");
  ASSERT_NE(bools, nullptr);
  EXPECT_EQ(bools->type_name(), "array[bool]");
  ASSERT_EQ(bools->items.size(), 3u);
  EXPECT_EQ(bools->items[1].u, 0u);
  EXPECT_EQ(bools->items[2].u, 1u);

  const kt::GgufValue* nested = f.find("test.nested");
  ASSERT_NE(nested, nullptr);
  EXPECT_EQ(nested->type_name(), "array[array]");
  ASSERT_EQ(nested->items.size(), 3u);
  EXPECT_EQ(nested->items[2].elem_type, GgufType::INT32);
  ASSERT_EQ(nested->items[2].items.size(), 3u);
  EXPECT_EQ(nested->items[2].items[2].i, 6);
  EXPECT_EQ(nested->to_string(), "[[1, 2], [3], [4, 5, 6]]");
  const kt::GgufValue* ns = f.find("test.nested_str");
  ASSERT_NE(ns, nullptr);
  ASSERT_EQ(ns->items.size(), 2u);
  EXPECT_EQ(ns->items[0].items[1].str, "y");
  const kt::GgufValue* n3 = f.find("test.nested3");
  ASSERT_NE(n3, nullptr);
  EXPECT_EQ(n3->to_string(), "[[[1], [2, 3]], [[4]]]");
}

TEST(GgufTiny, GetterErrors) {
  const std::string path = fixture("tiny.gguf");
  GgufFile f(path);
  expect_error(path, "metadata key 'llama.missing' missing", [&] { f.get_u32("llama.missing"); });
  expect_error(path, "metadata key 'test.string' has type string, expected uint32",
               [&] { f.get_u32("test.string"); });
  expect_error(path, "has type uint32, expected string", [&] { f.get_string("test.u32"); });
  expect_error(path, "has type int32, expected float32", [&] { f.get_f32("test.i32"); });
  expect_error(path, "has type array[string], expected array[int32]",
               [&] { f.get_i32_array("test.str_array"); });
  expect_error(path, "has type array[int32], expected array[string]",
               [&] { f.get_string_array("test.i32_array"); });
  expect_error(path, "has type uint8, expected bool", [&] { f.get_bool("test.u8"); });
  expect_error(path, "out of range for uint32", [&] { f.get_u32("test.u64"); });
  expect_error(path, "out of range for uint32", [&] { f.get_u32("test.i8"); });
  expect_error(path, "out of range for int32", [&] { f.get_i32("test.u32"); });
  expect_error(path, "element 0 value -1099511627776 out of range for int32",
               [&] { f.get_i32_array("test.i64_array"); });
  expect_error(path, "tensor 'nope' missing", [&] { f.require_tensor("nope"); });
  EXPECT_FALSE(f.opt_u32("llama.missing").has_value());
  EXPECT_EQ(f.opt_u32("llama.block_count").value(), 2u);
  EXPECT_FALSE(f.opt_string_array("missing").has_value());
  expect_error(path, "expected string", [&] { f.opt_string("test.u8"); });
  EXPECT_EQ(f.find("llama.missing"), nullptr);
}

// ---- tiny.gguf: tensors ------------------------------------------------------

TEST(GgufTiny, TensorInfosAndValues) {
  GgufFile f(fixture("tiny.gguf"));
  const auto expect = read_json(fixture("tiny.json"));
  size_t k = 0;
  for (const auto& e : expect["tensors"]) {
    const std::string name = e["name"];
    SCOPED_TRACE(name);
    const kt::GgufTensorInfo* t = f.tensor(name);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(&f.tensors()[k++], t);  // file order
    EXPECT_EQ(t->shape, e["ne"].get<std::vector<int64_t>>());
    EXPECT_EQ(static_cast<uint32_t>(t->type), e["ggml_type"].get<uint32_t>());
    EXPECT_EQ(t->offset, e["offset"].get<uint64_t>());
    EXPECT_EQ(t->n_bytes, e["n_bytes"].get<uint64_t>());
    EXPECT_EQ(t->n_elements, e["n_elements"].get<uint64_t>());
    EXPECT_EQ(t->offset % f.alignment(), 0u);
    if (!e.contains("values")) continue;
    const auto want = e["values"].get<std::vector<double>>();
    const std::vector<float> got = f.tensor_to_f32(*t);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      const float w = static_cast<float>(want[i]);
      if (t->type == GgmlType::F32 || t->type == GgmlType::F16 || t->type == GgmlType::BF16)
        ASSERT_EQ(f32_bits(got[i]), f32_bits(w)) << i;
      else
        ASSERT_NEAR(got[i], w, 1e-6 * std::fabs(w) + 1e-30) << i;
    }
  }
  // ne[0] is the fastest-varying dimension: numpy (3, 5) is ne [5, 3].
  EXPECT_EQ(f.tensor("t.f32")->shape_string(), "[5, 3]");
  EXPECT_EQ(f.tensor("t.4d")->shape, (std::vector<int64_t>{2, 3, 1, 2}));
  // Raw data of an F32 tensor is the values themselves.
  const kt::GgufTensorInfo& t = f.require_tensor("t.f32");
  float first;
  std::memcpy(&first, f.tensor_data(t), 4);
  EXPECT_EQ(first, f.tensor_to_f32(t)[0]);
  // Row slices equal the same part of the whole tensor (Q6_K: 2 rows of 256).
  const kt::GgufTensorInfo& q6 = f.require_tensor("blk.0.q6_k");
  EXPECT_EQ(q6.row_length(), 256u);
  EXPECT_EQ(q6.n_rows(), 2u);
  const std::vector<float> all = f.tensor_to_f32(q6);
  std::vector<float> row1(256);
  f.tensor_rows_to_f32(q6, 1, 1, row1.data());
  EXPECT_TRUE(std::equal(row1.begin(), row1.end(), all.begin() + 256));
  const std::vector<float> f32all = f.tensor_to_f32(t);
  std::vector<float> f32rows(10);
  f.tensor_rows_to_f32(t, 1, 2, f32rows.data());
  EXPECT_TRUE(std::equal(f32rows.begin(), f32rows.end(), f32all.begin() + 5));
  expect_error(fixture("tiny.gguf"), "rows [2, +1) are outside its 2 rows",
               [&] { f.tensor_rows_to_f32(q6, 2, 1, row1.data()); });
  // I32 is a valid tensor type but not a float one.
  const std::string path = fixture("tiny.gguf");
  expect_error(path, "tensor 't.i32' has ggml type I32, which cannot be dequantized",
               [&] { f.tensor_to_f32(f.require_tensor("t.i32")); });
}

TEST(GgufTiny, CustomAlignment) {
  GgufFile f(fixture("tiny_align64.gguf"));
  EXPECT_EQ(f.alignment(), 64u);
  EXPECT_EQ(f.get_u32("general.alignment"), 64u);
  EXPECT_EQ(f.data_offset() % 64, 0u);
  ASSERT_EQ(f.tensors().size(), 2u);
  EXPECT_EQ(f.tensors()[1].offset, 64u);
  EXPECT_EQ(f.tensor_to_f32(f.require_tensor("a")), (std::vector<float>{0, 1, 2}));
  EXPECT_EQ(f.tensor_to_f32(f.require_tensor("b")), (std::vector<float>{0, 0.5f, 1, 1.5f, 2}));
}

TEST(GgufTiny, VersionHandling) {
  TempDir tmp;
  auto bytes = read_bytes(fixture("tiny.gguf"));
  const std::string p2 = tmp.file("v2.gguf");
  put_u32(bytes, 4, 2);  // v2 has the same little-endian layout
  write_bytes(p2, bytes);
  {
    GgufFile f(p2);
    EXPECT_EQ(f.version(), 2u);
    EXPECT_EQ(f.get_u32("llama.block_count"), 2u);
  }
  const std::string p1 = tmp.file("v1.gguf");
  put_u32(bytes, 4, 1);
  write_bytes(p1, bytes);
  expect_load_error(p1, "GGUF version 1 is not supported");
  const std::string pbe = tmp.file("be.gguf");
  put_u32(bytes, 4, 0x03000000u);
  write_bytes(pbe, bytes);
  expect_load_error(pbe, "big-endian");
  const std::string p9 = tmp.file("v9.gguf");
  put_u32(bytes, 4, 9);
  write_bytes(p9, bytes);
  expect_load_error(p9, "unsupported GGUF version 9");
}

// ---- bad input -------------------------------------------------------------

class GgufBad : public ::testing::Test {
 protected:
  void SetUp() override { good_ = read_bytes(fixture("tiny.gguf")); }
  // Writes a mutated copy and returns its path.
  std::string write(const std::string& name, const std::vector<uint8_t>& b) {
    const std::string p = tmp_.file(name);
    write_bytes(p, b);
    return p;
  }
  std::vector<uint8_t> good_;
  TempDir tmp_;
};

TEST_F(GgufBad, MissingAndEmptyFile) {
  expect_load_error(tmp_.file("does_not_exist.gguf"), "cannot open");
  expect_load_error(write("empty.gguf", {}), "too short");
}

TEST_F(GgufBad, WrongMagic) {
  auto b = good_;
  b[0] = 'P';
  b[1] = 'K';
  expect_load_error(write("magic.gguf", b), "not a GGUF file (magic bytes 'PKUF', expected 'GGUF')");
}

TEST_F(GgufBad, TruncatedHeader) {
  expect_load_error(write("hdr.gguf", std::vector<uint8_t>(good_.begin(), good_.begin() + 10)),
                    "truncated header");
  expect_load_error(write("hdr6.gguf", std::vector<uint8_t>(good_.begin(), good_.begin() + 6)),
                    "truncated header");
}

TEST_F(GgufBad, TruncatedMetadata) {
  expect_load_error(write("meta.gguf", std::vector<uint8_t>(good_.begin(), good_.begin() + 900)),
                    "truncated metadata");
}

TEST_F(GgufBad, TruncatedTensorData) {
  auto b = good_;
  b.resize(b.size() - 100);
  expect_load_error(write("data.gguf", b), "runs past the end of the data section");
}

TEST_F(GgufBad, TensorOffsetPastEnd) {
  auto b = good_;
  put_u64(b, tensor_fields(b, "t.f32").offset, 1ull << 40);
  expect_load_error(write("off.gguf", b),
                    "tensor 't.f32' data [1099511627776, 1099511627836) runs past the end");
  put_u64(b, tensor_fields(b, "t.f32").offset, 0xFFFFFFFFFFFFFFE0ull);  // offset + size overflows
  expect_load_error(write("off2.gguf", b), "runs past the end");
}

TEST_F(GgufBad, MisalignedOffset) {
  auto b = good_;
  put_u64(b, tensor_fields(b, "t.f16").offset, 68);
  expect_load_error(write("align.gguf", b),
                    "tensor 't.f16' data offset 68 is not a multiple of the alignment 32");
}

TEST_F(GgufBad, UnknownQuantType) {
  auto b = good_;
  put_u32(b, tensor_fields(b, "t.q8_0").type, 99);
  expect_load_error(write("type.gguf", b), "tensor 't.q8_0' has unknown ggml type 99");
  put_u32(b, tensor_fields(b, "t.q8_0").type, 31);
  expect_load_error(write("type31.gguf", b), "tensor 't.q8_0' has ggml type 31 (Q4_0_4_4");
}

TEST_F(GgufBad, BadShape) {
  auto b = good_;
  put_u32(b, tensor_fields(b, "t.f32").n_dims, 7);
  expect_load_error(write("dims.gguf", b), "tensor 't.f32' has 7 dimensions");
  b = good_;
  // ne[0] of a Q8_0 tensor must be a multiple of 32.
  put_u64(b, tensor_fields(b, "t.q8_0").n_dims + 4, 40);
  expect_load_error(write("ne0.gguf", b), "not a multiple of the block size 32");
  b = good_;
  // n_elements overflow: ne = [2^62, 2^62, ...]
  const size_t nd = tensor_fields(b, "t.4d").n_dims;
  put_u64(b, nd + 4, 1ull << 62);
  put_u64(b, nd + 12, 1ull << 62);
  expect_load_error(write("ovf.gguf", b), "too many elements (overflow)");
  b = good_;
  put_u64(b, nd + 4, 1ull << 61);  // fits in int64 elements, but bytes overflow
  put_u64(b, nd + 12, 3);
  expect_load_error(write("ovf2.gguf", b), "overflow");
}

TEST_F(GgufBad, AbsurdCounts) {
  auto b = good_;
  put_u64(b, 16, 1ull << 60);
  expect_load_error(write("kv.gguf", b), "header claims 1152921504606846976 metadata entries");
  b = good_;
  put_u64(b, 8, 1ull << 40);
  expect_load_error(write("nt.gguf", b), "header claims 1099511627776 tensors");
}

TEST_F(GgufBad, StringLengthPastEnd) {
  auto b = good_;
  put_u64(b, 24, 1ull << 50);  // length of the first key
  expect_load_error(write("str.gguf", b), "string length 1125899906842624 at offset 24 runs past");
  b = good_;
  put_u64(b, tensor_info_at(b, "t.f16"), 100000);  // a tensor name
  expect_load_error(write("str2.gguf", b), "runs past the end of the file");
}

TEST_F(GgufBad, UnknownValueType) {
  auto b = good_;
  const uint64_t key_len = b[24];
  put_u32(b, 32 + key_len, 13);  // value type of the first key
  expect_load_error(write("vt.gguf", b),
                    "metadata key 'general.architecture' at offset 52 has unknown value type 13");
}

// Hand-built files for cases the Python writer cannot produce.
struct Builder {
  std::vector<uint8_t> b;
  Builder& u32(uint32_t v) {
    for (int k = 0; k < 4; ++k) b.push_back(static_cast<uint8_t>(v >> (8 * k)));
    return *this;
  }
  Builder& u64(uint64_t v) {
    for (int k = 0; k < 8; ++k) b.push_back(static_cast<uint8_t>(v >> (8 * k)));
    return *this;
  }
  Builder& str(const std::string& s) {
    u64(s.size());
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
  Builder& header(uint64_t n_tensors, uint64_t n_kv) {
    b = {'G', 'G', 'U', 'F'};
    return u32(3).u64(n_tensors).u64(n_kv);
  }
};

TEST_F(GgufBad, HandBuilt) {
  {  // arrays nested 100 deep
    Builder w;
    w.header(0, 1).str("deep").u32(9);
    for (int k = 0; k < 100; ++k) w.u32(9).u64(1);
    w.u32(4).u64(0);
    expect_load_error(write("deep.gguf", w.b), "nested more than 8 deep in 'deep'");
  }
  {  // array claiming 2^40 uint32 elements
    Builder w;
    w.header(0, 1).str("big").u32(9).u32(4).u64(1ull << 40).u32(0);
    expect_load_error(write("bigarr.gguf", w.b), "claims 1099511627776 elements of uint32");
  }
  {  // array of unknown element type
    Builder w;
    w.header(0, 1).str("odd").u32(9).u32(77).u64(1).u32(0);
    expect_load_error(write("oddarr.gguf", w.b), "unknown element type 77");
  }
  {  // duplicate keys
    Builder w;
    w.header(0, 2).str("k").u32(4).u32(1).str("k").u32(4).u32(2);
    expect_load_error(write("dup.gguf", w.b), "metadata key 'k' appears twice");
  }
  {  // duplicate tensor names
    Builder w;
    w.header(2, 0);
    w.str("t").u32(1).u64(1).u32(0).u64(0);
    w.str("t").u32(1).u64(1).u32(0).u64(32);
    w.b.resize(128, 0);
    expect_load_error(write("duptensor.gguf", w.b), "tensor 't' appears twice");
  }
  {  // bad alignment value
    Builder w;
    w.header(0, 1).str("general.alignment").u32(4).u32(48);
    expect_load_error(write("al.gguf", w.b), "general.alignment 48 is not a power of two");
  }
  {  // control characters in a key are escaped, the message stays one line
    Builder w;
    w.header(0, 2).str("a\nb").u32(4).u32(1).str("a\nb").u32(4).u32(1);
    expect_load_error(write("ctl.gguf", w.b), "metadata key 'a\\x0ab' appears twice");
  }
  {  // a minimal valid file: no tensors, one key, no data section
    Builder w;
    w.header(0, 1).str("general.architecture").u32(8).str("x");
    GgufFile f(write("min.gguf", w.b));
    EXPECT_EQ(f.architecture(), "x");
    EXPECT_TRUE(f.tensors().empty());
  }
  {  // zero-element tensor at the very end is fine
    Builder w;
    w.header(1, 0).str("z").u32(2).u64(0).u64(4).u32(0).u64(0);
    GgufFile f(write("zero.gguf", w.b));
    ASSERT_EQ(f.tensors().size(), 1u);
    EXPECT_EQ(f.tensors()[0].n_elements, 0u);
    EXPECT_TRUE(f.tensor_to_f32(f.tensors()[0]).empty());
  }
}

// Deterministic mutations of tiny.gguf: every copy must either load or throw
// kt::Error; loading ones must also survive reading every tensor.
TEST_F(GgufBad, RandomMutationsNeverCrash) {
  uint64_t state = 0x9E3779B97F4A7C15ull;
  auto next = [&]() {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  const size_t n = good_.size();
  GgufFile ref(fixture("tiny.gguf"));
  const size_t meta_end = static_cast<size_t>(ref.data_offset());
  int loaded = 0, rejected = 0;
  int iters = 400;  // KT_GGUF_FUZZ_ITERS=N runs more (e.g. under a sanitizer)
  if (const char* e = std::getenv("KT_GGUF_FUZZ_ITERS")) iters = std::max(1, std::atoi(e));
  for (int iter = 0; iter < iters; ++iter) {
    std::vector<uint8_t> b = good_;
    const uint64_t kind = next() % 4;
    if (kind == 0) {
      b.resize(next() % n);  // truncation
    } else if (kind == 1) {
      const int flips = 1 + static_cast<int>(next() % 4);  // bit flips in header/metadata
      for (int k = 0; k < flips; ++k) b[next() % meta_end] ^= static_cast<uint8_t>(1u << (next() % 8));
    } else if (kind == 2) {
      const size_t at = next() % (meta_end - 8);  // a large number over 8 bytes
      const uint64_t v = (next() % 2) ? ~0ull : (next() >> (next() % 64));
      put_u64(b, at, v);
    } else {
      b[next() % n] = static_cast<uint8_t>(next());  // any byte anywhere
    }
    const std::string p = write("m" + std::to_string(iter) + ".gguf", b);
    try {
      GgufFile f(p);
      for (const auto& kv : f.metadata()) (void)kv.second.to_string();
      for (const auto& t : f.tensors()) {
        const kt::GgmlTypeInfo* info = kt::ggml_type_info(t.type);
        if (info && info->dequantizable && t.n_elements < (1u << 20)) (void)f.tensor_to_f32(t);
      }
      ++loaded;
    } catch (const kt::Error& e) {
      const std::string msg = e.what();
      EXPECT_EQ(msg.rfind(p + ": ", 0), 0u) << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
      ++rejected;
    }
    fs::remove(p);
  }
  std::printf("mutations: %d loaded, %d rejected with kt::Error\n", loaded, rejected);
  EXPECT_GT(loaded, 0);
  EXPECT_GT(rejected, 0);
}

// ---- dequantization ----------------------------------------------------------

TEST(Dequant, TypeTable) {
  EXPECT_EQ(kt::ggml_nbytes(GgmlType::Q4_0, 64), 36u);
  EXPECT_EQ(kt::ggml_nbytes(GgmlType::Q4_1, 32), 20u);
  EXPECT_EQ(kt::ggml_nbytes(GgmlType::Q5_0, 32), 22u);
  EXPECT_EQ(kt::ggml_nbytes(GgmlType::Q5_1, 32), 24u);
  EXPECT_EQ(kt::ggml_nbytes(GgmlType::Q8_0, 32), 34u);
  EXPECT_EQ(kt::ggml_nbytes(GgmlType::Q2_K, 256), 84u);
  EXPECT_EQ(kt::ggml_nbytes(GgmlType::Q3_K, 256), 110u);
  EXPECT_EQ(kt::ggml_nbytes(GgmlType::Q4_K, 256), 144u);
  EXPECT_EQ(kt::ggml_nbytes(GgmlType::Q5_K, 256), 176u);
  EXPECT_EQ(kt::ggml_nbytes(GgmlType::Q6_K, 256), 210u);
  EXPECT_EQ(kt::ggml_nbytes(GgmlType::Q8_K, 256), 292u);
  EXPECT_EQ(kt::ggml_nbytes(GgmlType::BF16, 3), 6u);
  EXPECT_EQ(kt::ggml_type_name(GgmlType::Q4_K), "Q4_K");
  EXPECT_EQ(kt::ggml_type_name(static_cast<GgmlType>(99)), "unknown type 99");
  EXPECT_THROW(kt::ggml_nbytes(GgmlType::Q4_K, 100), kt::Error);
  EXPECT_THROW(kt::ggml_nbytes(GgmlType::F32, 1ull << 63), kt::Error);
  EXPECT_EQ(kt::fp16_to_fp32(0x3C00), 1.0f);
  EXPECT_EQ(kt::fp16_to_fp32(0x0001), 5.9604644775390625e-08f);
  EXPECT_EQ(kt::fp16_to_fp32(0xC000), -2.0f);
  EXPECT_TRUE(std::isinf(kt::fp16_to_fp32(0x7C00)));
  EXPECT_EQ(kt::bf16_to_fp32(0x3F80), 1.0f);
}

TEST(Dequant, MatchesGgufPackage) {
  const auto manifest = read_json(fixture("dequant/manifest.json"));
  const std::set<std::string> required = {"F32",  "F16",  "BF16", "Q8_0", "Q4_0",
                                          "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K",
                                          "Q4_K", "Q5_K", "Q6_K", "Q8_K"};
  std::set<std::string> seen;
  for (const auto& [name, info] : manifest.items()) {
    SCOPED_TRACE(name);
    seen.insert(name);
    const auto type = static_cast<GgmlType>(info["ggml_type"].get<uint32_t>());
    EXPECT_EQ(kt::ggml_type_name(type), name);
    const size_t n = info["n_elements"].get<size_t>();
    const auto raw = read_bytes(fixture("dequant/" + name + ".raw"));
    const auto exp_bytes = read_bytes(fixture("dequant/" + name + ".f32"));
    ASSERT_EQ(exp_bytes.size(), n * 4);
    ASSERT_EQ(raw.size(), kt::ggml_nbytes(type, n));
    std::vector<float> want(n), got(n, -12345.0f);
    std::memcpy(want.data(), exp_bytes.data(), n * 4);
    kt::dequantize(type, raw.data(), n, got.data());
    const bool plain = type == GgmlType::F32 || type == GgmlType::F16 || type == GgmlType::BF16;
    // Plain types: bit-identical (NaN payloads included). Quantized types:
    // within 1e-6 relative to the element, or to the largest magnitude in
    // its block where d*q - m cancels (a compiler may fuse multiply-add).
    const size_t block = kt::ggml_type_info(type)->block_size;
    size_t exact = 0;
    for (size_t i = 0; i < n; ++i) {
      if (plain) {
        ASSERT_EQ(f32_bits(got[i]), f32_bits(want[i])) << "element " << i;
      } else {
        double block_max = 0;
        for (size_t j = i / block * block; j < (i / block + 1) * block; ++j)
          block_max = std::max(block_max, std::fabs(static_cast<double>(want[j])));
        ASSERT_TRUE(std::isfinite(got[i])) << i;
        ASSERT_LE(std::fabs(got[i] - want[i]), 1e-6 * std::max<double>(std::fabs(want[i]), block_max))
            << "element " << i;
      }
      exact += f32_bits(got[i]) == f32_bits(want[i]);
    }
    std::printf("%-5s %4zu elements, %4zu bit-identical\n", name.c_str(), n, exact);
  }
  for (const auto& r : required) EXPECT_TRUE(seen.count(r)) << "fixture missing for " << r;
}

TEST(Dequant, Errors) {
  std::vector<uint8_t> src(1024);
  std::vector<float> dst(1024);
  try {
    kt::dequantize(GgmlType::IQ2_XXS, src.data(), 256, dst.data());
    ADD_FAILURE();
  } catch (const kt::Error& e) {
    EXPECT_NE(std::string(e.what()).find("IQ2_XXS is not supported"), std::string::npos) << e.what();
  }
  try {
    kt::dequantize(static_cast<GgmlType>(77), src.data(), 32, dst.data());
    ADD_FAILURE();
  } catch (const kt::Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown type 77"), std::string::npos) << e.what();
  }
  try {
    kt::dequantize(GgmlType::Q4_0, src.data(), 33, dst.data());
    ADD_FAILURE();
  } catch (const kt::Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a multiple of the block size 32"), std::string::npos)
        << e.what();
  }
}

// ---- real models (skipped unless scripts/get-model.sh has fetched them) ------

namespace {
void inspect_model(const std::string& path, const std::string& arch) {
  if (!fs::exists(path)) GTEST_SKIP() << path << " not present (run scripts/get-model.sh)";
  GgufFile f(path);
  EXPECT_EQ(f.architecture(), arch);
  std::map<std::string, int> types;
  std::cout << path << ": GGUF v" << f.version() << ", " << f.metadata().size() << " keys, "
            << f.tensors().size() << " tensors, data at " << f.data_offset() << "\n";
  for (const auto& [key, v] : f.metadata()) {
    std::cout << "  " << key << " (" << v.type_name() << ") = " << v.to_string(6) << "\n";
  }
  uint64_t n_params = 0;
  for (const auto& t : f.tensors()) {
    types[kt::ggml_type_name(t.type)]++;
    n_params += t.n_elements;
  }
  std::cout << "  tensor types:";
  for (const auto& [name, count] : types) std::cout << " " << name << " x" << count;
  std::cout << "; " << n_params << " parameters\n";
  if (std::getenv("KT_GGUF_LIST_TENSORS"))
    for (const auto& t : f.tensors())
      std::cout << "    " << t.name << " " << kt::ggml_type_name(t.type) << " "
                << t.shape_string() << "\n";
  // Every tensor dequantizes to finite values (in slices of rows, so the
  // 262k-row Gemma embedding never needs its 640 MiB float copy).
  std::vector<float> buf;
  for (const auto& t : f.tensors()) {
    const uint64_t rows = t.n_rows();
    const uint64_t step = std::max<uint64_t>(1, (1u << 20) / std::max<uint64_t>(1, t.row_length()));
    for (uint64_t r = 0; r < rows; r += step) {
      const uint64_t n = std::min(step, rows - r);
      buf.resize(static_cast<size_t>(n * t.row_length()));
      f.tensor_rows_to_f32(t, r, n, buf.data());
      for (float x : buf) ASSERT_TRUE(std::isfinite(x)) << t.name << " row " << r;
    }
  }
}
}  // namespace

TEST(GgufRealModel, SmolLM2) {
  const std::string path = src_dir() + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  inspect_model(path, "llama");
  if (!fs::exists(path)) return;
  GgufFile f(path);
  EXPECT_EQ(f.get_u32("llama.block_count"), 30u);
  EXPECT_EQ(f.get_u32("llama.embedding_length"), 576u);
  EXPECT_EQ(f.get_string_array("tokenizer.ggml.tokens").size(), 49152u);
}

TEST(GgufRealModel, Gemma3) {
  inspect_model(src_dir() + "/models/gemma-3-270m-q4_k_m.gguf", "gemma3");
}
