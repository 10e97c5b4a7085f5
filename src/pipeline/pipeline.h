// `knowtrace run CONFIG`: filter -> trace -> aggregate -> plot into one
// results directory, resumable, and `knowtrace plot RUN_DIR` (no model).
//
// Results directory layout:
//   run.json          resolved config, fingerprint, resolved noise level, status
//   filter.jsonl      one verdict per fact (top-1 token, probability, both rules)
//   errors.jsonl      facts skipped, with the reason (bad records, untraceable facts)
//   traces/<id>_<mediator>.npz   ROME-compatible per-fact results
//   summary.json, summary.csv    average indirect effects (both position schemes)
//   figures/…, report.html       heatmaps, line plots, the self-contained report
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "pipeline/config.h"

namespace kt {

struct RunOptions {
  bool download_data = false;  // fetch known_1000 with curl when it is missing
  bool progress = true;        // progress on stderr
  // Called after each fact's traces are stored (tests use it to interrupt).
  std::function<void(const std::string& fact_id)> after_fact;
};

struct RunReport {
  std::string dir;
  bool interrupted = false;
  int64_t facts = 0;             // facts of the data set in the selection (after `facts`)
  int64_t data_errors = 0;       // records skipped when loading
  int64_t filter_computed = 0;   // verdicts computed in this run
  int64_t filter_reused = 0;     // verdicts read from filter.jsonl
  int64_t filter_errors = 0;     // prompts the model cannot take (errors.jsonl)
  int64_t kept = 0;              // facts the filter keeps (after `limit`)
  int64_t facts_traced = 0;      // facts (re)computed in this run
  int64_t facts_reused = 0;      // facts whose every trace was stored and valid
  int64_t traces_written = 0;    // .npz files written in this run
  int64_t traces_invalid = 0;    // stored files that were corrupt or stale
  int64_t trace_errors = 0;      // facts the tracer refused (errors.jsonl)
  int64_t aggregated_facts = 0;  // facts in summary.json (primary mediator count)
  double noise_level = 0;
  std::vector<std::string> figures;  // files written by the plot stage
  std::vector<std::string> notes;    // warnings printed on stderr
};

// Runs the config's stages (cfg.stages). Every check happens before any
// work; a failure is a one-line kt::Error. SIGINT abandons the current fact
// (everything stored stays valid) and returns with `interrupted` set.
RunReport run_pipeline(RunConfig cfg, const RunOptions& opts = {});

// Aggregate + plot from a results directory alone (run.json, filter.jsonl,
// traces/): no model, no data set.
RunReport replot(const std::string& run_dir, const RunOptions& opts = {});

// What SIGINT does: the running pipeline stops after abandoning its current fact.
void request_stop();

}  // namespace kt
