// Average indirect effects over facts by token-position category (the
// paper figure, DESIGN.md section 3). Plain C++: no model, no torch.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace kt {

// One stored trace: one fact, one mediator.
struct TraceRecord {
  std::string fact_id;
  std::string mediator;      // "hidden", "hidden_attn_severed", "hidden_mlp_severed", "mlp", "attn"
  std::string prompt, subject, answer;
  std::vector<std::string> tokens;
  int64_t n_tokens = 0, n_layers = 0;
  std::vector<double> scores;  // row-major [n_tokens, n_layers]: p(answer) with the cell restored
  int64_t subject_begin = 0, subject_end = 0;  // [b, e)
  double low_score = 0, high_score = 0;
  // Display only (figure axis labels); aggregation ignores them.
  std::string model;    // e.g. "SmolLM2-135M"; "" -> "the model"
  int64_t window = 10;  // mlp / attn: number of restored layers per cell
  double score(int64_t t, int64_t l) const { return scores[static_cast<size_t>(t * n_layers + l)]; }
};

// rome6: first subject, middle subject, last subject, first subsequent,
//        further tokens, last token (ROME Fig. 2).
// seed4: first subject, last subject, further tokens [e, T-1), last token.
enum class PositionScheme { Rome6, Seed4 };
std::string scheme_name(PositionScheme s);
PositionScheme parse_scheme(const std::string& name);  // kt::Error on unknown
std::vector<std::string> category_names(PositionScheme s);   // snake_case ids, e.g. "last_subject_token"
std::vector<std::string> category_labels(PositionScheme s);  // display text, e.g. "Last subject token"

struct CategoryStats {
  std::string name;
  int64_t n = 0;              // samples: token rows (token-weighted) or facts (per-fact mean)
  std::vector<double> score;  // [layers] mean p(answer)
  // [layers] mean over the samples of (score - low_score of the sample's own
  // fact). Equals "mean score - mean low_score" whenever every fact gives the
  // category the same number of samples (always for one-token categories and
  // per-fact means); see aie_rome for ROME's notebook formula otherwise.
  std::vector<double> aie;
  std::vector<double> ci95;  // [layers] 1.96 * std / sqrt(n) of the per-sample indirect effects
  // Additions:
  std::string label;             // display text ("Last subject token")
  int64_t n_facts = 0;           // facts contributing at least one sample
  std::vector<double> stddev;    // [layers] sample std (n-1) of the per-sample indirect effects; n=1 -> 0
  std::vector<double> aie_rome;  // [layers] ROME notebook formula: mean score - mean low_score of all facts
};

struct MediatorSummary {
  std::string mediator;
  PositionScheme scheme = PositionScheme::Rome6;
  bool per_fact_mean = false;  // false: ROME's token-weighted means
  int64_t n_facts = 0, n_layers = 0;
  double mean_low = 0, mean_high = 0, ate = 0;  // ate = mean(high - low)
  std::vector<CategoryStats> categories;
  double best_aie_last_subject = 0;
  int64_t best_layer_last_subject = 0;
  double best_aie_last_token = 0;
  int64_t best_layer_last_token = 0;
  // Additions (display): taken from the first record of the mediator.
  std::string model;
  int64_t window = 10;
};

// Records of other mediators are ignored; all records must have the same
// layer count (kt::Error otherwise). Zero records -> kt::Error.
MediatorSummary aggregate(const std::vector<TraceRecord>& records, const std::string& mediator,
                          PositionScheme scheme, bool per_fact_mean = false);

// Both written atomically (temporary file in the same directory, fsync,
// rename); NaN (a category without samples) is null in JSON, "nan" in CSV.
void write_summary_json(const std::string& path, const std::vector<MediatorSummary>& summaries);
// Long format, one row per (mediator, category, layer):
// mediator,scheme,mean_mode,category,n,n_facts,layer,score,aie,aie_rome,stddev,ci95
void write_summary_csv(const std::string& path, const std::vector<MediatorSummary>& summaries);
// One row per mediator: n_facts, mean_low, mean_high, ate, best AIEs and layers.
void write_overview_csv(const std::string& path, const std::vector<MediatorSummary>& summaries);
// Reads what write_summary_json wrote (null -> NaN); kt::Error on a bad file.
std::vector<MediatorSummary> read_summary_json(const std::string& path);


}  // namespace kt
