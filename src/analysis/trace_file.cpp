#include "analysis/trace_file.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>

#include "io/npz.h"
#include "util/error.h"
#include "util/names.h"

namespace kt {
namespace fs = std::filesystem;
using nlohmann::json;

const char* const kKnowtraceVersion = "0.1.0";

namespace {

const std::vector<std::string> kRules = {"rome", "first-token", "none"};

using Arrays = std::vector<std::pair<std::string, NpyArray>>;

Arrays rome_arrays(const TraceRecord& r) {
  return {
      {"scores", NpyArray::from_f64(r.scores, {r.n_tokens, r.n_layers})},
      {"low_score", NpyArray::scalar_f64(r.low_score)},
      {"high_score", NpyArray::scalar_f64(r.high_score)},
      {"input_ids", NpyArray::from_i64(r.input_ids)},
      {"input_tokens", NpyArray::from_strings(r.tokens)},
      {"subject_range", NpyArray::from_i64({r.subject_begin, r.subject_end})},
      {"answer", NpyArray::scalar_string(r.answer)},
      {"window", NpyArray::scalar_i64(r.window)},
      {"correct_prediction", NpyArray::scalar_bool(r.correct_prediction)},
      {"kind", NpyArray::scalar_string(rome_kind(r.mediator))},
  };
}

void write_arrays(const std::string& path, const Arrays& a) {
  const fs::path parent = fs::path(path).parent_path();
  fs::create_directories(parent.empty() ? fs::path(".") : parent);
  write_npz(path, a);
}

}  // namespace

std::string trace_file_name(const std::string& dir, const std::string& fact, const std::string& mediator) {
  return (fs::path(dir) / (fact + "_" + mediator + ".npz")).string();
}

std::string rome_kind(const std::string& mediator) { return mediator == "mlp" || mediator == "attn" ? mediator : ""; }

std::string rome_case_name(const std::string& dir, const std::string& fact, const std::string& mediator) {
  const std::string suffix = mediator == "hidden" ? "" : "_" + mediator;
  return (fs::path(dir) / ("knowledge_" + fact + suffix + ".npz")).string();
}

void validate_trace(const TraceRecord& r, const std::string& who) {
  if (std::find(mediator_names().begin(), mediator_names().end(), r.mediator) == mediator_names().end())
  {
    std::string valid;
    for (const auto& n : mediator_names()) valid += (valid.empty() ? "" : ", ") + n;
    throw Error(who + ": mediator '" + r.mediator + "' is not one of " + valid);
  }
  if (r.n_tokens <= 0 || r.n_layers <= 0)
    throw Error(who + ": needs n_tokens > 0 and n_layers > 0, got " + std::to_string(r.n_tokens) + " x " +
                std::to_string(r.n_layers));
  if (static_cast<int64_t>(r.scores.size()) != r.n_tokens * r.n_layers)
    throw Error(who + ": scores has " + std::to_string(r.scores.size()) +
                " values, expected n_tokens * n_layers = " + std::to_string(r.n_tokens * r.n_layers));
  if (r.knockout() && r.n_tokens != 1)
    throw Error(who + ": a knockout trace has one row of scores (the last token), got " + std::to_string(r.n_tokens));
  if (!r.knockout() && static_cast<int64_t>(r.tokens.size()) != r.n_tokens)
    throw Error(who + ": " + std::to_string(r.tokens.size()) + " input_tokens for " + std::to_string(r.n_tokens) +
                " rows of scores");
  if (!r.input_ids.empty() && r.input_ids.size() != r.tokens.size())
    throw Error(who + ": " + std::to_string(r.input_ids.size()) + " input_ids for " + std::to_string(r.tokens.size()) +
                " input_tokens");
  const int64_t T = r.prompt_tokens();
  if (r.subject_begin < 0 || r.subject_end <= r.subject_begin || r.subject_end > T)
    throw Error(who + ": subject_range [" + std::to_string(r.subject_begin) + ", " + std::to_string(r.subject_end) +
                ") is not a non-empty token range of the " + std::to_string(T) + "-token prompt");
  if (r.window < 1) throw Error(who + ": window " + std::to_string(r.window) + " must be at least 1");
  if (std::find(kRules.begin(), kRules.end(), r.correct_rule) == kRules.end())
    throw Error(who + ": correct_rule '" + r.correct_rule + "' is not one of rome, first-token, none");
}

void write_trace_file(const std::string& path, const TraceRecord& r) {
  validate_trace(r, path);
  Arrays a = rome_arrays(r);
  const Arrays more = {
      {"mediator", NpyArray::scalar_string(r.mediator)},
      {"correct_rule", NpyArray::scalar_string(r.correct_rule)},
      {"convention", NpyArray::scalar_string(r.convention)},
      {"noise", NpyArray::scalar_string(r.noise)},
      {"noise_level", NpyArray::scalar_f64(r.noise_level)},
      {"noise_source", NpyArray::scalar_string(r.noise_source)},
      {"noise_seed", NpyArray::scalar_i64(r.noise_seed)},
      {"samples", NpyArray::scalar_i64(r.samples)},
      {"answer_id", NpyArray::scalar_i64(r.answer_id)},
      {"prompt", NpyArray::scalar_string(r.prompt)},
      {"subject", NpyArray::scalar_string(r.subject)},
      {"fingerprint", NpyArray::scalar_string(r.fingerprint)},
      {"knowtrace_version", NpyArray::scalar_string(r.version.empty() ? kKnowtraceVersion : r.version)},
      {"metric", NpyArray::scalar_string(r.metric)},
      {"target", NpyArray::scalar_string(r.target)},
      {"corruption", NpyArray::scalar_string(r.corruption)},
      {"normalised", NpyArray::scalar_bool(r.normalised)},
      {"raw_low_score", NpyArray::scalar_f64(r.raw_low)},
      {"raw_high_score", NpyArray::scalar_f64(r.raw_high)},
  };
  a.insert(a.end(), more.begin(), more.end());
  if (!r.target_ids.empty()) a.emplace_back("target_ids", NpyArray::from_i64(r.target_ids));
  if (!r.counterfactual.empty()) a.emplace_back("counterfactual", NpyArray::scalar_string(r.counterfactual));
  if (r.counter_id >= 0) a.emplace_back("counter_id", NpyArray::scalar_i64(r.counter_id));
  if (r.knockout_window > 0) a.emplace_back("knockout_window", NpyArray::scalar_i64(r.knockout_window));
  write_arrays(path, a);
}

void write_rome_case(const std::string& path, const TraceRecord& r) {
  validate_trace(r, path);
  write_arrays(path, rome_arrays(r));
}

std::string fingerprint_difference(const std::string& stored, const std::string& now) {
  if (stored == now) return "";
  json h, w;
  try {
    h = json::parse(stored), w = json::parse(now);
  } catch (const json::exception&) {
    return "fingerprint (not valid JSON)";
  }
  if (h == w) return "";
  for (auto& [k, v] : w.items())
    if (!h.contains(k) || h[k] != v)
      return "'" + k + "' (stored " + (h.contains(k) ? h[k].dump() : "nothing") + ", now " + v.dump() + ")";
  return "fingerprint (it holds settings this version does not write)";
}

TraceRecord read_trace_file(const std::string& path, const std::string& fact_id, const std::string& expected) {
  const auto a = read_npz(path);
  auto get = [&](const char* k) -> const NpyArray& { return npz_get(a, k, path); };
  auto has = [&](const char* k) { return a.count(k) > 0; };
  TraceRecord r;
  r.fact_id = fact_id;
  if (has("fingerprint")) r.fingerprint = get("fingerprint").item_string(path);
  if (!expected.empty()) {
    if (!has("fingerprint")) throw Error(path + ": has no fingerprint (not written by knowtrace); it will not be reused");
    const std::string diff = fingerprint_difference(r.fingerprint, expected);
    if (!diff.empty()) throw Error(path + ": stored with a different " + diff);
  }
  // ROME's keys are required; knowtrace's are read when present.
  if (has("mediator")) {
    r.mediator = get("mediator").item_string(path);
  } else {
    const std::string kind = has("kind") ? get("kind").item_string(path) : "";
    r.mediator = kind.empty() || kind == "None" ? "hidden" : kind;
  }
  const NpyArray& s = get("scores");
  if (s.shape.size() != 2) throw Error(path + ": 'scores' must be 2-dimensional, got " + std::to_string(s.shape.size()) + " dimensions");
  r.n_tokens = s.shape[0], r.n_layers = s.shape[1];
  r.scores = s.to_f64(path);
  r.tokens = get("input_tokens").to_strings(path);
  r.input_ids = get("input_ids").to_i64(path);
  const auto range = get("subject_range").to_i64(path);
  if (range.size() != 2) throw Error(path + ": 'subject_range' must hold 2 values, got " + std::to_string(range.size()));
  r.subject_begin = range[0], r.subject_end = range[1];
  r.low_score = get("low_score").item_f64(path);
  r.high_score = get("high_score").item_f64(path);
  r.answer = get("answer").item_string(path);
  r.window = get("window").item_i64(path);
  r.correct_prediction = get("correct_prediction").item_bool(path);
  if (has("correct_rule")) r.correct_rule = get("correct_rule").item_string(path);
  if (has("answer_id")) r.answer_id = get("answer_id").item_i64(path);
  if (has("prompt")) r.prompt = get("prompt").item_string(path);
  if (has("subject")) r.subject = get("subject").item_string(path);
  if (has("convention")) r.convention = get("convention").item_string(path);
  if (has("noise")) r.noise = get("noise").item_string(path);
  if (has("noise_level")) r.noise_level = get("noise_level").item_f64(path);
  if (has("noise_source")) r.noise_source = get("noise_source").item_string(path);
  if (has("noise_seed")) r.noise_seed = get("noise_seed").item_i64(path);
  if (has("samples")) r.samples = get("samples").item_i64(path);
  if (has("knowtrace_version")) r.version = get("knowtrace_version").item_string(path);
  if (has("metric")) r.metric = get("metric").item_string(path);
  if (has("target")) r.target = get("target").item_string(path);
  if (has("corruption")) r.corruption = get("corruption").item_string(path);
  if (has("normalised")) r.normalised = get("normalised").item_bool(path);
  r.raw_low = has("raw_low_score") ? get("raw_low_score").item_f64(path) : r.low_score;
  r.raw_high = has("raw_high_score") ? get("raw_high_score").item_f64(path) : r.high_score;
  if (has("target_ids")) r.target_ids = get("target_ids").to_i64(path);
  if (has("counterfactual")) r.counterfactual = get("counterfactual").item_string(path);
  if (has("counter_id")) r.counter_id = get("counter_id").item_i64(path);
  if (has("knockout_window")) r.knockout_window = get("knockout_window").item_i64(path);
  validate_trace(r, path);
  return r;
}

}  // namespace kt
