// One home for stored traces: the .npz file of one fact and one mediator,
// its keys, its validation and the fingerprint comparison. Resume,
// aggregate, merge, plot and export all read through read_trace_file, so a
// file is either usable everywhere or nowhere. Plain C++: no torch.
//
// Keys ROME's notebooks read: scores, low_score, high_score, input_ids,
// input_tokens, subject_range, answer, window, correct_prediction, kind.
// knowtrace adds: mediator, correct_rule, convention, noise, noise_level,
// noise_source, noise_seed, samples, answer_id, prompt, subject,
// fingerprint, knowtrace_version, and beyond ROME's settings: metric,
// target, target_ids, corruption, counterfactual, counter_id, normalised,
// raw_low_score, raw_high_score, knockout_window.
//
// A knockout trace (knockout_subject, knockout_nonsubject, knockout_last)
// has one row of scores, the last token's: the relative change of the
// target's probability; its low_score is 0 and high_score the clean
// probability. input_tokens / input_ids still hold the whole prompt.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace kt {

extern const char* const kKnowtraceVersion;

// One stored trace: one fact, one mediator.
struct TraceRecord {
  std::string fact_id;       // from the file name (not stored)
  std::string mediator;      // util/names.h: mediator_names()
  std::string prompt, subject, answer;
  int64_t answer_id = -1;
  std::vector<int64_t> input_ids;
  std::vector<std::string> tokens;  // input_tokens: each token decoded alone, as ROME stores them
  int64_t n_tokens = 0, n_layers = 0;  // rows of scores (knockouts: 1) x layers
  std::vector<double> scores;  // row-major [n_tokens, n_layers]: the metric with the cell restored
  int64_t subject_begin = 0, subject_end = 0;  // [b, e)
  double low_score = 0, high_score = 0;
  // Whether the model's answer is the fact's, under `correct_rule`:
  // "rome" (decode(answer).strip() == attribute), "first-token" (answer is
  // the first token of " " + attribute), "none" (not checked: always true).
  // Averages keep only facts where it holds, as ROME's notebook does.
  bool correct_prediction = true;
  std::string correct_rule = "rome";
  int64_t window = 1;  // layers restored per cell: 1 for the hidden mediators
  // Provenance (absent in files of other tools: empty / 0).
  std::string convention, noise, noise_source;
  double noise_level = 0;
  int64_t noise_seed = 0, samples = 0;
  std::string fingerprint, version;
  // Beyond ROME (defaults = ROME's; files without the keys read as these).
  std::string metric = "prob", target = "first-token", corruption = "noise", counterfactual;
  std::vector<int64_t> target_ids;
  int64_t counter_id = -1, knockout_window = 0;
  bool normalised = false;
  double raw_low = 0, raw_high = 0;
  bool knockout() const { return mediator.rfind("knockout_", 0) == 0; }
  int64_t prompt_tokens() const { return static_cast<int64_t>(tokens.size()); }
  // Display only (figure axis labels), not stored.
  std::string model;  // e.g. "SmolLM2-135M"; "" -> "the model"
  double score(int64_t t, int64_t l) const { return scores[static_cast<size_t>(t * n_layers + l)]; }
};

// "<dir>/<fact>_<mediator>.npz"
std::string trace_file_name(const std::string& dir, const std::string& fact, const std::string& mediator);

// ROME's "kind": "mlp", "attn", "" for the hidden mediators.
std::string rome_kind(const std::string& mediator);

// Checks a record's shape: scores n_tokens x n_layers, one token per row
// (knockouts: one row),
// a non-empty subject range inside the prompt, a known mediator, a window
// >= 1. kt::Error "<who>: ..." otherwise.
void validate_trace(const TraceRecord& r, const std::string& who);

// Every key above, atomically (validate_trace first).
void write_trace_file(const std::string& path, const TraceRecord& r);

// Reads and validates a stored trace. With a non-empty fingerprint, a file
// stored with other settings is refused: kt::Error "<path>: stored with a
// different 'samples' (stored 3, now 10)".
TraceRecord read_trace_file(const std::string& path, const std::string& fact_id,
                            const std::string& expected_fingerprint = "");

// "" when two fingerprints (JSON objects as text) agree, else which field
// differs: "'samples' (stored 3, now 10)".
std::string fingerprint_difference(const std::string& stored, const std::string& now);

// ROME's file layout (experiments/causal_trace.py): <dir>/knowledge_<id>.npz
// for the hidden state, knowledge_<id>_mlp.npz, knowledge_<id>_attn.npz,
// and knowledge_<id>_<mediator>.npz for the severed ones (so the
// notebook's read_knowlege(kind="hidden_mlp_severed") reads them).
std::string rome_case_name(const std::string& dir, const std::string& fact, const std::string& mediator);
// Only ROME's keys (scores stay float64: ROME's notebook reads either).
void write_rome_case(const std::string& path, const TraceRecord& r);

}  // namespace kt
