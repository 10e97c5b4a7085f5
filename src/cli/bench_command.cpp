// `knowtrace bench`: the fast and reference engines side by side on the
// same facts, with useful FLOPs, achieved FLOP/s and the machine's measured
// matmul peak, so every speed figure is a ratio from one run.
#include <nlohmann/json.hpp>

#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <chrono>
#include <cstdio>
#include <iostream>

#include "cli/commands.h"
#include "model/model.h"
#include "trace/fast_engine.h"
#include "trace/tracer.h"
#include "util/error.h"
#include "util/paths.h"

namespace kt::cli {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Best rate of an n x n x n matmul in the given dtype, FLOP/s.
double matmul_peak(at::ScalarType dtype, at::Device dev, int64_t n) {
  c10::InferenceMode guard;
  at::Tensor a = at::randn({n, n}, at::TensorOptions().device(dev)).to(dtype);
  at::Tensor b = at::randn({n, n}, at::TensorOptions().device(dev)).to(dtype);
  at::matmul(a, b);  // warm-up
  double best = 0;
  for (int i = 0; i < 3; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    at::Tensor c = at::matmul(a, b);
    (void)c.sum().item<float>();
    best = std::max(best, 2.0 * n * n * n / seconds_since(t0));
  }
  return best;
}

// FLOPs of one plain forward of `rows` x T tokens with last-position logits.
double forward_flops(const ModelConfig& c, int64_t rows, int64_t T) {
  const double d = c.hidden, qd = c.n_heads * c.head_dim, kvd = c.n_kv_heads * c.head_dim, I = c.intermediate;
  const double mlp = c.arch->mlp == MlpKind::GatedSiLU ? 3 * d * I : 2 * d * I;
  const double per_layer = 2.0 * rows * T * (d * qd + 2 * d * kvd + qd * d + mlp) + 4.0 * rows * c.n_heads * T * T * c.head_dim;
  return c.n_layers * per_layer + 2.0 * rows * d * c.vocab_size;
}

struct BenchArgs {
  std::string model, data, device = "cpu", dtype = "float32", engines = "fast,reference", noise = "0.1";
  int64_t facts = 3, reference_facts = 1, samples = 10, window = 10, max_batch_tokens = 0;
  bool as_json = false;
};

void run_bench(const BenchArgs& a) {
  LoadOptions o;
  o.dtype = parse_dtype(a.dtype);
  o.device = parse_device(a.device);
  auto model = Model::load(a.model, o);
  const ModelConfig& c = model->config();
  std::string data = a.data.empty() ? data_dir_from_env() + "/known_1000.json" : a.data;
  if (a.data.empty() && data_dir_from_env().empty())
    throw Error("bench: no facts: give --data FILE or set KNOWTRACE_DATA_DIR to the folder of known_1000.json");
  nlohmann::json known;
  try {
    known = nlohmann::json::parse(read_text_file(data));
  } catch (const nlohmann::json::exception&) {
    throw Error(data + ": not valid JSON");
  }
  TraceSettings s;
  s.samples = a.samples;
  s.window = std::min<int64_t>(a.window, c.n_layers);
  s.noise = parse_noise(a.noise);
  const bool run_fast = a.engines.find("fast") != std::string::npos;
  const bool run_ref = a.engines.find("reference") != std::string::npos;

  const double peak_f32 = matmul_peak(at::kFloat, o.device, 2048);
  const double peak_bf16 = matmul_peak(at::kBFloat16, o.device, 2048);
  nlohmann::json out = {{"model", a.model}, {"dtype", a.dtype}, {"device", a.device}, {"samples", s.samples},
                        {"window", s.window}, {"peak_flops_fp32", peak_f32}, {"peak_flops_bf16", peak_bf16},
                        {"threads", at::get_num_threads()}, {"facts", nlohmann::json::array()}};
  if (!a.as_json)
    std::printf("matmul peak (2048^3): fp32 %.1f GFLOP/s, bf16 %.1f GFLOP/s; %d threads\n"
                "%-4s %-40s %4s %6s | %9s %8s %9s | %9s %8s %9s | %7s %7s\n",
                peak_f32 / 1e9, peak_bf16 / 1e9, at::get_num_threads(), "fact", "prompt", "T", "cells", "fast s",
                "GFLOP", "GFLOP/s", "ref s", "GFLOP", "GFLOP/s", "speedup", "max|d|");
  double tot_fast = 0, tot_ref = 0, tot_fast_flops = 0, tot_ref_flops = 0, tot_fast_ref_facts = 0;
  for (int64_t i = 0; i < a.facts && i < static_cast<int64_t>(known.size()); ++i) {
    const std::string prompt = known[i]["prompt"], subject = known[i]["subject"];
    const int64_t T = static_cast<int64_t>(model->tokenizer().encode(prompt).ids.size());
    const int64_t cells = static_cast<int64_t>(s.mediators.size()) * T * c.n_layers;
    nlohmann::json row = {{"index", i}, {"prompt", prompt}, {"tokens", T}, {"cells", cells}};
    FactTrace fast, ref;
    double tf = 0, tr = 0;
    if (run_fast) {
      FastStats st;
      FastOptions fo;
      fo.max_batch_tokens = a.max_batch_tokens;
      auto t0 = std::chrono::steady_clock::now();
      fast = trace_fact_fast(*model, prompt, subject, s, {}, fo, &st);
      tf = seconds_since(t0);
      row["fast"] = {{"seconds", tf}, {"flops", st.flops}, {"restorations", st.restorations}, {"sweeps", st.sweeps}};
      tot_fast += tf, tot_fast_flops += st.flops;
    }
    const bool ref_this = run_ref && i < a.reference_facts;
    if (ref_this) {
      auto t0 = std::chrono::steady_clock::now();
      ref = trace_fact_reference(*model, prompt, subject, s);
      tr = seconds_since(t0);
      const double rf = (cells + 1) * forward_flops(c, s.samples, T) + forward_flops(c, 1, T);
      row["reference"] = {{"seconds", tr}, {"flops", rf}, {"restorations", cells}};
      tot_ref += tr, tot_ref_flops += rf;
      if (run_fast) tot_fast_ref_facts += tf;
    }
    double maxd = 0;
    if (run_fast && ref_this)
      for (size_t m = 0; m < fast.traces.size(); ++m)
        maxd = std::max(maxd, (fast.traces[m].scores - ref.traces[m].scores).abs().max().item<double>());
    if (run_fast && ref_this) row["max_abs_diff"] = maxd, row["speedup"] = tr / tf;
    out["facts"].push_back(row);
    if (!a.as_json) {
      std::string p = prompt.size() > 40 ? prompt.substr(0, 37) + "..." : prompt;
      std::printf("%-4lld %-40s %4lld %6lld | ", (long long)i, p.c_str(), (long long)T, (long long)cells);
      if (run_fast)
        std::printf("%9.2f %8.1f %9.1f | ", tf, row["fast"]["flops"].get<double>() / 1e9,
                    row["fast"]["flops"].get<double>() / tf / 1e9);
      else
        std::printf("%9s %8s %9s | ", "-", "-", "-");
      if (ref_this)
        std::printf("%9.2f %8.1f %9.1f | %6.2fx %7.1e\n", tr, row["reference"]["flops"].get<double>() / 1e9,
                    row["reference"]["flops"].get<double>() / tr / 1e9, run_fast ? tr / tf : 0.0, maxd);
      else
        std::printf("%9s %8s %9s | %7s %7s\n", "-", "-", "-", "-", "-");
      std::fflush(stdout);
    }
  }
  out["total"] = {{"fast_seconds", tot_fast}, {"fast_flops", tot_fast_flops}, {"reference_seconds", tot_ref},
                  {"reference_flops", tot_ref_flops}};
  if (tot_ref > 0 && tot_fast_ref_facts > 0) out["total"]["speedup"] = tot_ref / tot_fast_ref_facts;
  if (a.as_json) {
    std::cout << out.dump(1) << "\n";
    return;
  }
  const double peak = o.dtype == at::kFloat ? peak_f32 : peak_bf16;
  if (tot_fast > 0)
    std::printf("fast: %.2f s/fact, %.1f GFLOP/s = %.0f%% of the %s matmul peak\n",
                tot_fast / std::max<int64_t>(1, std::min<int64_t>(a.facts, known.size())),
                tot_fast_flops / tot_fast / 1e9, 100 * tot_fast_flops / tot_fast / peak, a.dtype.c_str());
  if (tot_ref > 0)
    std::printf("reference: %.2f s/fact, %.1f GFLOP/s; fast is %.2fx faster on the same facts\n",
                tot_ref / std::max<int64_t>(1, a.reference_facts), tot_ref_flops / tot_ref / 1e9,
                tot_fast_ref_facts > 0 ? tot_ref / tot_fast_ref_facts : 0.0);
}

}  // namespace

void add_bench(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench", "Time the fast and reference engines side by side (ratios from one run)");
  auto a = std::make_shared<BenchArgs>();
  cmd->add_option("--model", a->model, "Hugging Face checkpoint directory or .gguf file")->required();
  cmd->add_option("--data", a->data, "Fact file (default: $KNOWTRACE_DATA_DIR/known_1000.json)");
  cmd->add_option("--facts", a->facts, "Facts to trace with the fast engine")->capture_default_str();
  cmd->add_option("--reference-facts", a->reference_facts, "Of those, how many also with the reference engine")
      ->capture_default_str();
  cmd->add_option("--engines", a->engines, "fast,reference")->capture_default_str();
  cmd->add_option("--samples", a->samples, "Noise samples S")->capture_default_str();
  cmd->add_option("--window", a->window, "Window of the mlp/attn mediators")->capture_default_str();
  cmd->add_option("--noise", a->noise, "Noise level (a number; s<k> needs a data set pass)")->capture_default_str();
  cmd->add_option("--max-batch-tokens", a->max_batch_tokens, "Fast engine: live tokens per sweep (0 = unlimited)");
  cmd->add_option("--device", a->device, "cpu | cuda | cuda:N")->capture_default_str();
  cmd->add_option("--dtype", a->dtype, "float32 | bfloat16 | float16")->capture_default_str();
  cmd->add_flag("--json", a->as_json, "One JSON object on stdout");
  cmd->callback([=] { run_bench(*a); });
}

}  // namespace kt::cli
