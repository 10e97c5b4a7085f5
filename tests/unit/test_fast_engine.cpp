// links: kt_trace
// The fast engine equals the reference engine (fp32 rounding) on every
// fixture architecture, all five mediators, both hidden-state conventions,
// and chunked sweeps equal one sweep.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "model/device_memory.h"
#include "model/model.h"
#include "test_support.h"
#include "trace/fast_engine.h"
#include "trace/tracer.h"
#include "util/error.h"

namespace {

// KNOWTRACE_TEST_DEVICE=cuda runs these tests on the GPU (scripts/gpu-check.sh).
kt::LoadOptions test_device(at::ScalarType dtype = at::kFloat) {
  kt::LoadOptions o;
  o.dtype = dtype;
  if (const char* d = std::getenv("KNOWTRACE_TEST_DEVICE")) o.device = kt::parse_device(d);
  return o;
}

const std::string kModels = std::string(KT_SOURCE_DIR) + "/tests/fixtures/models/";
const std::vector<std::string>& kArchs = kt_test::fixture_archs();
const std::vector<std::pair<std::string, std::string>> kFacts = {
    {"The Eiffel Tower is located in the city of", "The Eiffel Tower"},
    {"The mother tongue of Danielle Darrieux is", "Danielle Darrieux"},
    {"In 1969, the astronaut Neil Armstrong walked on the", "Neil Armstrong"},
    {"Miles Davis plays the", "Miles Davis"},
};

double max_diff(const kt::FactTrace& a, const kt::FactTrace& b) {
  EXPECT_EQ(a.input_ids, b.input_ids);
  EXPECT_EQ(a.answer_id, b.answer_id);
  EXPECT_EQ(a.subject_begin, b.subject_begin);
  EXPECT_EQ(a.traces.size(), b.traces.size());
  double worst = std::max(std::abs(a.low_score - b.low_score), std::abs(a.high_score - b.high_score));
  for (size_t i = 0; i < a.traces.size() && i < b.traces.size(); ++i) {
    EXPECT_EQ(a.traces[i].mediator, b.traces[i].mediator);
    worst = std::max(worst, (a.traces[i].scores - b.traces[i].scores).abs().max().item<double>());
  }
  return worst;
}

kt::TraceSettings settings(kt::HiddenConvention conv) {
  kt::TraceSettings s;
  s.samples = 3;
  s.window = 2;
  s.noise = kt::parse_noise("0.25");
  s.convention = conv;
  return s;
}

class FastVsReference : public ::testing::TestWithParam<std::string> {};

TEST_P(FastVsReference, AllMediatorsBothConventionsFp32) {
  auto model = kt::Model::load(kModels + GetParam(), test_device());
  double worst = 0;
  int64_t computed = 0, cells = 0;
  for (auto conv : {kt::HiddenConvention::ResidPost, kt::HiddenConvention::ResidPre}) {
    for (const auto& [prompt, subject] : kFacts) {
      auto s = settings(conv);
      kt::FastStats st;
      auto fast = kt::trace_fact_fast(*model, prompt, subject, s, {}, {}, &st);
      auto ref = kt::trace_fact_reference(*model, prompt, subject, s);
      double d = max_diff(fast, ref);
      EXPECT_LE(d, 1e-5) << prompt << " " << kt::convention_name(conv);
      worst = std::max(worst, d);
      computed += st.restorations;
      cells += static_cast<int64_t>(fast.traces.size()) * fast.traces[0].scores.numel();
      EXPECT_GT(st.flops, 0);
    }
  }
  std::printf("[fast] %-9s max |fast - reference| %.3g; %lld of %lld cells computed (rest = low_score)\n",
              GetParam().c_str(), worst, (long long)computed, (long long)cells);
}

TEST_P(FastVsReference, ChunkedSweepsEqualOneSweep) {
  auto model = kt::Model::load(kModels + GetParam(), test_device());
  auto s = settings(kt::HiddenConvention::ResidPost);
  kt::FastStats one, many;
  auto a = kt::trace_fact_fast(*model, kFacts[0].first, kFacts[0].second, s, {}, {}, &one);
  kt::FastOptions small;
  small.max_batch_tokens = 40;
  auto b = kt::trace_fact_fast(*model, kFacts[0].first, kFacts[0].second, s, {}, small, &many);
  EXPECT_EQ(one.sweeps, 1);
  EXPECT_GT(many.sweeps, 3);
  EXPECT_LE(max_diff(a, b), 1e-6);
}

// ROME's notebook severing (frozen values from the first noise draw, scored
// pass from the second): both engines, both conventions; it changes the
// severed mediators only, and they do differ from the same-draw numbers.
TEST_P(FastVsReference, RomeNotebookSeveringBothConventions) {
  auto model = kt::Model::load(kModels + GetParam(), test_device());
  double worst = 0, moved = 0;
  for (auto conv : {kt::HiddenConvention::ResidPost, kt::HiddenConvention::ResidPre}) {
    for (size_t i = 0; i < 2; ++i) {
      const auto& [prompt, subject] = kFacts[i];
      auto s = settings(conv);
      s.severing = kt::Severing::RomeNotebook;
      auto fast = kt::trace_fact_fast(*model, prompt, subject, s);
      auto ref = kt::trace_fact_reference(*model, prompt, subject, s);
      const double d = max_diff(fast, ref);
      EXPECT_LE(d, 1e-5) << prompt << " " << kt::convention_name(conv);
      worst = std::max(worst, d);
      auto same = kt::trace_fact_fast(*model, prompt, subject, settings(conv));
      for (size_t m = 0; m < same.traces.size(); ++m) {
        const double diff = (same.traces[m].scores - fast.traces[m].scores).abs().max().item<double>();
        const bool severed = s.notebook_severing(same.traces[m].mediator);
        // Others: the same numbers (batched differently: fp32 rounding only).
        if (!severed) EXPECT_LE(diff, 1e-6) << kt::mediator_name(same.traces[m].mediator);
        if (severed) moved = std::max(moved, diff);
      }
    }
  }
  EXPECT_GT(moved, 1e-4) << "the second draw changes the severed mediators";
  std::printf("[fast] %-9s rome-notebook severing: max |fast - reference| %.3g (vs same-draw: %.3g)\n",
              GetParam().c_str(), worst, moved);
}

// The FLOPs the sweeps count equal what the cell plans say they compute
// (each restoration: its rows x live tokens from its start layer on, plus
// the head), for the five mediators, notebook severing, knockouts, a
// teacher-forced answer and chunked sweeps; ROME's loop is one forward of
// S + 1 rows per cell, and the fast engine does a fraction of it.
TEST_P(FastVsReference, CountedFlopsEqualThePlannedOnes) {
  auto model = kt::Model::load(kModels + GetParam(), test_device());
  const auto& c = model->config();
  const auto& [prompt, subject] = kFacts[0];
  for (int variant = 0; variant < 4; ++variant) {
    auto s = settings(kt::HiddenConvention::ResidPost);
    kt::FastOptions o;
    kt::FactAnswer a(std::string("Paris"));
    if (variant == 1) s.severing = kt::Severing::RomeNotebook, o.max_batch_tokens = 40;
    if (variant == 2) s.mediators = {kt::Mediator::Hidden, kt::Mediator::KnockoutSubject}, s.knockout_window = 2;
    if (variant == 3) s.target = kt::Target::Answer;
    kt::FastStats run;
    const auto f = kt::trace_fact_fast(*model, prompt, subject, s, a, o, &run);
    const kt::FastStats planned = kt::count_trace_flops(*model, prompt, subject, s, a);
    EXPECT_EQ(planned.restorations, run.restorations) << variant;
    EXPECT_NEAR(planned.flops, run.flops, 1e-12 * run.flops) << variant;
    EXPECT_DOUBLE_EQ(planned.rome_flops, run.rome_flops) << variant;
    int64_t cells = 0;
    for (const auto& t : f.traces) cells += t.scores.numel();
    const int64_t T_run = static_cast<int64_t>(f.input_ids.size() + f.target_ids.size()) - 1;
    EXPECT_DOUBLE_EQ(run.rome_flops,
                     (cells + 1) * kt::forward_flops(c, s.samples + 1, T_run, static_cast<int64_t>(f.target_ids.size())))
        << variant;
    EXPECT_LT(run.flops, run.rome_flops) << variant;
  }
}

// The severed cells of a (t, l) take their hidden cell's first block: traced
// together, the three cost fewer FLOPs than each alone, with the numbers
// each gives alone (chunked too: a cell and the ones sharing its block
// stay in one sweep).
TEST_P(FastVsReference, SeveredCellsShareTheHiddenCellsFirstBlock) {
  auto model = kt::Model::load(kModels + GetParam(), test_device());
  const auto& [prompt, subject] = kFacts[1];
  const std::vector<kt::Mediator> three = {kt::Mediator::Hidden, kt::Mediator::HiddenAttnSevered,
                                           kt::Mediator::HiddenMlpSevered};
  for (auto conv : {kt::HiddenConvention::ResidPost, kt::HiddenConvention::ResidPre}) {
    for (int64_t limit : {int64_t{0}, int64_t{40}}) {
      auto s = settings(conv);
      s.mediators = three;
      kt::FastOptions o;
      o.max_batch_tokens = limit;
      kt::FastStats together;
      const auto all = kt::trace_fact_fast(*model, prompt, subject, s, {}, o, &together);
      double alone_flops = 0;
      for (size_t m = 0; m < three.size(); ++m) {
        s.mediators = {three[m]};
        kt::FastStats st;
        const auto one = kt::trace_fact_fast(*model, prompt, subject, s, {}, o, &st);
        alone_flops += st.flops;
        EXPECT_LE((one.traces[0].scores - all.traces[m].scores).abs().max().item<double>(), 1e-6)
            << kt::mediator_name(three[m]) << " " << kt::convention_name(conv) << " limit " << limit;
      }
      // Each alone counts the base run too: 2 more of them.
      const double base_run = kt::forward_flops(model->config(), s.samples,
                                                static_cast<int64_t>(all.input_ids.size()));
      EXPECT_LT(together.flops, alone_flops - 2 * base_run - 1) << kt::convention_name(conv) << " limit " << limit;
      if (limit) EXPECT_GT(together.sweeps, 3);
    }
  }
}

// Which cells start from another's state: per restored token, the two
// severed cells of every (t, l) whose hidden cell runs a block, and each
// windowed cell whose window starts where the one below it starts and ends
// higher; with window 3 or 4 (not the other tests' 2), the numbers still equal
// the reference engine's.
TEST_P(FastVsReference, CellsSharingABlockStartFromIt) {
  auto model = kt::Model::load(kModels + GetParam(), test_device());
  const int64_t L = model->config().n_layers, W = std::min<int64_t>(L, 4);
  const auto& [prompt, subject] = kFacts[0];
  int64_t windowed = 0;  // per token and windowed mediator
  for (int64_t l = 1; l < L; ++l) {
    const auto lo = [&](int64_t x) { return std::max<int64_t>(0, x - W / 2); };
    const auto hi = [&](int64_t x) { return std::min<int64_t>(L, x + (W + 1) / 2); };
    windowed += lo(l) == lo(l - 1) && hi(l) > hi(l - 1);
  }
  ASSERT_GT(windowed, 0);
  for (auto conv : {kt::HiddenConvention::ResidPost, kt::HiddenConvention::ResidPre}) {
    auto s = settings(conv);
    s.window = W;
    kt::FastStats st;
    const auto fast = kt::trace_fact_fast(*model, prompt, subject, s, {}, {}, &st);
    const int64_t tokens = st.restorations / (5 * L);
    ASSERT_EQ(st.restorations, 5 * L * tokens);
    const int64_t hidden = conv == kt::HiddenConvention::ResidPost ? L - 1 : L;  // a block after the restored state
    EXPECT_EQ(st.shared, tokens * (2 * hidden + 2 * windowed)) << kt::convention_name(conv);
    EXPECT_EQ(kt::count_trace_flops(*model, prompt, subject, s).shared, st.shared);
    EXPECT_LE(max_diff(fast, kt::trace_fact_reference(*model, prompt, subject, s)), 1e-5) << kt::convention_name(conv);
  }
}

// max_batch_tokens auto: a forced small memory budget (KNOWTRACE_MEMORY_BUDGET)
// gives many small sweeps with the numbers of one sweep; a large one, one
// sweep; the chosen bound follows the budget.
TEST(FastEngine, AutoBatchSizeFollowsTheMemoryBudget) {
  auto model = kt::Model::load(kModels + "llama", test_device());
  const int64_t cap = kt::auto_batch_cap(model->device());
  auto s = settings(kt::HiddenConvention::ResidPost);
  kt::FastOptions unlimited;
  unlimited.max_batch_tokens = 0;
  kt::FastStats one, small, large;
  const auto a = kt::trace_fact_fast(*model, kFacts[0].first, kFacts[0].second, s, {}, unlimited, &one);
  const int64_t T = static_cast<int64_t>(a.input_ids.size());
  const int64_t per_token = kt::auto_batch_size(*model, T, s.samples).bytes_per_token;
  ASSERT_GT(per_token, 0);
  {
    // Room for 40 live tokens: two restorations of the last token, at most.
    kt_test::EnvVar budget("KNOWTRACE_MEMORY_BUDGET", std::to_string(2 * 40 * per_token));
    const kt::BatchSize bs = kt::auto_batch_size(*model, T, s.samples);
    EXPECT_EQ(bs.tokens, std::max<int64_t>(40, s.samples * T));
    EXPECT_NE(bs.how.find("per live token"), std::string::npos) << bs.how;
    const auto b = kt::trace_fact_fast(*model, kFacts[0].first, kFacts[0].second, s, {}, {}, &small);
    EXPECT_EQ(small.max_batch_tokens, bs.tokens);
    EXPECT_GT(small.sweeps, 3);
    EXPECT_LE(max_diff(a, b), 1e-6);
  }
  {
    kt_test::EnvVar budget("KNOWTRACE_MEMORY_BUDGET", std::to_string(int64_t{1} << 40));
    // Plenty of memory: the device's bound, so as many sweeps as that gives.
    const auto c = kt::trace_fact_fast(*model, kFacts[0].first, kFacts[0].second, s, {}, {}, &large);
    EXPECT_EQ(large.max_batch_tokens, cap);
    kt::FastOptions capped;
    capped.max_batch_tokens = cap;
    kt::FastStats explicit_cap;
    kt::trace_fact_fast(*model, kFacts[0].first, kFacts[0].second, s, {}, capped, &explicit_cap);
    EXPECT_EQ(large.sweeps, explicit_cap.sweeps);
    EXPECT_LT(large.sweeps, small.sweeps);
    EXPECT_LE(max_diff(a, c), 1e-6);
  }
  EXPECT_EQ(kt::parse_batch_tokens("auto", "x"), kt::kAutoBatchTokens);
  EXPECT_EQ(kt::parse_batch_tokens("4096", "x"), 4096);
  EXPECT_THROW(kt::parse_batch_tokens("-3", "--max-batch-tokens"), kt::Error);
  EXPECT_THROW(kt::parse_batch_tokens("lots", "--max-batch-tokens"), kt::Error);
}

// Without a forced budget auto reads the memory of the model's own device:
// the CPU's available memory, or on CUDA the device's free memory (a CUDA
// build reads it; one that cannot says so). A bad budget is a one-line error.
TEST(FastEngine, AutoBatchSizeReadsTheModelsDevice) {
  auto model = kt::Model::load(kModels + "llama", test_device());
  kt_test::EnvVar unset("KNOWTRACE_MEMORY_BUDGET", "");
  const kt::BatchSize bs = kt::auto_batch_size(*model, 8, 10);
  if (model->device().is_cpu()) {
    EXPECT_EQ(kt::auto_batch_cap(model->device()), kt::kAutoBatchTokensCpu);
    EXPECT_GT(bs.available_bytes, 0);
    EXPECT_NE(bs.how.find(" available, "), std::string::npos) << bs.how;
  } else if (kt::device_stats_available(model->device())) {
    EXPECT_EQ(kt::auto_batch_cap(model->device()), kt::kAutoBatchTokensDevice);
    EXPECT_GT(bs.available_bytes, int64_t{1} << 20) << bs.how;
    EXPECT_NE(bs.how.find(" free, "), std::string::npos) << bs.how;
    EXPECT_GE(bs.tokens, 80);
    EXPECT_LE(bs.tokens, kt::kAutoBatchTokensDevice);
  } else {
    EXPECT_NE(bs.how.find("free memory unknown"), std::string::npos) << bs.how;
    EXPECT_EQ(bs.tokens, kt::kAutoBatchTokensUnknown);
  }
  EXPECT_EQ(kt::device_free_bytes(c10::Device(c10::kCPU)), -1);
  for (const char* bad : {"lots", "-5", "12x", "0"}) {
    kt_test::EnvVar budget("KNOWTRACE_MEMORY_BUDGET", bad);
    try {
      kt::auto_batch_size(*model, 8, 10);
      ADD_FAILURE() << "no error for KNOWTRACE_MEMORY_BUDGET=" << bad;
    } catch (const kt::Error& e) {
      EXPECT_NE(std::string(e.what()).find("KNOWTRACE_MEMORY_BUDGET"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, FastVsReference, ::testing::ValuesIn(kArchs),
                         [](const auto& info) { return info.param; });

TEST(FastEngine, Bfloat16AgreesWithReferenceInBfloat16) {
  auto model = kt::Model::load(kModels + "llama", test_device(at::kBFloat16));
  auto s = settings(kt::HiddenConvention::ResidPost);
  auto fast = kt::trace_fact_fast(*model, kFacts[0].first, kFacts[0].second, s);
  auto ref = kt::trace_fact_reference(*model, kFacts[0].first, kFacts[0].second, s);
  // Same arithmetic in a different grouping: bf16 rounding (8 bits of
  // mantissa) in the residual stream bounds the difference.
  double d = max_diff(fast, ref);
  std::printf("[fast] llama bf16 max |fast - reference| %.3g\n", d);
  EXPECT_LE(d, 2e-2);
}

TEST(FastEngine, RejectsBadInputLikeTheReference) {
  auto model = kt::Model::load(kModels + "gpt2", test_device());
  auto s = settings(kt::HiddenConvention::ResidPost);
  EXPECT_THROW(kt::trace_fact_fast(*model, "Paris is nice", "Rome", s), kt::Error);
  s.samples = 0;
  EXPECT_THROW(kt::trace_fact_fast(*model, "Paris is nice", "Paris", s), kt::Error);
}

}  // namespace

// A Mistral-shaped checkpoint with a SentencePiece tokenizer (the Mistral
// v0.3 fixture: Metaspace, byte fallback, control tokens): the subject range
// comes from the byte offsets (an inserted "▁" covers nothing), each token is
// decoded alone for input_tokens, and both engines agree on the trace.
TEST(FastEngine, SentencePieceTokenizedCheckpoint) {
  namespace fs = std::filesystem;
  const std::string src = KT_SOURCE_DIR;
  const fs::path dir = fs::temp_directory_path() / ("kt_sp_model_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::copy(src + "/tests/fixtures/models/mistral", dir);
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
    fs::copy_file(src + "/tests/fixtures/tokenizers/mistral/" + f, dir / f, fs::copy_options::overwrite_existing);
  auto model = kt::Model::load(dir.string());
  const std::string prompt = "The mother tongue of Danielle Darrieux is";
  kt::TraceSettings s;
  s.samples = 2;
  s.window = 2;
  s.noise = kt::parse_noise("0.3");
  auto ref = kt::trace_fact_reference(*model, prompt, "Danielle Darrieux", s);
  auto fast = kt::trace_fact_fast(*model, prompt, "Danielle Darrieux", s);
  const kt::Encoding enc = model->tokenizer().encode(prompt);
  ASSERT_EQ(ref.input_ids, enc.ids);
  EXPECT_EQ(ref.input_ids.front(), 1);  // <s>
  // The subject's tokens are exactly those covering "Danielle Darrieux".
  const size_t sb = prompt.find("Danielle"), se = sb + std::string("Danielle Darrieux").size();
  EXPECT_LE(enc.offsets[ref.subject_begin].first, sb);
  EXPECT_GT(enc.offsets[ref.subject_begin].second, sb);
  EXPECT_GE(enc.offsets[ref.subject_end - 1].second, se);
  EXPECT_LT(enc.offsets[ref.subject_end - 2].second, se);
  // Each piece decoded alone (the decoder's Strip drops a leading space).
  std::string joined, letters;
  for (const std::string& t : ref.input_tokens) joined += t;
  for (char c : "<s>" + prompt)
    if (c != ' ') letters += c;
  joined.erase(std::remove(joined.begin(), joined.end(), ' '), joined.end());
  EXPECT_EQ(joined, letters);
  ASSERT_EQ(fast.traces.size(), ref.traces.size());
  for (size_t m = 0; m < ref.traces.size(); ++m)
    EXPECT_LT((fast.traces[m].scores - ref.traces[m].scores).abs().max().item<double>(), 1e-5);
  fs::remove_all(dir);
}
