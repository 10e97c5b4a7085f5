// Average indirect effects by token-position category (DESIGN.md section 3).
//
// Category rows of one fact with subject [b, e) and T tokens:
//   rome6  first subject [b, b+1), middle subject [b+1, e-1), last subject
//          [e-1, e), first subsequent [e, e+1) (when e < T), further tokens
//          [e+1, T-1), last token [T-1, T).
//   seed4  first subject, last subject, further tokens [e, T-1), last token.
//
// Overlaps follow ROME's notebook (experiments: average_causal_effects,
// `read_knowlege`), which indexes scores[first_e], scores[first_e+1:last_e],
// scores[last_e], scores[first_a], scores[first_a+1:last_a], scores[last_a]:
//   - a one-token subject (b == e-1) is a sample of both "first subject
//     token" and "last subject token" and gives no middle tokens;
//   - a subject that ends right before the last token (e == T-1): token e is
//     both the first subsequent token and the last token, so it is a sample
//     of both (ROME adds scores[first_a] and scores[last_a]); there are no
//     further tokens. (seed4's further range [e, T-1) is then empty.)
//   - a subject that reaches the last token (e == T, which ROME never
//     produces) has no subsequent token at all; its last subject token is
//     also the last token.
//
// Statistics. A sample is a token row (token-weighted, ROME's default) or a
// fact's mean over the category's rows (per-fact mean). Both AIE formulas
// and both bands of aggregate.h are computed; the summary's choice (ROME's
// by default) is what `aie` and `ci95` hold. Facts whose stored
// correct_prediction is false are left out, as ROME's notebook skips them.
// No clipping happens here: a negative effect stays negative (figures clip
// for display only).
#include "analysis/aggregate.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "util/error.h"
#include "util/paths.h"
#include "util/stored_file.h"

namespace kt {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

struct Range {
  int64_t lo, hi;  // [lo, hi), empty when hi <= lo
};

// Rows of each category for one fact, in category_names(scheme) order.
std::vector<Range> category_rows(PositionScheme scheme, int64_t b, int64_t e, int64_t T) {
  const Range first_subject{b, b + 1};
  const Range last_subject{e - 1, e};
  const Range last_token{T - 1, T};
  if (scheme == PositionScheme::Rome6) {
    return {first_subject, {b + 1, e - 1}, last_subject, {e, std::min(e + 1, T)}, {e + 1, T - 1}, last_token};
  }
  return {first_subject, last_subject, {e, T - 1}, last_token};
}

struct Accumulator {
  std::vector<std::vector<double>> score_rows, effect_rows;  // one per sample, [layers]
  int64_t n_facts = 0;
};

void finish_category(const Accumulator& acc, int64_t L, double mean_low, int64_t facts, AieFormula formula,
                     BandRule band, CategoryStats& c) {
  const auto n = static_cast<int64_t>(acc.score_rows.size());
  c.n = n;
  c.n_facts = acc.n_facts;
  for (auto* v : {&c.score, &c.aie, &c.ci95, &c.aie_rome, &c.aie_rows, &c.std_rome, &c.ci95_rome, &c.stddev, &c.ci95_rows})
    v->assign(L, kNaN);
  if (n == 0) return;
  const double dn = static_cast<double>(n);
  for (int64_t l = 0; l < L; ++l) {
    double ss = 0, se = 0;
    for (int64_t i = 0; i < n; ++i) {
      ss += acc.score_rows[i][l];
      se += acc.effect_rows[i][l];
    }
    const double ms = ss / dn, me = se / dn;
    double var_effect = 0, var_score = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double de = acc.effect_rows[i][l] - me, ds = acc.score_rows[i][l] - ms;
      var_effect += de * de;
      var_score += ds * ds;
    }
    c.score[l] = ms;
    c.aie_rome[l] = ms - mean_low;
    c.aie_rows[l] = me;
    c.std_rome[l] = std::sqrt(var_score / dn);
    c.ci95_rome[l] = 1.96 * c.std_rome[l] / std::sqrt(static_cast<double>(facts));
    c.stddev[l] = n > 1 ? std::sqrt(var_effect / (dn - 1)) : 0.0;
    c.ci95_rows[l] = n > 1 ? 1.96 * c.stddev[l] / std::sqrt(dn) : 0.0;
    c.aie[l] = formula == AieFormula::Rome ? c.aie_rome[l] : c.aie_rows[l];
    c.ci95[l] = band == BandRule::Rome ? c.ci95_rome[l] : c.ci95_rows[l];
  }
}

// Largest finite value and its (first) index; NaN and -1 when there is none.
void best_of(const std::vector<double>& v, double& best, int64_t& layer) {
  best = kNaN;
  layer = -1;
  for (size_t l = 0; l < v.size(); ++l) {
    if (!std::isfinite(v[l])) continue;
    if (layer < 0 || v[l] > best) {
      best = v[l];
      layer = static_cast<int64_t>(l);
    }
  }
}

// Only the last-token category: a knockout trace's single row.
std::vector<Range> knockout_rows(const std::vector<std::string>& names) {
  std::vector<Range> r(names.size(), Range{0, 0});
  for (size_t c = 0; c < names.size(); ++c)
    if (names[c] == "last_token") r[c] = Range{0, 1};
  return r;
}

// What the scores are, for figure labels, from the records' settings.
void describe_quantity(const TraceRecord& r, MediatorSummary& s) {
  const std::string p = r.target == "answer" ? "p(answer tokens)" : "p(answer)";
  s.metric = r.metric, s.target = r.target, s.corruption = r.corruption, s.normalised = r.normalised;
  if (r.knockout()) {
    s.quantity = "relative change of " + p, s.signed_values = true;
  } else if (r.normalised) {
    s.quantity = "restored fraction of " + (r.metric == "prob" ? p : r.metric), s.signed_values = false;
  } else if (r.metric == "logprob") {
    s.quantity = r.target == "answer" ? "mean log p(answer tokens)" : "log p(answer)", s.signed_values = true;
  } else if (r.metric == "logit_diff") {
    s.quantity = "logit(answer) \xE2\x88\x92 logit(counterfactual)", s.signed_values = true;
  } else if (r.metric == "kl") {
    s.quantity = "KL(clean \xE2\x80\x96 restored)", s.signed_values = true;
  } else {
    s.quantity = p, s.signed_values = false;
  }
}

const CategoryStats* find_category(const MediatorSummary& s, const std::string& name) {
  for (const auto& c : s.categories)
    if (c.name == name) return &c;
  return nullptr;
}


// CSV number: shortest round-trip-ish text; NaN -> "nan".
std::string num(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  // Prefer the shorter %.15g form when it reads back exactly.
  char shorter[40];
  std::snprintf(shorter, sizeof shorter, "%.15g", v);
  if (std::strtod(shorter, nullptr) == v) return shorter;
  return buf;
}

std::string mean_mode(bool per_fact_mean) { return per_fact_mean ? "per_fact" : "token"; }

nlohmann::json vec_json(const std::vector<double>& v) {
  nlohmann::json a = nlohmann::json::array();
  for (double x : v) a.push_back(std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr));
  return a;
}

double json_num(const nlohmann::json& j) {
  if (j.is_null()) return kNaN;
  return j.get<double>();
}

std::vector<double> json_vec(const nlohmann::json& j) {
  std::vector<double> v;
  for (const auto& x : j) v.push_back(json_num(x));
  return v;
}

}  // namespace

std::string scheme_name(PositionScheme s) { return s == PositionScheme::Rome6 ? "rome6" : "seed4"; }

PositionScheme parse_scheme(const std::string& name) {
  std::string n = name;
  std::transform(n.begin(), n.end(), n.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (n == "rome6") return PositionScheme::Rome6;
  if (n == "seed4") return PositionScheme::Seed4;
  throw Error("unknown position scheme '" + name + "' (expected rome6 or seed4)");
}

std::string aie_formula_name(AieFormula f) { return f == AieFormula::Rome ? "rome" : "per-row"; }
std::string band_rule_name(BandRule b) { return b == BandRule::Rome ? "rome" : "per-row"; }

AieFormula parse_aie_formula(const std::string& name) {
  if (name == "rome") return AieFormula::Rome;
  if (name == "per-row") return AieFormula::PerRow;
  throw Error("unknown AIE formula '" + name + "' (expected rome or per-row)");
}

BandRule parse_band_rule(const std::string& name) {
  if (name == "rome") return BandRule::Rome;
  if (name == "per-row") return BandRule::PerRow;
  throw Error("unknown band rule '" + name + "' (expected rome or per-row)");
}

std::vector<std::string> category_names(PositionScheme s) {
  if (s == PositionScheme::Rome6)
    return {"first_subject_token",    "middle_subject_tokens", "last_subject_token",
            "first_subsequent_token", "further_tokens",        "last_token"};
  return {"first_subject_token", "last_subject_token", "further_tokens", "last_token"};
}

std::vector<std::string> category_labels(PositionScheme s) {
  if (s == PositionScheme::Rome6)
    return {"First subject token",    "Middle subject tokens", "Last subject token",
            "First subsequent token", "Further tokens",        "Last token"};
  return {"First subject token", "Last subject token", "Further tokens", "Last token"};
}

MediatorSummary aggregate(const std::vector<TraceRecord>& records, const std::string& mediator, PositionScheme scheme,
                          bool per_fact_mean, AieFormula formula, BandRule band) {
  std::vector<const TraceRecord*> all_of_mediator;
  for (const auto& r : records)
    if (r.mediator == mediator) all_of_mediator.push_back(&r);
  if (all_of_mediator.empty())
    throw Error("aggregate: no trace records for mediator '" + mediator + "' (" + std::to_string(records.size()) +
                " records of other mediators)");

  const int64_t L = all_of_mediator.front()->n_layers;
  std::vector<const TraceRecord*> mine;
  for (const auto* r : all_of_mediator) {
    validate_trace(*r, "trace record '" + r->fact_id + "' (" + r->mediator + ")");
    if (r->n_layers != L)
      throw Error("aggregate(" + mediator + "): fact '" + r->fact_id + "' has " + std::to_string(r->n_layers) +
                  " layers but fact '" + all_of_mediator.front()->fact_id + "' has " + std::to_string(L) +
                  " (records of one mediator must come from one model)");
    if (r->correct_prediction) mine.push_back(r);
  }

  MediatorSummary s;
  s.mediator = mediator;
  s.scheme = scheme;
  s.per_fact_mean = per_fact_mean;
  s.aie_formula = formula;
  s.band = band;
  s.n_facts = static_cast<int64_t>(mine.size());
  s.n_skipped = static_cast<int64_t>(all_of_mediator.size() - mine.size());
  s.n_layers = L;
  s.model = all_of_mediator.front()->model;
  s.window = all_of_mediator.front()->window;
  describe_quantity(*all_of_mediator.front(), s);

  double sum_low = 0, sum_high = 0, sum_te = 0;
  for (const auto* r : mine) {
    sum_low += r->low_score;
    sum_high += r->high_score;
    sum_te += r->high_score - r->low_score;
  }
  const auto nf = mine.empty() ? kNaN : static_cast<double>(mine.size());
  s.mean_low = sum_low / nf;
  s.mean_high = sum_high / nf;
  s.ate = sum_te / nf;

  const auto names = category_names(scheme);
  const auto labels = category_labels(scheme);
  std::vector<Accumulator> acc(names.size());
  for (const auto* r : mine) {
    // A knockout trace's one row is the last token's.
    const auto ranges = r->knockout() ? knockout_rows(names) : category_rows(scheme, r->subject_begin, r->subject_end, r->n_tokens);
    for (size_t c = 0; c < ranges.size(); ++c) {
      const Range rg = ranges[c];
      if (rg.hi <= rg.lo) continue;
      acc[c].n_facts += 1;
      if (per_fact_mean) {
        std::vector<double> sc(L, 0.0);
        for (int64_t t = rg.lo; t < rg.hi; ++t)
          for (int64_t l = 0; l < L; ++l) sc[l] += r->score(t, l);
        std::vector<double> ef(L);
        for (int64_t l = 0; l < L; ++l) {
          sc[l] /= static_cast<double>(rg.hi - rg.lo);
          ef[l] = sc[l] - r->low_score;
        }
        acc[c].score_rows.push_back(std::move(sc));
        acc[c].effect_rows.push_back(std::move(ef));
      } else {
        for (int64_t t = rg.lo; t < rg.hi; ++t) {
          std::vector<double> sc(L), ef(L);
          for (int64_t l = 0; l < L; ++l) {
            sc[l] = r->score(t, l);
            ef[l] = sc[l] - r->low_score;
          }
          acc[c].score_rows.push_back(std::move(sc));
          acc[c].effect_rows.push_back(std::move(ef));
        }
      }
    }
  }

  for (size_t c = 0; c < names.size(); ++c) {
    CategoryStats cs;
    cs.name = names[c];
    cs.label = labels[c];
    finish_category(acc[c], L, s.mean_low, s.n_facts, formula, band, cs);
    s.categories.push_back(std::move(cs));
  }
  best_of(find_category(s, "last_subject_token")->aie, s.best_aie_last_subject, s.best_layer_last_subject);
  best_of(find_category(s, "last_token")->aie, s.best_aie_last_token, s.best_layer_last_token);
  return s;
}

void write_summary_json(const std::string& path, const std::vector<MediatorSummary>& summaries) {
  nlohmann::json root;
  root["format"] = "knowtrace-aie-summary";
  root["version"] = 1;
  root["mediators"] = nlohmann::json::array();
  for (const auto& s : summaries) {
    nlohmann::json m;
    m["mediator"] = s.mediator;
    m["scheme"] = scheme_name(s.scheme);
    m["mean_mode"] = mean_mode(s.per_fact_mean);
    m["aie_formula"] = aie_formula_name(s.aie_formula);
    m["band"] = band_rule_name(s.band);
    m["n_skipped"] = s.n_skipped;
    m["model"] = s.model;
    m["window"] = s.window;
    m["metric"] = s.metric;
    m["target"] = s.target;
    m["corruption"] = s.corruption;
    m["normalised"] = s.normalised;
    m["quantity"] = s.quantity;
    m["signed_values"] = s.signed_values;
    m["n_facts"] = s.n_facts;
    m["n_layers"] = s.n_layers;
    m["mean_low"] = std::isfinite(s.mean_low) ? nlohmann::json(s.mean_low) : nlohmann::json(nullptr);
    m["mean_high"] = std::isfinite(s.mean_high) ? nlohmann::json(s.mean_high) : nlohmann::json(nullptr);
    m["ate"] = std::isfinite(s.ate) ? nlohmann::json(s.ate) : nlohmann::json(nullptr);
    auto best = [](double v, int64_t layer) {
      nlohmann::json b;
      b["aie"] = std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
      b["layer"] = layer >= 0 ? nlohmann::json(layer) : nlohmann::json(nullptr);
      return b;
    };
    m["best_last_subject_token"] = best(s.best_aie_last_subject, s.best_layer_last_subject);
    m["best_last_token"] = best(s.best_aie_last_token, s.best_layer_last_token);
    m["categories"] = nlohmann::json::array();
    for (const auto& c : s.categories) {
      nlohmann::json cj;
      cj["name"] = c.name;
      cj["label"] = c.label;
      cj["n"] = c.n;
      cj["n_facts"] = c.n_facts;
      cj["score"] = vec_json(c.score);
      cj["aie"] = vec_json(c.aie);
      cj["ci95"] = vec_json(c.ci95);
      cj["aie_rome"] = vec_json(c.aie_rome);
      cj["aie_rows"] = vec_json(c.aie_rows);
      cj["std_rome"] = vec_json(c.std_rome);
      cj["ci95_rome"] = vec_json(c.ci95_rome);
      cj["stddev"] = vec_json(c.stddev);
      cj["ci95_rows"] = vec_json(c.ci95_rows);
      m["categories"].push_back(std::move(cj));
    }
    root["mediators"].push_back(std::move(m));
  }
  write_file_checked(path, root.dump(1) + "\n");
}

std::vector<MediatorSummary> read_summary_json(const std::string& path) {
  const std::string text = read_file_checked(path);
  std::vector<MediatorSummary> out;
  try {
    const auto root = nlohmann::json::parse(text);
    if (root.value("format", "") != "knowtrace-aie-summary")
      throw Error(path + ": not a knowtrace AIE summary (field \"format\" is not \"knowtrace-aie-summary\")");
    for (const auto& m : root.at("mediators")) {
      MediatorSummary s;
      s.mediator = m.at("mediator").get<std::string>();
      s.scheme = parse_scheme(m.at("scheme").get<std::string>());
      s.per_fact_mean = m.at("mean_mode").get<std::string>() == "per_fact";
      s.aie_formula = parse_aie_formula(m.value("aie_formula", "rome"));
      s.band = parse_band_rule(m.value("band", "rome"));
      s.n_skipped = m.value("n_skipped", int64_t{0});
      s.model = m.value("model", "");
      s.window = m.value("window", int64_t{10});
      s.metric = m.value("metric", "prob");
      s.target = m.value("target", "first-token");
      s.corruption = m.value("corruption", "noise");
      s.normalised = m.value("normalised", false);
      s.quantity = m.value("quantity", "p(answer)");
      s.signed_values = m.value("signed_values", false);
      s.n_facts = m.at("n_facts").get<int64_t>();
      s.n_layers = m.at("n_layers").get<int64_t>();
      s.mean_low = json_num(m.at("mean_low"));
      s.mean_high = json_num(m.at("mean_high"));
      s.ate = json_num(m.at("ate"));
      const auto& bs = m.at("best_last_subject_token");
      s.best_aie_last_subject = json_num(bs.at("aie"));
      s.best_layer_last_subject = bs.at("layer").is_null() ? -1 : bs.at("layer").get<int64_t>();
      const auto& bt = m.at("best_last_token");
      s.best_aie_last_token = json_num(bt.at("aie"));
      s.best_layer_last_token = bt.at("layer").is_null() ? -1 : bt.at("layer").get<int64_t>();
      for (const auto& cj : m.at("categories")) {
        CategoryStats c;
        c.name = cj.at("name").get<std::string>();
        c.label = cj.value("label", c.name);
        c.n = cj.at("n").get<int64_t>();
        c.n_facts = cj.value("n_facts", int64_t{0});
        c.score = json_vec(cj.at("score"));
        c.aie = json_vec(cj.at("aie"));
        c.ci95 = json_vec(cj.at("ci95"));
        c.aie_rome = json_vec(cj.at("aie_rome"));
        c.stddev = json_vec(cj.at("stddev"));
        if (cj.contains("aie_rows")) c.aie_rows = json_vec(cj.at("aie_rows"));
        if (cj.contains("std_rome")) c.std_rome = json_vec(cj.at("std_rome"));
        if (cj.contains("ci95_rome")) c.ci95_rome = json_vec(cj.at("ci95_rome"));
        if (cj.contains("ci95_rows")) c.ci95_rows = json_vec(cj.at("ci95_rows"));
        s.categories.push_back(std::move(c));
      }
      out.push_back(std::move(s));
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": malformed AIE summary JSON (" + e.what() + ")");
  }
  return out;
}

void write_summary_csv(const std::string& path, const std::vector<MediatorSummary>& summaries) {
  std::ostringstream o;
  o << "mediator,scheme,mean_mode,aie_formula,band,category,n,n_facts,layer,score,aie,ci95,aie_rome,aie_rows,std_rome,"
       "ci95_rome,stddev,ci95_rows\n";
  auto at = [](const std::vector<double>& v, size_t l) { return num(l < v.size() ? v[l] : kNaN); };
  for (const auto& s : summaries) {
    for (const auto& c : s.categories) {
      for (size_t l = 0; l < c.score.size(); ++l) {
        o << s.mediator << ',' << scheme_name(s.scheme) << ',' << mean_mode(s.per_fact_mean) << ','
          << aie_formula_name(s.aie_formula) << ',' << band_rule_name(s.band) << ',' << c.name << ',' << c.n << ','
          << c.n_facts << ',' << l;
        for (const auto* v : {&c.score, &c.aie, &c.ci95, &c.aie_rome, &c.aie_rows, &c.std_rome, &c.ci95_rome, &c.stddev,
                              &c.ci95_rows})
          o << ',' << at(*v, l);
        o << '\n';
      }
    }
  }
  write_file_checked(path, o.str());
}

void write_overview_csv(const std::string& path, const std::vector<MediatorSummary>& summaries) {
  std::ostringstream o;
  o << "mediator,scheme,mean_mode,aie_formula,n_facts,n_skipped,n_layers,mean_low,mean_high,ate,best_aie_last_subject_token,"
       "best_layer_last_subject_token,best_aie_last_token,best_layer_last_token\n";
  for (const auto& s : summaries) {
    o << s.mediator << ',' << scheme_name(s.scheme) << ',' << mean_mode(s.per_fact_mean) << ','
      << aie_formula_name(s.aie_formula) << ',' << s.n_facts << ',' << s.n_skipped << ',' << s.n_layers << ',' << num(s.mean_low) << ',' << num(s.mean_high) << ',' << num(s.ate) << ','
      << num(s.best_aie_last_subject) << ',' << s.best_layer_last_subject << ',' << num(s.best_aie_last_token) << ','
      << s.best_layer_last_token << '\n';
  }
  write_file_checked(path, o.str());
}

}  // namespace kt
