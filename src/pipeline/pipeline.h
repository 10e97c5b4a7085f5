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
// Text files have a "<name>.crc32" beside them; .npz members carry CRC-32s.
//
// Splitting a run: under `mpirun -np N` the ranks share one directory (rank
// 0 filters, aggregates and plots; every rank traces its share of the
// facts). Without MPI, `--shard i/n` traces share i of n into a directory of
// its own and `merge_runs` combines the shard directories.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "pipeline/config.h"

namespace kt {

class Model;
struct TraceSettings;

struct RunOptions {
  bool download_data = false;  // fetch known_1000 with curl when it is missing
  bool progress = true;        // progress on stderr
  // Called after each fact's traces are stored (tests use it to interrupt).
  std::function<void(const std::string& fact_id)> after_fact;
  // --shard i/n: trace only share `shard_index` (0-based) of `shard_count`.
  int shard_index = 0, shard_count = 1;
};

// "i/n" with 0 <= i < n, e.g. "0/4"; kt::Error otherwise.
std::pair<int, int> parse_shard(const std::string& text);

// Splits items with these expected costs into `parts` shares of about equal
// cost (largest first, each to the least-loaded share; ties by index, so
// every process computes the same split). Returns each item's share.
std::vector<int> split_by_cost(const std::vector<double>& costs, int parts);

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

// Combines the results directories of `--shard` runs into `out_dir`: their
// fingerprints and configs must agree; traces are checked and copied,
// filter verdicts and errors united; then aggregate and plot. Rerunnable.
RunReport merge_runs(const std::vector<std::string>& shard_dirs, const std::string& out_dir,
                     const RunOptions& opts = {});

// ROME's file layout of a run's stored traces (analysis/trace_file.h):
// <out_dir>/cases/knowledge_<id>[_<kind>].npz for every kept fact, so
// ROME's average_causal_effects notebook and plot_trace_heatmap read them
// with only the directory changed. out_dir "" = <run_dir>/rome. Returns the
// number of files written; a stored trace that does not read is a note.
struct ExportReport {
  std::string cases_dir;
  int64_t files = 0, facts = 0;
  std::vector<std::string> notes;
};
ExportReport export_rome(const std::string& run_dir, const std::string& out_dir = "");

// The one-fact trace's s<k> level, measured as `knowtrace run` and ROME's
// notebook measure it: on every subject of a data set (`spec`: a file,
// "known_1000" or "default"; "" = known_1000 when it is found, else the
// bundled facts), each tokenized alone. Other noise is left as it is.
void resolve_noise_from_dataset(TraceSettings& s, const Model& model, const std::string& spec);

// What SIGINT does: the running pipeline stops after abandoning its current fact.
void request_stop();

}  // namespace kt
