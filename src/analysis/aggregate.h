// Average indirect effects over facts by token-position category (the
// paper figure, DESIGN.md section 3). Plain C++: no model, no torch.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "analysis/trace_file.h"

namespace kt {

// rome6: first subject, middle subject, last subject, first subsequent,
//        further tokens, last token (ROME Fig. 2).
// seed4: first subject, last subject, further tokens [e, T-1), last token.
enum class PositionScheme { Rome6, Seed4 };
std::string scheme_name(PositionScheme s);
PositionScheme parse_scheme(const std::string& name);  // kt::Error on unknown
std::vector<std::string> category_names(PositionScheme s);   // snake_case ids, e.g. "last_subject_token"
std::vector<std::string> category_labels(PositionScheme s);  // display text, e.g. "Last subject token"

// Two ways to average a category's indirect effect over facts:
//   rome     ROME's notebook (average_causal_effects, read_knowlege): the
//            mean score of the category's samples minus the mean low_score
//            of all averaged facts;
//   per-row  the mean over samples of (score - low_score of the sample's
//            own fact).
// They agree for one-token categories; for middle subject tokens and
// further tokens they differ when facts with more such tokens have other
// low scores. Bands (1.96 x standard error), likewise:
//   rome     population std (ddof 0) of the samples' raw scores / sqrt(facts)
//   per-row  sample std (ddof 1) of the samples' indirect effects / sqrt(samples)
enum class AieFormula { Rome, PerRow };
enum class BandRule { Rome, PerRow };
std::string aie_formula_name(AieFormula f);  // "rome" | "per-row"
std::string band_rule_name(BandRule b);
AieFormula parse_aie_formula(const std::string& name);  // kt::Error on unknown
BandRule parse_band_rule(const std::string& name);

struct CategoryStats {
  std::string name;
  std::string label;          // display text ("Last subject token")
  int64_t n = 0;              // samples: token rows (token-weighted) or facts (per-fact mean)
  int64_t n_facts = 0;        // facts contributing at least one sample
  std::vector<double> score;  // [layers] mean p(answer) over the samples
  // What figures, the report and the best-layer figures show: the summary's
  // formula and band rule.
  std::vector<double> aie, ci95;
  // Both formulas and both bands, always.
  std::vector<double> aie_rome;   // [layers] mean score - mean low_score of the facts
  std::vector<double> aie_rows;   // [layers] mean of (score - own fact's low_score)
  std::vector<double> std_rome;   // [layers] population std of the raw scores
  std::vector<double> ci95_rome;  // [layers] 1.96 * std_rome / sqrt(facts averaged)
  std::vector<double> stddev;     // [layers] sample std (n-1) of the per-row effects; n=1 -> 0
  std::vector<double> ci95_rows;  // [layers] 1.96 * stddev / sqrt(n); n=1 -> 0
};

struct MediatorSummary {
  std::string mediator;
  PositionScheme scheme = PositionScheme::Rome6;
  bool per_fact_mean = false;  // false: ROME's token-weighted means
  AieFormula aie_formula = AieFormula::Rome;
  BandRule band = BandRule::Rome;
  int64_t n_facts = 0, n_layers = 0;  // facts averaged
  int64_t n_skipped = 0;  // records left out: correct_prediction false (as ROME's notebook)
  double mean_low = 0, mean_high = 0, ate = 0;  // ate = mean(high - low)
  std::vector<CategoryStats> categories;
  double best_aie_last_subject = 0;
  int64_t best_layer_last_subject = 0;
  double best_aie_last_token = 0;
  int64_t best_layer_last_token = 0;
  // Additions (display): taken from the first record of the mediator.
  std::string model;
  int64_t window = 10;
  std::string metric = "prob", target = "first-token", corruption = "noise";
  bool normalised = false;
  // What a score is, for labels ("p(answer)", "relative change of
  // p(answer)", "KL(clean || restored)", ...); signed_values: shown
  // without clipping at 0 (knockouts, logprob, logit_diff, kl).
  std::string quantity = "p(answer)";
  bool signed_values = false;
};

// Records of other mediators are ignored, and so are records whose
// correct_prediction is false (counted in n_skipped); all records must have
// the same layer count (kt::Error otherwise). No record of the mediator ->
// kt::Error; only skipped ones -> a summary with n_facts 0 and NaN values.
MediatorSummary aggregate(const std::vector<TraceRecord>& records, const std::string& mediator,
                          PositionScheme scheme, bool per_fact_mean = false, AieFormula aie = AieFormula::Rome,
                          BandRule band = BandRule::Rome);

// Both written atomically (temporary file in the same directory, fsync,
// rename); NaN (a category without samples) is null in JSON, "nan" in CSV.
void write_summary_json(const std::string& path, const std::vector<MediatorSummary>& summaries);
// Long format, one row per (mediator, category, layer):
// mediator,scheme,mean_mode,aie_formula,band,category,n,n_facts,layer,score,aie,ci95,
// aie_rome,aie_rows,std_rome,ci95_rome,stddev,ci95_rows
void write_summary_csv(const std::string& path, const std::vector<MediatorSummary>& summaries);
// One row per mediator: n_facts, mean_low, mean_high, ate, best AIEs and layers.
void write_overview_csv(const std::string& path, const std::vector<MediatorSummary>& summaries);
// Reads what write_summary_json wrote (null -> NaN); kt::Error on a bad file.
std::vector<MediatorSummary> read_summary_json(const std::string& path);


}  // namespace kt
