// knowtrace._core: the C++ engine as a Python extension. Tensors cross as
// torch.Tensor without copies (torch's own pybind11 casters); the long calls
// release the GIL and poll for Ctrl-C. The Python API (python/knowtrace)
// wraps these few functions.
#include <torch/extension.h>

#include <pybind11/functional.h>
#include <pybind11/stl.h>

#include <csignal>
#include <map>
#include <optional>

#include "analysis/trace_file.h"
#include "model/model.h"
#include "pipeline/config.h"
#include "pipeline/pipeline.h"
#include "trace/engine.h"
#include "trace/result_store.h"
#include "trace/tracer.h"
#include "util/error.h"

namespace py = pybind11;

namespace {

PyObject* g_error = nullptr;      // knowtrace.Error
PyObject* g_invalid = nullptr;    // knowtrace.InvalidInput(Error, ValueError)
PyObject* g_not_found = nullptr;  // knowtrace.NotFound(Error, FileNotFoundError)

// Raises KeyboardInterrupt in C++ when Python has a pending signal.
void poll_python() {
  py::gil_scoped_acquire gil;
  if (PyErr_CheckSignals() != 0) throw py::error_already_set();
}

class PyModel {
 public:
  PyModel(const std::string& path, const std::string& device, const std::string& dtype) {
    kt::LoadOptions o;
    o.dtype = kt::parse_dtype(dtype);
    o.device = kt::parse_device(device);
    py::gil_scoped_release nogil;
    model_ = kt::Model::load(path, o);
  }

  const kt::Model& model() const { return *model_; }

  py::dict config() const {
    const kt::ModelConfig& c = model_->config();
    py::dict d;
    d["architecture"] = c.model_type;
    d["layers"] = c.n_layers;
    d["hidden"] = c.hidden;
    d["heads"] = c.n_heads;
    d["kv_heads"] = c.n_kv_heads;
    d["vocab"] = c.vocab_size;
    d["context"] = c.max_positions;
    d["path"] = model_->path();
    const at::ScalarType t = model_->dtype();
    d["dtype"] = t == at::kFloat ? "float32" : t == at::kBFloat16 ? "bfloat16" : "float16";
    d["device"] = model_->device().str();
    return d;
  }

  py::dict tokenize(const std::string& text, bool add_special) const {
    const kt::Encoding e = model_->tokenizer().encode(text, add_special);
    std::vector<std::string> pieces;
    for (int32_t id : e.ids) pieces.push_back(model_->tokenizer().decode({id}));
    py::dict d;
    d["ids"] = e.ids;
    d["offsets"] = e.offsets;
    d["tokens"] = pieces;
    return d;
  }

  std::string decode(const std::vector<int32_t>& ids, bool skip_special) const {
    return model_->tokenizer().decode(ids, skip_special);
  }

  std::vector<std::string> sites() const {
    std::vector<std::string> out;
    for (const kt::Site& s : kt::all_sites(model_->config())) out.push_back(kt::site_name(model_->config(), s));
    return out;
  }

  // One forward pass. `record`: site names whose values come back;
  // `patch`: site name -> tensor (replaces the value at `positions`, or the
  // whole value) or callable(value, layer) -> tensor. Returns (logits,
  // {name: value}).
  py::tuple run(const at::Tensor& ids_in, const std::vector<std::string>& record, const py::dict& patch,
                const std::optional<std::vector<int64_t>>& positions, bool last_only) const {
    const kt::ModelConfig& cfg = model_->config();
    at::Tensor ids = ids_in.dim() == 1 ? ids_in.unsqueeze(0) : ids_in;
    if (ids.dim() != 2) throw kt::Error("run: ids must be [tokens] or [batch, tokens], got " + std::to_string(ids_in.dim()) + " dimensions");
    ids = ids.to(at::kLong).to(model_->device());
    const int64_t T = ids.size(1);
    if (positions)
      for (int64_t p : *positions)
        if (p < -T || p >= T) throw kt::Error("run: position " + std::to_string(p) + " is outside the " + std::to_string(T) + " tokens");
    std::map<std::string, size_t> want;
    for (const auto& n : record) {
      kt::parse_site_name(cfg, n);  // kt::Error listing the valid names
      want.emplace(n, want.size());
    }
    struct Patch {
      std::optional<at::Tensor> value;
      py::object fn;
    };
    std::map<std::string, Patch> patches;
    for (const auto& item : patch) {
      const std::string name = py::cast<std::string>(item.first);
      kt::parse_site_name(cfg, name);
      Patch p;
      if (py::isinstance<py::function>(item.second)) p.fn = py::reinterpret_borrow<py::object>(item.second);
      else p.value = py::cast<at::Tensor>(item.second);
      patches.emplace(name, std::move(p));
    }
    std::map<std::string, at::Tensor> recorded;
    at::Tensor pos_index;
    if (positions) pos_index = at::tensor(*positions, at::kLong).remainder(T).to(model_->device());
    kt::SiteHook hook = [&](const kt::Site& s, at::Tensor& v) {
      const std::string name = kt::site_name(cfg, s);
      auto p = patches.find(name);
      if (p != patches.end()) {
        at::Tensor nv;
        if (p->second.value) {
          nv = v.clone();
          at::Tensor src = p->second.value->to(v.device(), v.scalar_type());
          if (positions) nv.index_copy_(1, pos_index, src.expand({v.size(0), pos_index.size(0), v.size(2)}).contiguous());
          else nv.copy_(src.expand_as(v));
        } else {
          py::gil_scoped_acquire gil;
          py::object out = p->second.fn(v, s.kind == kt::SiteKind::Embed ? 0 : s.layer);
          nv = py::cast<at::Tensor>(out);
        }
        if (nv.sizes() != v.sizes())
          throw kt::Error("run: the patch of '" + name + "' has shape " + c10::str(nv.sizes()) + ", the site has " +
                          c10::str(v.sizes()));
        v = nv.to(v.device(), v.scalar_type());
      }
      if (want.count(name)) recorded[name] = v.detach().clone();
    };
    at::Tensor logits;
    {
      py::gil_scoped_release nogil;
      c10::InferenceMode guard;
      logits = model_->forward(ids, hook, last_only);
    }
    py::dict rec;
    for (const auto& [name, v] : recorded) rec[py::str(name)] = v;
    return py::make_tuple(logits, rec);
  }

  // Every mediator of one fact, each as ROME's calculate_hidden_flow
  // returns it (keys and types), plus what knowtrace adds under "_meta".
  py::dict trace(const std::string& prompt, const std::string& subject, const std::vector<std::string>& mediators,
                 int64_t samples, const std::string& noise, uint32_t seed, bool replace, int64_t window,
                 const std::string& convention, const std::string& severing, const std::optional<std::string>& expect,
                 const std::string& noise_subjects, const std::string& engine, int64_t max_batch_tokens,
                 const py::dict& beyond) const {
    kt::EngineOptions eo;
    eo.engine = kt::parse_engine(engine);
    eo.max_batch_tokens = max_batch_tokens;  // -1: auto
    eo.poll = poll_python;
    const int64_t L = model_->config().n_layers;
    kt::TraceSettings s = kt::make_trace_settings(samples, std::min(window, L), convention, mediators, noise, seed,
                                                  replace, severing);
    // Beyond ROME: corruption, target, metric, normalise, knockout_window,
    // counterfactual, counterfactual_answer (Python's keyword arguments).
    kt::InterventionText t;
    kt::FactAnswer answer(expect);
    for (const auto& [k, v] : beyond) {
      const std::string key = py::str(k);
      if (v.is_none()) continue;
      if (key == "corruption") t.corruption = py::str(v);
      else if (key == "target") t.target = py::str(v);
      else if (key == "metric") t.metric = py::str(v);
      else if (key == "normalise") t.normalise = v.cast<bool>();
      else if (key == "knockout_window") t.knockout_window = v.cast<int64_t>();
      else if (key == "counterfactual") answer.counterfactual = std::string(py::str(v));
      else if (key == "counterfactual_answer") answer.counterfactual_answer = std::string(py::str(v));
      else throw kt::Error("trace: unknown keyword '" + key + "'");
    }
    kt::set_interventions(s, t);
    kt::FactTrace f;
    {
      py::gil_scoped_release nogil;
      if (s.corruption == kt::Corruption::Noise) kt::resolve_noise_from_dataset(s, *model_, noise_subjects);
      f = kt::trace_fact(*model_, prompt, subject, s, answer, eo);
    }
    // The stored record's fields (window, kind, ...) come from the one
    // conversion the .npz files use.
    const std::string fingerprint = kt::trace_fingerprint(*model_, s);
    py::dict out;
    for (const auto& m : f.traces) {
      const kt::TraceRecord rec = kt::trace_record(f, m, s, fingerprint);
      py::dict r;
      r["scores"] = m.scores.clone();
      r["low_score"] = rec.low_score;
      r["high_score"] = at::scalar_tensor(rec.high_score, at::kDouble);
      r["input_ids"] = at::tensor(rec.input_ids, at::kLong);
      r["input_tokens"] = rec.tokens;
      r["subject_range"] = py::make_tuple(rec.subject_begin, rec.subject_end);
      r["answer"] = rec.answer;
      r["window"] = rec.window;
      r["correct_prediction"] = rec.correct_prediction;
      r["kind"] = kt::rome_kind(rec.mediator);
      out[py::str(rec.mediator)] = r;
    }
    py::dict meta;
    meta["answer_id"] = f.answer_id;
    meta["noise_level"] = s.noise.level;
    meta["noise_source"] = s.noise.source;
    meta["samples"] = s.samples;
    meta["correct_rule"] = f.correct_rule;
    meta["fingerprint"] = fingerprint;
    meta["metric"] = kt::metric_name(s.metric);
    meta["target"] = kt::target_name(s.target);
    meta["target_ids"] = f.target_ids;
    meta["corruption"] = kt::corruption_name(s.corruption);
    meta["counterfactual"] = f.counterfactual;
    meta["raw_low_score"] = f.raw_low;
    meta["raw_high_score"] = f.raw_high;
    out["_meta"] = meta;
    return out;
  }

 private:
  std::unique_ptr<kt::Model> model_;
};

py::dict report_dict(const kt::RunReport& r) {
  py::dict d;
  d["dir"] = r.dir;
  d["facts"] = r.facts;
  d["kept"] = r.kept;
  d["traced"] = r.facts_traced;
  d["reused"] = r.facts_reused;
  d["trace_errors"] = r.trace_errors;
  d["aggregated_facts"] = r.aggregated_facts;
  d["noise_level"] = r.noise_level;
  d["interrupted"] = r.interrupted;
  d["figures"] = r.figures;
  d["notes"] = r.notes;
  return d;
}

// The pipeline from a config file; overrides are (key, YAML/JSON value text).
py::dict run_config(const std::string& path, const std::vector<std::pair<std::string, std::string>>& overrides) {
  kt::RunConfig cfg = kt::load_config(path);
  for (const auto& [k, v] : overrides) kt::set_config_value(cfg, k, v, "keyword argument " + k);
  kt::RunReport r;
  {
    py::gil_scoped_release nogil;
    kt::RunOptions o;
    o.progress = false;
    r = kt::run_pipeline(cfg, o);  // SIGINT: the current fact is abandoned, everything stored stays
  }
  if (r.interrupted) {
    PyErr_SetInterrupt();
    throw py::error_already_set();
  }
  return report_dict(r);
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "knowtrace's C++ engine (use the knowtrace package)";
  g_error = PyErr_NewException("knowtrace.Error", PyExc_Exception, nullptr);
  g_invalid = PyErr_NewException("knowtrace.InvalidInput", py::make_tuple(py::handle(g_error), py::handle(PyExc_ValueError)).release().ptr(), nullptr);
  g_not_found = PyErr_NewException("knowtrace.NotFound", py::make_tuple(py::handle(g_error), py::handle(PyExc_FileNotFoundError)).release().ptr(), nullptr);
  m.attr("Error") = py::handle(g_error);
  m.attr("InvalidInput") = py::handle(g_invalid);
  m.attr("NotFound") = py::handle(g_not_found);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const kt::NotFound& e) {
      PyErr_SetString(g_not_found, e.what());
    } catch (const kt::Error& e) {
      PyErr_SetString(g_invalid, e.what());
    } catch (const c10::Error& e) {
      const std::string msg = e.what();
      PyErr_SetString(g_error, msg.substr(0, msg.find('\n')).c_str());
    }
  });
  m.attr("version") = kt::kKnowtraceVersion;

  py::class_<PyModel>(m, "Model")
      .def(py::init<const std::string&, const std::string&, const std::string&>(), py::arg("path"),
           py::arg("device") = "cpu", py::arg("dtype") = "float32")
      .def_property_readonly("config", &PyModel::config)
      .def("tokenize", &PyModel::tokenize, py::arg("text"), py::arg("add_special") = true)
      .def("decode", &PyModel::decode, py::arg("ids"), py::arg("skip_special") = false)
      .def("sites", &PyModel::sites)
      .def("run", &PyModel::run, py::arg("ids"), py::arg("record") = std::vector<std::string>{},
           py::arg("patch") = py::dict(), py::arg("positions") = py::none(), py::arg("last_only") = false)
      .def("trace", &PyModel::trace, py::arg("prompt"), py::arg("subject"), py::arg("mediators"), py::arg("samples"),
           py::arg("noise"), py::arg("seed"), py::arg("replace"), py::arg("window"), py::arg("convention"),
           py::arg("severing"), py::arg("expect"), py::arg("noise_subjects"), py::arg("engine"),
           py::arg("max_batch_tokens"), py::arg("beyond"));
  m.def("run_config", &run_config, py::arg("path"), py::arg("overrides"));
}
