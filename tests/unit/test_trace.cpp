// links: kt_trace
// The reference tracer against ROME's algorithm on transformers (goldens
// from tests/reference/rome_reference.py), subject ranges, bad input, and
// the .npz result store.
#include <gtest/gtest.h>

#include <cstdlib>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <unistd.h>

#include "model/model.h"
#include "test_support.h"
#include "trace/noise.h"
#include "io/npz.h"
#include "trace/result_store.h"
#include "trace/subject.h"
#include "trace/tracer.h"
#include "util/error.h"
#include "util/paths.h"

namespace fs = std::filesystem;

namespace {

// KNOWTRACE_TEST_DEVICE=cuda runs these tests on the GPU (scripts/gpu-check.sh).
kt::LoadOptions test_device(at::ScalarType dtype = at::kFloat) {
  kt::LoadOptions o;
  o.dtype = dtype;
  if (const char* d = std::getenv("KNOWTRACE_TEST_DEVICE")) o.device = kt::parse_device(d);
  return o;
}

const std::string kSrc = KT_SOURCE_DIR;
const std::vector<std::string>& kArchs = kt_test::fixture_archs();
const std::vector<std::string> kFixtureSubjects = {"The Eiffel Tower", "Vinson Massif", "Danielle Darrieux",
                                                   "Miles Davis"};

nlohmann::json golden(const std::string& name) {
  return nlohmann::json::parse(kt::read_text_file(kSrc + "/tests/fixtures/traces/" + name + ".json"));
}

double compare_trace(const kt::FactTrace& f, const nlohmann::json& g, double tol, const std::string& what) {
  EXPECT_EQ(f.input_ids, g["input_ids"].get<std::vector<int32_t>>()) << what;
  EXPECT_EQ(f.subject_begin, g["subject_range"][0].get<int64_t>()) << what;
  EXPECT_EQ(f.subject_end, g["subject_range"][1].get<int64_t>()) << what;
  EXPECT_EQ(f.answer_id, g["answer_id"].get<int32_t>()) << what;
  EXPECT_NEAR(f.high_score, g["high_score"].get<double>(), tol) << what;
  EXPECT_NEAR(f.low_score, g["low_score"].get<double>(), tol) << what;
  double worst = 0;
  for (const auto& m : f.traces) {
    const auto& want = g["scores"][kt::mediator_name(m.mediator)];
    auto acc = m.scores.accessor<double, 2>();
    EXPECT_EQ(static_cast<size_t>(m.scores.size(0)), want.size()) << what;
    if (static_cast<size_t>(m.scores.size(0)) != want.size()) return 1.0;
    for (int64_t t = 0; t < m.scores.size(0); ++t)
      for (int64_t l = 0; l < m.scores.size(1); ++l) {
        double d = std::abs(acc[t][l] - want[t][l].get<double>());
        worst = std::max(worst, d);
        EXPECT_LE(d, tol) << what << " " << kt::mediator_name(m.mediator) << " cell (" << t << ", " << l << ")";
      }
  }
  return worst;
}

class TraceParity : public ::testing::TestWithParam<std::string> {};

TEST_P(TraceParity, AllMediatorsBothConventionsMatchRomeOnTransformers) {
  const auto g = golden(GetParam());
  auto model = kt::Model::load(kSrc + "/tests/fixtures/models/" + GetParam(), test_device());
  const double std = kt::subject_embedding_std(*model, kFixtureSubjects);
  EXPECT_NEAR(std, g["embedding_std"].get<double>(), 1e-6);
  double worst = 0;
  for (const auto& fact : g["facts"]) {
    for (const char* conv : {"resid_post", "resid_pre"}) {
      kt::TraceSettings s;
      s.samples = g["samples"];
      s.window = g["window"];
      s.noise = kt::parse_noise(std::to_string(g["noise_level"].get<double>()));
      s.noise.level = g["noise_level"];
      s.convention = kt::parse_convention(conv);
      auto f = kt::trace_fact_reference(*model, fact["prompt"], fact["subject"], s);
      worst = std::max(worst, compare_trace(f, fact[conv], 1e-5, GetParam() + " " + conv));
    }
  }
  std::printf("[trace parity] %-9s max |score diff| %.3g over %zu facts x 5 mediators x 2 conventions\n",
              GetParam().c_str(), worst, g["facts"].size());
}

// severing: rome-notebook against ROME's notebook algorithm
// (trace_with_repatch, re-expressed in tests/reference/rome_reference.py
// notebook): the severed mediators only, resid_post as the notebook.
TEST_P(TraceParity, RomeNotebookSeveringMatchesTheNotebookOnTransformers) {
  const auto g = golden(GetParam() + "_rome_notebook");
  auto model = kt::Model::load(kSrc + "/tests/fixtures/models/" + GetParam(), test_device());
  double worst = 0;
  for (const auto& fact : g["facts"]) {
    kt::TraceSettings s;
    s.samples = g["samples"];
    s.noise = kt::parse_noise("0.1");
    s.noise.level = g["noise_level"];
    s.window = 2;
    s.severing = kt::Severing::RomeNotebook;
    s.mediators = {kt::Mediator::HiddenAttnSevered, kt::Mediator::HiddenMlpSevered};
    const auto f = kt::trace_fact_reference(*model, fact["prompt"], fact["subject"], s);
    EXPECT_EQ(f.answer_id, fact["answer_id"].get<int32_t>());
    for (const auto& m : f.traces) {
      const auto& want = fact["scores"][kt::mediator_name(m.mediator)];
      auto acc = m.scores.accessor<double, 2>();
      ASSERT_EQ(static_cast<size_t>(m.scores.size(0)), want.size());
      for (int64_t t = 0; t < m.scores.size(0); ++t)
        for (int64_t l = 0; l < m.scores.size(1); ++l) {
          const double d = std::abs(acc[t][l] - want[t][l].get<double>());
          worst = std::max(worst, d);
          EXPECT_LE(d, 1e-5) << kt::mediator_name(m.mediator) << " cell (" << t << ", " << l << ")";
        }
    }
  }
  std::printf("[trace parity] %-9s rome-notebook severing: max |score diff| %.3g\n", GetParam().c_str(), worst);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, TraceParity, ::testing::ValuesIn(kArchs),
                         [](const auto& info) { return info.param; });

kt::TraceSettings small_settings() {
  kt::TraceSettings s;
  s.samples = 2;
  s.window = 2;
  s.noise = kt::parse_noise("0.3");
  return s;
}

void expect_error(const std::function<void()>& fn, const std::string& needle) {
  try {
    fn();
    FAIL() << "expected kt::Error containing '" << needle << "'";
  } catch (const kt::Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find(needle), std::string::npos) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  }
}

TEST(TraceErrors, BadFactsAndSettingsAreOneLineErrors) {
  auto model = kt::Model::load(kSrc + "/tests/fixtures/models/gpt2");
  const auto& M = *model;
  auto s = small_settings();
  expect_error([&] { kt::validate_fact(M, "Paris is in", "Berlin", s); }, "does not occur");
  expect_error([&] { kt::validate_fact(M, "", "x", s); }, "prompt is empty");
  expect_error([&] { kt::validate_fact(M, "Paris", "Paris", s); }, "whole prompt");
  std::string long_prompt;
  for (int i = 0; i < 200; ++i) long_prompt += "word ";
  expect_error([&] { kt::validate_fact(M, long_prompt + "Paris is", "Paris", s); }, "context");
  auto s0 = s;
  s0.samples = 0;
  expect_error([&] { kt::validate_fact(M, "Paris is in", "Paris", s0); }, "samples");
  auto sw = s;
  sw.window = 4;
  expect_error([&] { kt::validate_fact(M, "Paris is in", "Paris", sw); }, "window 4");
  expect_error([] { kt::parse_mediator("neurons"); }, "unknown mediator 'neurons'");
  expect_error([] { kt::parse_noise("loud"); }, "noise 'loud'");
  expect_error([] { kt::parse_noise("s0"); }, "noise 's0'");  // no noise under another name
  expect_error([] { kt::parse_noise("u0"); }, "with x > 0");
  expect_error([] { kt::parse_convention("middle"); }, "middle");
  // The tracer validates before it computes anything.
  expect_error([&] { kt::trace_fact_reference(M, "Paris is in", "Rome", s); }, "does not occur");
}

// The known_1000 records whose prompt is ASCII (ROME's character matching
// cannot split multi-byte characters): 1200 of 1209.
std::vector<nlohmann::json> ascii_facts(const nlohmann::json& known) {
  std::vector<nlohmann::json> out;
  for (const auto& k : known) {
    bool ascii = true;
    for (unsigned char c : k["prompt"].get<std::string>()) ascii = ascii && c < 0x80;
    if (ascii) out.push_back(k);
  }
  return out;
}

TEST(SubjectRange, ByteOffsetsAgreeWithRomeCharacterMatching) {
  auto model = kt::Model::load(kSrc + "/tests/fixtures/models/llama");
  const auto& tok = model->tokenizer();
  const std::string prompt = "The mother tongue of Danielle Darrieux is";
  auto enc = tok.encode(prompt);
  EXPECT_EQ(kt::subject_token_range(enc, prompt, "Danielle Darrieux"),
            kt::rome_token_range(tok, enc.ids, "Danielle Darrieux"));
  // A multi-byte subject: the byte-offset range still covers it.
  const std::string p2 = "Le Corbusier worked in Zürich and Paris";
  auto e2 = tok.encode(p2);
  auto [b, e] = kt::subject_token_range(e2, p2, "Zürich");
  const size_t sb = p2.find("Zürich");
  EXPECT_LE(e2.offsets[b].first, sb);
  EXPECT_GE(e2.offsets[e - 1].second, sb + std::string("Zürich").size());
}

TEST(SubjectRange, AgreesWithRomeOnEveryAsciiKnown1000Prompt) {
  const std::string dir = kt::data_dir_from_env();
  if (dir.empty()) GTEST_SKIP() << "KNOWTRACE_DATA_DIR not set: known_1000 unavailable";
  auto known = nlohmann::json::parse(kt::read_text_file(dir + "/known_1000.json"));
  for (const char* name : {"llama", "gpt2", "qwen2"}) {
    auto model = kt::Model::load(kSrc + "/tests/fixtures/models/" + name);
    const auto& tok = model->tokenizer();
    int checked = 0;
    for (const auto& k : ascii_facts(known)) {
      const std::string p = k["prompt"], subj = k["subject"];
      auto enc = tok.encode(p);
      ASSERT_EQ(kt::subject_token_range(enc, p, subj), kt::rome_token_range(tok, enc.ids, subj))
          << name << " known_id " << k["known_id"];
      ++checked;
    }
    EXPECT_EQ(checked, 1200) << name;  // 1209 records, 9 with non-ASCII text
  }
}

// The SentencePiece-style tokenizers. ROME decodes one token at a time and
// looks for the subject in the concatenation; a decoder that strips each
// token's leading space (Llama 2 and Mistral shapes: Strip) leaves
// "TheEiffelTower" where the prompt has "The Eiffel Tower", so ROME's method
// cannot find a subject with a space in it there (ROME itself fails on those
// tokenizers). Wherever it finds the subject it must agree with the
// byte-offset range; the Gemma shape (no Strip) must agree on every prompt.
TEST(SubjectRange, AgreesWithRomeOnSentencePieceTokenizers) {
  const std::string dir = kt::data_dir_from_env();
  if (dir.empty()) GTEST_SKIP() << "KNOWTRACE_DATA_DIR not set: known_1000 unavailable";
  auto known = nlohmann::json::parse(kt::read_text_file(dir + "/known_1000.json"));
  struct Case {
    std::string path;
    bool strips;
  };
  std::vector<Case> cases = {{kSrc + "/tests/fixtures/tokenizers/llama2", true},
                             {kSrc + "/tests/fixtures/tokenizers/gemma", false},
                             {kSrc + "/tests/fixtures/tokenizers/mistral", true}};
  const std::string gemma_gguf = kSrc + "/models/gemma-3-270m-q4_k_m.gguf";
  if (fs::exists(gemma_gguf)) cases.push_back({gemma_gguf, false});
  for (const Case& c : cases) {
    const kt::Tokenizer tok = kt::Tokenizer::load(c.path);
    int agree = 0, rome_lost = 0;
    for (const auto& k : ascii_facts(known)) {
      const std::string p = k["prompt"], subj = k["subject"];
      auto enc = tok.encode(p);
      const auto ours = kt::subject_token_range(enc, p, subj);
      std::pair<int64_t, int64_t> rome;
      try {
        rome = kt::rome_token_range(tok, enc.ids, subj);
      } catch (const kt::Error&) {
        ++rome_lost;
        EXPECT_TRUE(c.strips && subj.find(' ') != std::string::npos)
            << c.path << " known_id " << k["known_id"] << ": ROME's matching lost \"" << subj << "\"";
        continue;
      }
      ASSERT_EQ(ours, rome) << c.path << " known_id " << k["known_id"];
      ++agree;
    }
    std::printf("[ info ] %s: %d ASCII prompts agree, ROME's matching finds no subject in %d\n", c.path.c_str(),
                agree, rome_lost);
    EXPECT_EQ(agree + rome_lost, 1200) << c.path;
    if (!c.strips) EXPECT_EQ(rome_lost, 0) << c.path;
  }
}

TEST(ResultStore, NpzRoundTripAndFingerprintCheck) {
  auto model = kt::Model::load(kSrc + "/tests/fixtures/models/gpt2");
  auto s = small_settings();
  s.mediators = {kt::Mediator::Hidden, kt::Mediator::Mlp};
  auto f = kt::trace_fact_reference(*model, "Miles Davis plays the", "Miles Davis", s, std::string("trumpet"));
  const fs::path dir = fs::temp_directory_path() / ("kt_store_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  const std::string fp = kt::trace_fingerprint(*model, s);
  const std::string path = kt::trace_file_name(dir.string(), "7", kt::Mediator::Mlp);
  kt::write_trace_npz(path, f, f.traces[1], s, fp);
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  const kt::TraceRecord back = kt::read_trace_file(path, "7", fp);
  EXPECT_EQ(back.input_ids, std::vector<int64_t>(f.input_ids.begin(), f.input_ids.end()));
  EXPECT_EQ(back.tokens, f.input_tokens);
  EXPECT_EQ(back.answer, f.answer);
  EXPECT_EQ(back.answer_id, f.answer_id);
  EXPECT_EQ(back.subject_begin, f.subject_begin);
  EXPECT_EQ(back.correct_prediction, f.correct_prediction);
  EXPECT_EQ(back.correct_rule, "rome");  // --expect given: ROME's strip rule
  EXPECT_EQ(back.window, s.window);      // mlp: the real window
  EXPECT_DOUBLE_EQ(back.low_score, f.low_score);
  EXPECT_EQ(back.mediator, "mlp");
  at::Tensor scores = f.traces[1].scores.contiguous();
  EXPECT_EQ(back.scores, std::vector<double>(scores.data_ptr<double>(), scores.data_ptr<double>() + scores.numel()));
  // The hidden state restores one layer per cell: window 1 (ROME writes 10).
  kt::write_trace_npz(kt::trace_file_name(dir.string(), "7", kt::Mediator::Hidden), f, f.traces[0], s, fp);
  EXPECT_EQ(kt::read_trace_file(kt::trace_file_name(dir.string(), "7", kt::Mediator::Hidden), "7", fp).window, 1);
  auto s2 = s;
  s2.samples = 3;
  expect_error([&] { kt::read_trace_file(path, "7", kt::trace_fingerprint(*model, s2)); }, "'samples'");
  fs::remove_all(dir);
}

TEST(ResultStore, SaveStatesWritesCleanAndCorruptedSitesNumpyCanRead) {
  auto model = kt::Model::load(kSrc + "/tests/fixtures/models/gpt2");
  auto s = small_settings();
  s.mediators = {kt::Mediator::Hidden};
  auto f = kt::trace_fact_reference(*model, "Miles Davis plays the", "Miles Davis", s);
  auto st = kt::record_fact_states(*model, "Miles Davis plays the", "Miles Davis", s);
  const int64_t T = static_cast<int64_t>(f.input_ids.size()), d = model->config().hidden;
  ASSERT_EQ(st.sites.size(), 1u + 4 * model->config().n_layers);
  const fs::path path = fs::temp_directory_path() / ("kt_states_" + std::to_string(::getpid()) + ".npz");
  kt::write_states_npz(path.string(), f, st);
  auto a = kt::read_npz(path.string());
  const auto& c = kt::npz_get(a, "clean:transformer.h.1.mlp", path.string());
  const auto& r = kt::npz_get(a, "corrupted:transformer.h.1.mlp", path.string());
  EXPECT_EQ(c.dtype, "<f2");
  EXPECT_EQ(c.shape, (std::vector<int64_t>{T, d}));
  EXPECT_EQ(r.shape, (std::vector<int64_t>{s.samples, T, d}));
  // Values round-trip at float16 precision; the clean run is not the
  // corrupted one after the subject.
  auto cv = c.to_f32(), rv = r.to_f32();
  at::Tensor want = st.clean[1 + 1 * 4 + 2].to(at::kFloat)[0];  // embed, then 4 sites per layer: h.1.mlp
  EXPECT_LE((at::from_blob(cv.data(), {T, d}, at::kFloat) - want).abs().max().item<double>(), 1e-2);
  EXPECT_GT((at::from_blob(rv.data(), {s.samples, T, d}, at::kFloat)[0] - want).abs().max().item<double>(), 1e-3);
  fs::remove(path);
}

}  // namespace
