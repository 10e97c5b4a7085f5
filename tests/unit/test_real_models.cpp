// links: kt_pipeline
// The real models from the registry against transformers loading the same
// .gguf files (tests/reference/make_gguf_goldens.py): the default,
// SmolLM2-135M-Instruct (GGUF Q4_1, llama), and Gemma-3-270M (GGUF Q4_K_M,
// gemma3: sliding-window layers with their own rotary base, q/k norms,
// sandwich norms, scaled embeddings); and both engines against ROME on
// transformers for known_1000 facts (tests/reference/rome_reference.py).
//
// The models come from scripts/get-model.sh (setup.sh fetches SmolLM2,
// test.sh Gemma-3); a missing SmolLM2 fails these tests, a missing Gemma-3
// skips its own with the reason.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <filesystem>
#include <set>

#include "model/model.h"
#include "pipeline/config.h"
#include "pipeline/pipeline.h"
#include "pipeline/stages.h"
#include "trace/fast_engine.h"
#include "trace/noise.h"
#include "trace/tracer.h"
#include "util/paths.h"

namespace fs = std::filesystem;

namespace {

const std::string kSrc = KT_SOURCE_DIR;
const std::string kModel = kSrc + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
const std::string kGemma = kSrc + "/models/gemma-3-270m-q4_k_m.gguf";

nlohmann::json load_json(const std::string& rel) {
  return nlohmann::json::parse(kt::read_text_file(kSrc + "/" + rel));
}

const kt::Model& smollm2() {
  static std::unique_ptr<kt::Model> m;
  if (!m) {
    if (!fs::exists(kModel)) throw std::runtime_error(kModel + " missing: run bash scripts/get-model.sh smollm2-135m");
    m = kt::Model::load(kModel);
  }
  return *m;
}

TEST(SmolLM2, ArchitectureFromGgufMetadata) {
  const auto& c = smollm2().config();
  EXPECT_EQ(c.model_type, "llama");
  EXPECT_EQ(c.n_layers, 30);
  EXPECT_EQ(c.hidden, 576);
  EXPECT_EQ(c.n_heads, 9);
  EXPECT_EQ(c.n_kv_heads, 3);
  EXPECT_EQ(c.vocab_size, 49152);
  EXPECT_TRUE(c.tie_embeddings);
}

TEST(SmolLM2, TokenIdsOfAllKnown1000PromptsAndSubjectsMatchTransformers) {
  const std::string dir = kt::data_dir_from_env();
  if (dir.empty()) GTEST_SKIP() << "KNOWTRACE_DATA_DIR not set: known_1000 unavailable";
  auto known = nlohmann::json::parse(kt::read_text_file(dir + "/known_1000.json"));
  auto golden = load_json("tests/fixtures/smollm2/token_ids.json")["ids"];
  const auto& tok = smollm2().tokenizer();
  int n = 0;
  for (const auto& k : known) {
    const auto& g = golden[std::to_string(k["known_id"].get<int>())];
    EXPECT_EQ(tok.encode(k["prompt"]).ids, g["prompt"].get<std::vector<int32_t>>()) << "known_id " << k["known_id"];
    EXPECT_EQ(tok.encode(k["subject"]).ids, g["subject"].get<std::vector<int32_t>>()) << "known_id " << k["known_id"];
    ++n;
  }
  EXPECT_EQ(n, 1209);
}

const kt::Model* gemma3() {
  static std::unique_ptr<kt::Model> m;
  if (!m && fs::exists(kGemma)) m = kt::Model::load(kGemma);
  return m.get();
}

#define KT_NEED_GEMMA3()                                   \
  const kt::Model* gemma = gemma3();                       \
  if (!gemma) GTEST_SKIP() << kGemma << " not present: scripts/get-model.sh gemma3-270m fetches it"

// Top-20 last-position log-probabilities on the golden's prompts: same
// top-1, every value within 1e-3.
void expect_logprobs_match(const kt::Model& m, const std::string& golden_file, const char* tag) {
  const std::string dir = kt::data_dir_from_env();
  if (dir.empty()) GTEST_SKIP() << "KNOWTRACE_DATA_DIR not set: known_1000 unavailable";
  auto known = nlohmann::json::parse(kt::read_text_file(dir + "/known_1000.json"));
  auto golden = load_json(golden_file)["prompts"];
  ASSERT_GE(golden.size(), 20u);
  double worst = 0;
  for (const auto& row : golden) {
    const std::string prompt = known[row["known_id"].get<int>()]["prompt"];
    auto ids = m.tokenizer().encode(prompt).ids;
    at::Tensor x = at::tensor(std::vector<int64_t>(ids.begin(), ids.end()), at::kLong).unsqueeze(0);
    at::Tensor lp = at::log_softmax(m.forward(x, nullptr, true)[0], -1);
    auto top_ids = row["top_ids"].get<std::vector<int64_t>>();
    auto top_lp = row["top_logprobs"].get<std::vector<double>>();
    EXPECT_EQ(lp.argmax().item<int64_t>(), top_ids[0]) << prompt;
    for (size_t i = 0; i < top_ids.size(); ++i) {
      double d = std::abs(lp[top_ids[i]].item<double>() - top_lp[i]);
      worst = std::max(worst, d);
      EXPECT_LE(d, 1e-3) << prompt << " token " << top_ids[i];
    }
  }
  std::printf("[%s] max |log-prob diff| vs transformers (top-20, %zu prompts): %.3g\n", tag, golden.size(), worst);
}

TEST(SmolLM2, LastPositionLogProbsMatchTransformers) {
  expect_logprobs_match(smollm2(), "tests/fixtures/smollm2/logprobs.json", "smollm2");
}

TEST(Gemma3, ArchitectureFromGgufMetadata) {
  KT_NEED_GEMMA3();
  const auto& c = gemma->config();
  EXPECT_EQ(c.model_type, "gemma3_text");
  EXPECT_EQ(c.n_layers, 18);
  EXPECT_EQ(c.hidden, 640);
  EXPECT_EQ(c.head_dim, 256);
  EXPECT_EQ(c.vocab_size, 262144);
  EXPECT_TRUE(c.tie_embeddings);
  EXPECT_EQ(c.sliding_window, 512);
  int global = 0;
  for (int64_t l = 0; l < c.n_layers; ++l) global += c.is_sliding(l) ? 0 : 1;
  EXPECT_EQ(global, 3);  // every 6th layer
  EXPECT_EQ(c.local_rope_theta, 10000.0);
}

// The filter stage of `knowtrace run hparams/gemma-3-270m.yaml` over all
// of known_1000 (fp32) keeps exactly the facts transformers gets right,
// under both rules.
TEST(Gemma3, FilterKeepsWhatTransformersGetRight) {
  KT_NEED_GEMMA3();
  if (kt::data_dir_from_env().empty()) GTEST_SKIP() << "KNOWTRACE_DATA_DIR not set: known_1000 unavailable";
  kt::RunConfig c = kt::load_config(kSrc + "/hparams/gemma-3-270m.yaml");
  c.model = kGemma;
  c.dataset = "known_1000";
  c.stages = {"filter"};
  const fs::path dir = fs::temp_directory_path() / ("kt_gemma3_filter_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  c.results = dir.string();
  kt::RunOptions quiet;
  quiet.progress = false;
  kt::run_pipeline(c, quiet);
  const auto verdicts = kt::pipeline::read_verdicts((dir / "filter.jsonl").string());
  ASSERT_EQ(verdicts.size(), 1209u);
  auto golden = load_json("tests/fixtures/gemma3/filter.json");
  for (const auto& [rule, want] : {std::pair<const char*, const char*>{"rome", "rome"}, {"first_token", "first-token"}}) {
    std::set<int> ours, theirs;
    for (const auto& v : verdicts)
      if (std::string(rule) == "rome" ? v.rome : v.first_token) ours.insert(std::stoi(v.id));
    for (int id : golden[want].get<std::vector<int>>()) theirs.insert(id);
    EXPECT_EQ(ours, theirs) << rule;
    std::printf("[gemma3] filter '%s': %zu of 1209 facts kept (transformers: %zu)\n", want, ours.size(), theirs.size());
  }
  fs::remove_all(dir);
}

TEST(Gemma3, LastPositionLogProbsMatchTransformers) {
  KT_NEED_GEMMA3();
  expect_logprobs_match(*gemma, "tests/fixtures/gemma3/logprobs.json", "gemma3");
}

// Compares one engine's trace of a golden fact; returns the largest
// score difference.
double check_fact(const kt::FactTrace& f, const nlohmann::json& fact, double tol) {
  const auto& want = fact["resid_post"];
  EXPECT_EQ(f.input_ids, want["input_ids"].get<std::vector<int32_t>>());
  EXPECT_EQ(f.subject_begin, want["subject_range"][0].get<int64_t>());
  EXPECT_EQ(f.subject_end, want["subject_range"][1].get<int64_t>());
  EXPECT_EQ(f.answer_id, want["answer_id"].get<int32_t>());
  EXPECT_NEAR(f.high_score, want["high_score"].get<double>(), tol);
  EXPECT_NEAR(f.low_score, want["low_score"].get<double>(), tol);
  double worst = 0;
  for (const auto& tr : f.traces) {
    const auto& w = want["scores"][kt::mediator_name(tr.mediator)];
    auto acc = tr.scores.accessor<double, 2>();
    for (int64_t t = 0; t < tr.scores.size(0); ++t)
      for (int64_t l = 0; l < tr.scores.size(1); ++l) {
        double d = std::abs(acc[t][l] - w[t][l].get<double>());
        worst = std::max(worst, d);
        EXPECT_LE(d, tol) << fact["known_id"] << " " << kt::mediator_name(tr.mediator) << " (" << t << "," << l << ")";
      }
  }
  return worst;
}

kt::TraceSettings golden_settings(const nlohmann::json& g) {
  kt::TraceSettings s;
  s.samples = g["samples"];
  s.window = g["window"];
  s.noise = kt::parse_noise("s3");
  s.noise.std_multiple = 0;
  s.noise.level = g["noise_level"];
  return s;
}

// The std of the known_1000 subjects' embeddings (ROME's
// collect_embedding_std, which s3 multiplies) against the trace golden's.
void expect_embedding_std_matches(const kt::Model& m, const std::string& golden_file, double tol) {
  const std::string dir = kt::data_dir_from_env();
  if (dir.empty()) GTEST_SKIP() << "KNOWTRACE_DATA_DIR not set: known_1000 unavailable";
  auto known = nlohmann::json::parse(kt::read_text_file(dir + "/known_1000.json"));
  std::vector<std::string> subjects;
  for (const auto& k : known) subjects.push_back(k["subject"]);
  EXPECT_NEAR(kt::subject_embedding_std(m, subjects), load_json(golden_file)["embedding_std"].get<double>(), tol);
}

TEST(SmolLM2, NoiseLevelS3MatchesRomeOverKnown1000Subjects) {
  expect_embedding_std_matches(smollm2(), "tests/fixtures/traces/smollm2.json", 1e-6);
}

TEST(SmolLM2, FastEngineMatchesRomeOnTransformersAllMediators) {
  auto g = load_json("tests/fixtures/traces/smollm2.json");
  ASSERT_GE(g["facts"].size(), 3u);
  double worst = 0;
  for (const auto& fact : g["facts"])
    worst = std::max(worst, check_fact(kt::trace_fact_fast(smollm2(), fact["prompt"], fact["subject"],
                                                           golden_settings(g)),
                                       fact, 1e-4));
  std::printf("[smollm2] fast engine vs ROME-on-transformers: max |score diff| %.3g over %zu facts x 5 mediators\n",
              worst, g["facts"].size());
}

TEST(SmolLM2, ReferenceEngineMatchesRomeOnTransformers) {
  // One fact, the hidden and severed-MLP mediators: the reference engine
  // runs a full forward per cell, so this is kept small for CI.
  auto g = load_json("tests/fixtures/traces/smollm2.json");
  auto s = golden_settings(g);
  s.mediators = {kt::Mediator::Hidden, kt::Mediator::HiddenMlpSevered};
  const auto& fact = g["facts"][0];
  double worst = check_fact(kt::trace_fact_reference(smollm2(), fact["prompt"], fact["subject"], s), fact, 1e-4);
  std::printf("[smollm2] reference engine vs ROME-on-transformers: max |score diff| %.3g\n", worst);
}

TEST(Gemma3, NoiseLevelS3MatchesRomeOverKnown1000Subjects) {
  KT_NEED_GEMMA3();
  expect_embedding_std_matches(*gemma, "tests/fixtures/traces/gemma3.json", 1e-5);
}

// One known_1000 fact Gemma-3 answers correctly, all five mediators, fp32,
// the fast engine against ROME's algorithm on transformers' load of the same
// GGUF (tests/reference/rome_reference.py gemma3).
TEST(Gemma3, FastEngineMatchesRomeOnTransformersAllMediators) {
  KT_NEED_GEMMA3();
  auto g = load_json("tests/fixtures/traces/gemma3.json");
  ASSERT_GE(g["facts"].size(), 1u);
  double worst = 0;
  for (const auto& fact : g["facts"])
    worst = std::max(worst, check_fact(kt::trace_fact_fast(*gemma, fact["prompt"], fact["subject"], golden_settings(g)),
                                       fact, 1e-4));
  std::printf("[gemma3] fast engine vs ROME-on-transformers: max |score diff| %.3g over %zu fact(s) x 5 mediators\n",
              worst, g["facts"].size());
}

}  // namespace
