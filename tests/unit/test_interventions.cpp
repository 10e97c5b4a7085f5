// links: kt_trace
// Beyond ROME's five mediators, on every fixture architecture:
// counterfactual-prompt corruption, teacher-forced answer targets, the
// metrics (prob, logprob, logit_diff, kl, normalised) and attention
// knockout. The reference engine against plain transformers hooks
// (tests/reference/interventions_reference.py, goldens
// tests/fixtures/traces/<model>_interventions.json), the fast engine
// against the reference engine (probabilities within 1e-6).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>

#include "model/model.h"
#include "test_support.h"
#include "trace/engine.h"
#include "util/error.h"
#include "util/paths.h"

namespace {

const std::string kSrc = KT_SOURCE_DIR;
const std::vector<std::string>& kArchs = kt_test::fixture_archs();

kt::LoadOptions test_device() {
  kt::LoadOptions o;
  if (const char* d = std::getenv("KNOWTRACE_TEST_DEVICE")) o.device = kt::parse_device(d);
  return o;
}

nlohmann::json golden(const std::string& name) {
  return nlohmann::json::parse(kt::read_text_file(kSrc + "/tests/fixtures/traces/" + name + "_interventions.json"));
}

struct Kind {
  const char* key;  // the golden's section
  kt::Corruption corruption;
  kt::Target target;
  std::vector<kt::Metric> metrics;
};
// Every metric on ROME's corruption and target; two on each other pair.
const std::vector<Kind> kKinds = {
    {"noise_first_token", kt::Corruption::Noise, kt::Target::FirstToken,
     {kt::Metric::Prob, kt::Metric::LogProb, kt::Metric::LogitDiff, kt::Metric::Kl}},
    {"noise_answer", kt::Corruption::Noise, kt::Target::Answer, {kt::Metric::Prob, kt::Metric::LogProb}},
    {"prompt_first_token", kt::Corruption::Prompt, kt::Target::FirstToken, {kt::Metric::Prob, kt::Metric::Kl}},
    {"prompt_answer", kt::Corruption::Prompt, kt::Target::Answer, {kt::Metric::Prob, kt::Metric::LogitDiff}},
};

kt::TraceSettings settings(const nlohmann::json& g) {
  kt::TraceSettings s;
  s.samples = g["samples"].get<int64_t>();
  s.window = g["window"].get<int64_t>();
  s.knockout_window = g["knockout_window"].get<int64_t>();
  s.noise = kt::parse_noise(std::to_string(g["noise_level"].get<double>()));
  s.noise.level = g["noise_level"].get<double>();  // every digit of the golden's
  return s;
}

kt::FactAnswer answer_of(const nlohmann::json& f) {
  kt::FactAnswer a(f["attribute"].get<std::string>());
  a.counterfactual = f["counterfactual_prompt"].get<std::string>();
  a.counterfactual_answer = f["counterfactual_answer"].get<std::string>();
  return a;
}

double max_abs(const at::Tensor& a, const nlohmann::json& rows) {
  double worst = 0;
  auto acc = a.accessor<double, 2>();
  EXPECT_EQ(a.size(0), static_cast<int64_t>(rows.size()));
  for (int64_t t = 0; t < a.size(0) && t < static_cast<int64_t>(rows.size()); ++t) {
    EXPECT_EQ(a.size(1), static_cast<int64_t>(rows[t].size()));
    for (int64_t l = 0; l < a.size(1) && l < static_cast<int64_t>(rows[t].size()); ++l)
      worst = std::max(worst, std::abs(acc[t][l] - rows[t][l].get<double>()));
  }
  return worst;
}

double max_diff(const kt::FactTrace& a, const kt::FactTrace& b) {
  double worst = std::max(std::abs(a.low_score - b.low_score), std::abs(a.high_score - b.high_score));
  EXPECT_EQ(a.traces.size(), b.traces.size());
  for (size_t i = 0; i < a.traces.size() && i < b.traces.size(); ++i)
    worst = std::max(worst, (a.traces[i].scores - b.traces[i].scores).abs().max().item<double>());
  return worst;
}

kt::FactTrace trace(const kt::Model& m, const nlohmann::json& f, const kt::TraceSettings& s, kt::Engine e) {
  kt::EngineOptions o;
  o.engine = e;
  return kt::trace_fact(m, f["prompt"].get<std::string>(), f["subject"].get<std::string>(), s, answer_of(f), o);
}

class Interventions : public ::testing::TestWithParam<std::string> {};

TEST_P(Interventions, RestorationsMatchTransformersHooksAndFastEqualsReference) {
  const auto g = golden(GetParam());
  auto model = kt::Model::load(kSrc + "/tests/fixtures/models/" + GetParam(), test_device());
  double worst_ref = 0, worst_fast = 0, worst_fast_log = 0;
  for (const auto& f : g["facts"]) {
    for (const Kind& k : kKinds) {
      const auto& gk = f[k.key];
      for (kt::Metric metric : k.metrics) {
        kt::TraceSettings s = settings(g);
        s.corruption = k.corruption, s.target = k.target, s.metric = metric;
        const std::string mn = kt::metric_name(metric), what = std::string(k.key) + " " + mn + " " + f["prompt"].get<std::string>();
        const auto ref = trace(*model, f, s, kt::Engine::Reference);
        const auto fast = trace(*model, f, s, kt::Engine::Fast);
        EXPECT_EQ(ref.input_ids, f["input_ids"].get<std::vector<int32_t>>()) << what;
        EXPECT_EQ(ref.answer_id, f["answer_id"].get<int32_t>()) << what;
        const auto targets = k.target == kt::Target::Answer ? f["answer_ids"].get<std::vector<int32_t>>()
                                                            : std::vector<int32_t>{f["answer_id"].get<int32_t>()};
        EXPECT_EQ(ref.target_ids, targets) << what;
        double d = std::max(std::abs(ref.high_score - gk["high"][mn].get<double>()),
                            std::abs(ref.low_score - gk["low"][mn].get<double>()));
        for (const auto& t : ref.traces) d = std::max(d, max_abs(t.scores, gk["scores"][kt::mediator_name(t.mediator)][mn]));
        EXPECT_LE(d, 1e-5) << what;
        // Probabilities agree to 1e-6; the log-scale metrics (logprob,
        // logit_diff, kl) carry the logits' own float32 rounding (~1e-6
        // of logits of a few units; measured up to 2.3e-6), so 1e-5 there,
        // as the five mediators' fast-vs-reference test allows.
        const double df = max_diff(fast, ref);
        EXPECT_LE(df, metric == kt::Metric::Prob ? 1e-6 : 1e-5) << what;
        worst_ref = std::max(worst_ref, d);
        (metric == kt::Metric::Prob ? worst_fast : worst_fast_log) = std::max(metric == kt::Metric::Prob ? worst_fast : worst_fast_log, df);
      }
    }
  }
  std::printf("[interventions] %-14s restorations: max |reference - transformers| %.3g, max |fast - reference| %.3g "
              "(prob), %.3g (logprob, logit_diff, kl)\n",
              GetParam().c_str(), worst_ref, worst_fast, worst_fast_log);
}

TEST_P(Interventions, KnockoutMatchesTransformersMaskAndFastEqualsReference) {
  const auto g = golden(GetParam());
  auto model = kt::Model::load(kSrc + "/tests/fixtures/models/" + GetParam(), test_device());
  double worst_ref = 0, worst_fast = 0, largest = 0;
  for (const auto& f : g["facts"]) {
    for (kt::Target target : {kt::Target::FirstToken, kt::Target::Answer}) {
      kt::TraceSettings s = settings(g);
      s.target = target;
      s.mediators = {kt::Mediator::KnockoutSubject, kt::Mediator::KnockoutNonSubject, kt::Mediator::KnockoutLast};
      const auto& gk = f[target == kt::Target::Answer ? "knockout_answer" : "knockout_first_token"];
      const auto ref = trace(*model, f, s, kt::Engine::Reference);
      const auto fast = trace(*model, f, s, kt::Engine::Fast);
      double d = 0;
      for (const auto& t : ref.traces) {
        ASSERT_EQ(t.scores.size(0), 1);
        d = std::max(d, max_abs(t.scores, nlohmann::json::array({gk["scores"][kt::mediator_name(t.mediator)]})));
        d = std::max(d, std::abs(t.high_score - gk["high"].get<double>()));
        EXPECT_EQ(t.low_score, 0.0);
        largest = std::max(largest, t.scores.abs().max().item<double>());
      }
      EXPECT_LE(d, 1e-5) << f["prompt"] << " " << kt::target_name(target);
      // Compared as probabilities: p_clean x (1 + relative change).
      double df = 0;
      for (size_t i = 0; i < ref.traces.size(); ++i)
        df = std::max(df, ref.traces[i].high_score *
                              (fast.traces[i].scores - ref.traces[i].scores).abs().max().item<double>());
      EXPECT_LE(df, 1e-6) << f["prompt"] << " " << kt::target_name(target);
      worst_ref = std::max(worst_ref, d), worst_fast = std::max(worst_fast, df);
    }
  }
  EXPECT_GT(largest, 1e-4) << "removing attention edges changes p(answer) somewhere";
  std::printf("[interventions] %-14s knockout: max |reference - transformers| %.3g, max |fast - reference| %.3g\n",
              GetParam().c_str(), worst_ref, worst_fast);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, Interventions, ::testing::ValuesIn(kArchs),
                         [](const auto& info) { return info.param; });

// Normalised scores are (m - low) / (high - low) of the raw ones, for every
// metric (kl falls as the cell restores: its fraction still rises to 1).
TEST(InterventionsNormalise, FractionOfTheRawScores) {
  auto model = kt::Model::load(kSrc + "/tests/fixtures/models/llama", test_device());
  const auto g = golden("llama");
  const auto& f = g["facts"][0];
  for (kt::Metric metric : {kt::Metric::Prob, kt::Metric::Kl}) {
    kt::TraceSettings s = settings(g);
    s.metric = metric;
    s.mediators = {kt::Mediator::Hidden};
    const auto raw = trace(*model, f, s, kt::Engine::Fast);
    s.normalise = true;
    const auto norm = trace(*model, f, s, kt::Engine::Fast);
    EXPECT_EQ(norm.low_score, 0.0);
    EXPECT_EQ(norm.high_score, 1.0);
    EXPECT_DOUBLE_EQ(norm.raw_low, raw.low_score);
    EXPECT_DOUBLE_EQ(norm.raw_high, raw.high_score);
    const at::Tensor expect = (raw.traces[0].scores - raw.low_score) / (raw.high_score - raw.low_score);
    EXPECT_LE((norm.traces[0].scores - expect).abs().max().item<double>(), 1e-9) << kt::metric_name(metric);
    // Restoring the last layer at the last token gives back the clean run.
    const int64_t T = norm.traces[0].scores.size(0), L = norm.traces[0].scores.size(1);
    EXPECT_NEAR(norm.traces[0].scores[T - 1][L - 1].item<double>(), 1.0, 1e-5) << kt::metric_name(metric);
  }
}

// Bad input: one-line errors naming the field.
TEST(InterventionsErrors, OneLineErrorsNamingTheField) {
  auto model = kt::Model::load(kSrc + "/tests/fixtures/models/llama", test_device());
  const auto g = golden("llama");
  const auto& f = g["facts"][0];
  const std::string prompt = f["prompt"], subject = f["subject"];
  auto expect_error = [&](kt::TraceSettings s, kt::FactAnswer a, const std::string& part) {
    for (kt::Engine e : {kt::Engine::Reference, kt::Engine::Fast}) {
      kt::EngineOptions o;
      o.engine = e;
      try {
        kt::trace_fact(*model, prompt, subject, s, a, o);
        ADD_FAILURE() << "no error; expected: " << part;
      } catch (const kt::Error& err) {
        const std::string m = err.what();
        EXPECT_NE(m.find(part), std::string::npos) << m;
        EXPECT_EQ(m.find('\n'), std::string::npos) << m;
      }
    }
  };
  kt::TraceSettings s = settings(g);
  s.corruption = kt::Corruption::Prompt;
  kt::FactAnswer a = answer_of(f);
  a.counterfactual = "The Leaning Tower of Pisa in Italy is located in the city of";
  expect_error(s, a, "tokens; the prompt has");
  a.counterfactual.reset();
  expect_error(s, a, "needs a counterfactual prompt (field counterfactual)");
  a = answer_of(f);
  a.counterfactual = prompt;
  expect_error(s, a, "has the prompt's tokens");
  s = settings(g);
  s.metric = kt::Metric::LogitDiff;
  a = answer_of(f);
  a.counterfactual_answer.reset();
  expect_error(s, a, "metric logit_diff needs a counterfactual answer (field counterfactual_answer)");
  s = settings(g);
  s.target = kt::Target::Answer;
  expect_error(s, kt::FactAnswer{}, "target answer needs the fact's attribute");
  s = settings(g);
  s.mediators = {kt::Mediator::KnockoutSubject};
  s.knockout_window = 99;
  expect_error(s, answer_of(f), "knockout_window 99 is larger than the model's");
  EXPECT_THROW(kt::parse_metric("accuracy"), kt::Error);
  EXPECT_THROW(kt::parse_target("all"), kt::Error);
  EXPECT_THROW(kt::parse_corruption("shuffle"), kt::Error);
}

}  // namespace
