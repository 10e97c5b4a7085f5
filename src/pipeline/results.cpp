// The model-free half of the pipeline: filter.jsonl and errors.jsonl,
// reading stored traces, the aggregate and plot stages, and `replot`.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>

#include "pipeline/stages.h"
#include "report/plots.h"
#include "util/crash_point.h"
#include "util/error.h"
#include "util/stored_file.h"
#include "util/paths.h"

namespace kt {
namespace fs = std::filesystem;
using nlohmann::json;

namespace pipeline {

namespace {

std::string dump_line(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::vector<ImageFormat> image_formats(const std::vector<std::string>& names) {
  std::vector<ImageFormat> out;
  for (const auto& n : names) out.push_back(parse_image_format(n));
  return out;
}

// "models/SmolLM2-135M-Instruct.Q4_1.gguf" -> "SmolLM2-135M-Instruct.Q4_1".
std::string model_display_name(const std::string& path) {
  fs::path p = fs::path(path).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  return p.extension() == ".gguf" ? p.stem().string() : p.filename().string();
}

}  // namespace

std::string run_json_path(const std::string& dir) { return (fs::path(dir) / "run.json").string(); }

json read_run_json(const std::string& dir) {
  const std::string rj = run_json_path(dir);
  if (!fs::exists(rj)) throw NotFound(dir + ": no run.json: not a knowtrace results directory (run the filter and trace stages first)");
  json j;
  try {
    j = json::parse(read_file_checked(rj));
  } catch (const json::exception& e) {
    throw Error(rj + ": not valid JSON (" + std::string(e.what()) + ")");
  }
  if (!j.is_object() || !j.contains("fingerprint") || !j.contains("config"))
    throw Error(rj + ": has no 'config' or 'fingerprint'");
  return j;
}

// Calls `parse` on each non-empty line of a checked JSONL file; a line that
// does not parse is reported as "<path>:<line>: not <what> (...)".
template <class F>
void read_jsonl(const std::string& path, const char* what, F&& parse) {
  std::istringstream in(read_file_checked(path));
  std::string line;
  size_t lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.empty()) continue;
    try {
      parse(json::parse(line));
    } catch (const json::exception& e) {
      throw Error(path + ":" + std::to_string(lineno) + ": not " + what + " (" + e.what() + ")");
    }
  }
}

std::vector<Verdict> read_verdicts(const std::string& path) {
  std::vector<Verdict> out;
  if (!fs::exists(path)) return out;
  read_jsonl(path, "a filter verdict", [&](const json& j) {
    Verdict v;
    v.id = j.at("id").get<std::string>();
    v.prompt = j.at("prompt").get<std::string>();
    v.subject = j.at("subject").get<std::string>();
    v.attribute = j.at("attribute").get<std::string>();
    v.n_tokens = j.at("n_tokens").get<int64_t>();
    v.top1_id = j.at("top1_id").get<int32_t>();
    v.top1_token = j.at("top1_token").get<std::string>();
    v.top1_prob = j.at("top1_prob").get<double>();
    v.attribute_first_id = j.at("attribute_first_id").get<int32_t>();
    v.first_token = j.at("first_token").get<bool>();
    v.rome = j.at("rome").get<bool>();
    out.push_back(std::move(v));
  });
  return out;
}

void write_verdicts(const std::string& path, const std::vector<Verdict>& vs) {
  std::string text;
  for (const auto& v : vs) {
    json j = {{"id", v.id},
              {"prompt", v.prompt},
              {"subject", v.subject},
              {"attribute", v.attribute},
              {"n_tokens", v.n_tokens},
              {"top1_id", v.top1_id},
              {"top1_token", v.top1_token},
              {"top1_prob", v.top1_prob},
              {"attribute_first_id", v.attribute_first_id},
              {"first_token", v.first_token},
              {"rome", v.rome}};
    text += dump_line(j) + "\n";
  }
  write_file_checked(path, text);
}

std::vector<Verdict> kept_facts(const std::vector<Verdict>& verdicts, const RunConfig& cfg) {
  std::set<std::string> subset(cfg.facts.begin(), cfg.facts.end());
  std::vector<Verdict> out;
  for (const auto& v : verdicts) {
    if (!subset.empty() && !subset.count(v.id)) continue;
    const bool keep = cfg.filter == "none" || (cfg.filter == "rome" ? v.rome : v.first_token);
    if (!keep) continue;
    out.push_back(v);
    if (cfg.limit > 0 && static_cast<int64_t>(out.size()) >= cfg.limit) break;
  }
  return out;
}

void write_errors(const std::string& path, const std::vector<FactError>& errors) {
  std::string text;
  for (const auto& e : errors) text += dump_line(json{{"id", e.id}, {"stage", e.stage}, {"error", e.message}}) + "\n";
  write_file_checked(path, text);
}

std::vector<FactError> read_errors(const std::string& path) {
  std::vector<FactError> out;
  if (!fs::exists(path)) return out;
  read_jsonl(path, "an error record", [&](const json& j) {
    out.push_back({j.at("id").get<std::string>(), j.at("stage").get<std::string>(), j.at("error").get<std::string>()});
  });
  return out;
}

void aggregate_stage(const RunConfig& cfg, const std::string& dir, const std::string& fingerprint, bool plot,
                     const RunOptions& opts, RunReport& report) {
  const std::string filter_path = (fs::path(dir) / "filter.jsonl").string();
  if (!fs::exists(filter_path))
    throw Error(dir + ": no filter.jsonl: run the filter and trace stages first (knowtrace run CONFIG)");
  const std::vector<Verdict> kept = kept_facts(read_verdicts(filter_path), cfg);
  remove_stale_temporaries(dir);  // summaries a killed run left half-written

  // Every stored trace of every kept fact.
  std::vector<TraceRecord> records;
  std::set<std::string> facts_with_records;
  int64_t missing = 0, invalid = 0;
  for (const auto& v : kept) {
    for (const auto& m : cfg.mediators) {
      const std::string path = trace_file_name((fs::path(dir) / "traces").string(), v.id, m);
      if (!fs::exists(path)) {
        ++missing;
        continue;
      }
      try {
        records.push_back(read_trace_file(path, v.id, fingerprint));
        records.back().model = model_display_name(cfg.model);
        facts_with_records.insert(v.id);
      } catch (const Error& e) {
        ++invalid;
        note(report, std::string(e.what()) + "; left out of the summary");
      }
    }
  }
  if (missing > 0)
    note(report, "aggregate: " + std::to_string(missing) + " trace file(s) of kept facts are not stored yet"
                 " (interrupted run or untraceable facts: see errors.jsonl); summarizing what is stored");
  report.aggregated_facts = static_cast<int64_t>(facts_with_records.size());
  if (records.empty()) {
    note(report, "aggregate: no stored traces in " + dir + "/traces: nothing to summarize");
    return;
  }

  const PositionScheme primary_scheme = parse_scheme(cfg.positions);
  const bool primary_per_fact = cfg.average == "facts";
  const AieFormula formula = parse_aie_formula(cfg.aie);
  const BandRule band = parse_band_rule(cfg.bands);
  std::vector<MediatorSummary> primary, all;
  for (const auto& m : cfg.mediators) {
    const bool any = std::any_of(records.begin(), records.end(), [&](const TraceRecord& r) { return r.mediator == m; });
    if (!any) continue;
    primary.push_back(aggregate(records, m, primary_scheme, primary_per_fact, formula, band));
    if (primary.back().n_skipped > 0)
      note(report, "aggregate(" + m + "): " + std::to_string(primary.back().n_skipped) +
                       " stored trace(s) with correct_prediction false left out, as ROME's notebook does");
  }
  all = primary;
  for (PositionScheme sc : {PositionScheme::Rome6, PositionScheme::Seed4})
    for (bool per_fact : {false, true}) {
      if (sc == primary_scheme && per_fact == primary_per_fact) continue;
      for (const auto& p : primary) all.push_back(aggregate(records, p.mediator, sc, per_fact, formula, band));
    }
  write_summary_json((fs::path(dir) / "summary.json").string(), all);
  crash_point("aggregate");
  write_summary_csv((fs::path(dir) / "summary.csv").string(), all);
  write_overview_csv((fs::path(dir) / "overview.csv").string(), all);
  std::fprintf(stderr, "aggregate: %lld facts, %zu mediators -> %s/summary.json, summary.csv, overview.csv\n",
               (long long)report.aggregated_facts, primary.size(), dir.c_str());
  if (!plot) return;
  if (!plots_available()) {
    note(report, "plot: this knowtrace was built without cairo: no figures (install libcairo2-dev and rebuild)");
    return;
  }

  std::vector<ImageFormat> formats = image_formats(cfg.formats);
  // The HTML report embeds PNGs: the summary figures are always drawn as PNG too.
  std::vector<ImageFormat> summary_formats = formats;
  if (std::find(formats.begin(), formats.end(), ImageFormat::Png) == formats.end())
    summary_formats.push_back(ImageFormat::Png);
  const fs::path figs = fs::path(dir) / "figures";
  fs::create_directories(figs / "facts");
  // Figures a killed run left half-drawn (only rank 0 plots).
  remove_stale_temporaries(figs.string());
  remove_stale_temporaries((figs / "facts").string());
  std::vector<std::string> pngs;
  auto keep = [&](const std::vector<std::string>& written) {
    for (const auto& w : written) {
      report.figures.push_back(w);
      if (fs::path(w).extension() == ".png") pngs.push_back(w);
    }
  };
  // Averaged heatmaps and line plots first: the report shows them on top.
  // Knockouts (one row: the last token) get their own line plot.
  std::vector<MediatorSummary> restorations, knockouts;
  for (const auto& s : primary) (s.mediator.rfind("knockout_", 0) == 0 ? knockouts : restorations).push_back(s);
  for (const auto& s : restorations)
    keep(plot_average_heatmap(s, (figs / ("average_" + s.mediator)).string(), summary_formats));
  if (!restorations.empty()) keep(plot_aie_lines(restorations, (figs / "aie_lines").string(), summary_formats));
  if (!knockouts.empty()) keep(plot_aie_lines(knockouts, (figs / "knockout_lines").string(), summary_formats));
  const size_t summary_pngs = pngs.size();
  Progress progress("plot", static_cast<int64_t>(records.size()), "heatmaps", opts.progress);
  for (const auto& r : records) {
    keep(plot_fact_heatmap(r, (figs / "facts" / (r.fact_id + "_" + r.mediator)).string(), formats));
    progress.tick();
    crash_point("plot");
  }
  progress.finish();
  // The report embeds the summary figures and the first fact's heatmaps;
  // every fact's figures stay in figures/facts/.
  std::vector<std::string> report_pngs(pngs.begin(), pngs.begin() + static_cast<std::ptrdiff_t>(summary_pngs));
  for (size_t i = summary_pngs; i < pngs.size() && i < summary_pngs + primary.size(); ++i) report_pngs.push_back(pngs[i]);
  const std::string title = "knowtrace: " + (cfg.name.empty() ? fs::path(dir).filename().string() : cfg.name) + " (" +
                            std::to_string(report.aggregated_facts) + " facts, " + cfg.model + ")";
  write_html_report((fs::path(dir) / "report.html").string(), title, primary, report_pngs);
  std::fprintf(stderr, "plot: %zu files in %s/figures, report %s/report.html\n", report.figures.size(), dir.c_str(),
               dir.c_str());
}

}  // namespace pipeline

ExportReport export_rome(const std::string& run_dir, const std::string& out_dir) {
  const json j = pipeline::read_run_json(run_dir);
  const RunConfig cfg = config_from_json(j["config"].dump(), pipeline::run_json_path(run_dir));
  const std::string fingerprint = j["fingerprint"].dump();
  const std::string filter_path = (fs::path(run_dir) / "filter.jsonl").string();
  if (!fs::exists(filter_path)) throw Error(run_dir + ": no filter.jsonl: nothing traced to export");
  ExportReport rep;
  rep.cases_dir = ((out_dir.empty() ? fs::path(run_dir) / "rome" : fs::path(out_dir)) / "cases").string();
  fs::create_directories(rep.cases_dir);
  for (const auto& v : pipeline::kept_facts(pipeline::read_verdicts(filter_path), cfg)) {
    bool any = false;
    for (const auto& m : cfg.mediators) {
      const std::string path = trace_file_name((fs::path(run_dir) / "traces").string(), v.id, m);
      if (!fs::exists(path)) continue;
      try {
        write_rome_case(rome_case_name(rep.cases_dir, v.id, m), read_trace_file(path, v.id, fingerprint));
        ++rep.files;
        any = true;
      } catch (const Error& e) {
        rep.notes.push_back(std::string(e.what()) + "; not exported");
        std::fprintf(stderr, "note: %s\n", rep.notes.back().c_str());
      }
    }
    rep.facts += any;
  }
  return rep;
}

RunReport replot(const std::string& run_dir, const RunOptions& opts) {
  const json j = pipeline::read_run_json(run_dir);
  RunConfig cfg = config_from_json(j["config"].dump(), pipeline::run_json_path(run_dir));
  RunReport report;
  report.dir = run_dir;
  report.noise_level = j.value("noise_level", 0.0);
  pipeline::aggregate_stage(cfg, run_dir, j["fingerprint"].dump(), true, opts, report);
  return report;
}

}  // namespace kt
