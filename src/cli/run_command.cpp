// `knowtrace run CONFIG` (the whole pipeline from a YAML config) and
// `knowtrace plot RUN_DIR` (figures again from stored results, no model),
// `knowtrace merge` (shards) and `knowtrace export --rome` (ROME's layout).
#include <cstdio>
#include <memory>
#include <optional>
#include <tuple>

#include "cli/commands.h"
#include "pipeline/cluster.h"
#include "pipeline/config.h"
#include "pipeline/pipeline.h"
#include "util/error.h"
#include "util/memory.h"

namespace kt::cli {
namespace {

struct RunArgs {
  std::string config;
  std::optional<std::string> results, device, dtype, engine, model, dataset;
  std::vector<std::string> stages;  // empty: the config's
  std::string shard;
  std::optional<int64_t> limit;
  std::vector<std::string> sets;  // --set KEY=VALUE: any config key
  bool download = false;
};

void print_outcome(const RunReport& r) {
  std::printf("results  %s\n", r.dir.c_str());
  if (r.facts > 0 || r.kept > 0)
    std::printf("facts    %lld (%lld records skipped), kept by the filter %lld\n", (long long)r.facts,
                (long long)r.data_errors, (long long)r.kept);
  if (r.facts_traced + r.facts_reused + r.trace_errors > 0)
    std::printf("traced   %lld now, %lld reused, %lld refused (errors.jsonl)\n", (long long)r.facts_traced,
                (long long)r.facts_reused, (long long)r.trace_errors);
  if (r.aggregated_facts > 0) std::printf("summary  %lld facts -> summary.json, summary.csv\n", (long long)r.aggregated_facts);
  if (!r.figures.empty()) std::printf("figures  %zu files, report.html\n", r.figures.size());
  std::printf("memory   peak RSS %s\n", format_bytes(peak_rss_bytes()).c_str());
}

void run_run(const RunArgs& a) {
  RunConfig cfg = load_config(a.config);
  // Every flag given is validated, even an empty value (apply_overrides).
  ConfigOverrides o;
  o.results = a.results, o.device = a.device, o.dtype = a.dtype, o.engine = a.engine, o.model = a.model;
  o.dataset = a.dataset, o.limit = a.limit;
  if (!a.stages.empty()) o.stages = a.stages;
  apply_overrides(cfg, o);
  for (const auto& kv : a.sets) {
    const size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0)
      throw Error("--set '" + kv + "': expected KEY=VALUE (a config key, e.g. --set metric=logprob)");
    set_config_value(cfg, kv.substr(0, eq), kv.substr(eq + 1), "--set " + kv.substr(0, eq));
  }
  RunOptions opts;
  opts.download_data = a.download;
  if (!a.shard.empty()) std::tie(opts.shard_index, opts.shard_count) = parse_shard(a.shard);
  RunReport r = run_pipeline(cfg, opts);
  if (cluster().rank == 0) print_outcome(r);
  if (r.interrupted) throw CLI::RuntimeError(130);
}

}  // namespace

void add_run(CLI::App& app) {
  auto* cmd = app.add_subcommand("run", "Run a YAML config: filter, trace, aggregate, plot (resumable)");
  auto a = std::make_shared<RunArgs>();
  cmd->add_option("config", a->config, "YAML config, e.g. hparams/smollm2-135m.yaml")->required();
  cmd->add_option("--stages", a->stages, "Subset of filter,trace,aggregate,plot, commas or spaces (default: all)")
      ->delimiter(',');
  cmd->add_option("--results", a->results, "Results directory (default: results/<config name>)");
  cmd->add_option("--limit", a->limit, "Trace at most N kept facts (0: all)");
  cmd->add_option("--device", a->device, "cpu | cuda | cuda:N (overrides the config)");
  cmd->add_option("--dtype", a->dtype, "float32 | bfloat16 | float16 (overrides the config)");
  cmd->add_option("--engine", a->engine, "reference (overrides the config)");
  cmd->add_option("--model", a->model, "Model path (overrides the config)");
  cmd->add_option("--dataset", a->dataset, "default | known_1000 | PATH (overrides the config)");
  cmd->add_option("--set", a->sets,
                  "KEY=VALUE: any config key, read as YAML (repeatable), e.g. --set mediators=[knockout_subject] "
                  "--set target=answer");
  cmd->add_option("--shard", a->shard,
                  "i/n: trace only share i (0-based) of n into RESULTS-shard-i-of-n; combine with knowtrace merge");
  cmd->add_flag("--download-data", a->download,
                "Download known_1000 with curl into $KNOWTRACE_DATA_DIR (or ~/.cache/knowtrace) when missing");
  cmd->callback([=] { run_run(*a); });
}

void add_plot(CLI::App& app) {
  auto* cmd = app.add_subcommand("plot", "Aggregate and plot again from a results directory (no model needed)");
  auto dir = std::make_shared<std::string>();
  cmd->add_option("run_dir", *dir, "Results directory of a run (holds run.json)")->required();
  cmd->callback([=] {
    RunReport r = replot(*dir);
    print_outcome(r);
  });
}

void add_export(CLI::App& app) {
  auto* cmd = app.add_subcommand("export", "Write a run's traces in another tool's file layout (no model needed)");
  auto dir = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  auto rome = std::make_shared<bool>(false);
  cmd->add_option("run_dir", *dir, "Results directory of a run (holds run.json)")->required();
  cmd->add_flag("--rome", *rome,
                "ROME's layout: cases/knowledge_<id>.npz, _mlp, _attn (and _<mediator> for the severed ones)")
      ->required();
  cmd->add_option("--out", *out, "Directory to write cases/ into (default: RUN_DIR/rome)");
  cmd->callback([=] {
    const ExportReport r = export_rome(*dir, *out);
    std::printf("exported %lld files of %lld facts -> %s\n", (long long)r.files, (long long)r.facts,
                r.cases_dir.c_str());
  });
}

void add_merge(CLI::App& app) {
  auto* cmd = app.add_subcommand("merge", "Combine the results directories of --shard runs, then aggregate and plot");
  auto dirs = std::make_shared<std::vector<std::string>>();
  auto into = std::make_shared<std::string>();
  cmd->add_option("shard_dirs", *dirs, "Results directories of the shards (same config and settings)")->required();
  cmd->add_option("--into", *into, "Results directory to write (created; rerunning the merge updates it)")->required();
  cmd->callback([=] {
    RunReport r = merge_runs(*dirs, *into);
    print_outcome(r);
  });
}

}  // namespace kt::cli
