// links: kt_analysis
// Aggregation of causal traces by token-position category (DESIGN.md
// section 3) on hand-made records whose answers are worked out by hand in
// the comments, plus the JSON / CSV summaries read back.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "analysis/aggregate.h"
#include "util/error.h"
#include "util/stored_file.h"
#include "util/paths.h"

namespace fs = std::filesystem;

namespace {

constexpr double kTol = 1e-12;

kt::TraceRecord make(const std::string& id, const std::vector<std::vector<double>>& rows, int64_t b, int64_t e,
                     double low, double high, const std::string& mediator = "hidden") {
  kt::TraceRecord r;
  r.fact_id = id;
  r.mediator = mediator;
  r.n_tokens = static_cast<int64_t>(rows.size());
  r.n_layers = static_cast<int64_t>(rows.front().size());
  for (const auto& row : rows) r.scores.insert(r.scores.end(), row.begin(), row.end());
  for (int64_t t = 0; t < r.n_tokens; ++t) r.tokens.push_back("tok" + std::to_string(t));
  r.subject_begin = b;
  r.subject_end = e;
  r.low_score = low;
  r.high_score = high;
  return r;
}

// Fact A: 6 tokens, subject [1, 3): first subject 1, no middle, last subject
// 2, first subsequent 3, further 4, last 5. low 0.1, high 0.9.
kt::TraceRecord fact_a(const std::string& mediator = "hidden") {
  return make("A", {{0.1, 0.1}, {0.2, 0.3}, {0.5, 0.7}, {0.3, 0.2}, {0.15, 0.25}, {0.4, 0.6}}, 1, 3, 0.1, 0.9,
              mediator);
}
// Fact B: 7 tokens, subject [0, 3): first 0, middle 1, last subject 2, first
// subsequent 3, further 4 and 5, last 6. low 0.2, high 0.6.
kt::TraceRecord fact_b(const std::string& mediator = "hidden") {
  return make("B", {{0.3, 0.3}, {0.4, 0.2}, {0.6, 0.8}, {0.1, 0.5}, {0.25, 0.35}, {0.45, 0.55}, {0.7, 0.9}}, 0, 3, 0.2,
              0.6, mediator);
}

const kt::CategoryStats& cat(const kt::MediatorSummary& s, const std::string& name) {
  for (const auto& c : s.categories)
    if (c.name == name) return c;
  throw std::runtime_error("no category " + name);
}

void expect_vec(const std::vector<double>& got, const std::vector<double>& want, double tol = kTol) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    if (std::isnan(want[i]))
      EXPECT_TRUE(std::isnan(got[i])) << "index " << i << " = " << got[i];
    else
      EXPECT_NEAR(got[i], want[i], tol) << "index " << i;
  }
}

std::string tmp_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("kt_aggregate_" + std::to_string(::getpid())) / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d.string();
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) out.push_back(line);
  return out;
}

std::vector<std::string> split_csv(const std::string& line) {
  std::vector<std::string> out;
  std::istringstream in(line);
  std::string cell;
  while (std::getline(in, cell, ',')) out.push_back(cell);
  return out;
}

}  // namespace

TEST(Aggregate, SchemeNamesAndCategories) {
  EXPECT_EQ(kt::scheme_name(kt::PositionScheme::Rome6), "rome6");
  EXPECT_EQ(kt::scheme_name(kt::PositionScheme::Seed4), "seed4");
  EXPECT_EQ(kt::parse_scheme("rome6"), kt::PositionScheme::Rome6);
  EXPECT_EQ(kt::parse_scheme("SEED4"), kt::PositionScheme::Seed4);
  EXPECT_THROW(kt::parse_scheme("rome7"), kt::Error);
  EXPECT_THROW(kt::parse_scheme(""), kt::Error);
  try {
    kt::parse_scheme("bogus");
  } catch (const kt::Error& e) {
    EXPECT_NE(std::string(e.what()).find("bogus"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("rome6"), std::string::npos);
  }
  EXPECT_EQ(kt::category_names(kt::PositionScheme::Rome6).size(), 6u);
  EXPECT_EQ(kt::category_names(kt::PositionScheme::Seed4).size(), 4u);
  EXPECT_EQ(kt::category_labels(kt::PositionScheme::Rome6).size(), 6u);
  EXPECT_EQ(kt::category_labels(kt::PositionScheme::Rome6)[2], "Last subject token");
}

TEST(Aggregate, Rome6TokenWeighted) {
  const auto s = kt::aggregate({fact_a(), fact_b()}, "hidden", kt::PositionScheme::Rome6);
  EXPECT_EQ(s.mediator, "hidden");
  EXPECT_EQ(s.n_facts, 2);
  EXPECT_EQ(s.n_layers, 2);
  EXPECT_FALSE(s.per_fact_mean);
  EXPECT_NEAR(s.mean_low, 0.15, kTol);
  EXPECT_NEAR(s.mean_high, 0.75, kTol);
  EXPECT_NEAR(s.ate, 0.6, kTol);  // mean(0.8, 0.4)
  ASSERT_EQ(s.categories.size(), 6u);
  EXPECT_EQ(s.categories[0].name, "first_subject_token");
  EXPECT_EQ(s.categories[5].name, "last_token");

  // First subject: A row 1 {.2,.3} - .1 ; B row 0 {.3,.3} - .2.
  const auto& first = cat(s, "first_subject_token");
  EXPECT_EQ(first.n, 2);
  EXPECT_EQ(first.n_facts, 2);
  expect_vec(first.score, {0.25, 0.3});
  expect_vec(first.aie, {0.1, 0.15});
  // Effects at layer 1: .2 and .1 -> sample std sqrt(2 * .05^2 / 1).
  const double sd1 = std::sqrt(2 * 0.05 * 0.05);
  expect_vec(first.stddev, {0.0, sd1});
  expect_vec(first.ci95_rows, {0.0, 1.96 * sd1 / std::sqrt(2.0)});
  // ROME's band (the default): population std of the scores {.2,.3} and
  // {.3,.3}: {.05, 0}, over sqrt(2 facts).
  expect_vec(first.std_rome, {0.05, 0.0});
  expect_vec(first.ci95, {1.96 * 0.05 / std::sqrt(2.0), 0.0});
  expect_vec(first.ci95_rome, first.ci95);

  // Middle subject: only B has one (row 1 {.4,.2} - .2): n = 1 -> ci 0.
  const auto& middle = cat(s, "middle_subject_tokens");
  EXPECT_EQ(middle.n, 1);
  EXPECT_EQ(middle.n_facts, 1);
  expect_vec(middle.aie_rows, {0.2, 0.0});
  expect_vec(middle.ci95_rows, {0.0, 0.0});
  expect_vec(middle.stddev, {0.0, 0.0});
  // ROME: B's score {.4,.2} minus the mean low score of both facts (.15).
  expect_vec(middle.aie, {0.25, 0.05});
  expect_vec(middle.ci95, {0.0, 0.0});  // one sample: std 0

  const auto& last_subject = cat(s, "last_subject_token");
  expect_vec(last_subject.aie, {0.4, 0.6});
  expect_vec(last_subject.ci95_rows, {0.0, 0.0});
  // Scores {.5,.7} and {.6,.8}: population std .05 at both layers.
  expect_vec(last_subject.ci95, {1.96 * 0.05 / std::sqrt(2.0), 1.96 * 0.05 / std::sqrt(2.0)});

  // First subsequent: A {.3,.2} - .1, B {.1,.5} - .2: a negative effect at
  // layer 0 of B stays negative (no clipping in aggregation).
  const auto& subsequent = cat(s, "first_subsequent_token");
  EXPECT_EQ(subsequent.n, 2);
  expect_vec(subsequent.aie, {0.05, 0.2});

  // Further tokens, token-weighted: A row 4, B rows 4 and 5 -> 3 samples.
  // Effects at layer 0: .05, .05, .25 -> aie .116667; mean score
  // (.15+.25+.45)/3 = .283333, minus mean low .15 (ROME) = .133333.
  const auto& further = cat(s, "further_tokens");
  EXPECT_EQ(further.n, 3);
  EXPECT_EQ(further.n_facts, 2);
  expect_vec(further.score, {0.85 / 3, 1.15 / 3});
  expect_vec(further.aie_rows, {0.35 / 3, 0.65 / 3});
  expect_vec(further.aie_rome, {0.85 / 3 - 0.15, 1.15 / 3 - 0.15});
  expect_vec(further.aie, further.aie_rome);  // the default shows ROME's
  const double m = 0.35 / 3;
  const double sd = std::sqrt(((0.05 - m) * (0.05 - m) * 2 + (0.25 - m) * (0.25 - m)) / 2);
  EXPECT_NEAR(further.stddev[0], sd, kTol);
  EXPECT_NEAR(further.ci95_rows[0], 1.96 * sd / std::sqrt(3.0), kTol);
  // ROME: population std of the scores .15, .25, .45 over sqrt(2 facts).
  const double ms = 0.85 / 3;
  const double pop = std::sqrt(((0.15 - ms) * (0.15 - ms) + (0.25 - ms) * (0.25 - ms) + (0.45 - ms) * (0.45 - ms)) / 3);
  EXPECT_NEAR(further.ci95[0], 1.96 * pop / std::sqrt(2.0), kTol);

  // The per-row variant on request: aie and ci95 hold it instead.
  const auto rows = kt::aggregate({fact_a(), fact_b()}, "hidden", kt::PositionScheme::Rome6, false,
                                  kt::AieFormula::PerRow, kt::BandRule::PerRow);
  EXPECT_EQ(rows.aie_formula, kt::AieFormula::PerRow);
  expect_vec(cat(rows, "further_tokens").aie, further.aie_rows);
  expect_vec(cat(rows, "further_tokens").ci95, further.ci95_rows);
  expect_vec(cat(rows, "further_tokens").aie_rome, further.aie_rome);

  const auto& last = cat(s, "last_token");
  expect_vec(last.aie, {0.4, 0.6});  // A {.4,.6}-.1, B {.7,.9}-.2
  expect_vec(last.score, {0.55, 0.75});

  // Best AIE over layers.
  EXPECT_NEAR(s.best_aie_last_subject, 0.6, kTol);
  EXPECT_EQ(s.best_layer_last_subject, 1);
  EXPECT_NEAR(s.best_aie_last_token, 0.6, kTol);
  EXPECT_EQ(s.best_layer_last_token, 1);

  // One-token categories: aie == aie_rome (every fact gives one sample).
  for (const auto* c : {&first, &last_subject, &subsequent, &last})
    for (size_t l = 0; l < 2; ++l) EXPECT_NEAR(c->aie[l], c->aie_rome[l], kTol) << c->name;
}

TEST(Aggregate, Rome6PerFactMean) {
  const auto s = kt::aggregate({fact_a(), fact_b()}, "hidden", kt::PositionScheme::Rome6, /*per_fact_mean=*/true);
  EXPECT_TRUE(s.per_fact_mean);
  // Further tokens: A {.15,.25} -> effect {.05,.15}; B mean of rows 4, 5 =
  // {.35,.45} -> effect {.15,.25}. Two samples (facts).
  const auto& further = cat(s, "further_tokens");
  EXPECT_EQ(further.n, 2);
  EXPECT_EQ(further.n_facts, 2);
  expect_vec(further.score, {0.25, 0.35});
  expect_vec(further.aie_rows, {0.1, 0.2});
  expect_vec(further.aie_rome, {0.1, 0.2});  // {.25,.35} - .15
  const double sd = std::sqrt(2 * 0.05 * 0.05);
  expect_vec(further.stddev, {sd, sd});
  expect_vec(further.ci95_rows, {1.96 * sd / std::sqrt(2.0), 1.96 * sd / std::sqrt(2.0)});
  // ROME's band over the per-fact means {.15,.25} and {.35,.45}: std .1.
  expect_vec(further.ci95, {1.96 * 0.1 / std::sqrt(2.0), 1.96 * 0.1 / std::sqrt(2.0)});
  // One-token categories are the same in both modes.
  const auto tw = kt::aggregate({fact_a(), fact_b()}, "hidden", kt::PositionScheme::Rome6, false);
  for (const std::string name : {"first_subject_token", "last_subject_token", "first_subsequent_token", "last_token"}) {
    expect_vec(cat(s, name).aie, cat(tw, name).aie);
    expect_vec(cat(s, name).ci95, cat(tw, name).ci95);
    EXPECT_EQ(cat(s, name).n, cat(tw, name).n);
  }
  expect_vec(cat(s, "middle_subject_tokens").aie_rows, {0.2, 0.0});
  expect_vec(cat(s, "middle_subject_tokens").aie, {0.25, 0.05});
}

TEST(Aggregate, Seed4BothModes) {
  const auto s = kt::aggregate({fact_a(), fact_b()}, "hidden", kt::PositionScheme::Seed4);
  ASSERT_EQ(s.categories.size(), 4u);
  EXPECT_EQ(s.categories[0].name, "first_subject_token");
  EXPECT_EQ(s.categories[1].name, "last_subject_token");
  EXPECT_EQ(s.categories[2].name, "further_tokens");
  EXPECT_EQ(s.categories[3].name, "last_token");
  // Further [e, T-1): A rows 3, 4; B rows 3, 4, 5. Layer-0 effects
  // .2, .05, -.1, .05, .25 -> .09; layer 1: .1, .15, .3, .15, .35 -> .21.
  const auto& further = cat(s, "further_tokens");
  EXPECT_EQ(further.n, 5);
  expect_vec(further.aie_rows, {0.09, 0.21});
  // ROME: mean score (.3+.15+.1+.25+.45)/5 = .25 minus .15; layer 1 .37 - .15.
  expect_vec(further.aie, {0.1, 0.22});
  expect_vec(cat(s, "last_subject_token").aie, {0.4, 0.6});
  expect_vec(cat(s, "last_token").aie, {0.4, 0.6});

  const auto p = kt::aggregate({fact_a(), fact_b()}, "hidden", kt::PositionScheme::Seed4, true);
  // Per fact: A mean rows 3, 4 = {.225,.225} -> {.125,.125}; B mean rows
  // 3..5 = {.8/3, 1.4/3} -> {.8/3-.2, 1.4/3-.2}.
  const auto& pf = cat(p, "further_tokens");
  EXPECT_EQ(pf.n, 2);
  expect_vec(pf.aie_rows, {(0.125 + 0.8 / 3 - 0.2) / 2, (0.125 + 1.4 / 3 - 0.2) / 2});
}

TEST(Aggregate, SingleTokenSubjectCountsAsFirstAndLast) {
  // Subject [1, 2): ROME's notebook adds scores[first_e] and scores[last_e]
  // with first_e == last_e, and scores[first_e+1:last_e] is empty.
  const auto c = make("C", {{0.1}, {0.5}, {0.3}, {0.8}}, 1, 2, 0.1, 0.9);
  for (bool pf : {false, true}) {
    const auto s = kt::aggregate({c}, "hidden", kt::PositionScheme::Rome6, pf);
    EXPECT_EQ(cat(s, "first_subject_token").n, 1);
    EXPECT_EQ(cat(s, "last_subject_token").n, 1);
    expect_vec(cat(s, "first_subject_token").aie, {0.4});
    expect_vec(cat(s, "last_subject_token").aie, {0.4});
    EXPECT_EQ(cat(s, "middle_subject_tokens").n, 0);
    EXPECT_EQ(cat(s, "middle_subject_tokens").n_facts, 0);
    expect_vec(cat(s, "middle_subject_tokens").aie, {NAN});
    expect_vec(cat(s, "middle_subject_tokens").score, {NAN});
    expect_vec(cat(s, "middle_subject_tokens").ci95, {NAN});
    expect_vec(cat(s, "first_subsequent_token").aie, {0.2});
    EXPECT_EQ(cat(s, "further_tokens").n, 0);  // (2, 3) is empty
    expect_vec(cat(s, "last_token").aie, {0.7});
  }
  const auto s4 = kt::aggregate({c}, "hidden", kt::PositionScheme::Seed4);
  expect_vec(cat(s4, "first_subject_token").aie, {0.4});
  expect_vec(cat(s4, "last_subject_token").aie, {0.4});
  EXPECT_EQ(cat(s4, "further_tokens").n, 1);  // [2, 3)
}

TEST(Aggregate, SubjectEndingRightBeforeLastToken) {
  // Subject [1, 3) of 4 tokens: e == T-1. Token 3 is the first subsequent
  // token and the last token (ROME counts it in both); no further tokens.
  const auto d = make("D", {{0.1, 0.1}, {0.2, 0.2}, {0.6, 0.4}, {0.7, 0.9}}, 1, 3, 0.1, 0.95);
  const auto s = kt::aggregate({d}, "hidden", kt::PositionScheme::Rome6);
  EXPECT_EQ(cat(s, "first_subsequent_token").n, 1);
  expect_vec(cat(s, "first_subsequent_token").aie, {0.6, 0.8});
  expect_vec(cat(s, "last_token").aie, {0.6, 0.8});
  EXPECT_EQ(cat(s, "further_tokens").n, 0);
  expect_vec(cat(s, "further_tokens").aie, {NAN, NAN});
  EXPECT_EQ(cat(s, "middle_subject_tokens").n, 0);
  EXPECT_NEAR(s.best_aie_last_token, 0.8, kTol);
  EXPECT_EQ(s.best_layer_last_token, 1);
  EXPECT_NEAR(s.best_aie_last_subject, 0.5, kTol);
  EXPECT_EQ(s.best_layer_last_subject, 0);

  const auto s4 = kt::aggregate({d}, "hidden", kt::PositionScheme::Seed4);
  EXPECT_EQ(cat(s4, "further_tokens").n, 0);  // [3, 3) is empty
  expect_vec(cat(s4, "further_tokens").aie, {NAN, NAN});

  // Mixed with a fact that has further tokens: D adds nothing there.
  const auto mixed = kt::aggregate({d, fact_a()}, "hidden", kt::PositionScheme::Rome6);
  EXPECT_EQ(cat(mixed, "further_tokens").n, 1);
  EXPECT_EQ(cat(mixed, "further_tokens").n_facts, 1);
  expect_vec(cat(mixed, "further_tokens").aie, {0.05, 0.15});
}

TEST(Aggregate, SubjectReachingLastToken) {
  // Subject [1, 3) of 3 tokens: no subsequent token at all.
  const auto e = make("E", {{0.1}, {0.3}, {0.9}}, 1, 3, 0.1, 0.95);
  const auto s = kt::aggregate({e}, "hidden", kt::PositionScheme::Rome6);
  EXPECT_EQ(cat(s, "first_subsequent_token").n, 0);
  EXPECT_EQ(cat(s, "further_tokens").n, 0);
  expect_vec(cat(s, "last_subject_token").aie, {0.8});
  expect_vec(cat(s, "last_token").aie, {0.8});
}

TEST(Aggregate, NoClippingInAggregation) {
  // Every restoration lowers p(answer) below low_score: negative effects.
  const auto f = make("F", {{0.05, 0.01}, {0.02, 0.03}, {0.04, 0.0}}, 0, 1, 0.1, 0.9);
  const auto s = kt::aggregate({f}, "hidden", kt::PositionScheme::Rome6);
  expect_vec(cat(s, "first_subject_token").aie, {-0.05, -0.09});
  expect_vec(cat(s, "last_token").aie, {-0.06, -0.1});
  EXPECT_NEAR(s.best_aie_last_token, -0.06, kTol);
  EXPECT_EQ(s.best_layer_last_token, 0);
}

// ROME's notebook skips facts whose correct_prediction is false: so does
// aggregate, and says how many.
TEST(Aggregate, IncorrectPredictionsAreLeftOut) {
  auto wrong = fact_b();
  wrong.correct_prediction = false;
  const auto s = kt::aggregate({fact_a(), wrong}, "hidden", kt::PositionScheme::Rome6);
  EXPECT_EQ(s.n_facts, 1);
  EXPECT_EQ(s.n_skipped, 1);
  EXPECT_NEAR(s.mean_low, 0.1, kTol);
  const auto alone = kt::aggregate({fact_a()}, "hidden", kt::PositionScheme::Rome6);
  for (size_t c = 0; c < s.categories.size(); ++c) expect_vec(s.categories[c].aie, alone.categories[c].aie);
  // Only wrong ones: a summary of nothing, not an error.
  const auto none = kt::aggregate({wrong}, "hidden", kt::PositionScheme::Rome6);
  EXPECT_EQ(none.n_facts, 0);
  EXPECT_EQ(none.n_skipped, 1);
  expect_vec(cat(none, "last_token").aie, {NAN, NAN});
}

TEST(Aggregate, OtherMediatorsIgnored) {
  const auto s = kt::aggregate({fact_a("mlp"), fact_b("hidden"), fact_a("attn")}, "hidden", kt::PositionScheme::Rome6);
  EXPECT_EQ(s.n_facts, 1);
  EXPECT_NEAR(s.mean_low, 0.2, kTol);
  // Layer counts are checked only among the chosen mediator's records.
  auto other = make("G", {{0.1, 0.2, 0.3}}, 0, 1, 0, 1, "attn");
  EXPECT_NO_THROW(kt::aggregate({fact_b(), other}, "hidden", kt::PositionScheme::Rome6));
}

TEST(Aggregate, Errors) {
  // Mixed layer counts.
  auto three = make("H", {{0.1, 0.2, 0.3}, {0.1, 0.2, 0.3}}, 0, 1, 0.1, 0.5);
  EXPECT_THROW(kt::aggregate({fact_a(), three}, "hidden", kt::PositionScheme::Rome6), kt::Error);
  try {
    kt::aggregate({fact_a(), three}, "hidden", kt::PositionScheme::Rome6);
  } catch (const kt::Error& e) {
    EXPECT_NE(std::string(e.what()).find("'H'"), std::string::npos) << e.what();
  }
  // No records / none of this mediator.
  EXPECT_THROW(kt::aggregate({}, "hidden", kt::PositionScheme::Rome6), kt::Error);
  EXPECT_THROW(kt::aggregate({fact_a("mlp")}, "hidden", kt::PositionScheme::Rome6), kt::Error);
  // Wrong score count.
  auto bad = fact_a();
  bad.scores.pop_back();
  EXPECT_THROW(kt::aggregate({bad}, "hidden", kt::PositionScheme::Rome6), kt::Error);
  // Subject range outside the tokens or empty.
  auto outside = fact_a();
  outside.subject_end = 7;
  EXPECT_THROW(kt::aggregate({outside}, "hidden", kt::PositionScheme::Rome6), kt::Error);
  auto empty = fact_a();
  empty.subject_end = empty.subject_begin;
  EXPECT_THROW(kt::aggregate({empty}, "hidden", kt::PositionScheme::Seed4), kt::Error);
  // Unknown scheme name.
  EXPECT_THROW(kt::aggregate({fact_a()}, "hidden", kt::parse_scheme("rome5")), kt::Error);
}

TEST(Aggregate, JsonWrittenAndReadBack) {
  const std::string dir = tmp_dir("json");
  const auto d = make("D", {{0.1, 0.1}, {0.2, 0.2}, {0.6, 0.4}, {0.7, 0.9}}, 1, 3, 0.1, 0.95);
  auto h = kt::aggregate({fact_a(), fact_b(), d}, "hidden", kt::PositionScheme::Rome6);
  auto single = kt::aggregate({d}, "hidden", kt::PositionScheme::Seed4, true);  // has a NaN category
  single.mediator = "mlp";
  const std::string path = dir + "/summary.json";
  kt::write_summary_json(path, {h, single});

  // No temporary file left behind: the summary and its checksum only.
  int files = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    (void)entry;
    ++files;
  }
  EXPECT_EQ(files, 2);
  EXPECT_TRUE(fs::exists(path + ".crc32"));

  const auto j = nlohmann::json::parse(kt::read_text_file(path));
  EXPECT_EQ(j["format"], "knowtrace-aie-summary");
  ASSERT_EQ(j["mediators"].size(), 2u);
  const auto& m0 = j["mediators"][0];
  EXPECT_EQ(m0["mediator"], "hidden");
  EXPECT_EQ(m0["scheme"], "rome6");
  EXPECT_EQ(m0["mean_mode"], "token");
  EXPECT_EQ(m0["n_facts"], 3);
  EXPECT_NEAR(m0["ate"].get<double>(), h.ate, kTol);
  EXPECT_EQ(m0["categories"].size(), 6u);
  EXPECT_EQ(m0["categories"][2]["name"], "last_subject_token");
  EXPECT_EQ(m0["best_last_token"]["layer"], h.best_layer_last_token);
  const auto& m1 = j["mediators"][1];
  EXPECT_EQ(m1["mean_mode"], "per_fact");
  EXPECT_EQ(m1["categories"][2]["name"], "further_tokens");
  EXPECT_EQ(m1["categories"][2]["n"], 0);
  EXPECT_TRUE(m1["categories"][2]["aie"][0].is_null());
  EXPECT_TRUE(m1["categories"][2]["ci95"][1].is_null());

  const auto back = kt::read_summary_json(path);
  ASSERT_EQ(back.size(), 2u);
  EXPECT_EQ(back[0].mediator, "hidden");
  EXPECT_EQ(back[0].scheme, kt::PositionScheme::Rome6);
  EXPECT_FALSE(back[0].per_fact_mean);
  EXPECT_EQ(back[1].scheme, kt::PositionScheme::Seed4);
  EXPECT_TRUE(back[1].per_fact_mean);
  EXPECT_NEAR(back[0].mean_low, h.mean_low, kTol);
  EXPECT_EQ(back[0].best_layer_last_subject, h.best_layer_last_subject);
  for (size_t c = 0; c < h.categories.size(); ++c) {
    EXPECT_EQ(back[0].categories[c].name, h.categories[c].name);
    EXPECT_EQ(back[0].categories[c].n, h.categories[c].n);
    expect_vec(back[0].categories[c].aie, h.categories[c].aie, 0);
    expect_vec(back[0].categories[c].ci95, h.categories[c].ci95, 0);
    expect_vec(back[0].categories[c].aie_rome, h.categories[c].aie_rome, 0);
  }
  expect_vec(back[1].categories[2].aie, {NAN, NAN});

  // Overwriting an existing summary works (rename over it).
  kt::write_summary_json(path, {h});
  EXPECT_EQ(kt::read_summary_json(path).size(), 1u);
  // Not a summary -> kt::Error.
  kt::write_file_checked(dir + "/other.json", "{\"a\": 1}");
  EXPECT_THROW(kt::read_summary_json(dir + "/other.json"), kt::Error);
  kt::write_file_checked(dir + "/broken.json", "{\"format\": ");
  EXPECT_THROW(kt::read_summary_json(dir + "/broken.json"), kt::Error);
  EXPECT_THROW(kt::read_summary_json(dir + "/missing.json"), kt::Error);
  fs::remove_all(dir);
}

TEST(Aggregate, CsvWrittenAndReadBack) {
  const std::string dir = tmp_dir("csv");
  const auto d = make("D", {{0.1, 0.1}, {0.2, 0.2}, {0.6, 0.4}, {0.7, 0.9}}, 1, 3, 0.1, 0.95);
  const auto h = kt::aggregate({fact_a(), fact_b()}, "hidden", kt::PositionScheme::Rome6);
  auto m = kt::aggregate({d}, "hidden", kt::PositionScheme::Rome6);
  m.mediator = "mlp";
  const std::string path = dir + "/nested/summary.csv";  // parent directory created
  kt::write_summary_csv(path, {h, m});
  const auto lines = lines_of(kt::read_text_file(path));
  ASSERT_EQ(lines.size(), 1u + 2 * 6 * 2);
  EXPECT_EQ(lines[0],
            "mediator,scheme,mean_mode,aie_formula,band,category,n,n_facts,layer,score,aie,ci95,aie_rome,aie_rows,"
            "std_rome,ci95_rome,stddev,ci95_rows");
  const auto header = split_csv(lines[0]);
  auto col = [&](const std::string& name) {
    return static_cast<size_t>(std::find(header.begin(), header.end(), name) - header.begin());
  };
  bool found_further = false, found_nan = false;
  for (size_t i = 1; i < lines.size(); ++i) {
    const auto cells = split_csv(lines[i]);
    ASSERT_EQ(cells.size(), header.size()) << lines[i];
    if (cells[0] == "hidden" && cells[col("category")] == "further_tokens" && cells[col("layer")] == "0") {
      found_further = true;
      EXPECT_EQ(cells[col("scheme")], "rome6");
      EXPECT_EQ(cells[col("mean_mode")], "token");
      EXPECT_EQ(cells[col("aie_formula")], "rome");
      EXPECT_EQ(cells[col("band")], "rome");
      EXPECT_EQ(cells[col("n")], "3");
      EXPECT_EQ(cells[col("n_facts")], "2");
      EXPECT_NEAR(std::stod(cells[col("aie_rows")]), 0.35 / 3, 1e-14);
      EXPECT_NEAR(std::stod(cells[col("aie_rome")]), 0.85 / 3 - 0.15, 1e-14);
      EXPECT_NEAR(std::stod(cells[col("aie")]), 0.85 / 3 - 0.15, 1e-14);
      const double m0 = 0.35 / 3;
      const double sd0 = std::sqrt(((0.05 - m0) * (0.05 - m0) * 2 + (0.25 - m0) * (0.25 - m0)) / 2);
      EXPECT_NEAR(std::stod(cells[col("stddev")]), sd0, 1e-14);
      EXPECT_NEAR(std::stod(cells[col("ci95_rows")]), 1.96 * sd0 / std::sqrt(3.0), 1e-14);
      EXPECT_EQ(cells[col("ci95")], cells[col("ci95_rome")]);
    }
    if (cells[0] == "mlp" && cells[col("category")] == "further_tokens") {
      found_nan = true;
      EXPECT_EQ(cells[col("n")], "0");
      for (size_t k = col("score"); k < cells.size(); ++k) EXPECT_EQ(cells[k], "nan");
    }
  }
  EXPECT_TRUE(found_further);
  EXPECT_TRUE(found_nan);

  kt::write_overview_csv(dir + "/overview.csv", {h, m});
  const auto ov = lines_of(kt::read_text_file(dir + "/overview.csv"));
  ASSERT_EQ(ov.size(), 3u);
  const auto cols = split_csv(ov[0]);
  EXPECT_EQ(cols[0], "mediator");
  EXPECT_EQ(cols[9], "ate");
  const auto row = split_csv(ov[1]);
  ASSERT_EQ(row.size(), cols.size());
  EXPECT_EQ(row[0], "hidden");
  EXPECT_EQ(row[3], "rome");
  EXPECT_EQ(row[4], "2");
  EXPECT_EQ(row[5], "0");  // skipped
  EXPECT_NEAR(std::stod(row[9]), 0.6, 1e-14);
  EXPECT_NEAR(std::stod(row[10]), 0.6, 1e-14);
  EXPECT_EQ(row[11], "1");
  fs::remove_all(dir);
}

// Checked files: a truncated, edited or checksum-less file is refused with
// its path; an intact one reads back.
TEST(StoredFile, ChecksumDetectsTruncationAndCorruption) {
  const std::string dir = tmp_dir("checked");
  const std::string p = dir + "/data.jsonl";
  kt::write_file_checked(p, "{\"id\": 1}\n{\"id\": 2}\n");
  EXPECT_EQ(kt::read_file_checked(p), "{\"id\": 1}\n{\"id\": 2}\n");
  EXPECT_EQ(kt::read_text_file(p + ".crc32").substr(8), "  20  data.jsonl\n");
  auto expect_refused = [&](const char* what) {
    try {
      kt::read_file_checked(p);
      ADD_FAILURE() << what << ": accepted";
    } catch (const kt::Error& e) {
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
    }
  };
  fs::resize_file(p, 10);  // truncated
  expect_refused("truncated");
  kt::write_file_atomic(p, "{\"id\": 1}\n{\"id\": 3}\n");  // same size, one byte changed
  expect_refused("corrupted");
  kt::write_file_checked(p, "x");
  fs::remove(p + ".crc32");
  expect_refused("no checksum");
  fs::remove_all(dir);
}

TEST(StoredFile, StaleTemporariesAreRemoved) {
  const std::string dir = tmp_dir("stale");
  kt::write_file_atomic(dir + "/keep.json", "{}");
  kt::write_file_atomic(dir + "/x.npz.tmp.12345", "half");
  EXPECT_EQ(kt::remove_stale_temporaries(dir), 1);
  EXPECT_TRUE(fs::exists(dir + "/keep.json"));
  EXPECT_FALSE(fs::exists(dir + "/x.npz.tmp.12345"));
  fs::remove_all(dir);
}

TEST(Aggregate, WriteFileAtomicErrors) {
  const std::string dir = tmp_dir("atomic");
  kt::write_file_atomic(dir + "/a.txt", "hello");
  EXPECT_EQ(kt::read_text_file(dir + "/a.txt"), "hello");
  kt::write_file_atomic(dir + "/a.txt", "");
  EXPECT_EQ(kt::read_text_file(dir + "/a.txt"), "");
  // A directory in the way of the target: rename fails, nothing left over.
  fs::create_directories(dir + "/blocked/inner");
  EXPECT_THROW(kt::write_file_atomic(dir + "/blocked", "x"), kt::Error);
  int files = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    (void)entry;
    ++files;
  }
  EXPECT_EQ(files, 2);
  fs::remove_all(fs::path(dir).parent_path());
}
