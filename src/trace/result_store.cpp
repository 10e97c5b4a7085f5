#include "trace/result_store.h"

#include <nlohmann/json.hpp>

#include <filesystem>

#include "io/npz.h"
#include "model/model.h"
#include "util/error.h"

namespace kt {
namespace fs = std::filesystem;
using nlohmann::json;

std::string trace_fingerprint(const Model& model, const TraceSettings& s) {
  json files = json::array();
  const fs::path p(model.path());
  std::vector<fs::path> paths;
  if (fs::is_directory(p)) {
    for (const auto& e : fs::directory_iterator(p))
      if (e.is_regular_file()) paths.push_back(e.path());
    std::sort(paths.begin(), paths.end());
  } else {
    paths.push_back(p);
  }
  for (const auto& f : paths) {
    auto ext = f.extension().string();
    if (ext != ".safetensors" && ext != ".gguf" && ext != ".json") continue;
    auto mtime = fs::last_write_time(f).time_since_epoch().count();
    files.push_back({f.filename().string(), fs::file_size(f), mtime});
  }
  json j = {{"model_files", files},
            {"dtype", std::string(c10::toString(model.dtype()))},
            {"noise", s.noise.text},
            {"noise_level", s.noise.level},
            {"noise_kind", s.noise.kind == NoiseSpec::Kind::Uniform ? "uniform" : "gaussian"},
            {"replace", s.noise.replace},
            {"seed", s.noise.seed},
            {"samples", s.samples},
            {"window", s.window},
            {"convention", convention_name(s.convention)},
            {"version", kKnowtraceVersion}};
  // Only when it changes the numbers: fingerprints of same-draw runs stay as they were.
  if (s.severing != Severing::SameDraw) j["severing"] = severing_name(s.severing);
  if (s.corruption != Corruption::Noise) j["corruption"] = corruption_name(s.corruption);
  if (s.target != Target::FirstToken) j["target"] = target_name(s.target);
  if (s.metric != Metric::Prob) j["metric"] = metric_name(s.metric);
  if (s.normalise) j["normalise"] = true;
  if (s.knockout_window != TraceSettings{}.knockout_window) j["knockout_window"] = s.knockout_window;
  return j.dump();
}

TraceRecord trace_record(const FactTrace& f, const MediatorTrace& m, const TraceSettings& s,
                         const std::string& fingerprint) {
  at::Tensor sc = m.scores.contiguous().to(at::kDouble).cpu();
  TraceRecord r;
  r.mediator = mediator_name(m.mediator);
  r.prompt = f.prompt;
  r.subject = f.subject;
  r.answer = f.answer;
  r.answer_id = f.answer_id;
  r.input_ids.assign(f.input_ids.begin(), f.input_ids.end());
  r.tokens = f.input_tokens;
  r.n_tokens = sc.size(0), r.n_layers = sc.size(1);
  r.scores.assign(sc.data_ptr<double>(), sc.data_ptr<double>() + sc.numel());
  r.subject_begin = f.subject_begin, r.subject_end = f.subject_end;
  r.low_score = m.low_score, r.high_score = m.high_score;
  r.correct_prediction = f.correct_prediction;
  r.correct_rule = f.correct_rule;
  r.window = m.mediator == Mediator::Mlp || m.mediator == Mediator::Attn ? s.window
             : is_knockout(m.mediator)                                ? s.knockout_window
                                                                      : 1;
  r.convention = convention_name(s.convention);
  r.noise = s.noise.text;
  r.noise_level = s.noise.level;
  r.noise_source = s.noise.source;
  r.noise_seed = s.noise.seed;
  r.samples = s.samples;
  r.fingerprint = fingerprint;
  r.version = kKnowtraceVersion;
  r.metric = metric_name(s.metric);
  r.target = target_name(s.target);
  r.corruption = corruption_name(s.corruption);
  r.counterfactual = f.counterfactual;
  r.target_ids.assign(f.target_ids.begin(), f.target_ids.end());
  r.counter_id = f.counter_id;
  r.normalised = s.normalise && !is_knockout(m.mediator);
  r.raw_low = is_knockout(m.mediator) ? m.low_score : f.raw_low;
  r.raw_high = is_knockout(m.mediator) ? m.high_score : f.raw_high;
  if (is_knockout(m.mediator)) r.knockout_window = s.knockout_window;
  if (s.corruption == Corruption::Prompt) r.samples = 1, r.noise = "none", r.noise_level = 0;
  return r;
}

void write_trace_npz(const std::string& path, const FactTrace& f, const MediatorTrace& m, const TraceSettings& s,
                     const std::string& fingerprint) {
  write_trace_file(path, trace_record(f, m, s, fingerprint));
}

void write_states_npz(const std::string& path, const FactTrace& f, const FactStates& st) {
  std::vector<std::pair<std::string, NpyArray>> a = {
      {"input_ids", NpyArray::from_i64(std::vector<int64_t>(f.input_ids.begin(), f.input_ids.end()))},
      {"subject_range", NpyArray::from_i64({f.subject_begin, f.subject_end})}};
  auto to_f16 = [](const at::Tensor& t, bool drop_batch) {
    at::Tensor v = (drop_batch ? t[0] : t).to(at::kFloat).contiguous().cpu();
    std::vector<float> data(v.data_ptr<float>(), v.data_ptr<float>() + v.numel());
    return NpyArray::from_f16(data, std::vector<int64_t>(v.sizes().begin(), v.sizes().end()));
  };
  for (size_t i = 0; i < st.sites.size(); ++i) {
    a.emplace_back("clean:" + st.sites[i], to_f16(st.clean[i], true));
    a.emplace_back("corrupted:" + st.sites[i], to_f16(st.corrupted[i], false));
  }
  fs::create_directories(fs::path(path).parent_path().empty() ? fs::path(".") : fs::path(path).parent_path());
  write_npz(path, a);
}

}  // namespace kt
