// `knowtrace trace`: causal trace of one fact, printed as a table and
// written as ROME-compatible .npz files.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <cstdio>
#include <iostream>
#include <sstream>
#include <unistd.h>

#include "cli/commands.h"
#include "model/model.h"
#include "pipeline/pipeline.h"
#include "report/plots.h"
#include "trace/engine.h"
#include "trace/result_store.h"
#include "trace/tracer.h"
#include "util/error.h"

namespace kt::cli {
namespace {

struct TraceArgs {
  std::string model, prompt, subject, expect, out, noise = "s3", device = "cpu", dtype = "float32";
  std::string convention = "resid_post", engine = "fast", severing = "same-draw";
  int64_t max_batch_tokens = kAutoBatchTokens;
  std::vector<std::string> mediators = {"hidden", "hidden_attn_severed", "hidden_mlp_severed", "mlp", "attn"};
  std::string noise_subjects;  // a data set (path, known_1000, default); "" = as `run` finds one
  std::string counterfactual, counterfactual_answer;
  InterventionText beyond;     // --corruption, --target, --metric, --normalise, --knockout-window
  std::vector<std::string> formats = {"png", "pdf", "svg"};
  int64_t samples = 10, window = 10;
  uint32_t seed = 1;
  bool replace = false, as_json = false, save_states = false;
  bool window_given = false;  // --window on the command line (else ROME's 10, clipped silently)
};

void print_table(const FactTrace& f, const MediatorTrace& m) {
  const int64_t T = m.scores.size(0), L = m.scores.size(1);
  std::printf(is_knockout(m.mediator) ? "\n%s  (relative change of p(answer), edges removed; clean p %.4f)\n"
                                       : "\n%s  (score with the cell restored; low %.4f, high %.4f)\n",
              mediator_name(m.mediator).c_str(), is_knockout(m.mediator) ? m.high_score : f.low_score, f.high_score);
  std::printf("%-18s", "token \\ layer");
  for (int64_t l = 0; l < L; ++l) std::printf("%6lld", static_cast<long long>(l));
  std::printf("\n");
  auto acc = m.scores.accessor<double, 2>();
  for (int64_t t = 0; t < T; ++t) {
    std::string tok = f.input_tokens[is_knockout(m.mediator) ? f.input_tokens.size() - 1 : t];
    for (char& c : tok)
      if (c == '\n' || c == '\t') c = ' ';
    if (tok.size() > 15) tok = tok.substr(0, 15);
    const bool subj = !is_knockout(m.mediator) && t >= f.subject_begin && t < f.subject_end;
    std::printf("%c %-16s", subj ? '*' : ' ', ("'" + tok + "'").c_str());
    for (int64_t l = 0; l < L; ++l) std::printf("%6.3f", acc[t][l]);
    std::printf("\n");
  }
}

void run_trace(TraceArgs a) {
  a.formats.erase(std::remove(a.formats.begin(), a.formats.end(), std::string()), a.formats.end());
  for (const auto& f : a.formats) parse_image_format(f);
  parse_engine(a.engine);
  // Every flag's text is checked before the model loads.
  TraceSettings checked = make_trace_settings(a.samples, 1, a.convention, a.mediators, a.noise, a.seed, a.replace, a.severing);
  set_interventions(checked, a.beyond);
  LoadOptions o;
  o.dtype = parse_dtype(a.dtype);
  o.device = parse_device(a.device);
  auto model = Model::load(a.model, o);
  const int64_t L = model->config().n_layers;
  if (a.window > L) {
    // ROME clips a window to the layers; so does knowtrace, and says so
    // when the window was asked for.
    if (a.window_given)
      std::fprintf(stderr, "note: --window %lld is more than the model's %lld layers: using %lld\n", (long long)a.window,
                 (long long)L, (long long)L);
    a.window = L;
  }
  TraceSettings s =
      make_trace_settings(a.samples, a.window, a.convention, a.mediators, a.noise, a.seed, a.replace, a.severing);
  set_interventions(s, a.beyond);
  check_knockout_window(s, L, "--knockout-window");
  if (s.corruption == Corruption::Noise) resolve_noise_from_dataset(s, *model, a.noise_subjects);
  try {
    validate_fact(*model, a.prompt, a.subject, s);
  } catch (const Error& e) {
    // Nothing is written for a bad fact but an error record.
    if (!a.out.empty()) {
      std::filesystem::create_directories(a.out);
      nlohmann::json rec = {{"prompt", a.prompt}, {"subject", a.subject}, {"error", e.what()}};
      std::ofstream(std::filesystem::path(a.out) / "fact_error.json") << rec.dump() << "\n";
    }
    throw;
  }
  FactAnswer expect;
  if (!a.expect.empty()) expect.expect = a.expect;
  if (!a.counterfactual.empty()) expect.counterfactual = a.counterfactual;
  if (!a.counterfactual_answer.empty()) expect.counterfactual_answer = a.counterfactual_answer;
  const bool tty = isatty(fileno(stderr));
  auto t0 = std::chrono::steady_clock::now();
  EngineOptions eo;
  eo.engine = parse_engine(a.engine);
  eo.max_batch_tokens = a.max_batch_tokens;
  eo.progress = [&](int64_t done, int64_t total) {
    if (tty && (done % 10 == 0 || done == total))
      std::fprintf(stderr, "\rtracing: %lld/%lld restorations", (long long)done, (long long)total);
  };
  FactTrace f = trace_fact(*model, a.prompt, a.subject, s, expect, eo);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (tty) std::fprintf(stderr, "\n");
  std::vector<std::string> written;
  if (!a.out.empty()) {
    const std::string fp = trace_fingerprint(*model, s);
    std::vector<ImageFormat> formats;
    for (const auto& f : a.formats) formats.push_back(parse_image_format(f));
    for (const auto& m : f.traces) {
      written.push_back(trace_file_name(a.out, "fact", m.mediator));
      TraceRecord r = trace_record(f, m, s, fp);
      write_trace_file(written.back(), r);
      // The fact's heatmaps beside the .npz files, as `run` draws them.
      if (!formats.empty() && plots_available()) {
        r.fact_id = "fact";
        std::filesystem::path mp(a.model);
        r.model = (mp.extension() == ".gguf" ? mp.stem() : mp.filename()).string();
        for (const auto& w : plot_fact_heatmap(r, (std::filesystem::path(a.out) / ("fact_" + r.mediator)).string(), formats))
          written.push_back(w);
      }
    }
    if (!formats.empty() && !plots_available())
      std::fprintf(stderr, "note: this knowtrace was built without cairo: no heatmaps (install libcairo2-dev and rebuild)\n");
    if (a.save_states) {
      written.push_back((std::filesystem::path(a.out) / "fact_states.npz").string());
      write_states_npz(written.back(), f, record_fact_states(*model, a.prompt, a.subject, s, expect));
    }
  }
  if (a.as_json) {
    nlohmann::json j = {{"prompt", f.prompt},     {"subject", f.subject},        {"input_ids", f.input_ids},
                        {"input_tokens", f.input_tokens}, {"subject_range", {f.subject_begin, f.subject_end}},
                        {"answer", f.answer},     {"answer_id", f.answer_id},    {"high_score", f.high_score},
                        {"low_score", f.low_score}, {"noise_level", s.noise.level},
                        {"noise_source", s.noise.source}, {"seconds", secs},
                        {"correct_prediction", f.correct_prediction}, {"files", written}};
    for (const auto& m : f.traces) {
      auto acc = m.scores.accessor<double, 2>();
      nlohmann::json rows = nlohmann::json::array();
      for (int64_t t = 0; t < m.scores.size(0); ++t) {
        std::vector<double> r(&acc[t][0], &acc[t][0] + m.scores.size(1));
        rows.push_back(r);
      }
      j["scores"][mediator_name(m.mediator)] = rows;
    }
    j["metric"] = metric_name(s.metric);
    j["target"] = target_name(s.target);
    j["target_ids"] = f.target_ids;
    j["corruption"] = corruption_name(s.corruption);
    j["counterfactual"] = f.counterfactual;
    j["normalised"] = s.normalise;
    j["raw_low_score"] = f.raw_low;
    j["raw_high_score"] = f.raw_high;
    std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    return;
  }
  std::printf("prompt   %s\nsubject  %s (tokens %lld..%lld)\nanswer   '%s' (id %d)  high_score %.4f  low_score %.4f  total effect %.4f\n",
              f.prompt.c_str(), f.subject.c_str(), (long long)f.subject_begin, (long long)f.subject_end - 1,
              f.answer.c_str(), f.answer_id, f.high_score, f.low_score, f.high_score - f.low_score);
  if (s.corruption == Corruption::Noise)
    std::printf("noise    %s = %.5g%s, %lld samples, seed %u\n", a.noise.c_str(), s.noise.level,
                s.noise.source.empty() ? "" : (" (std of " + s.noise.source + ")").c_str(), (long long)s.samples,
                s.noise.seed);
  else
    std::printf("noise    none: the corrupted run is the counterfactual prompt's (1 row)\n");
  if (expect.expect) std::printf("expected '%s': %s\n", expect.expect->c_str(), f.correct_prediction ? "correct" : "WRONG");
  if (!s.defaults_beyond_rome())
    std::printf("scores   %s of the %s, corruption %s%s%s\n", metric_name(s.metric).c_str(),
                s.target == Target::Answer ? "answer's tokens (teacher-forced)" : "answer's first token",
                corruption_name(s.corruption).c_str(), f.counterfactual.empty() ? "" : (": '" + f.counterfactual + "'").c_str(),
                s.normalise ? ", normalised (m - low) / (high - low)" : "");
  for (const auto& m : f.traces) print_table(f, m);
  std::printf("\n%.2f s (%s engine)\n", secs, a.engine.c_str());
  for (const auto& w : written) std::printf("wrote %s\n", w.c_str());
}

}  // namespace

void add_trace(CLI::App& app) {
  auto* cmd = app.add_subcommand("trace", "Causal trace of one fact (all mediators), printed and stored as .npz");
  auto a = std::make_shared<TraceArgs>();
  cmd->add_option("--model", a->model, "Hugging Face checkpoint directory or .gguf file")->required();
  cmd->add_option("--prompt", a->prompt, "Prompt text (the fact without its answer)")->required();
  cmd->add_option("--subject", a->subject, "Subject, as it occurs in the prompt")->required();
  cmd->add_option("--expect", a->expect, "Expected answer (ROME's correct_prediction check)");
  cmd->add_option("--mediators", a->mediators,
                  "hidden,hidden_attn_severed,hidden_mlp_severed,mlp,attn (commas or spaces); also knockout_subject, "
                  "knockout_nonsubject, knockout_last")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--samples", a->samples, "Noise samples S")->capture_default_str();
  cmd->add_option("--noise", a->noise, "s<k> (k x subject embedding std) | number | u<x>")->capture_default_str();
  cmd->add_option("--noise-subjects", a->noise_subjects,
                  "Data set whose subjects set the s<k> std: a file, known_1000 or default (default: known_1000 when "
                  "found, else the bundled facts, as knowtrace run)");
  cmd->add_option("--seed", a->seed, "numpy RandomState seed")->capture_default_str();
  cmd->add_flag("--replace", a->replace, "Replace the subject embeddings by the noise instead of adding it");
  auto* window = cmd->add_option("--window", a->window, "Window of the mlp/attn mediators (clipped to the layers)")
                     ->capture_default_str();
  cmd->add_option("--convention", a->convention, "resid_post (ROME) | resid_pre")->capture_default_str();
  cmd->add_option("--severing", a->severing,
                  "same-draw (one noise draw) | rome-notebook (frozen values from the first draw, scored pass from "
                  "the second, as ROME's causal_trace_frozen_mlp_attn notebook)")
      ->capture_default_str();
  cmd->add_option("--corruption", a->beyond.corruption,
                  "noise (ROME) | prompt (the clean run of --counterfactual is the corrupted run)")
      ->capture_default_str();
  cmd->add_option("--counterfactual", a->counterfactual, "A prompt with as many tokens (--corruption prompt)");
  cmd->add_option("--counterfactual-answer", a->counterfactual_answer, "The counterfactual's answer (--metric logit_diff)");
  cmd->add_option("--target", a->beyond.target, "first-token (ROME) | answer (every token of ' ' + --expect, teacher-forced)")
      ->capture_default_str();
  cmd->add_option("--metric", a->beyond.metric, "prob (ROME) | logprob | logit_diff | kl")->capture_default_str();
  cmd->add_flag("--normalise", a->beyond.normalise, "Scores as (m - m_corrupted) / (m_clean - m_corrupted)");
  cmd->add_option("--knockout-window", a->beyond.knockout_window,
                  "Layers whose attention edges a knockout cell removes (mediators knockout_subject, "
                  "knockout_nonsubject, knockout_last)")
      ->capture_default_str();
  cmd->add_option("--out", a->out, "Directory for the .npz results and the fact's heatmaps");
  cmd->add_option("--formats", a->formats, "Heatmap formats written with --out: png,pdf,svg (empty: none)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--engine", a->engine, "fast | reference")->capture_default_str();
  cmd->add_flag("--save-states", a->save_states, "Also store every site's clean and corrupted values (float16)");
  cmd->add_option_function<std::string>(
      "--max-batch-tokens",
      [a](const std::string& v) { a->max_batch_tokens = parse_batch_tokens(v, "--max-batch-tokens"); },
      "Fast engine: live tokens per sweep: auto (default: from the memory available), 0 = unlimited, or a number");
  cmd->add_option("--device", a->device, "cpu | cuda | cuda:N")->capture_default_str();
  cmd->add_option("--dtype", a->dtype, "float32 | bfloat16 | float16")->capture_default_str();
  cmd->add_flag("--json", a->as_json, "One JSON object on stdout");
  cmd->callback([=] {
    a->window_given = window->count() > 0;
    run_trace(*a);
  });
}

}  // namespace kt::cli
