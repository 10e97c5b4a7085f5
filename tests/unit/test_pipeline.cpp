// links: kt_pipeline
// The pipeline behind `knowtrace run`: config validation, data sets, a full
// run on the tiny GPT-2 fixture (outputs, summary vs per-fact files,
// figures), resume after a deleted/corrupt file and after an interrupt,
// the filter stored once, refusal of a directory made with other settings,
// and re-plotting without the model.
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <optional>
#include <set>

#include "analysis/aggregate.h"
#include "io/npz.h"
#include "model/model.h"
#include "pipeline/config.h"
#include "pipeline/dataset.h"
#include "pipeline/pipeline.h"
#include "pipeline/stages.h"
#include "report/plots.h"
#include "trace/engine.h"
#include "util/error.h"
#include "util/paths.h"
#include "test_support.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const std::string kSrc = KT_SOURCE_DIR;
const std::string kFixtureConfig = kSrc + "/tests/fixtures/pipeline/gpt2-tiny.yaml";
const std::vector<std::string> kMediators = {"hidden", "hidden_attn_severed", "hidden_mlp_severed", "mlp", "attn"};

using kt_test::error_of;
using kt_test::fresh_dir;
using kt_test::temp_root;
using kt_test::write_file;

std::string config_error(const std::string& yaml) {
  return error_of([&] { kt::parse_config(yaml, "cfg.yaml"); });
}

kt::RunOptions quiet() {
  kt::RunOptions o;
  o.progress = false;
  return o;
}

kt::RunConfig fixture_config(const fs::path& results) {
  kt::RunConfig c = kt::load_config(kFixtureConfig);
  c.results = results.string();
  return c;
}

std::string slurp(const fs::path& p) { return kt::read_text_file(p.string()); }

// PNG width and height from the IHDR chunk.
std::pair<int, int> png_size(const std::string& path) {
  const std::string b = kt::read_text_file(path);
  EXPECT_GE(b.size(), 24u) << path;
  EXPECT_EQ(b.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8)) << path;
  if (b.size() < 24) return {0, 0};
  auto be32 = [&](size_t o) {
    return (int(uint8_t(b[o])) << 24) | (int(uint8_t(b[o + 1])) << 16) | (int(uint8_t(b[o + 2])) << 8) | int(uint8_t(b[o + 3]));
  };
  return {be32(16), be32(20)};
}

// ---------------------------------------------------------------- config

TEST(PipelineConfig, ShippedConfigsParse) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(kSrc + "/hparams"))
    if (e.path().extension() == ".yaml") names.push_back(e.path().stem().string());
  EXPECT_GE(names.size(), 14u);
  for (const std::string want : {"smollm2-135m", "gemma-3-270m", "gemma-2-2b", "qwen3-8b", "phi-3-mini", "olmo-2-7b",
                                 "llama-2-7b", "mistral-7b"})
    EXPECT_NE(std::find(names.begin(), names.end(), want), names.end()) << want;
  for (const auto& n : names) {
    const std::string path = kSrc + "/hparams/" + n + ".yaml";
    ASSERT_TRUE(fs::exists(path)) << path;
    kt::RunConfig c;
    ASSERT_NO_THROW(c = kt::load_config(path)) << path;
    EXPECT_EQ(c.name, n);
    EXPECT_EQ(kt::results_dir(c), "results/" + n);
    EXPECT_NE(c.layer_name.find("[LAYER_NUM]"), std::string::npos) << n;
  }
  kt::RunConfig d = kt::load_config(kSrc + "/hparams/smollm2-135m.yaml");
  EXPECT_EQ(d.model, "models/SmolLM2-135M-Instruct.Q4_1.gguf");
  EXPECT_EQ(d.dataset, "default");
  EXPECT_EQ(d.samples, 10);
  EXPECT_EQ(d.noise, "s3");
  EXPECT_EQ(d.mediators.size(), 5u);
}

TEST(PipelineConfig, UnknownKeySuggestsTheNearestWithFileAndLine) {
  const std::string e = config_error("model: m\nsamples: 3\nsampels: 4\n");
  EXPECT_NE(e.find("cfg.yaml:3"), std::string::npos) << e;
  EXPECT_NE(e.find("unknown key 'sampels'"), std::string::npos) << e;
  EXPECT_NE(e.find("did you mean 'samples'"), std::string::npos) << e;
  EXPECT_EQ(e.find('\n'), std::string::npos) << "one line: " << e;
  const std::string e2 = config_error("model: m\nmediator: [hidden]\n");
  EXPECT_NE(e2.find("did you mean 'mediators'"), std::string::npos) << e2;
  // Nothing close: no suggestion, but the valid keys.
  const std::string e3 = config_error("model: m\nzzzzzzzzzzzz: 1\n");
  EXPECT_EQ(e3.find("did you mean"), std::string::npos) << e3;
  EXPECT_NE(e3.find("valid keys: model"), std::string::npos) << e3;
}

TEST(PipelineConfig, WrongTypesNameKeyAndLine) {
  std::string e = config_error("model: m\n\nsamples: ten\n");
  EXPECT_NE(e.find("cfg.yaml:3: key 'samples': expected an integer, got 'ten'"), std::string::npos) << e;
  e = config_error("model: m\nreplace: maybe\n");
  EXPECT_NE(e.find("cfg.yaml:2: key 'replace': expected true or false"), std::string::npos) << e;
  e = config_error("model: m\nmediators: {hidden: 1}\n");
  EXPECT_NE(e.find("key 'mediators': expected a list"), std::string::npos) << e;
  e = config_error("model: [a, b]\n");
  EXPECT_NE(e.find("key 'model': expected a string, got a list"), std::string::npos) << e;
  e = config_error("model: m\nsamples: 0\n");
  EXPECT_NE(e.find("key 'samples': 0 is out of range"), std::string::npos) << e;
  e = config_error("model: m\nwindow:\n");
  EXPECT_NE(e.find("key 'window': has no value"), std::string::npos) << e;
  e = config_error("samples: 3\n");
  EXPECT_NE(e.find("key 'model' is missing"), std::string::npos) << e;
  e = config_error("model: m\n  bad: [indent\n");
  EXPECT_NE(e.find("cfg.yaml:"), std::string::npos) << e;
  e = config_error("model: m\nmodel: n\n");
  EXPECT_NE(e.find("cfg.yaml:2: key 'model' is given twice"), std::string::npos) << e;
}

TEST(PipelineConfig, BadEnumValues) {
  std::string e = config_error("model: m\nfilter: romee\n");
  EXPECT_NE(e.find("key 'filter': 'romee' is not one of rome, first-token, none (did you mean 'rome'?)"), std::string::npos) << e;
  e = config_error("model: m\npositions: rome7\n");
  EXPECT_NE(e.find("'rome7' is not one of rome6, seed4"), std::string::npos) << e;
  e = config_error("model: m\nconvention: resid_mid\n");
  EXPECT_NE(e.find("key 'convention'"), std::string::npos) << e;
  e = config_error("model: m\nmediators: [hidden, mlpp]\n");
  EXPECT_NE(e.find("'mlpp' is not one of"), std::string::npos) << e;
  EXPECT_NE(e.find("did you mean 'mlp'"), std::string::npos) << e;
  e = config_error("model: m\ndtype: float8\n");
  EXPECT_NE(e.find("key 'dtype': dtype 'float8' is not one of float32"), std::string::npos) << e;
  e = config_error("model: m\ndevice: tpu\n");
  EXPECT_NE(e.find("key 'device'"), std::string::npos) << e;
  e = config_error("model: m\nnoise: x3\n");
  EXPECT_NE(e.find("key 'noise': 'x3' is not a noise level"), std::string::npos) << e;
  e = config_error("model: m\nengine: turbo\n");
  EXPECT_NE(e.find("key 'engine': 'turbo' is not one of reference, fast"), std::string::npos) << e;
  e = config_error("model: m\nformats: [png, gif]\n");
  EXPECT_NE(e.find("'gif' is not one of png, pdf, svg"), std::string::npos) << e;
  e = config_error("model: m\nstages: [filter, trase]\n");
  EXPECT_NE(e.find("did you mean 'trace'"), std::string::npos) << e;
  e = config_error("model: m\nattn_name: transformer.h.attn\n");
  EXPECT_NE(e.find("needs the [LAYER_NUM] placeholder"), std::string::npos) << e;
  // Good values are normalized.
  kt::RunConfig c = kt::parse_config("model: m\ndtype: bf16\nnoise: 0.1\nfacts: [3, 7]\nmediators: hidden, mlp\n", "x.yaml");
  EXPECT_EQ(c.dtype, "bfloat16");
  EXPECT_EQ(c.noise, "0.1");
  EXPECT_EQ(c.facts, (std::vector<std::string>{"3", "7"}));
  EXPECT_EQ(c.mediators, (std::vector<std::string>{"hidden", "mlp"}));
}

TEST(PipelineConfig, CommandLineOverrides) {
  kt::RunConfig c = kt::parse_config("model: m\ndtype: float32\nlimit: 5\n", "x.yaml");
  kt::ConfigOverrides o;
  o.results = "/tmp/r";
  o.limit = 2;
  o.dtype = "bf16";
  o.device = "cpu";
  o.stages = std::vector<std::string>{"trace,filter"};
  kt::apply_overrides(c, o);
  EXPECT_EQ(c.results, "/tmp/r");
  EXPECT_EQ(c.limit, 2);
  EXPECT_EQ(c.dtype, "bfloat16");
  EXPECT_EQ(c.stages, (std::vector<std::string>{"filter", "trace"}));  // fixed order
  kt::ConfigOverrides bad;
  bad.dtype = "int4";
  EXPECT_NE(error_of([&] { kt::apply_overrides(c, bad); }).find("--dtype"), std::string::npos);
  kt::ConfigOverrides turbo;
  turbo.engine = "turbo";
  EXPECT_NE(error_of([&] { kt::apply_overrides(c, turbo); }).find("--engine"), std::string::npos);
  kt::ConfigOverrides fast;
  fast.engine = "fast";
  kt::apply_overrides(c, fast);
  EXPECT_EQ(c.engine, "fast");
  kt::ConfigOverrides st;
  st.stages = std::vector<std::string>{"plots"};
  EXPECT_NE(error_of([&] { kt::apply_overrides(c, st); }).find("did you mean 'plot'"), std::string::npos);
}

// Found by tests/fuzz/fuzz_config (docs/FUZZING.md).
TEST(PipelineConfig, MaxBatchTokensAutoIsTheDefaultAndRoundTrips) {
  EXPECT_EQ(kt::parse_config("model: m\n", "cfg.yaml").max_batch_tokens, -1);
  const kt::RunConfig c = kt::parse_config("model: m\nmax_batch_tokens: auto\n", "cfg.yaml");
  EXPECT_EQ(c.max_batch_tokens, -1);
  const std::string j = kt::config_to_json(c);
  EXPECT_EQ(json::parse(j)["max_batch_tokens"], "auto");
  EXPECT_EQ(kt::config_from_json(j, "run.json").max_batch_tokens, -1);
  EXPECT_EQ(kt::parse_config("model: m\nmax_batch_tokens: 4096\n", "cfg.yaml").max_batch_tokens, 4096);
  EXPECT_NE(config_error("model: m\nmax_batch_tokens: lots\n").find("cfg.yaml:2: key 'max_batch_tokens'"),
            std::string::npos);
}

TEST(PipelineConfig, HostileTextGivesOneLineErrors) {
  // Invalid UTF-8 in a value: a clear error, not an exception from the JSON
  // writer of run.json later.
  const std::string bad_utf8 = config_error("model: m\ndataset: \"caf\xE9.json\"\n");
  EXPECT_NE(bad_utf8.find("cfg.yaml:2: key 'dataset': the value is not valid UTF-8"), std::string::npos) << bad_utf8;
  EXPECT_NE(config_error("model: m\nmediators: [hidden, \"ml\xFFp\"]\n").find("not valid UTF-8"), std::string::npos);
  // Newlines from quoted values, keys and the YAML parser's own messages stay
  // out of the one-line message.
  // (yaml-cpp reports a NUL byte as "unknown escape character: \n".)
  for (const std::string& yaml : {std::string("model: m\ndtype: \"fp\\n32\"\n"), std::string("\"mo\\ndel\": m\n"),
                                  std::string("model: m\n\0\n", 11)}) {
    const std::string e = config_error(yaml);
    EXPECT_FALSE(e.empty()) << yaml;
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  }
  // run.json round trip of a valid config with non-ASCII text.
  const kt::RunConfig c = kt::parse_config("model: \"mod\xC3\xA8les/x.gguf\"\nfacts: [a, b]\n", "x.yaml");
  const kt::RunConfig d = kt::config_from_json(kt::config_to_json(c), "run.json");
  EXPECT_EQ(d.model, "mod\xC3\xA8les/x.gguf");
  EXPECT_EQ(kt::config_to_json(d), kt::config_to_json(c));
}

TEST(PipelineConfig, MissingModelFileFailsBeforeAnyWork) {
  const fs::path dir = fresh_dir("missing_model");
  const std::string cfg = write_file(dir / "c.yaml", "model: no/such/model.gguf\ndataset: default\n");
  kt::RunConfig c = kt::load_config(cfg);
  c.results = (dir / "out").string();
  const std::string e = error_of([&] { kt::run_pipeline(c, quiet()); });
  EXPECT_NE(e.find("c.yaml:1: key 'model': 'no/such/model.gguf' not found (looked at"), std::string::npos) << e;
  EXPECT_FALSE(fs::exists(dir / "out")) << "nothing written before the checks pass";
  // A missing data set file is named the same way.
  kt::RunConfig d = fixture_config(dir / "out");
  d.dataset = "nowhere.json";
  const std::string e2 = error_of([&] { kt::run_pipeline(d, quiet()); });
  EXPECT_NE(e2.find("gpt2-tiny.yaml:10: key 'dataset': 'nowhere.json' not found"), std::string::npos) << e2;
  EXPECT_FALSE(fs::exists(dir / "out"));
}

TEST(PipelineConfig, SiteNamesCheckedAgainstTheModel) {
  const fs::path dir = fresh_dir("bad_site");
  kt::RunConfig c = fixture_config(dir);
  c.attn_name = "transformer.h.[LAYER_NUM].self_attn";  // the Llama name, not GPT-2's
  c.locations.push_back({"attn_name", "gpt2-tiny.yaml:7"});
  std::string e = error_of([&] { kt::run_pipeline(c, quiet()); });
  EXPECT_NE(e.find("gpt2-tiny.yaml:7: key 'attn_name': 'transformer.h.[LAYER_NUM].self_attn' is not a site of this model"),
            std::string::npos) << e;
  EXPECT_NE(e.find("transformer.h.[LAYER_NUM].attn"), std::string::npos) << "lists the valid names: " << e;
  EXPECT_FALSE(fs::exists(dir / "run.json"));
  // A real site of the wrong kind.
  kt::RunConfig k = fixture_config(dir);
  k.mlp_name = "transformer.h.[LAYER_NUM].attn";
  e = error_of([&] { kt::run_pipeline(k, quiet()); });
  EXPECT_NE(e.find("names the attention output"), std::string::npos) << e;
  EXPECT_NE(e.find("'transformer.h.[LAYER_NUM].mlp'"), std::string::npos) << e;
  kt::RunConfig w = fixture_config(dir);
  w.embed_name = "model.embed_tokens";
  e = error_of([&] { kt::run_pipeline(w, quiet()); });
  EXPECT_NE(e.find("key 'embed_name'"), std::string::npos) << e;
}

// ROME clips a window wider than the model: so does a run, with a note.
TEST(PipelineConfig, WindowWiderThanTheModelIsClipped) {
  const fs::path dir = fresh_dir("wide_window");
  kt::RunConfig win = fixture_config(dir);
  win.window = 4;
  win.locations.push_back({"window", "gpt2-tiny.yaml:14"});
  win.mediators = {"mlp"};
  win.limit = 1;
  win.stages = {"filter", "trace"};
  const kt::RunReport r = kt::run_pipeline(win, quiet());
  std::string notes;
  for (const auto& n : r.notes) notes += n + "\n";
  EXPECT_NE(notes.find("gpt2-tiny.yaml:14: key 'window': 4 is more than the model's 3 layers: using 3"), std::string::npos)
      << notes;
  int files = 0;
  for (const auto& f : fs::directory_iterator(fs::path(r.dir) / "traces"))
    if (f.path().extension() == ".npz") {
      ++files;
      EXPECT_EQ(kt::read_trace_file(f.path().string(), "x").window, 3);
    }
  EXPECT_EQ(files, 1);
}

// ---------------------------------------------------------------- data

TEST(PipelineData, JsonListWithBadRecords) {
  const std::string text = R"([
    {"known_id": 10, "subject": "Paris", "attribute": "France", "prompt": "Paris is the capital of"},
    {"known_id": 11, "subject": "Rome", "attribute": "Italy", "prompt": "The Colosseum is in"},
    {"known_id": 12, "subject": "Oslo", "prompt": "Oslo is the capital of"},
    {"known_id": 13, "subject": 7, "attribute": "x", "prompt": "7 is"},
    {"known_id": 10, "subject": "Berlin", "attribute": "Germany", "prompt": "Berlin is the capital of"},
    "not an object",
    {"known_id": 15, "subject": "Whole prompt", "attribute": "x", "prompt": "Whole prompt"},
    {"known_id": 16, "subject": "Madrid", "attribute": " ", "prompt": "Madrid is the capital of"},
    {"known_id": 17, "subject": "Lisbon", "attribute": "Portugal", "prompt": "Lisbon is the capital of", "relation_id": "P1376"}
  ])";
  kt::Dataset d = kt::parse_dataset(text, "facts.json");
  ASSERT_EQ(d.facts.size(), 2u);
  EXPECT_EQ(d.facts[0].id, "10");
  EXPECT_EQ(d.facts[1].id, "17");
  EXPECT_EQ(d.facts[1].relation_id, "P1376");
  std::map<std::string, std::string> err;
  for (const auto& e : d.errors) err[e.id] = e.message;
  ASSERT_EQ(d.errors.size(), 7u);
  EXPECT_NE(err["11"].find("subject 'Rome' does not occur in prompt"), std::string::npos) << err["11"];
  EXPECT_NE(err["12"].find("no 'attribute' field"), std::string::npos) << err["12"];
  EXPECT_NE(err["13"].find("'subject' is not a string"), std::string::npos) << err["13"];
  EXPECT_NE(err["10"].find("duplicate id 10"), std::string::npos) << err["10"];
  EXPECT_NE(err["#5"].find("not an object"), std::string::npos) << err["#5"];
  EXPECT_NE(err["15"].find("whole prompt"), std::string::npos) << err["15"];
  EXPECT_NE(err["16"].find("'attribute' is empty"), std::string::npos) << err["16"];
  for (const auto& e : d.errors) EXPECT_EQ(e.message.find("facts.json"), 0u) << e.message;
}

TEST(PipelineData, JsonlWithIdsAndIndexes) {
  const std::string text =
      "{\"id\": \"paris-fr\", \"subject\": \"Paris\", \"attribute\": \"France\", \"prompt\": \"Paris is the capital of\"}\n"
      "\n"
      "{\"subject\": \"Oslo\", \"attribute\": \"Norway\", \"prompt\": \"Oslo is the capital of\"}\n"
      "{this line is broken\n"
      "{\"id\": \"../etc\", \"subject\": \"Rome\", \"attribute\": \"Italy\", \"prompt\": \"Rome is the capital of\"}\n";
  kt::Dataset d = kt::parse_dataset(text, "facts.jsonl");
  ASSERT_EQ(d.facts.size(), 2u);
  EXPECT_EQ(d.facts[0].id, "paris-fr");
  EXPECT_EQ(d.facts[1].id, "1");  // its index
  ASSERT_EQ(d.errors.size(), 2u);
  EXPECT_NE(d.errors[0].message.find("line 4 is not valid JSON"), std::string::npos) << d.errors[0].message;
  EXPECT_NE(d.errors[1].message.find("'id' must be"), std::string::npos) << d.errors[1].message;
  // Not a data set at all.
  EXPECT_NE(error_of([] { kt::parse_dataset("hello", "x.txt"); }).find("neither a JSON list nor JSONL"), std::string::npos);
  EXPECT_NE(error_of([] { kt::parse_dataset("{\"a\": 1}", "x.json"); }).find("expected a JSON list"), std::string::npos);
}

TEST(PipelineData, FactSubset) {
  kt::Dataset d = kt::parse_dataset(slurp(kSrc + "/data/facts_default.json"), "default");
  kt::RunConfig c = kt::parse_config("model: m\nfacts: [3, 1]\n", "x.yaml");
  auto s = kt::select_facts(d, c);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].id, "1");  // data set order
  EXPECT_EQ(s[1].id, "3");
  c.facts = {"99999"};
  EXPECT_NE(error_of([&] { kt::select_facts(d, c); }).find("no fact with id '99999'"), std::string::npos);
}

TEST(PipelineData, BundledDefaultFacts) {
  const std::string path = kSrc + "/data/facts_default.json";
  kt::Dataset d = kt::load_dataset_file(path);
  EXPECT_GE(d.facts.size(), 100u);
  EXPECT_TRUE(d.errors.empty());
  json j = json::parse(slurp(path));
  std::set<std::string> prompts;
  for (const auto& r : j) {
    for (const char* k : {"known_id", "subject", "attribute", "template", "prediction", "prompt", "relation_id"})
      EXPECT_TRUE(r.contains(k)) << r.dump();
    std::string t = r["template"].get<std::string>();
    t.replace(t.find("{}"), 2, r["subject"].get<std::string>());
    EXPECT_EQ(t, r["prompt"].get<std::string>());
    EXPECT_TRUE(prompts.insert(r["prompt"].get<std::string>()).second) << "duplicate prompt " << r["prompt"];
    const std::string a = r["attribute"].get<std::string>();
    EXPECT_FALSE(a.empty() || a[0] == ' ' || a.back() == ' ') << r.dump();
  }
  // "default" finds it from a config anywhere in the repository.
  kt::RunConfig c = kt::load_config(kSrc + "/hparams/smollm2-135m.yaml");
  EXPECT_TRUE(fs::equivalent(kt::default_facts_path(c), path));
  EXPECT_EQ(kt::load_dataset(c).facts.size(), d.facts.size());
}

TEST(PipelineData, Known1000LookupAndContentCheck) {
  const fs::path dir = fresh_dir("k1000");
  fs::create_directories(dir / "empty");
  const char* old_data = std::getenv("KNOWTRACE_DATA_DIR");
  const char* old_cache = std::getenv("XDG_CACHE_HOME");
  const std::string keep_data = old_data ? old_data : "", keep_cache = old_cache ? old_cache : "";
  setenv("KNOWTRACE_DATA_DIR", (dir / "empty").c_str(), 1);
  setenv("XDG_CACHE_HOME", (dir / "cache").c_str(), 1);
  kt::RunConfig c = kt::parse_config("model: m\ndataset: known_1000\n", "k.yaml");
  std::string e = error_of([&] { kt::load_dataset(c); });
  EXPECT_NE(e.find("k.yaml:2: key 'dataset': known_1000.json not found (looked at " + (dir / "empty").string()),
            std::string::npos) << e;
  EXPECT_NE(e.find("https://rome.baulab.info/data/dsets/known_1000.json"), std::string::npos) << e;
  EXPECT_NE(e.find("--download-data"), std::string::npos) << e;
  // Found, but not the real content.
  write_file(dir / "empty" / "known_1000.json", R"([{"known_id": 0, "subject": "a", "attribute": "b", "prompt": "a b"}])");
  e = error_of([&] { kt::load_dataset(c); });
  EXPECT_NE(e.find("known_1000 has 1209 records, this file has 1"), std::string::npos) << e;
  if (old_data) setenv("KNOWTRACE_DATA_DIR", keep_data.c_str(), 1);
  else unsetenv("KNOWTRACE_DATA_DIR");
  if (old_cache) setenv("XDG_CACHE_HOME", keep_cache.c_str(), 1);
  else unsetenv("XDG_CACHE_HOME");
  // The real file, when this machine has it.
  if (!old_data || !fs::exists(fs::path(keep_data) / "known_1000.json")) GTEST_SKIP() << "KNOWTRACE_DATA_DIR/known_1000.json absent";
  kt::Dataset d = kt::load_dataset(c);
  EXPECT_EQ(d.facts.size(), 1209u);
  EXPECT_TRUE(d.errors.empty());
  EXPECT_EQ(d.facts.front().id, "0");
  EXPECT_EQ(d.facts.back().id, "1208");
}

// ---------------------------------------------------------------- runs

// One full run shared by the tests below (each copies it before changing it).
class PipelineRun : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    full_ = fresh_dir("full");
    report_ = kt::run_pipeline(fixture_config(full_), quiet());
  }
  static fs::path copy_of_full(const std::string& name) {
    fs::path d = fresh_dir(name);
    fs::copy(full_, d, fs::copy_options::recursive);
    return d;
  }
  static fs::path full_;
  static kt::RunReport report_;
};
fs::path PipelineRun::full_;
kt::RunReport PipelineRun::report_;

std::vector<std::string> kept_ids() { return {"0", "1", "2"}; }

TEST_F(PipelineRun, EveryOutputExists) {
  EXPECT_FALSE(report_.interrupted);
  EXPECT_EQ(report_.facts, 6);  // 7 records, one bad
  EXPECT_EQ(report_.data_errors, 1);
  EXPECT_EQ(report_.filter_computed, 5);  // the 6th is too long for the model
  EXPECT_EQ(report_.filter_errors, 1);
  EXPECT_EQ(report_.kept, 3);
  EXPECT_EQ(report_.facts_traced, 3);
  EXPECT_EQ(report_.traces_written, 15);
  EXPECT_EQ(report_.aggregated_facts, 3);
  EXPECT_GT(report_.noise_level, 0);

  json run = json::parse(slurp(full_ / "run.json"));
  EXPECT_EQ(run["status"], "complete");
  EXPECT_DOUBLE_EQ(run["noise_level"].get<double>(), report_.noise_level);
  EXPECT_DOUBLE_EQ(run["fingerprint"]["noise_level"].get<double>(), report_.noise_level);
  EXPECT_EQ(run["config"]["samples"], 2);
  EXPECT_EQ(run["model"]["layers"], 3);

  // filter.jsonl: one verdict per fact the model could take.
  std::vector<json> verdicts;
  {
    std::istringstream in(slurp(full_ / "filter.jsonl"));
    for (std::string line; std::getline(in, line);) verdicts.push_back(json::parse(line));
  }
  ASSERT_EQ(verdicts.size(), 5u);
  for (const auto& v : verdicts) {
    EXPECT_TRUE(v.contains("top1_id") && v.contains("top1_token") && v.contains("top1_prob")) << v.dump();
    const bool kept = v["id"] == "0" || v["id"] == "1" || v["id"] == "2";
    EXPECT_EQ(v["rome"].get<bool>(), kept) << v.dump();
  }
  // errors.jsonl: the bad record and the prompt that is too long.
  const std::string errors = slurp(full_ / "errors.jsonl");
  EXPECT_NE(errors.find("\"id\":\"5\""), std::string::npos) << errors;
  EXPECT_NE(errors.find("does not occur in prompt"), std::string::npos) << errors;
  EXPECT_NE(errors.find("\"id\":\"6\""), std::string::npos) << errors;
  EXPECT_NE(errors.find("more than the model's context of 128"), std::string::npos) << errors;

  for (const auto& id : kept_ids())
    for (const auto& m : kMediators) EXPECT_TRUE(fs::exists(full_ / "traces" / (id + "_" + m + ".npz"))) << id << m;
  EXPECT_EQ(std::distance(fs::directory_iterator(full_ / "traces"), fs::directory_iterator()), 15);
  for (const char* f : {"summary.json", "summary.csv", "overview.csv"}) EXPECT_TRUE(fs::exists(full_ / f)) << f;
}

TEST_F(PipelineRun, SummaryAgreesWithPerFactFiles) {
  const auto summaries = kt::read_summary_json((full_ / "summary.json").string());
  ASSERT_EQ(summaries.size(), 5u * 4u);  // mediators x (2 schemes x 2 weightings)
  for (const auto& m : kMediators) {
    std::vector<kt::TraceRecord> recs;
    double low = 0, high = 0;
    for (const auto& id : kept_ids()) {
      const std::string p = (full_ / "traces" / (id + "_" + m + ".npz")).string();
      auto a = kt::read_npz(p);
      low += kt::npz_get(a, "low_score", p).item_f64();
      high += kt::npz_get(a, "high_score", p).item_f64();
      EXPECT_EQ(kt::npz_get(a, "mediator", p).item_string(), m);
      EXPECT_EQ(kt::npz_get(a, "samples", p).item_i64(), 2);
    }
    low /= 3, high /= 3;
    int found = 0;
    for (const auto& s : summaries) {
      if (s.mediator != m) continue;
      ++found;
      EXPECT_EQ(s.n_facts, 3) << m;
      EXPECT_EQ(s.n_layers, 3) << m;
      EXPECT_NEAR(s.mean_low, low, 1e-12) << m;
      EXPECT_NEAR(s.mean_high, high, 1e-12) << m;
      EXPECT_NEAR(s.ate, high - low, 1e-12) << m;
    }
    EXPECT_EQ(found, 4) << m;
    // The primary summary (the config's scheme and weighting) comes first.
    auto first = std::find_if(summaries.begin(), summaries.end(), [&](const auto& s) { return s.mediator == m; });
    EXPECT_EQ(first->scheme, kt::PositionScheme::Rome6);
    EXPECT_FALSE(first->per_fact_mean);
  }
  // The last-token category of the hidden mediator at the last layer is the
  // mean over facts of their last row (a one-token category).
  const auto& hidden = summaries.front();
  ASSERT_EQ(hidden.mediator, "hidden");
  const auto cat = std::find_if(hidden.categories.begin(), hidden.categories.end(),
                                [](const auto& c) { return c.name == "last_token"; });
  ASSERT_NE(cat, hidden.categories.end());
  double want = 0;
  for (const auto& id : kept_ids()) {
    const std::string p = (full_ / "traces" / (id + "_hidden.npz")).string();
    auto a = kt::read_npz(p);
    const auto& sc = kt::npz_get(a, "scores", p);
    want += sc.to_f64()[static_cast<size_t>(sc.numel() - 1)];
  }
  EXPECT_NEAR(cat->score.back(), want / 3, 1e-12);
}

TEST_F(PipelineRun, FiguresAndReport) {
  if (!kt::plots_available()) GTEST_SKIP() << "built without cairo: no figures";
  EXPECT_FALSE(report_.figures.empty());
  for (const auto& m : kMediators) EXPECT_TRUE(fs::exists(full_ / "figures" / ("average_" + m + ".png"))) << m;
  EXPECT_TRUE(fs::exists(full_ / "figures" / "aie_lines.png"));
  // Per-fact heatmaps decode to the size the plotting code lays out.
  for (const auto& id : kept_ids())
    for (const auto& m : kMediators) {
      const fs::path png = full_ / "figures" / "facts" / (id + "_" + m + ".png");
      ASSERT_TRUE(fs::exists(png)) << png;
      kt::TraceRecord r = kt::read_trace_file((full_ / "traces" / (id + "_" + m + ".npz")).string(), id, "");
      r.model = "gpt2";
      const auto size = kt::fact_heatmap_size(r);
      EXPECT_EQ(png_size(png.string()), std::make_pair(size.png_width, size.png_height)) << png;
    }
  const std::string html = slurp(full_ / "report.html");
  EXPECT_NE(html.find("data:image/png;base64,"), std::string::npos);
}

TEST_F(PipelineRun, ResumeRecomputesOnlyWhatIsMissing) {
  const fs::path d = copy_of_full("resume");
  const std::string victim = (d / "traces" / "1_mlp.npz").string();
  const std::string before = slurp(victim), summary_before = slurp(d / "summary.json");
  fs::remove(victim);
  // A corrupt file is recomputed too.
  const std::string corrupt = (d / "traces" / "2_attn.npz").string();
  const std::string corrupt_before = slurp(corrupt);
  fs::resize_file(corrupt, 100);
  const auto untouched = fs::last_write_time(d / "traces" / "0_hidden.npz");
  kt::RunReport r = kt::run_pipeline(fixture_config(d), quiet());
  EXPECT_EQ(r.facts_reused, 1);
  EXPECT_EQ(r.facts_traced, 2);
  // A fact is traced whole (same batch, same bits): 2 facts x 5 mediators.
  EXPECT_EQ(r.traces_written, 10);
  EXPECT_EQ(r.traces_invalid, 1);
  EXPECT_EQ(slurp(victim), before) << "the recomputed file is byte-identical";
  EXPECT_EQ(slurp(corrupt), corrupt_before);
  EXPECT_EQ(fs::last_write_time(d / "traces" / "0_hidden.npz"), untouched);
  EXPECT_EQ(slurp(d / "summary.json"), summary_before);
}

TEST_F(PipelineRun, FilterIsStoredOnce) {
  const fs::path d = copy_of_full("filter_once");
  const auto mtime = fs::last_write_time(d / "filter.jsonl");
  const std::string text = slurp(d / "filter.jsonl");
  kt::RunConfig c = fixture_config(d);
  c.stages = {"filter", "trace"};
  kt::RunReport r = kt::run_pipeline(c, quiet());
  EXPECT_EQ(r.filter_computed, 0);
  EXPECT_EQ(r.filter_reused, 5);
  EXPECT_EQ(r.facts_traced, 0);
  EXPECT_EQ(r.facts_reused, 3);
  EXPECT_EQ(fs::last_write_time(d / "filter.jsonl"), mtime);
  EXPECT_EQ(slurp(d / "filter.jsonl"), text);
  // Another rule and a limit select from the stored verdicts: nothing recomputed.
  c.filter = "none";
  c.limit = 4;
  r = kt::run_pipeline(c, quiet());
  EXPECT_EQ(r.filter_computed, 0);
  EXPECT_EQ(r.kept, 4);
  EXPECT_EQ(r.facts_traced, 1);  // fact 3, which the rome rule rejected
  EXPECT_TRUE(fs::exists(d / "traces" / "3_hidden.npz"));
}

TEST_F(PipelineRun, InterruptThenResumeGivesTheSameResults) {
  const fs::path d = fresh_dir("interrupt");
  kt::RunOptions o = quiet();
  o.after_fact = [](const std::string&) { kt::request_stop(); };
  kt::RunReport r = kt::run_pipeline(fixture_config(d), o);
  EXPECT_TRUE(r.interrupted);
  EXPECT_EQ(r.facts_traced, 1);
  EXPECT_FALSE(fs::exists(d / "summary.json")) << "no summary of a partial run";
  EXPECT_EQ(json::parse(slurp(d / "run.json"))["status"], "interrupted");
  r = kt::run_pipeline(fixture_config(d), quiet());
  EXPECT_FALSE(r.interrupted);
  EXPECT_EQ(r.facts_reused, 1);
  EXPECT_EQ(r.facts_traced, 2);
  EXPECT_EQ(r.filter_computed, 0);
  for (const auto& id : kept_ids())
    for (const auto& m : kMediators) {
      const std::string name = id + "_" + m + ".npz";
      EXPECT_EQ(slurp(d / "traces" / name), slurp(full_ / "traces" / name)) << name;
    }
  EXPECT_EQ(slurp(d / "summary.json"), slurp(full_ / "summary.json"));
}

TEST_F(PipelineRun, FastEngineGivesTheSameNumbers) {
  const fs::path d = fresh_dir("fast");
  kt::RunConfig c = fixture_config(d);
  c.engine = "fast";
  c.stages = {"filter", "trace"};
  kt::RunReport r = kt::run_pipeline(c, quiet());
  EXPECT_EQ(r.facts_traced, 3);
  EXPECT_EQ(json::parse(slurp(d / "run.json"))["config"]["engine"], "fast");
  for (const auto& id : kept_ids())
    for (const auto& m : kMediators) {
      const std::string name = id + "_" + m + ".npz";
      auto fast = kt::read_trace_file((d / "traces" / name).string(), id, "");
      auto ref = kt::read_trace_file((full_ / "traces" / name).string(), id, "");
      ASSERT_EQ(fast.scores.size(), ref.scores.size()) << name;
      EXPECT_NEAR(fast.low_score, ref.low_score, 1e-6) << name;
      EXPECT_NEAR(fast.high_score, ref.high_score, 1e-6) << name;
      for (size_t i = 0; i < ref.scores.size(); ++i) EXPECT_NEAR(fast.scores[i], ref.scores[i], 1e-6) << name << " " << i;
    }
}

TEST_F(PipelineRun, RefusesADirectoryMadeWithOtherSettings) {
  const fs::path d = copy_of_full("other_settings");
  kt::RunConfig c = fixture_config(d);
  c.samples = 3;
  const std::string e = error_of([&] { kt::run_pipeline(c, quiet()); });
  EXPECT_NE(e.find("different 'samples' (stored 2, now 3)"), std::string::npos) << e;
  EXPECT_NE(e.find("--results"), std::string::npos) << e;
  // A trace file from other settings inside the directory is recomputed.
  kt::RunConfig s = fixture_config(d);
  s.mediators = {"hidden"};
  kt::RunConfig other = fixture_config(fresh_dir("other_seed"));
  other.seed = 7;
  other.mediators = {"hidden"};
  other.facts = {"0"};
  kt::run_pipeline(other, quiet());
  fs::copy_file(fs::path(other.results) / "traces" / "0_hidden.npz", d / "traces" / "0_hidden.npz",
                fs::copy_options::overwrite_existing);
  kt::RunReport r = kt::run_pipeline(s, quiet());
  EXPECT_EQ(r.traces_invalid, 1);
  EXPECT_EQ(r.traces_written, 1);
  EXPECT_EQ(slurp(d / "traces" / "0_hidden.npz"), slurp(full_ / "traces" / "0_hidden.npz"));
}

TEST_F(PipelineRun, ReplotWithoutTheModel) {
  // A run whose model is then moved away.
  const fs::path d = fresh_dir("replot");
  const fs::path model = fresh_dir("moved_model");
  fs::copy(kSrc + "/tests/fixtures/models/gpt2", model, fs::copy_options::recursive);
  kt::RunConfig c = fixture_config(d / "run");
  c.model = model.string();
  c.mediators = {"hidden", "mlp"};
  c.stages = {"filter", "trace"};
  kt::run_pipeline(c, quiet());
  EXPECT_FALSE(fs::exists(d / "run" / "summary.json"));
  fs::remove_all(model);
  kt::RunReport r = kt::replot((d / "run").string(), quiet());
  EXPECT_EQ(r.aggregated_facts, 3);
  EXPECT_TRUE(fs::exists(d / "run" / "summary.json"));
  if (kt::plots_available()) {
    EXPECT_TRUE(fs::exists(d / "run" / "report.html"));
    EXPECT_TRUE(fs::exists(d / "run" / "figures" / "facts" / "2_mlp.png"));
  }
  // `run --stages aggregate,plot` with the config pointing at no model works too.
  c.stages = {"aggregate", "plot"};
  c.model = (d / "no-such-model").string();
  fs::remove(d / "run" / "summary.json");
  r = kt::run_pipeline(c, quiet());
  EXPECT_EQ(r.aggregated_facts, 3);
  EXPECT_TRUE(fs::exists(d / "run" / "summary.json"));
  // Without a stored run there is nothing to plot.
  EXPECT_NE(error_of([&] { kt::replot((d / "nothing").string()); }).find("no run.json"), std::string::npos);
}

// Beyond ROME through the run: counterfactual-prompt corruption from the
// same-relation rule (recorded), knockouts stored with one row and drawn as
// their own line plot, numbers equal to the engine's on the same inputs,
// one-line errors naming the fact and the key.
TEST_F(PipelineRun, CounterfactualPromptsAndKnockoutsThroughTheRun) {
  const fs::path d = fresh_dir("beyond");
  auto model = kt::Model::load(kSrc + "/tests/fixtures/models/gpt2");
  const std::string prompt = "The Eiffel Tower is located in the city of", subject = "The Eiffel Tower";
  const size_t T = model->tokenizer().encode(prompt).ids.size();
  // A subject of the same relation that gives the prompt as many tokens.
  std::string other;
  for (const char* c : {"The Louvre Museum", "The Colosseum", "Big Ben Tower", "The Hagia Sophia", "The Kremlin",
                        "The Spanish Steps", "The Rialto Bridge", "Mount Kilimanjaro", "The Brandenburg Gate"}) {
    std::string p = prompt;
    p.replace(0, subject.size(), c);
    if (model->tokenizer().encode(p).ids.size() == T) {
      other = c;
      break;
    }
  }
  ASSERT_FALSE(other.empty()) << "no candidate subject with " << T << " tokens";
  const std::string counterfactual = other + prompt.substr(subject.size());
  json facts = json::array();
  facts.push_back({{"known_id", 0}, {"prompt", prompt}, {"subject", subject}, {"attribute", "Paris"}, {"relation_id", "P131"}});
  facts.push_back({{"known_id", 1}, {"prompt", other + " is located in the city of"}, {"subject", other},
                   {"attribute", "Rome"}, {"relation_id", "P131"}});
  facts.push_back({{"known_id", 2}, {"prompt", "Miles Davis plays the"}, {"subject", "Miles Davis"}, {"attribute", "trumpet"},
                   {"relation_id", "P1303"}});
  write_file(d / "facts.json", facts.dump());
  kt::RunConfig c = fixture_config(d / "run");
  c.dataset = (d / "facts.json").string();
  c.filter = "none";
  c.engine = "fast";
  c.mediators = {"hidden", "knockout_subject", "knockout_last"};
  c.corruption = "prompt";
  c.counterfactual = "same-relation";
  c.knockout_window = 2;
  kt::RunReport r = kt::run_pipeline(c, quiet());
  // Fact 2 has no other subject of its relation: refused with its id and the rule.
  EXPECT_EQ(r.trace_errors, 1);
  const std::string errors = slurp(d / "run" / "errors.jsonl");
  EXPECT_NE(errors.find("fact 2: counterfactual same-relation: no other subject of relation P1303"), std::string::npos)
      << errors;
  const kt::TraceRecord h = kt::read_trace_file((d / "run" / "traces" / "0_hidden.npz").string(), "0");
  EXPECT_EQ(h.corruption, "prompt");
  EXPECT_EQ(h.counterfactual, counterfactual);
  EXPECT_EQ(h.samples, 1);
  const kt::TraceRecord k = kt::read_trace_file((d / "run" / "traces" / "0_knockout_subject.npz").string(), "0");
  EXPECT_EQ(k.n_tokens, 1);
  EXPECT_EQ(k.prompt_tokens(), static_cast<int64_t>(T));
  EXPECT_EQ(k.knockout_window, 2);
  EXPECT_EQ(k.low_score, 0.0);
  // The run's numbers are the engine's for the same fact and settings.
  kt::TraceSettings st;
  st.samples = c.samples;
  st.window = c.window;
  st.noise = kt::parse_noise("0.1");
  st.mediators = {kt::Mediator::Hidden, kt::Mediator::KnockoutSubject, kt::Mediator::KnockoutLast};
  st.corruption = kt::Corruption::Prompt;
  st.knockout_window = 2;
  kt::FactAnswer a(std::string("Paris"));
  a.counterfactual = counterfactual;
  const kt::FactTrace f = kt::trace_fact(*model, prompt, subject, st, a);
  double worst = 0;
  for (const auto* rec : {&h, &k}) {
    const auto& m = f.traces[rec == &h ? 0 : 1].scores;
    for (int64_t i = 0; i < m.numel(); ++i)
      worst = std::max(worst, std::abs(m.view(-1)[i].item<double>() - rec->scores[static_cast<size_t>(i)]));
  }
  EXPECT_LE(worst, 1e-9);
  const auto summaries = kt::read_summary_json((d / "run" / "summary.json").string());
  bool found = false;
  for (const auto& sm : summaries)
    if (sm.mediator == "knockout_subject") {
      found = true;
      EXPECT_EQ(sm.quantity, "relative change of p(answer)");
    }
  EXPECT_TRUE(found);
  if (kt::plots_available()) {
    EXPECT_TRUE(fs::exists(d / "run" / "figures" / "knockout_lines.png"));
    EXPECT_TRUE(fs::exists(d / "run" / "figures" / "aie_lines.png"));
    EXPECT_TRUE(fs::exists(d / "run" / "figures" / "facts" / "0_knockout_subject.png"));
  }
  // A knockout window wider than the model: refused before any work, naming the key.
  c.results = (d / "run2").string();
  c.knockout_window = 99;
  const std::string e = error_of([&] { kt::run_pipeline(c, quiet()); });
  EXPECT_NE(e.find("key 'knockout_window': 99 is larger than the model's 3 layers"), std::string::npos) << e;
  // Bad values of the new keys, from YAML, with file and line.
  EXPECT_NE(config_error("model: m\nmetric: accuracy\n").find("cfg.yaml:2"), std::string::npos);
  EXPECT_NE(config_error("model: m\ntarget: all\n").find("target"), std::string::npos);
  EXPECT_NE(config_error("model: m\ncorruption: shuffle\n").find("corruption"), std::string::npos);
}

}  // namespace

// ---------------------------------------------------------------- hub IDs

namespace {

// A Hugging Face cache laid out as the hub client writes it, holding a
// fixture model as hub ID `org`/`name` (snapshot abc123, refs/main).
fs::path fixture_hf_cache(const fs::path& root, const std::string& fixture = "gpt2",
                          const std::string& org = "kt-fixtures", const std::string& name = "tiny-gpt2") {
  const fs::path repo = root / "hub" / ("models--" + org + "--" + name);
  fs::create_directories(repo / "refs");
  fs::create_directories(repo / "snapshots" / "abc123");
  std::ofstream(repo / "refs" / "main") << "abc123";
  for (const auto& e : fs::directory_iterator(kSrc + "/tests/fixtures/models/" + fixture))
    fs::create_symlink(e.path(), repo / "snapshots" / "abc123" / e.path().filename());
  return root / "hub";
}

using kt_test::EnvVar;

}  // namespace

TEST(HubIds, ResolvedFromTheLocalHuggingFaceCache) {
  const fs::path dir = kt_test::temp_root() / "hf_cache";
  fs::remove_all(dir);
  EnvVar cache("HF_HUB_CACHE", fixture_hf_cache(dir).string());
  auto direct = kt::Model::load(kSrc + "/tests/fixtures/models/gpt2");
  auto by_id = kt::Model::load("kt-fixtures/tiny-gpt2");
  auto by_rev = kt::Model::load("kt-fixtures/tiny-gpt2@abc123");
  const auto ids = direct->tokenizer().encode("The Eiffel Tower is in").ids;
  at::Tensor x = at::tensor(std::vector<int64_t>(ids.begin(), ids.end()), at::kLong).unsqueeze(0);
  EXPECT_TRUE(at::equal(direct->forward(x, nullptr, true), by_id->forward(x, nullptr, true)));
  EXPECT_TRUE(at::equal(direct->forward(x, nullptr, true), by_rev->forward(x, nullptr, true)));
  EXPECT_EQ(kt::Tokenizer::load("kt-fixtures/tiny-gpt2").encode("Paris").ids, direct->tokenizer().encode("Paris").ids);
  // The run config takes the seed's form too: model: org/name.
  kt::RunConfig c = fixture_config(dir / "out");
  c.model = "kt-fixtures/tiny-gpt2";
  c.stages = {"filter"};
  kt::run_pipeline(c, quiet());
  EXPECT_TRUE(fs::exists(dir / "out" / "filter.jsonl"));
  // Not cached: one line naming the folders looked in and how to fetch it.
  const std::string e = kt_test::error_of([] { kt::Model::load("kt-fixtures/not-there"); });
  EXPECT_NE(e.find("kt-fixtures/not-there: not a file or directory, and not in the Hugging Face cache (looked in " +
                   (dir / "hub").string()),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("huggingface-cli download kt-fixtures/not-there"), std::string::npos) << e;
  kt::RunConfig d = fixture_config(dir / "out2");
  d.model = "kt-fixtures/not-there";
  const std::string e2 = kt_test::error_of([&] { kt::run_pipeline(d, quiet()); });
  EXPECT_NE(e2.find("key 'model': 'kt-fixtures/not-there' not found"), std::string::npos) << e2;
  EXPECT_NE(e2.find("nor in the Hugging Face cache (" + (dir / "hub").string()), std::string::npos) << e2;
  // HF_HOME/hub is the next place transformers looks.
  ::unsetenv("HF_HUB_CACHE");
  EnvVar home("HF_HOME", dir.string());
  EXPECT_NO_THROW(kt::Model::load("kt-fixtures/tiny-gpt2"));
}

// ---------------------------------------------------------------- the seed's files

namespace {

// BaixuanLi/Knowledge-Tracing's hparams/llama_config.yaml, as it is.
const char* kSeedConfig = R"(model:
  pth: "meta-llama/Llama-3.2-3B"
  name: "llama-3.2-3b"

generation_args:
  max_generate_length: 1
  do_sample: false
  output_scores: true
  return_dict_in_generate: true

hook_layer:
  clean_save: ['model.layers.[LAYER_NUM]', 'model.layers.[LAYER_NUM].self_attn', 'model.layers.[LAYER_NUM].mlp']
  corrupt: 'model.embed_tokens'
  corrupted_save: ['model.layers.[LAYER_NUM].self_attn', 'model.layers.[LAYER_NUM].mlp']
  clean_replace: 'model.layers.[LAYER_NUM]'
  attn_sever: 'model.layers.[LAYER_NUM].self_attn'
  mlp_sever: 'model.layers.[LAYER_NUM].mlp'

result_pth:
  base_pth: './results/'
)";

}  // namespace

TEST(SeedFiles, TheSeedsYamlParsesAsItIs) {
  const kt::RunConfig c = kt::parse_config(kSeedConfig, "llama_config.yaml");
  EXPECT_EQ(c.model, "meta-llama/Llama-3.2-3B");
  EXPECT_EQ(c.name, "llama-3.2-3b");
  EXPECT_EQ(kt::results_dir(c), "results/llama-3.2-3b");  // base_pth + name, as the seed writes
  EXPECT_EQ(c.layer_name, "model.layers.[LAYER_NUM]");
  EXPECT_EQ(c.attn_name, "model.layers.[LAYER_NUM].self_attn");
  EXPECT_EQ(c.mlp_name, "model.layers.[LAYER_NUM].mlp");
  EXPECT_EQ(c.embed_name, "model.embed_tokens");
  EXPECT_EQ(c.saved_sites.size(), 5u);
  EXPECT_EQ(c.where("hook_layer.mlp_sever"), "llama_config.yaml:17");
  ASSERT_EQ(c.notes.size(), 1u);
  EXPECT_NE(c.notes[0].find("llama_config.yaml:5: key 'generation_args' is not needed"), std::string::npos);
  // Bad nested keys: one line naming the file, line and key.
  std::string e = error_of([] { kt::parse_config("model:\n  pth: m\n  nme: x\n", "s.yaml"); });
  EXPECT_NE(e.find("s.yaml:3: key 'model.nme': unknown key (did you mean 'model.name'?)"), std::string::npos) << e;
  e = error_of([] { kt::parse_config("model: m\nlayer_name: a.[LAYER_NUM]\nhook_layer:\n  clean_replace: b.[LAYER_NUM]\n", "s.yaml"); });
  EXPECT_NE(e.find("s.yaml:4: key 'hook_layer.clean_replace': sets the same site as 'layer_name' (s.yaml:2)"),
            std::string::npos) << e;
  e = error_of([] { kt::parse_config("model:\n  name: x\n", "s.yaml"); });
  EXPECT_NE(e.find("key 'model': needs 'pth'"), std::string::npos) << e;
}

// The seed's YAML, unchanged, end to end: its hub ID found in a local
// Hugging Face cache (the Llama fixture laid out as meta-llama/Llama-3.2-3B),
// its hook_layer names checked against the model, then filter, trace,
// aggregate and plot. The facts are the fixture's own predictions, so the
// filter keeps them.
TEST(SeedFiles, TheSeedsYamlRunsEndToEnd) {
  const fs::path dir = fresh_dir("seed_yaml");
  EnvVar cache("HF_HUB_CACHE", fixture_hf_cache(dir, "llama", "meta-llama", "Llama-3.2-3B").string());
  write_file(dir / "llama_config.yaml", kSeedConfig);
  auto model = kt::Model::load("meta-llama/Llama-3.2-3B");
  nlohmann::json facts = nlohmann::json::array();
  const std::vector<std::pair<std::string, std::string>> prompts = {
      {"The Eiffel Tower is located in the city of", "The Eiffel Tower"}, {"Miles Davis plays the", "Miles Davis"}};
  for (size_t i = 0; i < prompts.size(); ++i) {
    const auto ids = model->tokenizer().encode(prompts[i].first).ids;
    at::Tensor x = at::tensor(std::vector<int64_t>(ids.begin(), ids.end()), at::kLong).unsqueeze(0);
    const int32_t top = static_cast<int32_t>(model->forward(x, nullptr, true)[0].argmax().item<int64_t>());
    std::string answer = model->tokenizer().decode({top});
    answer.erase(0, answer.find_first_not_of(" "));
    answer.erase(answer.find_last_not_of(" ") + 1);
    facts.push_back({{"known_id", i}, {"prompt", prompts[i].first}, {"subject", prompts[i].second}, {"attribute", answer}});
  }
  write_file(dir / "facts.json", facts.dump());
  kt::RunConfig c = kt::load_config((dir / "llama_config.yaml").string());
  kt::ConfigOverrides o;
  o.results = (dir / "out").string();
  o.dataset = (dir / "facts.json").string();
  kt::apply_overrides(c, o);
  c.samples = 2;
  const kt::RunReport r = kt::run_pipeline(c, quiet());
  EXPECT_EQ(r.kept, 2);
  EXPECT_EQ(r.facts_traced, 2);
  EXPECT_EQ(r.aggregated_facts, 2);
  EXPECT_TRUE(fs::exists(dir / "out" / "summary.json"));
  std::string notes;
  for (const auto& n : r.notes) notes += n + "\n";
  EXPECT_NE(notes.find("generation_args' is not needed"), std::string::npos) << notes;
  // A hook_layer name that is not a site of this model: file, line and key.
  std::string bad = kSeedConfig;
  bad.replace(bad.find("'model.layers.[LAYER_NUM].mlp']\n  corrupt"), 31, "'model.layers.[LAYER_NUM].ffn']");
  write_file(dir / "bad.yaml", bad);
  kt::RunConfig b = kt::load_config((dir / "bad.yaml").string());
  kt::apply_overrides(b, o);
  const std::string e = error_of([&] { kt::run_pipeline(b, quiet()); });
  EXPECT_NE(e.find("bad.yaml:12: key 'hook_layer.clean_save': 'model.layers.[LAYER_NUM].ffn' is not a site of this model"),
            std::string::npos) << e;
}

// ---------------------------------------------------------------- ROME's own averaging

namespace {
// Debian's python3 (python3-numpy from scripts/setup.sh), not whatever
// python3 comes first on PATH.
std::string python() { return fs::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3"; }
bool python_has_numpy() { return std::system((python() + " -c 'import numpy' >/dev/null 2>&1").c_str()) == 0; }
int run_script(const std::string& cmd) { return WEXITSTATUS(std::system((cmd + " >&2").c_str())); }
}  // namespace

// A run exported in ROME's layout holds exactly ROME's keys, and ROME's
// averaging (the notebook's read_knowlege, restated in
// tests/reference/rome_averaging.py; run it with --rome-notebook on ROME's
// own notebook, docs/CORRECTNESS.md) gives the summary's numbers, also after
// a fact is marked as a wrong prediction (ROME skips it, so does aggregate).
TEST(ReferenceChecks, RomeAveragingOfTheExportedRunEqualsTheSummary) {
  if (!python_has_numpy()) GTEST_SKIP() << "python3 with numpy is needed (scripts/setup.sh installs python3-numpy)";
  const fs::path dir = fresh_dir("rome_avg");
  kt::RunConfig c = fixture_config(dir / "run");
  kt::run_pipeline(c, quiet());
  kt::ExportReport ex = kt::export_rome((dir / "run").string());
  EXPECT_EQ(ex.facts, 3);
  EXPECT_EQ(ex.files, 15);
  EXPECT_EQ(ex.cases_dir, (dir / "run" / "rome" / "cases").string());
  std::set<std::string> keys;
  for (const auto& [k, v] : kt::read_npz((dir / "run" / "rome" / "cases" / "knowledge_0_mlp.npz").string())) keys.insert(k);
  EXPECT_EQ(keys, (std::set<std::string>{"scores", "low_score", "high_score", "input_ids", "input_tokens", "subject_range",
                                         "answer", "window", "correct_prediction", "kind"}));
  auto mlp = kt::read_npz((dir / "run" / "rome" / "cases" / "knowledge_0_mlp.npz").string());
  EXPECT_EQ(mlp.at("kind").item_string(), "mlp");
  EXPECT_EQ(mlp.at("window").item_i64(), 2);
  auto hidden = kt::read_npz((dir / "run" / "rome" / "cases" / "knowledge_0.npz").string());
  EXPECT_EQ(hidden.at("kind").item_string(), "");
  EXPECT_EQ(hidden.at("window").item_i64(), 1);
  const std::string src = kSrc;
  EXPECT_EQ(run_script(python() + " " + src + "/tests/reference/rome_averaging.py " + (dir / "run").string()), 0);
  EXPECT_EQ(run_script(python() + " " + src + "/tests/reference/aie_reference.py " + (dir / "run").string()), 0);

  // Fact 1 marked as a wrong prediction in every stored file.
  for (const auto& e : fs::directory_iterator(dir / "run" / "traces")) {
    if (e.path().filename().string().rfind("1_", 0) != 0) continue;
    auto a = kt::read_npz(e.path().string());
    a["correct_prediction"] = kt::NpyArray::scalar_bool(false);
    kt::write_npz(e.path().string(), std::vector<std::pair<std::string, kt::NpyArray>>(a.begin(), a.end()));
  }
  const kt::RunReport r = kt::replot((dir / "run").string(), quiet());
  std::string notes;
  for (const auto& n : r.notes) notes += n + "\n";
  EXPECT_NE(notes.find("aggregate(hidden): 1 stored trace(s) with correct_prediction false left out"), std::string::npos)
      << notes;
  const auto s = kt::read_summary_json((dir / "run" / "summary.json").string());
  EXPECT_EQ(s.front().n_facts, 2);
  EXPECT_EQ(s.front().n_skipped, 1);
  kt::export_rome((dir / "run").string());
  EXPECT_EQ(run_script(python() + " " + src + "/tests/reference/rome_averaging.py " + (dir / "run").string()), 0);
  EXPECT_EQ(run_script(python() + " " + src + "/tests/reference/aie_reference.py " + (dir / "run").string()), 0);
  // Not a run: one line.
  const std::string e = error_of([&] { kt::export_rome((dir / "nothing").string()); });
  EXPECT_NE(e.find("no run.json"), std::string::npos) << e;
}
