#include "trace/result_store.h"

#include <nlohmann/json.hpp>

#include <filesystem>

#include "io/npz.h"
#include "model/model.h"
#include "util/error.h"

namespace kt {
namespace fs = std::filesystem;
using nlohmann::json;

const char* const kKnowtraceVersion = "0.1.0";

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
  return j.dump();
}

std::string trace_file_name(const std::string& dir, const std::string& fact, Mediator m) {
  return (fs::path(dir) / (fact + "_" + mediator_name(m) + ".npz")).string();
}

void write_trace_npz(const std::string& path, const FactTrace& f, const MediatorTrace& m, const TraceSettings& s,
                     const std::string& fingerprint) {
  at::Tensor sc = m.scores.contiguous().to(at::kDouble);
  std::vector<double> scores(sc.data_ptr<double>(), sc.data_ptr<double>() + sc.numel());
  const std::string kind = m.mediator == Mediator::Mlp ? "mlp" : m.mediator == Mediator::Attn ? "attn" : "";
  const bool windowed = m.mediator == Mediator::Mlp || m.mediator == Mediator::Attn;
  std::vector<std::pair<std::string, NpyArray>> a = {
      {"scores", NpyArray::from_f64(scores, {sc.size(0), sc.size(1)})},
      {"low_score", NpyArray::scalar_f64(f.low_score)},
      {"high_score", NpyArray::scalar_f64(f.high_score)},
      {"input_ids", NpyArray::from_i64(std::vector<int64_t>(f.input_ids.begin(), f.input_ids.end()))},
      {"input_tokens", NpyArray::from_strings(f.input_tokens)},
      {"subject_range", NpyArray::from_i64({f.subject_begin, f.subject_end})},
      {"answer", NpyArray::scalar_string(f.answer)},
      {"window", NpyArray::scalar_i64(windowed ? s.window : 10)},
      {"correct_prediction", NpyArray::scalar_bool(f.correct_prediction)},
      {"kind", NpyArray::scalar_string(kind)},
      {"mediator", NpyArray::scalar_string(mediator_name(m.mediator))},
      {"convention", NpyArray::scalar_string(convention_name(s.convention))},
      {"noise", NpyArray::scalar_string(s.noise.text)},
      {"noise_level", NpyArray::scalar_f64(s.noise.level)},
      {"noise_seed", NpyArray::scalar_i64(s.noise.seed)},
      {"samples", NpyArray::scalar_i64(s.samples)},
      {"answer_id", NpyArray::scalar_i64(f.answer_id)},
      {"prompt", NpyArray::scalar_string(f.prompt)},
      {"subject", NpyArray::scalar_string(f.subject)},
      {"fingerprint", NpyArray::scalar_string(fingerprint)},
      {"knowtrace_version", NpyArray::scalar_string(kKnowtraceVersion)},
  };
  fs::create_directories(fs::path(path).parent_path().empty() ? fs::path(".") : fs::path(path).parent_path());
  write_npz(path, a);
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

FactTrace read_trace_npz(const std::string& path, const std::string& expected) {
  auto a = read_npz(path);
  auto get = [&](const char* k) -> const NpyArray& { return npz_get(a, k, path); };
  const std::string ctx = path;
  if (!expected.empty()) {
    const std::string have = get("fingerprint").item_string(ctx);
    if (have != expected) {
      json h, w;
      try {
        h = json::parse(have);
        w = json::parse(expected);
      } catch (const json::exception&) {
        throw Error(path + ": stored fingerprint is not valid JSON; the result will not be reused");
      }
      for (auto& [k, v] : w.items())
        if (!h.contains(k) || h[k] != v)
          throw Error(path + ": stored with a different '" + k + "' (" + (h.contains(k) ? h[k].dump() : "absent") +
                      ", now " + v.dump() + "); the result will not be reused");
      throw Error(path + ": stored fingerprint differs from the current settings");
    }
  }
  FactTrace f;
  f.prompt = get("prompt").item_string(ctx);
  f.subject = get("subject").item_string(ctx);
  for (int64_t id : get("input_ids").to_i64(ctx)) f.input_ids.push_back(static_cast<int32_t>(id));
  f.input_tokens = get("input_tokens").to_strings(ctx);
  auto r = get("subject_range").to_i64(ctx);
  if (r.size() != 2) throw Error(path + ": subject_range must hold 2 values");
  f.subject_begin = r[0], f.subject_end = r[1];
  f.answer = get("answer").item_string(ctx);
  f.answer_id = static_cast<int32_t>(get("answer_id").item_i64(ctx));
  f.high_score = get("high_score").item_f64(ctx);
  f.low_score = get("low_score").item_f64(ctx);
  f.correct_prediction = get("correct_prediction").item_bool(ctx);
  const NpyArray& s = get("scores");
  if (s.shape.size() != 2) throw Error(path + ": scores must be 2-dimensional");
  auto v = s.to_f64(ctx);
  at::Tensor scores = at::from_blob(v.data(), {s.shape[0], s.shape[1]}, at::kDouble).clone();
  f.traces.push_back({parse_mediator(get("mediator").item_string(ctx)), scores});
  return f;
}

}  // namespace kt
