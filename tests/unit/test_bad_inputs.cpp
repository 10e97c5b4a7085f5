// links: kt_pipeline
// One test per rejected input class of docs/BAD_INPUTS.md that had none:
// each case writes one bad input (a fixture with one field broken), calls
// the loader or the command line, and checks that the one-line message
// names the file or flag and says what is wrong, in the source's words.
// Cases that show a bug are skipped with the reason (see the catalogue).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "analysis/aggregate.h"
#include "io/dequant.h"
#include "io/gguf.h"
#include "io/npz.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/model.h"
#include "pipeline/config.h"
#include "pipeline/dataset.h"
#include "pipeline/pipeline.h"
#include "pipeline/stages.h"
#include "report/plots.h"
#include "tokenizer/tokenizer.h"
#include "trace/noise.h"
#include "trace/result_store.h"
#include "trace/subject.h"
#include "trace/tracer.h"
#include "test_support.h"
#include "util/error.h"
#include "util/paths.h"
#include "util/stored_file.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const std::string kSrc = KT_SOURCE_DIR;
const std::string kBin = std::string(KT_BINARY_DIR) + "/knowtrace";
const fs::path kModels = fs::path(kSrc) / "tests/fixtures/models";
const fs::path kTokGpt2 = fs::path(kSrc) / "tests/fixtures/tokenizers/gpt2";
const std::string kPipelineConfig = kSrc + "/tests/fixtures/pipeline/gpt2-tiny.yaml";

// ------------------------------------------------------------------ helpers

using kt_test::error_of;
using kt_test::temp_root;
using kt_test::write_file;

// A fresh, empty folder for this test (and `tag`).
fs::path fresh_dir(const std::string& tag = "") {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  fs::path p = temp_root() / (std::string(info->test_suite_name()) + "." + info->name() + (tag.empty() ? "" : "." + tag));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

fs::path copy_dir(const fs::path& from, const std::string& tag) {
  fs::path d = fresh_dir(tag);
  for (const auto& e : fs::directory_iterator(from))
    if (e.is_regular_file()) fs::copy_file(e.path(), d / e.path().filename());
  return d;
}

std::string slurp(const fs::path& p) { return kt::read_text_file(p.string()); }
json read_json(const fs::path& p) { return json::parse(slurp(p)); }


// A one-line message holding every needle.
void expect_message(const std::string& m, const std::vector<std::string>& needles, const std::string& label = "") {
  EXPECT_FALSE(m.empty()) << label;
  EXPECT_EQ(m.find('\n'), std::string::npos) << label << ": " << m;
  for (const auto& n : needles) EXPECT_NE(m.find(n), std::string::npos) << label << ": '" << n << "' not in: " << m;
}

bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }

// One table row: a name, how to break the input, the needles.
struct Case {
  std::string name;
  std::function<void(json&)> edit;
  std::vector<std::string> needles;
};

// -------------------------------------------------------- knowtrace binary

struct CliResult {
  int rc = -1;
  std::string err;  // stderr
  std::string out;  // stdout
};

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// Runs knowtrace with `args` in `cwd` (so nothing lands in the tree).
CliResult run_cli(const std::vector<std::string>& args, const fs::path& cwd, const std::string& env = "") {
  const fs::path err = cwd / "cli.stderr", out = cwd / "cli.stdout";
  std::string cmd = "cd " + shell_quote(cwd.string()) + " && " + env + " timeout 300 " + shell_quote(kBin);
  for (const auto& a : args) cmd += " " + shell_quote(a);
  cmd += " >" + shell_quote(out.string()) + " 2>" + shell_quote(err.string()) + " </dev/null";
  CliResult r;
  const int status = std::system(cmd.c_str());
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.err = slurp(err);
  r.out = slurp(out);
  return r;
}

// kt::Error on the command line: exit 1 and "knowtrace: error: <message>\n".
void expect_cli_error(const CliResult& r, const std::vector<std::string>& needles, const std::string& label) {
  EXPECT_EQ(r.rc, 1) << label << "\nstderr: " << r.err;
  EXPECT_TRUE(starts_with(r.err, "knowtrace: error: ")) << label << "\nstderr: " << r.err;
  std::string line = r.err;
  if (!line.empty() && line.back() == '\n') line.pop_back();
  expect_message(line, needles, label);
}

bool have_binary() { return fs::exists(kBin); }

// ------------------------------------------------------------- GGUF writer

// Writes GGUF v3 files: metadata of the types the model loader reads and
// F32 tensors (zeros), 32-byte aligned.
struct GgufWriter {
  std::string kv;
  uint64_t n_kv = 0;
  struct Tensor {
    std::string name;
    std::vector<uint64_t> ne;
    uint32_t type;
    uint64_t bytes;
  };
  std::vector<Tensor> tensors;

  static void u32(std::string& b, uint32_t v) { b.append(reinterpret_cast<const char*>(&v), 4); }
  static void u64(std::string& b, uint64_t v) { b.append(reinterpret_cast<const char*>(&v), 8); }
  static void str(std::string& b, const std::string& s) {
    u64(b, s.size());
    b += s;
  }
  GgufWriter& put_u32(const std::string& k, uint32_t v) {
    str(kv, k), u32(kv, 4), u32(kv, v), ++n_kv;
    return *this;
  }
  GgufWriter& put_f32(const std::string& k, float v) {
    uint32_t bits;
    std::memcpy(&bits, &v, 4);
    str(kv, k), u32(kv, 6), u32(kv, bits), ++n_kv;
    return *this;
  }
  GgufWriter& put_str(const std::string& k, const std::string& v) {
    str(kv, k), u32(kv, 8), str(kv, v), ++n_kv;
    return *this;
  }
  GgufWriter& put_strs(const std::string& k, const std::vector<std::string>& v) {
    str(kv, k), u32(kv, 9), u32(kv, 8), u64(kv, v.size());
    for (const auto& s : v) str(kv, s);
    ++n_kv;
    return *this;
  }
  GgufWriter& put_i32s(const std::string& k, const std::vector<int32_t>& v) {
    str(kv, k), u32(kv, 9), u32(kv, 5), u64(kv, v.size());
    for (int32_t x : v) u32(kv, static_cast<uint32_t>(x));
    ++n_kv;
    return *this;
  }
  GgufWriter& put_f32s(const std::string& k, const std::vector<float>& v) {
    str(kv, k), u32(kv, 9), u32(kv, 6), u64(kv, v.size());
    for (float x : v) {
      uint32_t bits;
      std::memcpy(&bits, &x, 4);
      u32(kv, bits);
    }
    ++n_kv;
    return *this;
  }
  GgufWriter& tensor(const std::string& name, std::vector<uint64_t> ne) {
    uint64_t n = 1;
    for (uint64_t d : ne) n *= d;
    tensors.push_back({name, std::move(ne), 0, n * 4});
    return *this;
  }
  std::string bytes() const {
    std::string b = "GGUF";
    u32(b, 3), u64(b, tensors.size()), u64(b, n_kv);
    b += kv;
    uint64_t off = 0;
    std::vector<uint64_t> offsets;
    for (const auto& t : tensors) {
      str(b, t.name), u32(b, static_cast<uint32_t>(t.ne.size()));
      for (uint64_t d : t.ne) u64(b, d);
      u32(b, t.type), u64(b, off);
      offsets.push_back(off);
      off += (t.bytes + 31) / 32 * 32;
    }
    b.resize((b.size() + 31) / 32 * 32, '\0');
    b.resize(b.size() + off, '\0');
    return b;
  }
};

// The gpt2 fixture's vocabulary (by id) and merges ("left right").
const std::pair<std::vector<std::string>, std::vector<std::string>>& fixture_vocab() {
  static const auto v = [] {
    json j = read_json(kTokGpt2 / "tokenizer.json");
    std::vector<std::string> tokens(j["model"]["vocab"].size());
    for (auto& [tok, id] : j["model"]["vocab"].items()) tokens.at(id.get<size_t>()) = tok;
    std::vector<std::string> merges;
    for (const auto& m : j["model"]["merges"])
      merges.push_back(m.is_string() ? m.get<std::string>() : m[0].get<std::string>() + " " + m[1].get<std::string>());
    return std::make_pair(tokens, merges);
  }();
  return v;
}

// A llama-layout GGUF model with hidden 8, 2 heads, 1 layer and the
// fixture's vocabulary, but only token_embd.weight (no blocks): enough for
// every check made before the weights are read. `change` edits it first.
std::string tiny_gguf(const fs::path& dir, const std::string& file,
                      const std::function<void(GgufWriter&)>& before_tensors = nullptr,
                      const std::string& arch = "llama", uint32_t heads = 2, bool embd_2d = true,
                      const std::map<std::string, std::string>& strings = {}) {
  const auto& [tokens, merges] = fixture_vocab();
  GgufWriter w;
  w.put_str("general.architecture", arch);
  w.put_u32(arch + ".block_count", 1).put_u32(arch + ".embedding_length", 8).put_u32(arch + ".feed_forward_length", 16);
  w.put_u32(arch + ".attention.head_count", heads).put_u32(arch + ".context_length", 64);
  w.put_f32(arch + ".attention.layer_norm_rms_epsilon", 1e-5f);
  std::map<std::string, std::string> s = {{"tokenizer.ggml.model", "gpt2"}, {"tokenizer.ggml.pre", "gpt-2"}};
  for (const auto& [k, v] : strings) s[k] = v;
  for (const auto& [k, v] : s) w.put_str(k, v);
  w.put_strs("tokenizer.ggml.tokens", tokens).put_strs("tokenizer.ggml.merges", merges);
  if (before_tensors) before_tensors(w);
  if (embd_2d)
    w.tensor("token_embd.weight", {8, tokens.size()});
  else
    w.tensor("token_embd.weight", {8 * tokens.size()});
  w.tensor("output_norm.weight", {8});
  return write_file(dir / file, w.bytes());
}

std::string gguf_load_error(const std::string& path) {
  return error_of([&] { kt::Model::load(path); });
}

// The safetensors header as JSON, and the file back with a changed header.
struct StFile {
  json header;
  std::string data;
  explicit StFile(const std::string& bytes) {
    uint64_t n;
    std::memcpy(&n, bytes.data(), 8);
    header = json::parse(bytes.substr(8, n));
    data = bytes.substr(8 + n);
  }
  static std::string with_header(const std::string& h, const std::string& data) {
    uint64_t n = h.size();
    return std::string(reinterpret_cast<const char*>(&n), 8) + h + data;
  }
  std::string bytes() const { return with_header(header.dump(), data); }
};

const char* const kLn = "transformer.h.0.ln_1.weight";  // F32 [64] in the gpt2 fixture

}  // namespace

// =================================================== 1-2. model path, config.json

TEST(BadModelPath, RegularFileWithoutGgufExtension) {
  const fs::path d = fresh_dir();
  const std::string p = write_file(d / "model.bin", "not a model");
  expect_message(error_of([&] { kt::Model::load(p); }),
                 {p + ": expected a Hugging Face checkpoint directory or a .gguf file"});
}

TEST(BadConfigJson, EachFieldBrokenAlone) {
  const std::vector<std::pair<std::string, Case>> cases = {
      {"gpt2", {"top level not an object", [](json& j) { j = json::array({1, 2}); }, {"expected a JSON object"}}},
      // The new architecture rows: a required field of the family missing,
      // and their own fields broken.
      {"gemma2", {"gemma2 without intermediate_size", [](json& j) { j.erase("intermediate_size"); },
                  {"missing field 'intermediate_size'"}}},
      {"phi3", {"phi3 without intermediate_size", [](json& j) { j.erase("intermediate_size"); },
                {"missing field 'intermediate_size'"}}},
      {"gemma3_text",
       {"layer_types too short", [](json& j) { j["layer_types"] = json::array({"sliding_attention"}); },
        {"field 'layer_types' must be a list of 4 strings"}}},
      {"gemma2",
       {"unknown layer type", [](json& j) { j["layer_types"][1] = "chunked_attention"; },
        {"field 'layer_types' entry 1 must be \"sliding_attention\" or \"full_attention\""}}},
      {"gemma2", {"query_pre_attn_scalar 0", [](json& j) { j["query_pre_attn_scalar"] = 0; },
                  {"field 'query_pre_attn_scalar' must be a positive number"}}},
      {"gemma2", {"softcapping a string", [](json& j) { j["attn_logit_softcapping"] = "50"; },
                  {"field 'attn_logit_softcapping' must be a number"}}},
      {"gemma3_text",
       {"local rope type scaled", [](json& j) { j["rope_parameters"]["sliding_attention"]["rope_type"] = "linear"; },
        {"rope_parameters.sliding_attention: only the default rope type is supported there"}}},
      {"gemma2", {"hidden_activation a number", [](json& j) { j["hidden_activation"] = 1; },
                  {"field 'hidden_activation' must be a string"}}},
      {"gpt2", {"model_type missing", [](json& j) { j.erase("model_type"); }, {"missing field 'model_type'"}}},
      {"gpt2", {"model_type not a string", [](json& j) { j["model_type"] = 2; }, {"field 'model_type' must be a string"}}},
      {"llama",
       {"hidden_size 0", [](json& j) { j["hidden_size"] = 0; },
        {"hidden_size, num_hidden_layers, num_attention_heads and vocab_size must be positive"}}},
      {"gpt2", {"vocab_size 0", [](json& j) { j["vocab_size"] = 0; }, {"must be positive"}}},
      {"llama",
       {"heads not a multiple of kv heads", [](json& j) { j["num_key_value_heads"] = 3; },
        {"num_attention_heads (4) must be a multiple of num_key_value_heads (3)"}}},
      {"llama", {"rms_norm_eps a string", [](json& j) { j["rms_norm_eps"] = "tiny"; }, {"field 'rms_norm_eps' must be a number"}}},
      {"gpt2",
       {"layer_norm_epsilon a string", [](json& j) { j["layer_norm_epsilon"] = "1e-5"; },
        {"field 'layer_norm_epsilon' must be a number"}}},
      {"gpt_neox", {"layer_norm_eps a list", [](json& j) { j["layer_norm_eps"] = json::array(); }, {"field 'layer_norm_eps' must be a number"}}},
      {"gpt2",
       {"tie_word_embeddings a string", [](json& j) { j["tie_word_embeddings"] = "yes"; },
        {"field 'tie_word_embeddings' must be true or false"}}},
      {"llama", {"attention_bias a number", [](json& j) { j["attention_bias"] = 1; }, {"field 'attention_bias' must be true or false"}}},
      {"llama", {"mlp_bias a string", [](json& j) { j["mlp_bias"] = "no"; }, {"field 'mlp_bias' must be true or false"}}},
      {"gpt_neox",
       {"use_parallel_residual a string", [](json& j) { j["use_parallel_residual"] = "true"; },
        {"field 'use_parallel_residual' must be true or false"}}},
      {"llama", {"hidden_act a number", [](json& j) { j["hidden_act"] = 5; }, {"field 'hidden_act' must be a string"}}},
      {"gpt2",
       {"activation_function a list", [](json& j) { j["activation_function"] = json::array({"gelu"}); },
        {"field 'activation_function' must be a string"}}},
      {"gpt2", {"bos_token_id a string", [](json& j) { j["bos_token_id"] = "0"; }, {"field 'bos_token_id' must be an integer"}}},
      {"llama", {"eos_token_id a float", [](json& j) { j["eos_token_id"] = 1.5; }, {"field 'eos_token_id' must be an integer"}}},
      {"llama",
       {"unsupported activation", [](json& j) { j["hidden_act"] = "tanh"; },
        {"unsupported activation 'tanh' (supported: silu, gelu, gelu_new, gelu_pytorch_tanh, relu)"}}},
      {"gpt2", {"unsupported gpt2 activation", [](json& j) { j["activation_function"] = "swiglu"; }, {"unsupported activation 'swiglu'"}}},
      {"llama",
       {"rope_scaling a string",
        [](json& j) {
          j.erase("rope_parameters");
          j["rope_scaling"] = "llama3";
        },
        {"field 'rope_scaling' must be an object or null"}}},
      {"llama",
       {"rope factor a string", [](json& j) { j["rope_parameters"]["factor"] = "8"; }, {"rope field 'factor' must be a number"}}},
      {"llama",
       {"rope low_freq_factor null", [](json& j) { j["rope_parameters"]["low_freq_factor"] = nullptr; },
        {"rope field 'low_freq_factor' must be a number"}}},
      {"llama",
       {"rope type yarn", [](json& j) { j["rope_parameters"]["rope_type"] = "yarn"; },
        {"rope type 'yarn' is not supported (supported: default, linear, llama3, longrope)"}}},
      {"llama",
       {"old-style rope_scaling type dynamic",
        [](json& j) {
          j.erase("rope_parameters");
          j["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2.0}};
        },
        {"rope type 'dynamic' is not supported"}}},
      {"gptj", {"odd rotary_dim", [](json& j) { j["rotary_dim"] = 7; }, {"rotary dimension 7 must be even and at most head_dim"}}},
      {"gptj", {"rotary_dim above head_dim", [](json& j) { j["rotary_dim"] = 64; }, {"rotary dimension 64 must be even and at most head_dim"}}},
      {"llama",
       {"partial_rotary_factor giving an odd dimension", [](json& j) { j["rope_parameters"]["partial_rotary_factor"] = 0.5625; },
        {"rotary dimension 9 must be even"}}},
  };
  for (const auto& [model, c] : cases) {
    const fs::path d = copy_dir(kModels / model, "cfg");
    const fs::path p = d / "config.json";
    json j = read_json(p);
    c.edit(j);
    write_file(p, j.dump());
    // Through the parser and through Model::load (what --model does).
    expect_message(error_of([&] { kt::parse_hf_config(p.string()); }), c.needles, c.name);
    const std::string m = error_of([&] { kt::Model::load(d.string()); });
    expect_message(m, c.needles, c.name + " (Model::load)");
    EXPECT_TRUE(starts_with(m, p.string() + ": ")) << c.name << ": " << m;
  }
}

// Known bug (reviewer 1, note N1): the message names the first alias the code
// tries (Llama's key), not the key the file uses.
TEST(BadConfigJson, Gpt2MissingOrBadFieldNamesTheGpt2Key) {
  const fs::path d = copy_dir(kModels / "gpt2", "cfg");
  const fs::path p = d / "config.json";
  json j = read_json(p);
  j.erase("n_layer");
  write_file(p, j.dump());
  const std::string missing = error_of([&] { kt::parse_hf_config(p.string()); });
  j = read_json(kModels / "gpt2/config.json");
  j["n_head"] = "four";
  write_file(p, j.dump());
  const std::string wrong = error_of([&] { kt::parse_hf_config(p.string()); });
  // The message names every name the field may have, and the one the file uses.
  expect_message(missing, {p.string(), "missing field 'num_hidden_layers' (or 'n_layer')"});
  expect_message(wrong, {p.string(), "field 'n_head' must be a non-negative integer"});
}

// ====================================================== 3. safetensors

TEST(BadSafetensors, HeaderFieldsBrokenAlone) {
  const std::string good = slurp(kModels / "gpt2/model.safetensors");
  const std::vector<Case> cases = {
      {"tensor entry without dtype", [](json& h) { h[kLn].erase("dtype"); },
       {"tensor 'transformer.h.0.ln_1.weight': expected an object with dtype, shape and data_offsets"}},
      {"tensor entry not an object", [](json& h) { h[kLn] = 3; }, {"tensor 'transformer.h.0.ln_1.weight': expected an object with dtype"}},
      {"dtype not a string", [](json& h) { h[kLn]["dtype"] = 32; }, {"tensor 'transformer.h.0.ln_1.weight': dtype is not a string"}},
      {"shape not an array", [](json& h) { h[kLn]["shape"] = 64; }, {"tensor 'transformer.h.0.ln_1.weight': shape is not an array"}},
      {"negative dimension", [](json& h) { h[kLn]["shape"] = json::array({-64}); },
       {"tensor 'transformer.h.0.ln_1.weight': shape has a non-integer or negative dimension"}},
      {"fractional dimension", [](json& h) { h[kLn]["shape"] = json::array({6.4}); }, {"shape has a non-integer or negative dimension"}},
      {"element count above 2^48", [](json& h) { h[kLn]["shape"] = json::array({1u << 30, 1u << 30}); },
       {"tensor 'transformer.h.0.ln_1.weight': shape is too large"}},
      {"data_offsets of one value", [](json& h) { h[kLn]["data_offsets"] = json::array({0}); },
       {"tensor 'transformer.h.0.ln_1.weight': data_offsets must be two non-negative integers"}},
      {"negative data_offsets", [](json& h) { h[kLn]["data_offsets"] = json::array({-4, 252}); },
       {"data_offsets must be two non-negative integers"}},
      {"byte range not shape x dtype", [](json& h) { h[kLn]["shape"] = json::array({32}); },
       {"tensor 'transformer.h.0.ln_1.weight': holds 256 bytes but shape and dtype need 128"}},
  };
  for (const auto& c : cases) {
    const fs::path d = copy_dir(kModels / "gpt2", "st");
    const fs::path p = d / "model.safetensors";
    StFile f(good);
    c.edit(f.header);
    write_file(p, f.bytes());
    std::vector<std::string> needles = c.needles;
    needles.push_back(p.string() + ": ");
    expect_message(error_of([&] { kt::SafetensorsFile sf(p.string()); }), needles, c.name);
    expect_message(error_of([&] { kt::Model::load(d.string()); }), needles, c.name + " (Model::load)");
  }
}

TEST(BadSafetensors, HeaderNotJsonOrNotAnObject) {
  const fs::path d = copy_dir(kModels / "gpt2", "st");
  const fs::path p = d / "model.safetensors";
  StFile f(slurp(p));
  write_file(p, StFile::with_header("{\"a\": [1, 2", f.data));
  expect_message(error_of([&] { kt::Model::load(d.string()); }), {p.string() + ": header is not valid JSON"});
  write_file(p, StFile::with_header("[1, 2, 3]", f.data));
  expect_message(error_of([&] { kt::Model::load(d.string()); }), {p.string() + ": header is not a JSON object"});
}

TEST(BadSafetensors, CheckpointDirectoryAndIndex) {
  const fs::path d = copy_dir(kModels / "gpt2", "idx");
  const std::string weights = slurp(d / "model.safetensors");
  fs::remove(d / "model.safetensors");
  // Neither a single file nor an index.
  expect_message(error_of([&] { kt::Model::load(d.string()); }),
                 {d.string() + ": no model.safetensors or model.safetensors.index.json found"});
  // Index cases (the tensors live in one shard that exists).
  write_file(d / "shard-1.safetensors", weights);
  const fs::path idx = d / "model.safetensors.index.json";
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {"{\"weight_map\": {", {idx.string() + ": not valid JSON"}},
      {"{\"metadata\": {}}", {idx.string() + ": weight_map: expected an object {tensor: file}"}},
      {"{\"weight_map\": [\"shard-1.safetensors\"]}", {idx.string() + ": weight_map: expected an object {tensor: file}"}},
      {"[]", {idx.string() + ": weight_map: expected an object"}},
      {"{\"weight_map\": {\"transformer.wte.weight\": 1}}", {idx.string() + ": weight_map['transformer.wte.weight'] is not a file name"}},
      {"{\"weight_map\": {\"transformer.wte.weight\": \"../gpt2/model.safetensors\"}}",
       {idx.string() + ": weight_map['transformer.wte.weight'] = '../gpt2/model.safetensors' is not a plain file name"}},
      {"{\"weight_map\": {\"transformer.wte.weight\": \"sub/shard-1.safetensors\"}}", {"is not a plain file name"}},
  };
  for (const auto& [text, needles] : cases) {
    write_file(idx, text);
    expect_message(error_of([&] { kt::SafetensorsCheckpoint ck(d.string()); }), needles, text);
    expect_message(error_of([&] { kt::Model::load(d.string()); }), needles, text + " (Model::load)");
  }
  // A good index loads (the base the cases above break).
  write_file(idx, "{\"weight_map\": {\"transformer.wte.weight\": \"shard-1.safetensors\"}}");
  EXPECT_NO_THROW(kt::Model::load(d.string()));
}

TEST(BadSafetensors, CheckpointFileIsADirectory) {
  const fs::path d = copy_dir(kModels / "gpt2", "dir");
  fs::remove(d / "model.safetensors");
  fs::create_directories(d / "model.safetensors");
  const std::string p = (d / "model.safetensors").string();
  expect_message(error_of([&] { kt::Model::load(d.string()); }), {p + ": not a regular file"});
}

// ====================================================== 4. GGUF file and model

namespace {
struct Raw {  // hand-built GGUF bytes (as test_gguf.cpp's Builder)
  std::string b = "GGUF";
  Raw(uint64_t n_tensors, uint64_t n_kv) {
    GgufWriter::u32(b, 3), GgufWriter::u64(b, n_tensors), GgufWriter::u64(b, n_kv);
  }
  Raw& u32(uint32_t v) { return GgufWriter::u32(b, v), *this; }
  Raw& u64(uint64_t v) { return GgufWriter::u64(b, v), *this; }
  Raw& str(const std::string& s) { return GgufWriter::str(b, s), *this; }
  Raw& pad(size_t n) { return b.resize(n, '\0'), *this; }
};
}  // namespace

TEST(BadGgufFile, ContainerCases) {
  const fs::path d = fresh_dir();
  struct G {
    std::string name;
    Raw raw;
    std::string needle;
  };
  std::vector<G> cases;
  cases.push_back({"alignment.gguf", Raw(0, 1).str("general.alignment").u32(8).str("thirty-two"),
                   "metadata key 'general.alignment' has type string, expected uint32"});
  // ne[0] = 2^63: not an int64.
  cases.push_back({"dim.gguf", Raw(1, 0).str("t").u32(1).u64(uint64_t(1) << 63).u32(0).u64(0).pad(256),
                   "tensor 't' dimension 0 is 9223372036854775808, larger than int64"});
  // A 0-dimensional Q8_0 tensor: 1 element, block size 32.
  cases.push_back({"q0d.gguf", Raw(1, 0).str("q").u32(0).u32(8).u64(0).pad(256),
                   "tensor 'q' of type Q8_0 has 1 elements, not a multiple of the block size 32"});
  // 2^62 F32 elements fit in int64, their 2^64 bytes do not.
  cases.push_back({"bytes.gguf", Raw(1, 0).str("big").u32(1).u64(uint64_t(1) << 62).u32(0).u64(0).pad(256),
                   "tensor 'big' shape [4611686018427387904] byte size overflows"});
  for (auto& c : cases) {
    const std::string p = write_file(d / c.name, c.raw.b);
    const std::string m = error_of([&] { kt::GgufFile f(p); });
    expect_message(m, {p + ": ", c.needle}, c.name);
  }
}

TEST(BadGgufFile, PathIsADirectory) {
  const fs::path d = fresh_dir() / "model.gguf";
  fs::create_directories(d);
  expect_message(error_of([&] { kt::GgufFile f(d.string()); }), {d.string() + ": not a regular file"});
}

TEST(BadGgufModel, MetadataAndTensorCases) {
  const fs::path d = fresh_dir();
  // The base file gets as far as the weights: it lacks blk.0.*.
  {
    const std::string p = tiny_gguf(d, "base.gguf");
    expect_message(gguf_load_error(p), {p + ": missing tensor 'blk.0.attn_norm.weight'"});
  }
  {  // a new row reads its own tensors: Gemma-3's q/k norms and sandwich norms
    const std::string p = tiny_gguf(d, "gemma3.gguf", [](GgufWriter& w) { w.tensor("blk.0.attn_norm.weight", {8}); },
                                    "gemma3");
    expect_message(gguf_load_error(p), {p + ": missing tensor 'blk.0.post_attention_norm.weight'"});
  }
  struct G {
    std::string name;
    std::string path;
    std::string needle;
  };
  const std::vector<G> cases = {
      {"architecture", tiny_gguf(d, "falcon.gguf", nullptr, "falcon"),
       "general.architecture 'falcon' is not supported for GGUF (supported: llama, qwen2, qwen3, gemma, gemma2, "
       "gemma3, olmo2, phi3)"},
      {"head counts", tiny_gguf(d, "heads.gguf", nullptr, "llama", 3),
       "attention.head_count 3 does not divide embedding_length 8 (and there is no attention.key_length)"},
      {"rope scaling type",
       tiny_gguf(d, "yarn.gguf", [](GgufWriter& w) { w.put_str("llama.rope.scaling.type", "yarn"); }),
       "rope.scaling.type 'yarn' is not supported (supported: none, linear)"},
      {"token_embd 1-D", tiny_gguf(d, "embd.gguf", nullptr, "llama", 2, false), "tensor 'token_embd.weight' must have 2 dimensions"},
      {"tokenizer model", tiny_gguf(d, "bert.gguf", nullptr, "llama", 2, true, {{"tokenizer.ggml.model", "bert"}}),
       "tokenizer.ggml.model 'bert' is not supported (supported: gpt2 = byte-level BPE, llama = SentencePiece with scores)"},
      {"SentencePiece without scores", tiny_gguf(d, "spm.gguf", nullptr, "llama", 2, true, {{"tokenizer.ggml.model", "llama"}}),
       "metadata key 'tokenizer.ggml.scores' missing"},
      {"scores of the wrong length",
       tiny_gguf(d, "scores.gguf", [](GgufWriter& w) { w.put_f32s("tokenizer.ggml.scores", {0.0f, -1.0f, -2.0f}); },
                 "llama", 2, true, {{"tokenizer.ggml.model", "llama"}}),
       "tokenizer.ggml.scores: expected " + std::to_string(fixture_vocab().first.size()) +
           " entries (one per tokenizer.ggml.tokens entry), got 3"},
      {"token types of the wrong length",
       tiny_gguf(d, "types.gguf", [](GgufWriter& w) { w.put_i32s("tokenizer.ggml.token_type", {1, 1}); }),
       "tokenizer.ggml.token_type: expected " + std::to_string(fixture_vocab().first.size()) +
           " entries (one per tokenizer.ggml.tokens entry), got 2"},
      {"tokenizer pre", tiny_gguf(d, "pre.gguf", nullptr, "llama", 2, true, {{"tokenizer.ggml.pre", "falcon"}}),
       "tokenizer.ggml.pre 'falcon' is not supported (supported: smollm, llama-bpe, qwen2, gpt-2, default)"},
  };
  for (const auto& c : cases) expect_message(gguf_load_error(c.path), {c.path + ": " + c.needle}, c.name);
}

// Known bug (reviewer 2, note N2): gguf_bpe_spec never sets BpeSpec::source.
TEST(BadGgufModel, TokenizerErrorsNameTheGgufFile) {
  const fs::path d = fresh_dir();
  const size_t n = fixture_vocab().first.size();
  const std::string p = tiny_gguf(d, "bos.gguf", [&](GgufWriter& w) {
    w.put_u32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(n + 5));
  });
  const std::string m = gguf_load_error(p);
  expect_message(m, {"bos_id: id " + std::to_string(n + 5) + " is out of range (" + std::to_string(n) + " tokens)"});
  EXPECT_TRUE(starts_with(m, p + ": ")) << m;
}

// =================================================== 6-7. tokenizers

TEST(BadTokenizerJson, EachFieldBrokenAlone) {
  const json special = {{"<|endoftext|>", {{"id", "<|endoftext|>"}, {"ids", {0}}, {"tokens", {"<|endoftext|>"}}}}};
  const std::vector<Case> cases = {
      {"model without type and merges",
       [](json& j) {
         j["model"].erase("type");
         j["model"].erase("merges");
       },
       {"model.type: missing"}},
      {"continuing_subword_prefix", [](json& j) { j["model"]["continuing_subword_prefix"] = "##"; },
       {"model.continuing_subword_prefix: not supported (decoder-only models' BPE has none)"}},
      {"end_of_word_suffix", [](json& j) { j["model"]["end_of_word_suffix"] = "</w>"; },
       {"model.end_of_word_suffix: not supported (decoder-only models' BPE has none)"}},
      {"two tokens with one id", [](json& j) { j["model"]["vocab"]["zzzz"] = 5; }, {"model.vocab[\"", "\"]: id 5 is also used by \""}},
      {"unk_token not in vocab", [](json& j) { j["model"]["unk_token"] = "<unk>"; }, {"model.unk_token: \"<unk>\" is not in model.vocab"}},
      {"merged token not in vocab", [](json& j) { j["model"]["merges"].push_back(json::array({"h", "\xC4\xA0"})); },
       {"model.merges[", "merged token \"h\xC4\xA0\" is not in the vocabulary"}},
      {"split pattern neither Regex nor String",
       [](json& j) {
         j["pre_tokenizer"] = {{"type", "Sequence"},
                               {"pretokenizers", {{{"type", "Split"}, {"pattern", {{"Glob", "*"}}}, {"behavior", "Isolated"}},
                                                  j["pre_tokenizer"]}}};
       },
       {"pre_tokenizer.pretokenizers[0].pattern: expected {\"Regex\": ...} or {\"String\": ...}"}},
      {"empty String pattern",
       [](json& j) {
         j["pre_tokenizer"] = {{"type", "Sequence"},
                               {"pretokenizers", {{{"type", "Split"}, {"pattern", {{"String", ""}}}, {"behavior", "Isolated"}},
                                                  j["pre_tokenizer"]}}};
       },
       {"pre_tokenizer.pretokenizers[0].pattern.String: empty pattern"}},
      {"unknown split behavior",
       [](json& j) {
         j["pre_tokenizer"] = {{"type", "Sequence"},
                               {"pretokenizers", {{{"type", "Split"}, {"pattern", {{"Regex", " "}}}, {"behavior", "Sideways"}},
                                                  j["pre_tokenizer"]}}};
       },
       {"pre_tokenizer.pretokenizers[0].behavior: unknown split behavior \"Sideways\""}},
      {"unsupported normalizer in a sequence",
       [](json& j) { j["normalizer"] = {{"type", "Sequence"}, {"normalizers", {{{"type", "NFC"}}, {{"type", "Lowercase"}}}}}; },
       {"normalizer.normalizers[1].type: unsupported normalizer \"Lowercase\" (supported: NFC, NFKC, Prepend, Replace, Sequence)"}},
      {"template token not in special_tokens",
       [](json& j) {
         j["post_processor"] = {{"type", "TemplateProcessing"},
                                {"single", {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
                                {"pair", json::array()},
                                {"special_tokens", json::object()}};
       },
       {"post_processor.single[0].SpecialToken.id: \"<s>\" is not in special_tokens"}},
      {"template without $A",
       [&](json& j) {
         j["post_processor"] = {{"type", "TemplateProcessing"},
                                {"single", {{{"SpecialToken", {{"id", "<|endoftext|>"}, {"type_id", 0}}}}}},
                                {"pair", json::array()},
                                {"special_tokens", special}};
       },
       {"post_processor.single: no $A sequence in the template"}},
      {"Roberta cls a string",
       [](json& j) { j["post_processor"] = {{"type", "RobertaProcessing"}, {"cls", "<s>"}, {"sep", {"<|endoftext|>", 0}}}; },
       {"post_processor.cls: expected [token, id], got a string"}},
      {"Bert sep of three values",
       [](json& j) { j["post_processor"] = {{"type", "BertProcessing"}, {"cls", {"<|endoftext|>", 0}}, {"sep", {"a", 0, 1}}}; },
       {"post_processor.sep: expected [token, id], got an array"}},
  };
  for (const auto& c : cases) {
    const fs::path d = copy_dir(kTokGpt2, "tok");
    const fs::path p = d / "tokenizer.json";
    json j = read_json(p);
    c.edit(j);
    write_file(p, j.dump());
    std::vector<std::string> needles = c.needles;
    needles.push_back(p.string() + ": ");
    expect_message(error_of([&] { kt::Tokenizer::from_hf_dir(d.string()); }), needles, c.name);
  }
}

// Not a rejection class but the base the split-pattern cases break: a valid
// {"String": ...} split pattern must load. Bug: src/tokenizer/regex.cpp
// compiles literal patterns with PCRE2_LITERAL | PCRE2_UCP, which PCRE2
// refuses ("invalid option bits with PCRE2_LITERAL"), so every String split
// pattern is rejected.
TEST(BadTokenizerJson, StringSplitPatternLoads) {
  const fs::path d = copy_dir(kTokGpt2, "tok");
  const fs::path p = d / "tokenizer.json";
  json j = read_json(p);
  j["pre_tokenizer"] = {{"type", "Sequence"},
                        {"pretokenizers", {{{"type", "Split"}, {"pattern", {{"String", "-"}}}, {"behavior", "Isolated"}},
                                           j["pre_tokenizer"]}}};
  write_file(p, j.dump());
  try {
    const kt::Tokenizer t = kt::Tokenizer::from_hf_dir(d.string());
    EXPECT_FALSE(t.encode("a-b").ids.empty());
  } catch (const kt::Error& e) {
    FAIL() << "a valid Split pre-tokenizer {\"String\": \"-\"} is rejected: " << e.what();
  }
}

TEST(BadTokenizerJson, TokenizerConfigTopLevelNotAnObject) {
  const fs::path d = copy_dir(kTokGpt2, "tok");
  const std::string cfg = write_file(d / "tokenizer_config.json", "[\"<|endoftext|>\"]");
  expect_message(error_of([&] { kt::Tokenizer::from_hf_dir(d.string()); }),
                 {cfg + ": (top level): expected an object, got an array"});
}

TEST(BadBpeSpec, EmptyVocabularyAndTokenTypes) {
  kt::BpeSpec s;
  s.source = "m.gguf";
  expect_message(error_of([&] { kt::Tokenizer::from_spec(s); }), {"m.gguf: tokens: the vocabulary is empty"});
  s.tokens = {"a", "b", "ab"};
  s.merges = {"a b"};
  s.token_types = {1, 1};
  expect_message(error_of([&] { kt::Tokenizer::from_spec(s); }), {"m.gguf: token_types: expected 3 entries, got 2"});
  s.token_types = {1, 1, 1};
  s.merges = {"a c"};
  expect_message(error_of([&] { kt::Tokenizer::from_spec(s); }), {"m.gguf: merges[0]: \"c\" is not in the vocabulary"});
  s.merges = {"b a"};
  expect_message(error_of([&] { kt::Tokenizer::from_spec(s); }), {"m.gguf: merges[0]: merged token \"ba\" is not in the vocabulary"});
}

// =================================================== 8. data sets

TEST(BadDataset, RecordReasons) {
  const std::string text = R"([
    {"known_id": "seven", "prompt": "A is in", "subject": "A", "attribute": "B"},
    {"known_id": 1, "prompt": "", "subject": "A", "attribute": "B"},
    {"known_id": 2, "prompt": "A is in", "subject": "", "attribute": "B"},
    {"known_id": 3, "prompt": "A is in", "subject": "A", "attribute": "B"}
  ])";
  const kt::Dataset d = kt::parse_dataset(text, "facts.json");
  ASSERT_EQ(d.facts.size(), 1u);
  EXPECT_EQ(d.facts[0].id, "3");
  ASSERT_EQ(d.errors.size(), 3u);
  expect_message(d.errors[0].message, {"facts.json: record 0 (id #0): 'known_id' is not an integer"});
  expect_message(d.errors[1].message, {"facts.json: record 1 (id 1): 'prompt' is empty"});
  expect_message(d.errors[2].message, {"facts.json: record 2 (id 2): 'subject' is empty"});
  for (const auto& e : d.errors) EXPECT_EQ(e.stage, "data");
}

TEST(BadDataset, FileMissing) {
  const std::string p = (fresh_dir() / "nope.json").string();
  expect_message(error_of([&] { kt::load_dataset_file(p); }), {p + ": data set file not found"});
}

TEST(BadDataset, Known1000ContentChecks) {
  const fs::path d = fresh_dir();
  const std::string p = (d / "known_1000.json").string();
  expect_message(error_of([&] { kt::check_known_1000("[{\"known_id\": 0,", p); }),
                 {p + ": not valid JSON, so not known_1000", "get it from"});
  json good = json::array();
  for (int i = 0; i < 1209; ++i)
    good.push_back({{"known_id", i}, {"subject", "s"}, {"attribute", "a"}, {"template", "{} is"}, {"prediction", "p"},
                    {"prompt", "s is"}, {"relation_id", "P1"}});
  EXPECT_NO_THROW(kt::check_known_1000(good.dump(), p));
  json bad_id = good;
  bad_id[7]["known_id"] = 8;
  expect_message(error_of([&] { kt::check_known_1000(bad_id.dump(), p); }), {p + ": record 7 should have known_id 7", "get it from"});
  json no_field = good;
  no_field[12].erase("prediction");
  expect_message(error_of([&] { kt::check_known_1000(no_field.dump(), p); }),
                 {p + ": record 12 has no string 'prediction'", "get it from"});
  json not_string = good;
  not_string[3]["subject"] = 5;
  expect_message(error_of([&] { kt::check_known_1000(not_string.dump(), p); }), {p + ": record 3 has no string 'subject'"});
}

TEST(BadDataset, DownloadWithNowhereToPutIt) {
  std::map<std::string, std::optional<std::string>> saved;
  for (const char* k : {"KNOWTRACE_DATA_DIR", "HOME", "XDG_CACHE_HOME"}) {
    const char* v = std::getenv(k);
    saved[k] = v ? std::optional<std::string>(v) : std::nullopt;
    ::unsetenv(k);
  }
  const std::string m = error_of([] { kt::download_known_1000(); });
  for (const auto& [k, v] : saved)
    if (v) ::setenv(k.c_str(), v->c_str(), 1);
  expect_message(m, {"known_1000: set KNOWTRACE_DATA_DIR to the folder to download into"});
}

// =================================================== 9. YAML config

TEST(BadYamlConfig, FileCases) {
  const fs::path d = fresh_dir();
  const std::string missing = (d / "nope.yaml").string();
  expect_message(error_of([&] { kt::load_config(missing); }), {missing + ": config file not found"});
  fs::create_directories(d / "dir.yaml");
  const std::string dir = (d / "dir.yaml").string();
  expect_message(error_of([&] { kt::load_config(dir); }), {dir + ": is a directory, not a YAML config file"});
  const std::string empty = write_file(d / "empty.yaml", "# nothing here\n");
  expect_message(error_of([&] { kt::load_config(empty); }), {empty + ": the config is empty (it needs at least 'model')"});
}

TEST(BadYamlConfig, StructureAndValueCases) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"- model: m\n- samples: 3\n", "cfg.yaml:1: the config must be a mapping of keys to values"},
      {"just text\n", "the config must be a mapping of keys to values"},
      {"model: m\n[a, b]: 3\n", "cfg.yaml:2: keys must be plain names"},
      {"model: \"\"\n", "cfg.yaml:1: key 'model': must not be empty"},
      {"model: m\ndataset: ''\n", "cfg.yaml:2: key 'dataset': must not be empty"},
      {"model: m\nmediators: [hidden, [mlp, attn]]\n", "cfg.yaml:2: key 'mediators': expected a list of strings, got a nested list"},
      {"model: m\nformats:\n  - png\n  - {a: b}\n", "cfg.yaml:2: key 'formats': expected a list of strings, got a nested mapping"},
      {"model: m\nembed_name: transformer.h.[LAYER_NUM].wte\n",
       "cfg.yaml:2: key 'embed_name': 'transformer.h.[LAYER_NUM].wte' names one module: it takes no [LAYER_NUM]"},
      {"model: m\nmediators: []\n",
       "cfg.yaml:2: key 'mediators': needs at least one mediator (hidden, hidden_attn_severed, hidden_mlp_severed, mlp, attn, knockout_subject, knockout_nonsubject, knockout_last)"},
      {"model: m\nfacts: [12, \"a/b\"]\n", "cfg.yaml:2: key 'facts': fact id 'a/b' may only hold letters, digits, '_', '-' and '.'"},
      {"model: m\nstages: []\n", "cfg.yaml:2: key 'stages': no stage given (valid: filter, trace, aggregate, plot)"},
      // Keys no other test gives a bad value.
      {"model: m\nlayer_name: transformer.h\n",
       "cfg.yaml:2: key 'layer_name': 'transformer.h' needs the [LAYER_NUM] placeholder, e.g. model.layers.[LAYER_NUM]"},
      {"model: m\nseed: 4294967296\n", "cfg.yaml:2: key 'seed': 4294967296 is out of range [0, 4294967295]"},
      {"model: m\nseed: -1\n", "cfg.yaml:2: key 'seed': -1 is out of range [0, 4294967295]"},
      {"model: m\naverage: prompts\n", "cfg.yaml:2: key 'average': 'prompts' is not one of tokens, facts"},
      {"model: m\nresults: \"\"\n", "cfg.yaml:2: key 'results': must not be empty"},
      {"model: m\nresults: [a, b]\n", "cfg.yaml:2: key 'results': expected a string, got a list"},
      {"model: m\nlimit: -5\n", "cfg.yaml:2: key 'limit': -5 is out of range [0, 1099511627776]"},
      {"model: m\nlimit: ten\n", "cfg.yaml:2: key 'limit': expected an integer, got 'ten'"},
      {"model: m\nsave_states: maybe\n", "cfg.yaml:2: key 'save_states': expected true or false, got 'maybe'"},
      {"model: m\nmax_batch_tokens: 2000000000000\n", "cfg.yaml:2: key 'max_batch_tokens': 2000000000000 is out of range [0, 1099511627776]"},
  };
  for (const auto& [yaml, needle] : cases)
    expect_message(error_of([&] { kt::parse_config(yaml, "cfg.yaml"); }), {needle}, yaml);
}

// =================================================== 10. command line

TEST(BadCommandLine, RunFlags) {
  if (!have_binary()) GTEST_SKIP() << kBin << " not built";
  const fs::path cwd = fresh_dir();
  const std::string out = (cwd / "out").string();
  // Every case also names a results folder and the aggregate stage alone, so
  // that a flag wrongly accepted gives another error instead of a long run.
  auto run = [&](std::vector<std::string> flags) {
    std::vector<std::string> a = {"run", kPipelineConfig};
    a.insert(a.end(), flags.begin(), flags.end());
    return run_cli(a, cwd);
  };
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--results", out, "--shard", "2/2"}, "--shard '2/2': expected i/n with 0 <= i < n, e.g. 0/4"},
      {{"--results", out, "--shard", "x"}, "--shard 'x': expected i/n with 0 <= i < n, e.g. 0/4"},
      {{"--results", out, "--shard", "1/0"}, "--shard '1/0': expected i/n with 0 <= i < n"},
      {{"--results", out, "--shard", "-1/2"}, "expected i/n with 0 <= i < n"},
      {{"--results", out, "--stages", "aggregate", "--device", "gpu"}, "--device: key 'device': 'gpu' is not a device (cpu, cuda, cuda:N)"},
      {{"--results", out, "--stages", "aggregate", "--dtype", "int8"}, "--dtype: key 'dtype': dtype 'int8' is not one of float32 (fp32, f32, float)"},
      {{"--results", out, "--stages", "aggreggate"}, "--stages: key 'stages': unknown stage 'aggreggate'"},
      {{"--results", out, "--stages", "aggregate", "--limit", "-3"}, "--limit: key 'limit': -3 is out of range [0, "},
      {{"--results", "", "--stages", "aggregate"}, "--results: key 'results': must not be empty"},
  };
  for (const auto& [flags, needle] : cases) {
    std::string label = "run";
    for (const auto& f : flags) label += " " + f;
    expect_cli_error(run(flags), {needle}, label);
  }
  EXPECT_FALSE(fs::exists(cwd / "results")) << "a rejected run wrote results/";
}

TEST(BadCommandLine, ModelCommandFlags) {
  if (!have_binary()) GTEST_SKIP() << kBin << " not built";
  const fs::path cwd = fresh_dir();
  const std::string model = (kModels / "gpt2").string();
  std::string long_prompt;
  for (int i = 0; i < 200; ++i) long_prompt += " Paris";
  const std::vector<std::pair<std::vector<std::string>, std::vector<std::string>>> cases = {
      {{"predict", "--model", model, "--prompt", "The", "--dtype", "int8"}, {"dtype 'int8' is not one of float32 (fp32, f32, float), bfloat16 (bf16), float16 (fp16, f16, half)"}},
      {{"inspect", "--model", model, "--dtype", "fp64"}, {"dtype 'fp64' is not one of float32 (fp32, f32, float), bfloat16 (bf16), float16 (fp16, f16, half)"}},
      {{"predict", "--model", model, "--prompt", "The", "--device", "tpu"}, {"device 'tpu' is not one of cpu, cuda, cuda:N"}},
      {{"predict", "--model", model, "--prompt", "The", "--top-k", "0"}, {"--top-k must be at least 1 (got 0)"}},
      {{"predict", "--model", model, "--prompt", ""}, {"--prompt: the prompt encodes to no tokens"}},
      {{"predict", "--model", model, "--prompt", long_prompt}, {"input has ", " tokens, more than the model's context of 128"}},
      {{"trace", "--model", model, "--prompt", "The Eiffel Tower is in", "--subject", "Eiffel", "--engine", "turbo"},
       {"engine 'turbo' is not one of fast, reference"}},
      {{"predict", "--model", (cwd / "nowhere").string(), "--prompt", "x"}, {(cwd / "nowhere").string() + ": no such file or directory"}},
  };
  for (const auto& [args, needles] : cases) {
    std::string label;
    for (const auto& a : args) label += (a.size() > 40 ? a.substr(0, 40) + "..." : a) + " ";
    expect_cli_error(run_cli(args, cwd), needles, label);
  }
  expect_cli_error(run_cli({"predict", "--model", model, "--prompt", "The"}, cwd, "env KNOWTRACE_BF16_GEMM=fast"),
                   {"KNOWTRACE_BF16_GEMM=fast: expected native or fp32"}, "KNOWTRACE_BF16_GEMM=fast");
  if (!at::hasCUDA()) {
    expect_cli_error(run_cli({"predict", "--model", model, "--prompt", "The", "--device", "cuda"}, cwd),
                     {"device 'cuda' requested but this build of libtorch has no CUDA device available"}, "--device cuda");
  }
  // CLI11's own errors: not exit 0 and not 1, and the message names the option.
  const CliResult missing = run_cli({"predict", "--prompt", "x"}, cwd);
  EXPECT_NE(missing.rc, 0);
  EXPECT_NE(missing.err.find("--model"), std::string::npos) << missing.err;
  const CliResult unknown = run_cli({"predict", "--model", model, "--prompt", "x", "--top-q", "3"}, cwd);
  EXPECT_NE(unknown.rc, 0);
  EXPECT_NE(unknown.err.find("--top-q"), std::string::npos) << unknown.err;
  const CliResult nan = run_cli({"predict", "--model", model, "--prompt", "x", "--top-k", "many"}, cwd);
  EXPECT_NE(nan.rc, 0);
  EXPECT_NE(nan.err.find("--top-k"), std::string::npos) << nan.err;
}

// Known bug (reviewer 4, note N5): `trace --noise s0/u0` was accepted while
// the YAML config rejects them.
TEST(BadCommandLine, TraceNoiseZeroMultiple) {
  if (!have_binary()) GTEST_SKIP() << kBin << " not built";
  const fs::path cwd = fresh_dir();
  const std::string model = (kModels / "gpt2").string();
  EXPECT_NE(error_of([] { kt::parse_config("model: m\nnoise: s0\n", "cfg.yaml"); }).find("key 'noise': 's0' is not a noise level"),
            std::string::npos);
  for (const std::string noise : {"s0", "u0"}) {
    const CliResult r = run_cli({"trace", "--model", model, "--prompt", "The Eiffel Tower is located in the city of", "--subject",
                                 "The Eiffel Tower", "--samples", "1", "--mediators", "hidden", "--noise", noise},
                                cwd);
    expect_cli_error(r, {"noise '" + noise + "': expected a non-negative number"}, "--noise " + noise);
  }
}

// The one-fact command as `run` and ROME's notebook: s<k> measured on a data
// set's subjects (printed and stored), "s" = s1, a window wider than the
// model clipped with a note, comma lists, heatmaps beside the .npz files.
TEST(TraceCommand, NoiseFromADataSetAndHeatmapsBesideTheFiles) {
  if (!have_binary()) GTEST_SKIP() << kBin << " not built";
  const fs::path cwd = fresh_dir();
  const std::string model = (kModels / "gpt2").string();
  const std::string facts = kSrc + "/tests/fixtures/pipeline/facts.json";
  const CliResult v = run_cli({"--version"}, cwd);
  EXPECT_EQ(v.rc, 0);
  EXPECT_EQ(v.out, std::string("knowtrace ") + kt::kKnowtraceVersion + "\n");
  const CliResult r = run_cli({"trace", "--model", model, "--prompt", "The Eiffel Tower is located in the city of",
                               "--subject", "The Eiffel Tower", "--samples", "2", "--mediators", "hidden,mlp", "--noise",
                               "s", "--window", "7", "--noise-subjects", facts, "--out", (cwd / "out").string(),
                               "--formats", "png", "--json"},
                              cwd);
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.err.find("note: --window 7 is more than the model's 3 layers: using 3"), std::string::npos) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  auto m = kt::Model::load(model);
  std::vector<std::string> subjects;
  for (const auto& f : kt::load_dataset_file(facts).facts) subjects.push_back(f.subject);
  EXPECT_NEAR(j["noise_level"].get<double>(), kt::subject_embedding_std(*m, subjects), 1e-12);
  EXPECT_EQ(j["noise_source"].get<std::string>(), facts + ": " + std::to_string(subjects.size()) + " subjects");
  EXPECT_EQ(j["scores"].size(), 2u);
  for (const char* f : {"fact_hidden.npz", "fact_mlp.npz", "fact_hidden.png", "fact_mlp.png"})
    EXPECT_TRUE(fs::exists(cwd / "out" / f)) << f;
  const kt::TraceRecord rec = kt::read_trace_file((cwd / "out" / "fact_mlp.npz").string(), "fact");
  EXPECT_EQ(rec.window, 3);
  EXPECT_EQ(rec.noise_source, j["noise_source"].get<std::string>());
  EXPECT_EQ(rec.correct_rule, "none");  // no --expect: not checked, as ROME with expect=None
  // Without --noise-subjects and without known_1000: the bundled facts.
  const CliResult d = run_cli({"trace", "--model", model, "--prompt", "The Eiffel Tower is located in the city of",
                               "--subject", "The Eiffel Tower", "--samples", "1", "--mediators", "hidden", "--json"},
                              cwd, "KNOWTRACE_DATA_DIR=" + cwd.string() + " XDG_CACHE_HOME=" + cwd.string());
  ASSERT_EQ(d.rc, 0) << d.err;
  EXPECT_NE(nlohmann::json::parse(d.out)["noise_source"].get<std::string>().find("facts_default.json: 167 subjects"),
            std::string::npos) << d.out;
  expect_cli_error(run_cli({"trace", "--model", model, "--prompt", "The Eiffel Tower is in", "--subject", "Eiffel",
                            "--noise-subjects", "nowhere.json"},
                           cwd),
                   {"--noise-subjects: 'nowhere.json' not found (a data set file, known_1000 or default)"}, "subjects");
}

// =================================================== 11-12. noise and trace inputs

TEST(BadTraceInputs, NoiseSubjectsAndRanges) {
  auto model = kt::Model::load((kModels / "gpt2").string());
  expect_message(error_of([&] { kt::subject_embedding_std(*model, {}); }),
                 {"noise s<k>: no subjects to measure the embedding std from"});
  const std::string prompt = "The Eiffel Tower is located in the city of";
  const kt::Encoding enc = model->tokenizer().encode(prompt);
  expect_message(error_of([&] { kt::subject_token_range(enc, prompt, ""); }), {"subject is empty"});
  expect_message(error_of([&] { kt::rome_token_range(model->tokenizer(), enc.ids, "Louvre"); }),
                 {"subject 'Louvre' not found in decoded tokens"});
  for (const std::string bad : {"s-1", "sx", "-0.5", ""})
    expect_message(error_of([&] { kt::parse_noise(bad); }), {"noise '" + bad + "': expected a non-negative number"}, bad);
  // s0 and u0 are no noise under another name (the YAML config refuses them too).
  for (const std::string zero : {"s0", "u0"})
    expect_message(error_of([&] { kt::parse_noise(zero); }), {"noise '" + zero + "': expected a non-negative number"}, zero);
}

// =================================================== 13. stored results

TEST(BadStoredResults, ChecksummedFile) {
  const fs::path d = fresh_dir();
  const std::string p = (d / "summary.json").string();
  kt::write_file_checked(p, "{\"format\": \"knowtrace-aie-summary\"}\n");
  EXPECT_EQ(kt::read_file_checked(p), "{\"format\": \"knowtrace-aie-summary\"}\n");
  write_file(p, "{\"format\": \"knowtrace-aie-summarY\"}\n");  // same length, one byte changed
  expect_message(error_of([&] { kt::read_file_checked(p); }),
                 {p + ": checksum mismatch (stored '", "): the file is truncated or corrupt"});
  write_file(p, "{\"format\"");  // truncated
  expect_message(error_of([&] { kt::read_file_checked(p); }), {p + ": checksum mismatch"});
  fs::remove(p + ".crc32");
  expect_message(error_of([&] { kt::read_file_checked(p); }),
                 {p + ": its checksum file summary.json.crc32 is missing (written by another tool, or the writer was killed)"});
}

namespace {
// One shard of the tiny pipeline run (filter stage only), made once.
const fs::path& shard_dir() {
  static const fs::path dir = [] {
    kt::RunConfig c = kt::load_config(kPipelineConfig);
    c.results = (temp_root() / "shared" / "run").string();
    c.stages = {"filter"};
    kt::RunOptions o;
    o.progress = false;
    o.shard_index = 0;
    o.shard_count = 2;
    kt::RunReport r = kt::run_pipeline(c, o);
    return fs::path(r.dir);
  }();
  return dir;
}
}  // namespace

TEST(BadStoredResults, RunDirectoryFiles) {
  const fs::path& shard = shard_dir();
  ASSERT_TRUE(fs::exists(shard / "run.json")) << shard;
  ASSERT_TRUE(fs::exists(shard / "run.json.crc32")) << shard;
  const fs::path d = fresh_dir("copy");
  fs::copy(shard, d, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  const std::string rj = (d / "run.json").string();
  const std::string good = slurp(rj);
  auto plot_error = [&] {
    kt::RunOptions o;
    o.progress = false;
    return error_of([&] { kt::replot(d.string(), o); });
  };
  // Edited by hand (checksum no longer matches), checksum file deleted.
  write_file(rj, good + " ");
  expect_message(plot_error(), {rj + ": checksum mismatch"});
  write_file(rj, good);
  fs::remove(rj + ".crc32");
  expect_message(plot_error(), {rj + ": its checksum file run.json.crc32 is missing"});
  // Checksummed but not what a run writes.
  kt::write_file_checked(rj, "{\"config\": ");
  expect_message(plot_error(), {rj + ": not valid JSON ("});
  kt::write_file_checked(rj, "{\"config\": {}}");
  expect_message(plot_error(), {rj + ": has no 'config' or 'fingerprint'"});
  json j = json::parse(good);
  j["config"]["samples"] = "ten";
  kt::write_file_checked(rj, j.dump());
  expect_message(plot_error(), {rj + ": config: "});
  kt::write_file_checked(rj, good);
  // filter.jsonl: a line that is not a verdict (checksum intact), then none.
  const std::string fj = (d / "filter.jsonl").string();
  ASSERT_TRUE(fs::exists(fj));
  kt::write_file_checked(fj, "{\"id\": \"0\", \"prompt\": 3}\n");
  expect_message(plot_error(), {fj + ":1: not a filter verdict ("});
  fs::remove(fj);
  fs::remove(fj + ".crc32");
  expect_message(plot_error(), {d.string() + ": no filter.jsonl: run the filter and trace stages first (knowtrace run CONFIG)"});
}

TEST(BadStoredResults, MergeOfBadDirectories) {
  if (!have_binary()) GTEST_SKIP() << kBin << " not built";
  const fs::path& shard = shard_dir();
  const fs::path cwd = fresh_dir();
  const std::string into = (cwd / "merged").string();
  // Not a results directory.
  fs::create_directories(cwd / "plain");
  const std::string plain = (cwd / "plain").string();
  expect_cli_error(run_cli({"merge", plain, "--into", into}, cwd),
                   {plain + ": no run.json: not a knowtrace results directory"}, "merge plain");
  // The same shard twice, and a copy of one shard beside it.
  expect_cli_error(run_cli({"merge", shard.string(), shard.string(), "--into", into}, cwd),
                   {"merge: " + shard.string() + " is given twice"}, "merge A A");
  const fs::path copy = cwd / "copy-of-shard-0";
  fs::copy(shard, copy, fs::copy_options::recursive);
  expect_cli_error(run_cli({"merge", shard.string(), copy.string(), "--into", into}, cwd),
                   {"merge: shard 0/2 is given twice (" + copy.string() + ")"}, "merge A copy-of-A");
  // A shard whose run.json checksum does not match.
  write_file(copy / "run.json", slurp(copy / "run.json") + "\n");
  expect_cli_error(run_cli({"merge", copy.string(), "--into", into}, cwd),
                   {(copy / "run.json").string() + ": checksum mismatch"}, "merge corrupt");
  fs::remove(copy / "run.json.crc32");
  expect_cli_error(run_cli({"merge", copy.string(), "--into", into}, cwd),
                   {(copy / "run.json").string() + ": its checksum file run.json.crc32 is missing"}, "merge no checksum");
  // `plot` of a directory that is not a results directory.
  expect_cli_error(run_cli({"plot", plain}, cwd), {plain + ": no run.json: not a knowtrace results directory"}, "plot plain");
  EXPECT_FALSE(fs::exists(into)) << "a refused merge created --into";
}

// =================================================== 14. .npz / .npy container

namespace {

uint16_t get16(const std::string& b, size_t at) { return uint8_t(b[at]) | uint16_t(uint8_t(b[at + 1])) << 8; }
uint32_t get32(const std::string& b, size_t at) { return get16(b, at) | uint32_t(get16(b, at + 2)) << 16; }
uint64_t get64(const std::string& b, size_t at) { return get32(b, at) | uint64_t(get32(b, at + 4)) << 32; }
void set16(std::string& b, size_t at, uint16_t v) {
  for (int i = 0; i < 2; ++i) b[at + i] = char(v >> (8 * i));
}
void set32(std::string& b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + i] = char(v >> (8 * i));
}
void set64(std::string& b, size_t at, uint64_t v) {
  for (int i = 0; i < 8; ++i) b[at + i] = char(v >> (8 * i));
}
std::string le16(uint16_t v) {
  std::string s(2, '\0');
  set16(s, 0, v);
  return s;
}
std::string le32(uint32_t v) {
  std::string s(4, '\0');
  set32(s, 0, v);
  return s;
}

uint32_t crc32_of(const std::string& s) {
  uint32_t c = 0xFFFFFFFFu;
  for (unsigned char ch : s) {
    c ^= ch;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
  }
  return ~c;
}

// The bytes of a small npz written by kt::write_npz (arrays "a" and, with
// `two`, "b": float32 [3]), and where its zip structures lie.
struct NpzBytes {
  std::string b;
  size_t eocd = 0;  // end-of-central-directory record
  size_t cd = 0;    // first central directory entry
  explicit NpzBytes(const fs::path& dir, bool two = false, bool zip64 = false) {
    const std::string p = (dir / "good.npz").string();
    std::vector<std::pair<std::string, kt::NpyArray>> a = {{"a", kt::NpyArray::from_f32({1, 2, 3})}};
    if (two) a.emplace_back("b", kt::NpyArray::from_f32({4, 5, 6}));
    kt::NpzWriteOptions o;
    o.force_zip64 = zip64;
    kt::write_npz(p, a, o);
    b = slurp(p);
    eocd = b.size() - 22;
    cd = zip64 ? get64(b, eocd - 20 - 56 + 48) : get32(b, eocd + 16);
  }
  size_t cd_entry(size_t i) const {  // offset of central entry i
    size_t at = cd;
    for (size_t k = 0; k < i; ++k) at += 46 + get16(b, at + 28) + get16(b, at + 30) + get16(b, at + 32);
    return at;
  }
};

// A one-member zip, every header field given: `data` is what the file holds
// for the member (stored bytes or a deflate stream).
std::string one_member_zip(const std::string& name, uint16_t method, uint32_t crc, uint32_t csize, uint32_t usize,
                           const std::string& data) {
  std::string local = le32(0x04034b50) + le16(20) + le16(0) + le16(method) + le16(0) + le16(33) + le32(crc) +
                      le32(csize) + le32(usize) + le16(uint16_t(name.size())) + le16(0) + name + data;
  std::string cd = le32(0x02014b50) + le16(20) + le16(20) + le16(0) + le16(method) + le16(0) + le16(33) + le32(crc) +
                   le32(csize) + le32(usize) + le16(uint16_t(name.size())) + le16(0) + le16(0) + le16(0) + le16(0) +
                   le32(0) + le32(0) + name;
  std::string end = le32(0x06054b50) + le16(0) + le16(0) + le16(1) + le16(1) + le32(uint32_t(cd.size())) +
                    le32(uint32_t(local.size())) + le16(0);
  return local + cd + end;
}

// A raw deflate stream of one final stored block holding `s`.
std::string deflate_stored(const std::string& s) {
  return std::string(1, '\x01') + le16(uint16_t(s.size())) + le16(uint16_t(~s.size())) + s;
}

// A .npy file with the header dict `dict` (padded as numpy does) and `payload`.
std::string npy_with_header(std::string dict, const std::string& payload = "") {
  while ((10 + dict.size() + 1) % 64 != 0) dict += ' ';
  dict += '\n';
  return std::string("\x93NUMPY\x01\x00", 8) + le16(uint16_t(dict.size())) + dict + payload;
}

std::string npz_error(const std::string& path) {
  return error_of([&] { kt::read_npz(path); });
}

}  // namespace

TEST(BadNpzContainer, CentralDirectoryAndZip64Records) {
  const fs::path d = fresh_dir();
  {  // a name length that runs past the central directory
    NpzBytes z(d);
    set16(z.b, z.cd + 28, 200);
    const std::string p = write_file(d / "cd-truncated.npz", z.b);
    expect_message(npz_error(p), {p + ": central directory entry 0 is truncated"});
  }
  {  // zip64 locator pointing less than a record's length before itself
    NpzBytes z(d, false, true);
    const size_t loc = z.eocd - 20;
    set64(z.b, loc + 8, loc - 10);
    const std::string p = write_file(d / "loc.npz", z.b);
    expect_message(npz_error(p), {p + ": corrupt zip64 end-of-central-directory locator"});
  }
  {  // zip64 record without its signature
    NpzBytes z(d, false, true);
    const size_t rec = get64(z.b, z.eocd - 20 + 8);
    z.b[rec] = 'X';
    const std::string p = write_file(d / "rec.npz", z.b);
    expect_message(npz_error(p), {p + ": corrupt zip64 end-of-central-directory record"});
  }
  {  // 0xFFFFFFFF central directory offset, but no zip64 record
    NpzBytes z(d);
    set32(z.b, z.eocd + 16, 0xFFFFFFFFu);
    const std::string p = write_file(d / "no64.npz", z.b);
    expect_message(npz_error(p), {p + ": corrupt zip archive (zip64 fields without a zip64 record)"});
  }
}

TEST(BadNpzContainer, ExtraFields) {
  const fs::path d = fresh_dir();
  // force_zip64: the central entry holds a zip64 extra field (id 1, 24 bytes:
  // usize, csize, offset) right after the name "a.npy".
  auto extra_at = [](const NpzBytes& z) { return z.cd + 46 + get16(z.b, z.cd + 28); };
  {
    NpzBytes z(d, false, true);
    ASSERT_EQ(get16(z.b, extra_at(z)), 1u);
    set16(z.b, extra_at(z) + 2, 100);  // longer than the extra field
    const std::string p = write_file(d / "extra.npz", z.b);
    expect_message(npz_error(p), {p + ": member 'a.npy': corrupt extra field"});
  }
  {
    NpzBytes z(d, false, true);
    set16(z.b, extra_at(z) + 2, 8);  // holds usize only, csize is needed too
    const std::string p = write_file(d / "zip64extra.npz", z.b);
    expect_message(npz_error(p), {p + ": member 'a.npy': corrupt zip64 extra field"});
  }
  {
    NpzBytes z(d, false, true);
    set16(z.b, extra_at(z), 0x9999);  // not a zip64 field: the sizes are nowhere
    const std::string p = write_file(d / "nosizes.npz", z.b);
    expect_message(npz_error(p), {p + ": member 'a.npy': zip64 sizes missing"});
  }
}

TEST(BadNpzContainer, MembersAndLocalHeaders) {
  const fs::path d = fresh_dir();
  {  // the second central entry renamed to the first one's name
    NpzBytes z(d, true);
    const size_t e1 = z.cd_entry(1);
    ASSERT_EQ(z.b.substr(e1 + 46, 5), "b.npy");
    z.b[e1 + 46] = 'a';
    const std::string p = write_file(d / "twice.npz", z.b);
    expect_message(npz_error(p), {p + ": member 'a.npy' appears twice"});
  }
  {
    NpzBytes z(d);
    set32(z.b, z.cd + 42, uint32_t(z.cd));  // local header at the central directory
    const std::string p = write_file(d / "lh-oob.npz", z.b);
    expect_message(npz_error(p), {p + ": member 'a.npy': local header out of bounds"});
  }
  {
    NpzBytes z(d);
    set16(z.b, 8, 8);  // local header says deflate, central says stored
    const std::string p = write_file(d / "method.npz", z.b);
    expect_message(npz_error(p), {p + ": member 'a.npy': local and central headers disagree on the compression method"});
  }
  {
    NpzBytes z(d);
    z.b[30] = 'x';  // local name "x.npy"
    const std::string p = write_file(d / "lname.npz", z.b);
    expect_message(npz_error(p), {p + ": member 'a.npy': local header names another member"});
  }
  {
    NpzBytes z(d);
    set16(z.b, 26, 6);  // local name length differs
    const std::string p = write_file(d / "lnlen.npz", z.b);
    expect_message(npz_error(p), {p + ": member 'a.npy': local header names another member"});
  }
  {
    NpzBytes z(d);
    set32(z.b, z.cd + 20, 100000), set32(z.b, z.cd + 24, 100000);
    const std::string p = write_file(d / "data-oob.npz", z.b);
    expect_message(npz_error(p), {p + ": member 'a.npy': data out of bounds (truncated?)"});
  }
  {
    NpzBytes z(d);
    set32(z.b, z.cd + 24, get32(z.b, z.cd + 24) + 1);
    const std::string p = write_file(d / "sizes.npz", z.b);
    expect_message(npz_error(p), {p + ": member 'a.npy': stored member with differing sizes"});
  }
  {  // deflate member claiming 4 GB from a few bytes
    NpzBytes z(d);
    set16(z.b, 8, 8), set16(z.b, z.cd + 10, 8);
    set32(z.b, z.cd + 24, 0xFFFFFFF0u);
    const std::string p = write_file(d / "implausible.npz", z.b);
    expect_message(npz_error(p), {p + ": member 'a.npy': implausible uncompressed size 4294967280"});
  }
}

TEST(BadNpzContainer, DeflateStreams) {
  const fs::path d = fresh_dir();
  const std::vector<uint8_t> enc = kt::npy_encode(kt::NpyArray::from_f32({1, 2, 3}));
  const std::string npy(enc.begin(), enc.end());
  const std::string defl = deflate_stored(npy);
  const uint32_t crc = crc32_of(npy), n = uint32_t(npy.size()), c = uint32_t(defl.size());
  {  // the hand-made deflate member reads back
    const std::string p = write_file(d / "good.npz", one_member_zip("a.npy", 8, crc, c, n, defl));
    const auto arrays = kt::read_npz(p);
    ASSERT_EQ(arrays.count("a"), 1u);
    EXPECT_EQ(arrays.at("a").to_f32(), (std::vector<float>{1, 2, 3}));
  }
  {
    const std::string p = write_file(d / "past.npz", one_member_zip("a.npy", 8, crc, c, n - 1, defl));
    expect_message(npz_error(p), {p + ": member 'a.npy': compressed data inflates past its declared size"});
  }
  {
    const std::string p = write_file(d / "short.npz", one_member_zip("a.npy", 8, crc, c, n + 10, defl));
    expect_message(npz_error(p), {p + ": member 'a.npy': compressed data inflates to " + std::to_string(n) +
                                      " bytes, declared " + std::to_string(n + 10)});
  }
  {
    const std::string cut = defl.substr(0, defl.size() - 10);
    const std::string p = write_file(d / "cut.npz", one_member_zip("a.npy", 8, crc, uint32_t(cut.size()), n, cut));
    expect_message(npz_error(p), {p + ": member 'a.npy': truncated compressed data"});
  }
}

TEST(BadNpzContainer, NpyHeaderDicts) {
  const fs::path d = fresh_dir();
  std::string many = "(";
  for (int i = 0; i < 65; ++i) many += "1, ";
  many += ")";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{'descr': 3, 'fortran_order': False, 'shape': (3,), }", "'descr' is not a string"},
      {"{'descr': '<f4' 'fortran_order': False, 'shape': (3,), }", "expected ',' or '}'"},
      {"{'descr' '<f4', 'fortran_order': False, 'shape': (3,), }", "expected ':'"},
      {"{descr: '<f4', 'fortran_order': False, 'shape': (3,), }", "expected a quoted string"},
      {"{'descr': '<f\\4', 'fortran_order': False, 'shape': (3,), }", "unsupported string literal"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", "shape dimension too large"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': " + many + ", }", "too many dimensions"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (3 1), }", "bad shape tuple"},
  };
  int i = 0;
  for (const auto& [dict, what] : cases) {
    const std::string npy = npy_with_header(dict, std::string(12, '\0'));
    const std::string p = write_file(d / ("h" + std::to_string(i++) + ".npz"),
                                     one_member_zip("a.npy", 0, crc32_of(npy), uint32_t(npy.size()), uint32_t(npy.size()), npy));
    expect_message(npz_error(p), {p + ": member 'a.npy': bad .npy header (" + what + ")"}, dict);
  }
}

TEST(BadNpzContainer, WriterArguments) {
  const fs::path d = fresh_dir();
  const std::string p = (d / "out.npz").string();
  kt::NpyArray neg;
  neg.dtype = "<f4";
  neg.shape = {-2};
  expect_message(error_of([&] { kt::write_npz(p, {{"a", neg}}); }),
                 {p + ": array 'a': invalid shape (negative or overflowing dimension)"});
  kt::NpyArray huge;
  huge.dtype = "<f4";
  huge.shape = {int64_t(1) << 62, int64_t(1) << 62};
  expect_message(error_of([&] { kt::write_npz(p, {{"a", huge}}); }),
                 {p + ": array 'a': invalid shape (negative or overflowing dimension)"});
  expect_message(error_of([&] { kt::NpyArray::from_strings({std::string((size_t(1) << 24) + 1, 'x')}); }),
                 {"NpyArray::from_strings: string too long"});
  kt::npz_detail::ZipMember m;  // empty name
  expect_message(error_of([&] { kt::npz_detail::write_zip_stored(p, {m}); }), {p + ": invalid zip member name length"});
  m.name = std::string(0xFFFF, 'n');
  expect_message(error_of([&] { kt::npz_detail::write_zip_stored(p, {m}); }), {p + ": invalid zip member name length"});
  EXPECT_FALSE(fs::exists(p));
}

// =================================================== 13. stored trace files

namespace {

// A stored trace as the trace stage writes it (tokens "A", "B", "C", subject
// [0, 1), 3 x 2 scores); `edit` changes arrays first.
std::string write_trace(const fs::path& file, const std::string& fingerprint,
                        const std::function<void(std::map<std::string, kt::NpyArray>&)>& edit = nullptr) {
  std::map<std::string, kt::NpyArray> a = {
      {"fingerprint", kt::NpyArray::scalar_string(fingerprint)},
      {"prompt", kt::NpyArray::scalar_string("A B C")},
      {"subject", kt::NpyArray::scalar_string("A")},
      {"input_ids", kt::NpyArray::from_i64({1, 2, 3})},
      {"input_tokens", kt::NpyArray::from_strings({"A", " B", " C"})},
      {"subject_range", kt::NpyArray::from_i64({0, 1})},
      {"answer", kt::NpyArray::scalar_string(" D")},
      {"answer_id", kt::NpyArray::scalar_i64(4)},
      {"high_score", kt::NpyArray::scalar_f64(0.9)},
      {"low_score", kt::NpyArray::scalar_f64(0.1)},
      {"correct_prediction", kt::NpyArray::scalar_bool(true)},
      {"scores", kt::NpyArray::from_f64({.1, .2, .3, .4, .5, .6}, {3, 2})},
      {"mediator", kt::NpyArray::scalar_string("hidden")},
      {"window", kt::NpyArray::scalar_i64(10)},
  };
  if (edit) edit(a);
  std::vector<std::pair<std::string, kt::NpyArray>> v(a.begin(), a.end());
  kt::write_npz(file.string(), v);
  return file.string();
}

const std::string kFp = R"({"model":"m","samples":10})";

}  // namespace

TEST(BadStoredTraces, GoodTraceReadsBack) {
  const fs::path d = fresh_dir();
  const std::string p = write_trace(d / "0_hidden.npz", kFp);
  const kt::TraceRecord r = kt::read_trace_file(p, "0", kFp);
  EXPECT_EQ(r.prompt, "A B C");
  EXPECT_EQ(r.n_tokens, 3);
  EXPECT_EQ(r.correct_rule, "rome") << "a file without the key: ROME's rule";
}

// One reader for resume, aggregate and merge: every message comes from it.
TEST(BadStoredTraces, Fingerprints) {
  const fs::path d = fresh_dir();
  const std::string bad = write_trace(d / "bad.npz", "{not json");
  expect_message(error_of([&] { kt::read_trace_file(bad, "0", kFp); }),
                 {bad + ": stored with a different fingerprint (not valid JSON)"});
  // Every current key agrees; the stored one has one more.
  const std::string extra = write_trace(d / "extra.npz", R"({"model":"m","samples":10,"old":1})");
  expect_message(error_of([&] { kt::read_trace_file(extra, "0", kFp); }),
                 {extra + ": stored with a different fingerprint (it holds settings this version does not write)"});
  const std::string other = write_trace(d / "other.npz", R"({"model":"m","samples":3})");
  expect_message(error_of([&] { kt::read_trace_file(other, "0", kFp); }),
                 {other + ": stored with a different 'samples' (stored 3, now 10)"});
  // Without an expected fingerprint (export, plot of a foreign file) it reads.
  EXPECT_NO_THROW(kt::read_trace_file(other, "0"));
}

TEST(BadStoredTraces, ArrayShapes) {
  const fs::path d = fresh_dir();
  const std::string range3 =
      write_trace(d / "range3.npz", kFp, [](auto& a) { a["subject_range"] = kt::NpyArray::from_i64({0, 1, 2}); });
  expect_message(error_of([&] { kt::read_trace_file(range3, "0", kFp); }),
                 {range3 + ": 'subject_range' must hold 2 values, got 3"});
  const std::string flat =
      write_trace(d / "flat.npz", kFp, [](auto& a) { a["scores"] = kt::NpyArray::from_f64({.1, .2, .3, .4, .5, .6}); });
  expect_message(error_of([&] { kt::read_trace_file(flat, "0", kFp); }),
                 {flat + ": 'scores' must be 2-dimensional, got 1 dimensions"});
  const std::string tokens =
      write_trace(d / "tokens.npz", kFp, [](auto& a) { a["input_tokens"] = kt::NpyArray::from_strings({"A", " B"}); });
  expect_message(error_of([&] { kt::read_trace_file(tokens, "0", kFp); }), {tokens + ": 2 input_tokens for 3 rows of scores"});
  const std::string ids =
      write_trace(d / "ids.npz", kFp, [](auto& a) { a["input_ids"] = kt::NpyArray::from_i64({1, 2}); });
  expect_message(error_of([&] { kt::read_trace_file(ids, "0", kFp); }), {ids + ": 2 input_ids for 3 input_tokens"});
  for (const auto& r : std::vector<std::vector<int64_t>>{{2, 5}, {1, 1}, {-1, 1}}) {
    const std::string outside =
        write_trace(d / "outside.npz", kFp, [&](auto& a) { a["subject_range"] = kt::NpyArray::from_i64(r); });
    expect_message(error_of([&] { kt::read_trace_file(outside, "0", kFp); }),
                   {outside + ": subject_range [" + std::to_string(r[0]) + ", " + std::to_string(r[1]) +
                    ") is not a non-empty token range of the 3-token prompt"});
  }
  const std::string rule =
      write_trace(d / "rule.npz", kFp, [](auto& a) { a["correct_rule"] = kt::NpyArray::scalar_string("maybe"); });
  expect_message(error_of([&] { kt::read_trace_file(rule, "0", kFp); }),
                 {rule + ": correct_rule 'maybe' is not one of rome, first-token, none"});
  const std::string med =
      write_trace(d / "med.npz", kFp, [](auto& a) { a["mediator"] = kt::NpyArray::scalar_string("mpl"); });
  expect_message(error_of([&] { kt::read_trace_file(med, "0", kFp); }), {med + ": mediator 'mpl' is not one of"});
  const std::string nokey = write_trace(d / "nokey.npz", kFp, [](auto& a) { a.erase("window"); });
  expect_message(error_of([&] { kt::read_trace_file(nokey, "0", kFp); }), {nokey, "window"});
}

// =================================================== 15-16. aggregation and outputs

TEST(BadAggregateInputs, EmptyRecordAndUncreatableDirectory) {
  kt::TraceRecord r;
  r.fact_id = "7";
  r.mediator = "hidden";
  r.n_tokens = 0, r.n_layers = 4;
  expect_message(error_of([&] { kt::aggregate({r}, "hidden", kt::parse_scheme("rome6")); }),
                 {"trace record '7' (hidden): needs n_tokens > 0 and n_layers > 0, got 0 x 4"});
  const fs::path d = fresh_dir();
  write_file(d / "file", "x");
  const std::string p = (d / "file" / "sub" / "summary.json").string();
  expect_message(error_of([&] { kt::write_file_atomic(p, "{}"); }), {p + ": cannot create its directory ("});
}

// =================================================== 4. GGUF API, 11-12. trace inputs

TEST(BadGgufFile, ByteSizeOfUnknownType) {
  expect_message(error_of([] { kt::ggml_nbytes(static_cast<kt::GgmlType>(9999), 32); }),
                 {"ggml ", "9999", " is not a known tensor type"});
}

TEST(BadTraceInputs, UnresolvedNoiseAndUncoveredSubject) {
  auto model = kt::Model::load((kModels / "gpt2").string());
  kt::TraceSettings s;
  s.samples = 1, s.window = 1;
  s.noise = kt::parse_noise("s3");
  expect_message(error_of([&] { kt::validate_fact(*model, "The Eiffel Tower is in", "The Eiffel Tower", s); }),
                 {"noise 's3' must be resolved to a number before tracing"});
  // Tokens that cover no text (as BOS does): the subject is in the prompt, no token covers it.
  kt::Encoding enc;
  enc.ids = {0, 1};
  enc.offsets = {{0, 0}, {0, 0}};
  expect_message(error_of([&] { kt::subject_token_range(enc, "Paris is", "Paris"); }),
                 {"subject 'Paris': no tokens cover it in prompt 'Paris is'"});
}

TEST(BadTraceInputs, RunWithSubjectNoiseAndNoFacts) {
  const fs::path d = fresh_dir();
  const std::string data = write_file(d / "facts.json", R"([{"known_id": 1, "prompt": "", "subject": "A", "attribute": "B"}])");
  kt::RunConfig c = kt::load_config(kPipelineConfig);
  c.results = (d / "run").string();
  c.dataset = data;
  c.noise = "s3";
  kt::RunOptions o;
  o.progress = false;
  expect_message(error_of([&] { kt::run_pipeline(c, o); }), {"key 'noise': 's3' needs subjects, and the data set has none"});
}

// =================================================== 10. bench

TEST(BadCommandLine, BenchFacts) {
  if (!have_binary()) GTEST_SKIP() << kBin << " not built";
  const fs::path cwd = fresh_dir();
  const std::string model = (kModels / "gpt2").string();
  expect_cli_error(run_cli({"bench", "--model", model}, cwd, "env -u KNOWTRACE_DATA_DIR"),
                   {"bench: no facts: give a config, --data FILE, or set KNOWTRACE_DATA_DIR to the folder of known_1000.json"},
                   "bench without facts");
  const std::string bad = write_file(cwd / "bad.json", "{\"facts\": [1, 2");
  expect_cli_error(run_cli({"bench", "--model", model, "--data", bad}, cwd),
                   {bad + ": neither a JSON list nor JSONL (one JSON object per line)"}, "bench --data bad.json");
  const std::string none = write_file(cwd / "none.json", R"([{"known_id": 1, "prompt": "", "subject": "A", "attribute": "B"}])");
  expect_cli_error(run_cli({"bench", "--model", model, "--data", none}, cwd), {"bench: " + none + " holds no usable facts"},
                   "bench --data none.json");
}

TEST(BadGgufFile, MetadataOverMemoryBudget) {
  // One uint8 array whose elements, one GgufValue each, need more than 512 MiB
  // while the file (a byte per element) is a few MiB.
  const uint64_t count = (uint64_t(512) << 20) / sizeof(kt::GgufValue) + 1;
  Raw raw(0, 1);
  raw.str("big").u32(9).u32(0).u64(count);
  raw.pad(raw.b.size() + count);
  const std::string p = write_file(fresh_dir() / "big.gguf", raw.b);
  expect_message(error_of([&] { kt::GgufFile f(p); }),
                 {p + ": metadata would need more than 512 MiB of memory (at 'big'); the file is corrupt or hostile"});
}

TEST(BadPlotInputs, NoLayersAndUncreatableFigureDirectory) {
  if (!kt::plots_available()) GTEST_SKIP() << "built without cairo";
  const std::vector<kt::ImageFormat> png = {kt::parse_image_format("png")};
  const fs::path d = fresh_dir();
  kt::MediatorSummary s;
  s.mediator = "mlp";
  s.n_layers = 0;
  s.categories.resize(1);
  s.categories[0].name = "last_token";
  expect_message(error_of([&] { kt::plot_average_heatmap(s, (d / "avg").string(), png); }),
                 {"average heatmap of 'mlp': no layers"});
  write_file(d / "file", "x");
  kt::TraceRecord r;
  r.fact_id = "0", r.mediator = "hidden", r.prompt = "A", r.subject = "A", r.answer = " B";
  r.tokens = {"A"};
  r.n_tokens = 1, r.n_layers = 1, r.scores = {0.5};
  r.subject_begin = 0, r.subject_end = 1;
  const std::string parent = (d / "file" / "figs").string();
  expect_message(error_of([&] { kt::plot_fact_heatmap(r, parent + "/fact", png); }),
                 {parent + ": cannot create directory ("});
}

TEST(BadStoredTraces, RunTraceStoredForAnotherPrompt) {
  const fs::path d = fresh_dir();
  kt::RunConfig c = kt::load_config(kPipelineConfig);
  c.results = (d / "run").string();
  c.stages = {"filter", "trace"};
  c.mediators = {"hidden"};
  c.limit = 1;
  kt::RunOptions o;
  o.progress = false;
  const kt::RunReport first = kt::run_pipeline(c, o);
  std::vector<fs::path> traces;
  for (const auto& e : fs::directory_iterator(fs::path(first.dir) / "traces"))
    if (e.path().extension() == ".npz") traces.push_back(e.path());
  ASSERT_EQ(traces.size(), 1u) << first.dir;
  const std::string p = traces[0].string();
  auto arrays = kt::read_npz(p);
  arrays["prompt"] = kt::NpyArray::scalar_string("Another prompt altogether");
  kt::write_npz(p, std::vector<std::pair<std::string, kt::NpyArray>>(arrays.begin(), arrays.end()));
  const kt::RunReport again = kt::run_pipeline(c, o);
  std::string notes;
  for (const auto& n : again.notes) notes += n + "\n";
  EXPECT_NE(notes.find(p + ": stored for another prompt or subject; recomputing"), std::string::npos) << notes;
  EXPECT_NE(kt::read_trace_file(p, "0").prompt, "Another prompt altogether") << "not recomputed";
}

// The bundled data/facts_default.json is looked for next to the config, in
// the current folder and in the folder above the executable's: a copy of the
// binary in a temporary folder finds it nowhere.
TEST(BadDataset, BundledFactSetNotFound) {
  if (!have_binary()) GTEST_SKIP() << kBin << " not built";
  const fs::path cwd = fresh_dir();
  fs::create_directories(cwd / "bin");
  fs::copy_file(kBin, cwd / "bin" / "knowtrace");
  fs::permissions(cwd / "bin" / "knowtrace", fs::perms::owner_all, fs::perm_options::add);
  const std::string cfg = write_file(cwd / "cfg.yaml", "model: " + (kModels / "gpt2").string() + "\ndataset: default\n");
  const std::string cmd = "cd " + shell_quote(cwd.string()) + " && timeout 120 bin/knowtrace run " + shell_quote(cfg) +
                          " --results out >/dev/null 2>cli.stderr </dev/null";
  const int status = std::system(cmd.c_str());
  CliResult r;
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.err = slurp(cwd / "cli.stderr");
  expect_cli_error(r,
                   {cfg + ":2: key 'dataset': the bundled fact set data/facts_default.json was not found next to the "
                          "config, in the current folder or beside the executable; give a data set path instead"},
                   "dataset: default");
}
