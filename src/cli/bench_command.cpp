// `knowtrace bench [CONFIG]`: the fast and reference engines side by side on
// the same facts, with useful FLOPs, achieved FLOP/s, peak memory and the
// machine's measured matmul peak, so every speed figure is a ratio from one
// run. The settings come from a run config (hparams/*.yaml) when one is
// given; the flags override it.
#include <nlohmann/json.hpp>

#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <chrono>
#include <map>
#include <cstdio>
#include <iostream>
#include <optional>

#include "cli/commands.h"
#include "model/device_memory.h"
#include "model/model.h"
#include "pipeline/config.h"
#include "pipeline/dataset.h"
#include "trace/fast_engine.h"
#include "trace/noise.h"
#include "trace/tracer.h"
#include "util/error.h"
#include "util/memory.h"
#include "util/paths.h"

namespace kt::cli {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void sync(at::Device dev) {
  if (dev.is_cuda()) at::zeros({1}, at::TensorOptions().device(dev)).cpu();  // waits for the stream
}

// Best rate of an n x n x n matmul in the given dtype, FLOP/s: through
// at::matmul (libtorch's BLAS / oneDNN), or through kt::linear, the product
// the engines use (float32 on the CPU: oneDNN's sgemm when built with it;
// bfloat16 with bf16_gemm_backend() "fp32": a widened matrix, as Model's).
double matmul_peak(at::ScalarType dtype, at::Device dev, int64_t n, bool engine_linear = false) {
  c10::InferenceMode guard;
  at::Tensor a = at::randn({n, n}, at::TensorOptions().device(dev)).to(dtype);
  at::Tensor b = at::randn({n, n}, at::TensorOptions().device(dev)).to(dtype);
  if (engine_linear && dtype == at::kBFloat16 && dev.is_cpu() && std::string(bf16_gemm_backend()) == "fp32")
    b = b.to(at::kFloat);
  auto mm = [&] { return engine_linear ? kt::linear(a, b) : at::matmul(a, b); };
  mm();  // warm-up
  // The best of at least 5 products and 1 s: one short probe on a shared
  // (virtual) machine can read half the rate the engines then reach.
  double best = 0;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 5 || (seconds_since(start) < 1.0 && i < 200); ++i) {
    auto t0 = std::chrono::steady_clock::now();
    at::Tensor c = mm();
    (void)c.sum().item<float>();
    best = std::max(best, 2.0 * n * n * n / seconds_since(t0));
  }
  return best;
}

struct BenchArgs {
  std::string config;  // positional, optional
  std::string model, data, dataset, device, dtype, engines = "fast,reference", noise;
  int64_t facts = 3, reference_facts = 1;
  std::optional<int64_t> samples, window;
  std::optional<std::string> max_batch_tokens;
  std::vector<std::string> mediators;  // empty: the config's, else all five
  bool as_json = false;
  bool count_flops = false;  // FLOPs from the plans only, no sweeps
};

// Everything a bench run needs, from the config (if any) and the flags.
struct BenchSetup {
  std::string model_path, device = "cpu", dtype = "float32", noise = "0.1", convention = "resid_post";
  std::string facts_source;
  uint32_t seed = 1;
  bool replace = false;
  int64_t samples = 10, window = 10, max_batch_tokens = kAutoBatchTokens;
  std::vector<std::string> mediators = {"hidden", "hidden_attn_severed", "hidden_mlp_severed", "mlp", "attn"};
  std::vector<Fact> facts;
};

BenchSetup resolve_setup(const BenchArgs& a) {
  BenchSetup b;
  std::optional<RunConfig> cfg;
  if (!a.config.empty()) {
    cfg = load_config(a.config);
    ConfigOverrides o;
    if (!a.device.empty()) o.device = a.device;
    if (!a.dtype.empty()) o.dtype = a.dtype;
    if (!a.model.empty()) o.model = a.model;
    if (!a.dataset.empty()) o.dataset = a.dataset;
    apply_overrides(*cfg, o);
    b.model_path = resolve_input_path(*cfg, "model", cfg->model);
    b.device = cfg->device, b.dtype = cfg->dtype, b.noise = cfg->noise, b.convention = cfg->convention;
    b.seed = cfg->seed, b.replace = cfg->replace;
    b.samples = cfg->samples, b.window = cfg->window, b.max_batch_tokens = cfg->max_batch_tokens;
    b.mediators = cfg->mediators;
  } else {
    if (a.model.empty()) throw Error("bench: give a config (knowtrace bench hparams/x.yaml) or --model PATH");
    if (!a.dataset.empty()) throw Error("bench: --dataset needs a config; give --data FILE instead");
    b.model_path = a.model;
    if (!a.device.empty()) b.device = a.device;
    if (!a.dtype.empty()) b.dtype = a.dtype;
  }
  if (!a.noise.empty()) b.noise = a.noise;
  if (a.samples) b.samples = *a.samples;
  if (a.window) b.window = *a.window;
  if (!a.mediators.empty()) b.mediators = a.mediators;
  if (a.max_batch_tokens) b.max_batch_tokens = parse_batch_tokens(*a.max_batch_tokens, "bench: --max-batch-tokens");
  if (b.samples < 1) throw Error("bench: --samples must be at least 1");
  if (b.window < 1) throw Error("bench: --window must be at least 1");

  Dataset d;
  if (!a.data.empty()) {
    d = load_dataset_file(a.data);
  } else if (cfg) {
    d = load_dataset(*cfg);
  } else {
    if (data_dir_from_env().empty())
      throw Error("bench: no facts: give a config, --data FILE, or set KNOWTRACE_DATA_DIR to the folder of known_1000.json");
    d = load_dataset_file(data_dir_from_env() + "/known_1000.json");
  }
  if (d.facts.empty()) throw Error("bench: " + d.source + " holds no usable facts");
  b.facts_source = d.source;
  b.facts = std::move(d.facts);
  return b;
}

TraceSettings make_settings(const BenchSetup& b, const Model& model) {
  const ModelConfig& c = model.config();
  TraceSettings s;
  s.samples = b.samples;
  s.window = std::min<int64_t>(b.window, c.n_layers);
  s.convention = parse_convention(b.convention);
  s.mediators.clear();
  for (const auto& m : b.mediators) s.mediators.push_back(parse_mediator(m));
  s.noise = parse_noise(b.noise, b.seed, b.replace);
  if (s.noise.std_multiple > 0) {  // as `knowtrace run`: k x the std of every fact's subject embeddings
    std::vector<std::string> subjects;
    for (const auto& f : b.facts) subjects.push_back(f.subject);
    s.noise.level = s.noise.std_multiple * subject_embedding_std(model, subjects);
    s.noise.std_multiple = 0;
  }
  return s;
}

// --count-flops: each fact's FLOPs as the fast engine plans them vs ROME's
// loop (one forward of S + 1 rows per cell), and the fraction per prompt
// length. Only the clean forward pass of each fact runs.
void count_flops(const BenchSetup& b, const Model& model, const TraceSettings& s, int64_t n_facts, bool as_json) {
  nlohmann::json out = {{"model", b.model_path}, {"samples", s.samples}, {"mediators", b.mediators},
                        {"facts", nlohmann::json::array()}};
  std::map<int64_t, std::pair<double, double>> by_length;  // T -> (knowtrace, ROME) FLOPs
  std::map<int64_t, int64_t> facts_of_length;
  if (!as_json) std::printf("%-6s %3s %8s %12s %12s %9s\n", "fact", "T", "computed", "GFLOP", "ROME GFLOP", "fraction");
  for (int64_t i = 0; i < n_facts; ++i) {
    const Fact& f = b.facts[static_cast<size_t>(i)];
    const FastStats st = count_trace_flops(model, f.prompt, f.subject, s, {});
    const int64_t T = static_cast<int64_t>(model.tokenizer().encode(f.prompt).ids.size());
    out["facts"].push_back({{"id", f.id}, {"tokens", T}, {"restorations", st.restorations},
                            {"from_shared_blocks", st.shared}, {"flops", st.flops}, {"rome_flops", st.rome_flops},
                            {"fraction_of_rome_flops", st.flops / st.rome_flops}});
    by_length[T].first += st.flops, by_length[T].second += st.rome_flops, ++facts_of_length[T];
    if (!as_json)
      std::printf("%-6s %3lld %8lld %12.1f %12.1f %8.1f%%\n", f.id.c_str(), (long long)T, (long long)st.restorations,
                  st.flops / 1e9, st.rome_flops / 1e9, 100 * st.flops / st.rome_flops);
  }
  out["by_length"] = nlohmann::json::array();
  for (const auto& [T, v] : by_length)
    out["by_length"].push_back({{"tokens", T}, {"facts", facts_of_length[T]}, {"fraction_of_rome_flops", v.first / v.second}});
  if (as_json) {
    std::cout << out.dump(1) << "\n";
    return;
  }
  std::printf("\nby prompt length (%lld mediators, S = %lld): tokens facts fraction-of-ROME's-FLOPs\n",
              (long long)s.mediators.size(), (long long)s.samples);
  for (const auto& [T, v] : by_length)
    std::printf("  T=%-3lld %4lld  %5.1f%%\n", (long long)T, (long long)facts_of_length[T], 100 * v.first / v.second);
}

void run_bench(const BenchArgs& a) {
  const BenchSetup b = resolve_setup(a);
  LoadOptions o;
  o.dtype = parse_dtype(b.dtype);
  o.device = parse_device(b.device);
  auto model = Model::load(b.model_path, o);
  const ModelConfig& c = model->config();
  const TraceSettings s = make_settings(b, *model);
  const bool run_fast = a.engines.find("fast") != std::string::npos;
  const bool run_ref = a.engines.find("reference") != std::string::npos;
  if (!run_fast && !run_ref) throw Error("bench: --engines must name fast, reference or both");
  const int64_t n_facts = std::min<int64_t>(a.facts, static_cast<int64_t>(b.facts.size()));
  const int64_t n_ref = run_ref ? std::min<int64_t>(a.reference_facts, n_facts) : 0;
  if (a.count_flops) return count_flops(b, *model, s, n_facts, a.as_json);

  const double peak_f32_aten = matmul_peak(at::kFloat, o.device, 2048);
  const double peak_f32_engine = o.device.is_cpu() ? matmul_peak(at::kFloat, o.device, 2048, true) : peak_f32_aten;
  const double peak_f32 = std::max(peak_f32_aten, peak_f32_engine);
  const double peak_bf16_aten = matmul_peak(at::kBFloat16, o.device, 2048);
  const double peak_bf16_engine = o.device.is_cpu() ? matmul_peak(at::kBFloat16, o.device, 2048, true) : peak_bf16_aten;
  const double peak_bf16 = std::max(peak_bf16_aten, peak_bf16_engine);
  const double peak = o.dtype == at::kFloat ? peak_f32 : peak_bf16;
  const bool dev_mem = device_stats_available(o.device);
  nlohmann::json out = {{"config", a.config},
                        {"model", b.model_path},
                        {"facts_source", b.facts_source},
                        {"dtype", b.dtype},
                        {"device", b.device},
                        {"samples", s.samples},
                        {"window", s.window},
                        {"noise", b.noise},
                        {"noise_level", s.noise.level},
                        {"mediators", b.mediators},
                        {"max_batch_tokens", b.max_batch_tokens},
                        {"peak_flops_fp32", peak_f32},
                        {"peak_flops_fp32_aten_matmul", peak_f32_aten},
                        {"peak_flops_fp32_engine_linear", peak_f32_engine},
                        {"fp32_gemm", o.device.is_cpu() ? fp32_gemm_backend() : "aten"},
                        {"peak_flops_bf16", peak_bf16},
                        {"peak_flops_bf16_aten_matmul", peak_bf16_aten},
                        {"peak_flops_bf16_engine_linear", peak_bf16_engine},
                        {"bf16_gemm", o.device.is_cpu() ? bf16_gemm_backend() : "aten"},
                        {"threads", at::get_num_threads()},
                        {"facts", nlohmann::json::array()}};
  if (!a.as_json) {
    std::printf("bench: %s (%s, %s, %lld layers), %lld facts from %s\n", b.model_path.c_str(), b.device.c_str(),
                b.dtype.c_str(), (long long)c.n_layers, (long long)n_facts, b.facts_source.c_str());
    std::printf("settings: S=%lld, window %lld, noise %s = %.6g, %zu mediators, max_batch_tokens %s\n",
                (long long)s.samples, (long long)s.window, b.noise.c_str(), s.noise.level, s.mediators.size(),
                b.max_batch_tokens == kAutoBatchTokens ? "auto" : std::to_string(b.max_batch_tokens).c_str());
    std::printf("matmul peak (2048^3): fp32 %.1f GFLOP/s (at::matmul %.1f, engine's linear [%s] %.1f), bf16 %.1f GFLOP/s "
                "(at::matmul %.1f, engine's linear [%s] %.1f); %d threads\n",
                peak_f32 / 1e9, peak_f32_aten / 1e9, o.device.is_cpu() ? fp32_gemm_backend() : "aten",
                peak_f32_engine / 1e9, peak_bf16 / 1e9, peak_bf16_aten / 1e9,
                o.device.is_cpu() ? bf16_gemm_backend() : "aten", peak_bf16_engine / 1e9, at::get_num_threads());
    std::printf("%-4s %-32s %3s | %6s %8s %8s %5s %7s %4s | %6s %8s %8s %7s | %7s %7s | %9s %9s\n", "fact", "prompt",
                "T", "restor", "fast s", "GFLOP", "%ROME", "GFLOP/s", "%pk", "restor", "ref s", "GFLOP", "GFLOP/s", "speedup",
                "max|d|", "peak RSS", dev_mem ? "dev peak" : "");
  }
  double tot_fast = 0, tot_ref = 0, tot_fast_flops = 0, tot_ref_flops = 0, tot_fast_ref_facts = 0, tot_rome_flops = 0;
  int64_t tot_fast_restor = 0, tot_ref_restor = 0, dev_peak_all = -1;
  for (int64_t i = 0; i < n_facts; ++i) {
    const Fact& fact = b.facts[static_cast<size_t>(i)];
    const int64_t T = static_cast<int64_t>(model->tokenizer().encode(fact.prompt).ids.size());
    const int64_t cells = static_cast<int64_t>(s.mediators.size()) * T * c.n_layers;
    nlohmann::json row = {{"index", i}, {"id", fact.id}, {"prompt", fact.prompt}, {"tokens", T}, {"cells", cells}};
    FactTrace fast, ref;
    double tf = 0, tr = 0;
    reset_device_peak(o.device);
    if (run_fast) {
      FastStats st;
      FastOptions fo;
      fo.max_batch_tokens = b.max_batch_tokens;
      auto t0 = std::chrono::steady_clock::now();
      fast = trace_fact_fast(*model, fact.prompt, fact.subject, s, {}, fo, &st);
      sync(o.device);
      tf = seconds_since(t0);
      row["fast"] = {{"seconds", tf}, {"flops", st.flops}, {"flops_per_second", st.flops / tf},
                     {"restorations", st.restorations}, {"from_shared_blocks", st.shared}, {"sweeps", st.sweeps},
                     {"max_batch_tokens", st.max_batch_tokens}, {"rome_flops", st.rome_flops},
                     {"fraction_of_rome_flops", st.flops / st.rome_flops}};
      if (dev_mem) row["fast"]["device_peak_bytes"] = device_peak_bytes(o.device);
      tot_fast += tf, tot_fast_flops += st.flops, tot_fast_restor += st.restorations, tot_rome_flops += st.rome_flops;
    }
    const bool ref_this = run_ref && i < n_ref;
    if (ref_this) {
      reset_device_peak(o.device);
      auto t0 = std::chrono::steady_clock::now();
      ref = trace_fact_reference(*model, fact.prompt, fact.subject, s);
      sync(o.device);
      tr = seconds_since(t0);
      const double rf = (cells + 1) * forward_flops(c, s.samples, T) + forward_flops(c, 1, T);
      row["reference"] = {{"seconds", tr}, {"flops", rf}, {"flops_per_second", rf / tr}, {"restorations", cells}};
      if (dev_mem) row["reference"]["device_peak_bytes"] = device_peak_bytes(o.device);
      tot_ref += tr, tot_ref_flops += rf, tot_ref_restor += cells;
      if (run_fast) tot_fast_ref_facts += tf;
    }
    double maxd = 0;
    if (run_fast && ref_this) {
      for (size_t m = 0; m < fast.traces.size(); ++m)
        maxd = std::max(maxd, (fast.traces[m].scores - ref.traces[m].scores).abs().max().item<double>());
      row["max_abs_diff"] = maxd, row["speedup"] = tr / tf;
    }
    const int64_t rss = peak_rss_bytes();
    row["peak_rss_bytes"] = rss;  // the process's peak so far (model included)
    int64_t dpeak = -1;
    if (dev_mem) {
      dpeak = std::max<int64_t>(row.contains("fast") ? row["fast"].value("device_peak_bytes", int64_t{-1}) : -1,
                                row.contains("reference") ? row["reference"].value("device_peak_bytes", int64_t{-1}) : -1);
      dev_peak_all = std::max(dev_peak_all, dpeak);
    }
    out["facts"].push_back(row);
    if (!a.as_json) {
      std::string p = fact.prompt.size() > 32 ? fact.prompt.substr(0, 29) + "..." : fact.prompt;
      std::printf("%-4lld %-32s %3lld | ", (long long)i, p.c_str(), (long long)T);
      if (run_fast) {
        const double fl = row["fast"]["flops"].get<double>();
        std::printf("%6lld %8.2f %8.1f %4.1f%% %7.1f %3.0f%% | ", (long long)row["fast"]["restorations"].get<int64_t>(),
                    tf, fl / 1e9, 100 * row["fast"]["fraction_of_rome_flops"].get<double>(), fl / tf / 1e9,
                    100 * fl / tf / peak);
      } else {
        std::printf("%6s %8s %8s %5s %7s %4s | ", "-", "-", "-", "-", "-", "-");
      }
      if (ref_this)
        std::printf("%6lld %8.2f %8.1f %7.1f | ", (long long)cells, tr, row["reference"]["flops"].get<double>() / 1e9,
                    row["reference"]["flops"].get<double>() / tr / 1e9);
      else
        std::printf("%6s %8s %8s %7s | ", "-", "-", "-", "-");
      if (run_fast && ref_this)
        std::printf("%6.2fx %7.1e | ", tr / tf, maxd);
      else
        std::printf("%7s %7s | ", "-", "-");
      std::printf("%9s %9s\n", format_bytes(rss).c_str(), dev_mem ? format_bytes(dpeak).c_str() : "");
      std::fflush(stdout);
    }
  }
  // The rate again after the work: on a shared (virtual) machine the one
  // at the start can be far below what the engines then reach. The total
  // uses the higher of the two; the rows above used the first.
  const double peak_end = matmul_peak(o.dtype == at::kFloat ? at::kFloat : at::kBFloat16, o.device, 2048,
                                      o.device.is_cpu());  // on the CPU: the engines' product
  const double peak_total = std::max(peak, peak_end);
  out["peak_flops_at_end"] = peak_end;
  const int64_t rss = peak_rss_bytes();
  out["total"] = {{"facts", n_facts},
                  {"reference_facts", n_ref},
                  {"fast_seconds", tot_fast},
                  {"fast_flops", tot_fast_flops},
                  {"rome_flops", tot_rome_flops},
                  {"fast_restorations", tot_fast_restor},
                  {"reference_seconds", tot_ref},
                  {"reference_flops", tot_ref_flops},
                  {"reference_restorations", tot_ref_restor},
                  {"peak_rss_bytes", rss},
                  {"device_peak_bytes", dev_mem ? nlohmann::json(dev_peak_all) : nlohmann::json(nullptr)}};
  if (tot_fast > 0) {
    out["total"]["fast_flops_per_second"] = tot_fast_flops / tot_fast;
    out["total"]["fast_fraction_of_peak"] = tot_fast_flops / tot_fast / peak_total;
  }
  if (tot_ref > 0) out["total"]["reference_flops_per_second"] = tot_ref_flops / tot_ref;
  if (tot_ref > 0 && tot_fast_ref_facts > 0) out["total"]["speedup"] = tot_ref / tot_fast_ref_facts;
  if (a.as_json) {
    std::cout << out.dump(1) << "\n";
    return;
  }
  std::printf("matmul peak (%s) at the end: %.1f GFLOP/s (start: %.1f); the total uses %.1f\n", b.dtype.c_str(),
              peak_end / 1e9, peak / 1e9, peak_total / 1e9);
  if (tot_fast > 0)
    std::printf("fast: %lld facts, %lld restorations, %.2f s (%.2f s/fact), %.1f GFLOP (%.1f%% of ROME's loop's %.1f), "
                "%.1f GFLOP/s = %.0f%% of the %s matmul peak\n",
                (long long)n_facts, (long long)tot_fast_restor, tot_fast, tot_fast / std::max<int64_t>(1, n_facts),
                tot_fast_flops / 1e9, 100 * tot_fast_flops / tot_rome_flops, tot_rome_flops / 1e9,
                tot_fast_flops / tot_fast / 1e9, 100 * tot_fast_flops / tot_fast / peak_total, b.dtype.c_str());
  if (tot_ref > 0)
    std::printf("reference: %lld facts, %lld restorations, %.2f s (%.2f s/fact), %.1f GFLOP, %.1f GFLOP/s; "
                "fast is %.2fx faster on the same facts\n",
                (long long)n_ref, (long long)tot_ref_restor, tot_ref, tot_ref / std::max<int64_t>(1, n_ref),
                tot_ref_flops / 1e9, tot_ref_flops / tot_ref / 1e9,
                tot_fast_ref_facts > 0 ? tot_ref / tot_fast_ref_facts : 0.0);
  std::printf("memory: peak RSS %s (process, model included); device peak %s\n", format_bytes(rss).c_str(),
              dev_mem ? format_bytes(dev_peak_all).c_str()
                      : (o.device.is_cuda() ? "n/a (built without c10_cuda)" : "n/a (cpu)"));
}

}  // namespace

void add_bench(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "bench", "Time the fast and reference engines side by side (ratios from one run); settings from a run config");
  auto a = std::make_shared<BenchArgs>();
  cmd->add_option("config", a->config,
                  "Run config (e.g. hparams/smollm2-135m.yaml): model, device, dtype, samples, window, mediators, "
                  "noise, max_batch_tokens and the data set; the flags below override it");
  cmd->add_option("--model", a->model, "Hugging Face checkpoint directory or .gguf file (required without a config)");
  cmd->add_option("--data", a->data,
                  "Fact file (JSON list / JSONL); default: the config's data set, else $KNOWTRACE_DATA_DIR/known_1000.json");
  cmd->add_option("--dataset", a->dataset, "With a config: default | known_1000 | a path (overrides the config)");
  cmd->add_option("--facts", a->facts, "Facts to trace (the first N)")->capture_default_str();
  cmd->add_option("--reference-facts", a->reference_facts, "Of those, how many also with the reference engine")
      ->capture_default_str();
  cmd->add_option("--engines", a->engines, "fast,reference | fast | reference")->capture_default_str();
  cmd->add_option("--samples", a->samples, "Noise samples S (default: the config's, else 10)");
  cmd->add_option("--window", a->window, "Window of the mlp/attn mediators (default: the config's, else 10)");
  cmd->add_option("--mediators", a->mediators, "Mediators traced, with commas (default: the config's, else all five)")
      ->delimiter(',');
  cmd->add_option("--noise", a->noise, "Noise: a number, s<k> or u<x> (default: the config's, else 0.1)");
  cmd->add_option("--max-batch-tokens", a->max_batch_tokens,
                  "Fast engine: live tokens per sweep: auto (from the memory available), 0 = unlimited, or a number "
                  "(default: the config's, else auto)");
  cmd->add_option("--device", a->device, "cpu | cuda | cuda:N (default: the config's, else cpu)");
  cmd->add_option("--dtype", a->dtype, "float32 | bfloat16 | float16 (default: the config's, else float32)");
  cmd->add_flag("--json", a->as_json, "One JSON object on stdout");
  cmd->add_flag("--count-flops", a->count_flops,
                "Only count each fact's FLOPs from the fast engine's plan vs ROME's loop (no sweeps), by prompt length");
  cmd->callback([=] { run_bench(*a); });
}

}  // namespace kt::cli
