// links: kt_model
// Bad checkpoints give one-line kt::Error messages naming the file and the
// tensor or field; none of them crashes.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <cstring>
#include <fstream>
#include <unistd.h>

#include "model/model.h"
#include "util/error.h"
#include "util/paths.h"

namespace fs = std::filesystem;

namespace {

const fs::path kFixture = fs::path(KT_SOURCE_DIR) / "tests/fixtures/models/gpt2";

// A scratch copy of the gpt2 fixture that a test may break.
struct Scratch {
  fs::path dir;
  Scratch() {
    dir = fs::temp_directory_path() /
          ("kt_model_err_" + std::to_string(::getpid()) + "_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    fs::create_directories(dir);
    for (const auto& e : fs::directory_iterator(kFixture)) fs::copy_file(e.path(), dir / e.path().filename());
  }
  ~Scratch() { fs::remove_all(dir); }
  std::string path(const std::string& f) const { return (dir / f).string(); }
  void write(const std::string& f, const std::string& bytes) const {
    std::ofstream(path(f), std::ios::binary | std::ios::trunc) << bytes;
  }
  std::string read(const std::string& f) const { return kt::read_text_file(path(f)); }
};

// Loads `dir`, expects kt::Error whose message is one line containing
// every needle.
void expect_load_error(const fs::path& dir, std::vector<std::string> needles) {
  try {
    kt::Model::load(dir.string());
    FAIL() << "expected kt::Error";
  } catch (const kt::Error& e) {
    std::string m = e.what();
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
    for (const auto& n : needles) EXPECT_NE(m.find(n), std::string::npos) << "'" << n << "' not in: " << m;
  }
}

// The safetensors header as JSON, and a way to write the file back with a
// changed header and the same data.
struct StFile {
  nlohmann::json header;
  std::string data;
  explicit StFile(const std::string& bytes) {
    uint64_t n;
    std::memcpy(&n, bytes.data(), 8);
    header = nlohmann::json::parse(bytes.substr(8, n));
    data = bytes.substr(8 + n);
  }
  std::string bytes() const {
    std::string h = header.dump();
    uint64_t n = h.size();
    return std::string(reinterpret_cast<const char*>(&n), 8) + h + data;
  }
};

TEST(ModelErrors, MissingConfig) {
  Scratch s;
  fs::remove(s.path("config.json"));
  expect_load_error(s.dir, {"config.json", "missing"});
}

TEST(ModelErrors, MalformedConfig) {
  Scratch s;
  s.write("config.json", "{\"model_type\": \"gpt2\", ");
  expect_load_error(s.dir, {"config.json", "not valid JSON"});
}

TEST(ModelErrors, ConfigMissingField) {
  Scratch s;
  auto j = nlohmann::json::parse(s.read("config.json"));
  j.erase("n_layer");
  s.write("config.json", j.dump());
  expect_load_error(s.dir, {"config.json", "n_layer"});
}

TEST(ModelErrors, ConfigWrongType) {
  Scratch s;
  auto j = nlohmann::json::parse(s.read("config.json"));
  j["n_head"] = "four";
  s.write("config.json", j.dump());
  expect_load_error(s.dir, {"config.json", "n_head", "integer"});
}

TEST(ModelErrors, UnsupportedModelTypeListsSupported) {
  Scratch s;
  auto j = nlohmann::json::parse(s.read("config.json"));
  j["model_type"] = "t5";
  s.write("config.json", j.dump());
  expect_load_error(s.dir, {"config.json", "'t5'", "llama", "gpt_neox", "gptj", "gemma2", "gemma3_text", "qwen3",
                            "olmo2", "phi3"});
}

TEST(ModelErrors, TruncatedSafetensors) {
  Scratch s;
  std::string b = s.read("model.safetensors");
  s.write("model.safetensors", b.substr(0, b.size() / 2));
  expect_load_error(s.dir, {"model.safetensors"});
  s.write("model.safetensors", b.substr(0, 5));
  expect_load_error(s.dir, {"model.safetensors", "truncated"});
}

TEST(ModelErrors, HeaderPointsOutsideFile) {
  Scratch s;
  StFile f(s.read("model.safetensors"));
  auto& off = f.header["transformer.h.0.ln_1.weight"]["data_offsets"];
  off[1] = off[1].get<uint64_t>() + f.data.size();
  s.write("model.safetensors", f.bytes());
  expect_load_error(s.dir, {"model.safetensors", "transformer.h.0.ln_1.weight", "outside"});
}

// Names and dtypes from the file keep the message on one line (control
// characters as \xNN). Found by review of tests/fuzz/fuzz_safetensors.
TEST(ModelErrors, TensorNameWithNewline) {
  Scratch s;
  StFile f(s.read("model.safetensors"));
  f.header["bad\nname"] = {{"dtype", "F32\r"}, {"shape", {1}}, {"data_offsets", {0, 4}}};
  s.write("model.safetensors", f.bytes());
  expect_load_error(s.dir, {"model.safetensors", "tensor 'bad\\x0aname'", "unsupported dtype 'F32\\x0d'"});
}

TEST(ModelErrors, HeaderLengthPastEnd) {
  Scratch s;
  std::string b = s.read("model.safetensors");
  uint64_t huge = 1ull << 40;
  std::memcpy(&b[0], &huge, 8);
  s.write("model.safetensors", b);
  expect_load_error(s.dir, {"model.safetensors", "header length"});
}

TEST(ModelErrors, MissingTensor) {
  Scratch s;
  StFile f(s.read("model.safetensors"));
  f.header.erase("transformer.h.1.mlp.c_fc.weight");
  s.write("model.safetensors", f.bytes());
  expect_load_error(s.dir, {"model.safetensors", "missing tensor", "transformer.h.1.mlp.c_fc.weight"});
}

TEST(ModelErrors, WrongShape) {
  Scratch s;
  StFile f(s.read("model.safetensors"));
  auto& t = f.header["transformer.h.0.attn.c_proj.weight"];
  const int64_t d = t["shape"][0];
  t["shape"] = {d * 2, d / 2};
  s.write("model.safetensors", f.bytes());
  expect_load_error(s.dir, {"model.safetensors", "transformer.h.0.attn.c_proj.weight", "expected [64, 64]"});
}

TEST(ModelErrors, UnsupportedDtype) {
  Scratch s;
  StFile f(s.read("model.safetensors"));
  f.header["transformer.ln_f.weight"]["dtype"] = "I32";  // same byte size as F32
  s.write("model.safetensors", f.bytes());
  expect_load_error(s.dir, {"model.safetensors", "transformer.ln_f.weight", "I32"});
  f.header["transformer.ln_f.weight"]["dtype"] = "F8_E9M9";
  s.write("model.safetensors", f.bytes());
  expect_load_error(s.dir, {"model.safetensors", "transformer.ln_f.weight", "unsupported dtype"});
}

TEST(ModelErrors, ShardedCheckpointLoadsAndMissingShardIsNamed) {
  // Split the fixture into two shards + index, as large checkpoints ship.
  Scratch s;
  StFile f(s.read("model.safetensors"));
  nlohmann::json h1 = nlohmann::json::object(), h2 = nlohmann::json::object(), index;
  std::string d1, d2;
  for (auto& [name, info] : f.header.items()) {
    if (name == "__metadata__") continue;
    const uint64_t b = info["data_offsets"][0], e = info["data_offsets"][1];
    bool first = name.find("h.0.") != std::string::npos || name.find("wte") != std::string::npos;
    auto& h = first ? h1 : h2;
    auto& d = first ? d1 : d2;
    nlohmann::json t = info;
    t["data_offsets"] = {d.size(), d.size() + (e - b)};
    d += f.data.substr(b, e - b);
    h[name] = t;
    index["weight_map"][name] = first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  auto write_shard = [&](const std::string& file, const nlohmann::json& h, const std::string& d) {
    std::string hs = h.dump();
    uint64_t n = hs.size();
    s.write(file, std::string(reinterpret_cast<const char*>(&n), 8) + hs + d);
  };
  write_shard("model-00001-of-00002.safetensors", h1, d1);
  write_shard("model-00002-of-00002.safetensors", h2, d2);
  s.write("model.safetensors.index.json", index.dump());
  fs::remove(s.path("model.safetensors"));
  auto sharded = kt::Model::load(s.dir.string());
  auto single = kt::Model::load(kFixture.string());
  at::Tensor ids = at::tensor(std::vector<int64_t>{5, 17, 99, 3}, at::kLong).unsqueeze(0);
  EXPECT_TRUE(at::equal(sharded->forward(ids), single->forward(ids)));
  fs::remove(s.path("model-00002-of-00002.safetensors"));
  expect_load_error(s.dir, {"model-00002-of-00002.safetensors"});
}

TEST(ModelErrors, NotAModelPath) {
  expect_load_error("/nonexistent/knowtrace/model", {"/nonexistent/knowtrace/model", "no such file"});
}

}  // namespace
