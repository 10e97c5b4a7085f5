// The model half of `knowtrace run`: load, check the config against the
// model, resolve the noise, filter candidates, trace every kept fact and
// store it as it finishes. The model-free stages are in results.cpp.
#include "pipeline/pipeline.h"

#include <ATen/detail/CUDAHooksInterface.h>
#include <c10/core/InferenceMode.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <functional>
#include <filesystem>
#include <map>
#include <set>

#include "model/model.h"
#include "pipeline/cluster.h"
#include "pipeline/stages.h"
#include "trace/engine.h"
#include "trace/noise.h"
#include "trace/result_store.h"
#include "trace/subject.h"
#include "trace/tracer.h"
#include "util/crash_point.h"
#include "util/error.h"
#include "util/stored_file.h"
#include "util/paths.h"

namespace kt {
namespace fs = std::filesystem;
using nlohmann::json;

namespace pipeline {
namespace {

struct Interrupted {};

const char* kind_label(SiteKind k) {
  switch (k) {
    case SiteKind::Embed: return "token embedding";
    case SiteKind::ResidPre: return "block input";
    case SiteKind::Attn: return "attention output";
    case SiteKind::Mlp: return "MLP output";
    case SiteKind::ResidPost: return "block output";
  }
  return "";
}

// layer_name / attn_name / mlp_name / embed_name must name this model's
// sites of the right kind (the forward pass always uses its own names:
// the keys are checked, as the seed's configs carry them).
void check_site_names(const RunConfig& cfg, const ModelConfig& mc) {
  struct Key {
    const char* key;
    const std::string& value;
    SiteKind kind;
    const char* own;
  };
  const ArchSpec& a = *mc.arch;
  const Key keys[] = {{"layer_name", cfg.layer_name, SiteKind::ResidPost, a.layer_name},
                      {"attn_name", cfg.attn_name, SiteKind::Attn, a.attn_name},
                      {"mlp_name", cfg.mlp_name, SiteKind::Mlp, a.mlp_name},
                      {"embed_name", cfg.embed_name, SiteKind::Embed, a.embed_name}};
  // The seed's hook_layer lists: every name must be a site of this model.
  for (const auto& [key, tmpl] : cfg.saved_sites) {
    for (int64_t l : {int64_t{0}, mc.n_layers - 1}) {
      try {
        parse_site_name(mc, layer_template(tmpl, l));
      } catch (const Error& e) {
        throw Error(cfg.where(key) + ": key '" + key + "': '" + tmpl + "' is not a site of this model: " + e.what());
      }
    }
  }
  for (const Key& k : keys) {
    if (k.value.empty()) continue;
    const std::string where = cfg.where(k.key) + ": key '" + k.key + "': ";
    const std::vector<int64_t> layers =
        k.kind == SiteKind::Embed ? std::vector<int64_t>{0} : std::vector<int64_t>{0, mc.n_layers - 1};
    for (int64_t l : layers) {
      const std::string name = k.kind == SiteKind::Embed ? k.value : layer_template(k.value, l);
      Site s{};
      try {
        s = parse_site_name(mc, name);
      } catch (const Error& e) {
        throw Error(where + "'" + k.value + "' is not a site of this model: " + e.what());
      }
      if (s.kind != k.kind || (k.kind != SiteKind::Embed && s.layer != l))
        throw Error(where + "'" + k.value + "' names the " + kind_label(s.kind) + "; this " + mc.model_type +
                    " model's " + kind_label(k.kind) + " is '" + k.own + "'");
    }
  }
}

TraceSettings make_settings(const RunConfig& cfg, const Model& model, const Dataset& data) {
  TraceSettings st =
      make_trace_settings(cfg.samples, cfg.window, cfg.convention, cfg.mediators, cfg.noise, cfg.seed, cfg.replace,
                          cfg.severing);
  set_interventions(st, {cfg.corruption, cfg.target, cfg.metric, cfg.normalise, cfg.knockout_window});
  check_knockout_window(st, model.config().n_layers, cfg.where("knockout_window") + ": key 'knockout_window':");
  // ROME: k x the std of every dataset subject's embeddings, once per run.
  std::vector<std::string> subjects;
  for (const auto& f : data.facts) subjects.push_back(f.subject);
  if (st.noise.std_multiple > 0 && subjects.empty())
    throw Error(cfg.where("noise") + ": key 'noise': '" + cfg.noise + "' needs subjects, and the data set has none");
  resolve_noise_level(st, model, subjects, data.source);
  return st;
}

// Refuses a results directory made with other settings (or another shard).
// A corrupt run.json is reported and rewritten: every stored trace carries
// its own fingerprint and is checked on its own.
void check_run_dir(const std::string& dir, const std::string& fingerprint, const std::string& shard, RunReport& rep) {
  if (!fs::exists(run_json_path(dir))) return;
  json stored;
  try {
    stored = read_run_json(dir);
  } catch (const Error& e) {
    note(rep, std::string(e.what()) + "; writing it anew (stored traces are checked one by one)");
    return;
  }
  const std::string diff = fingerprint_difference(stored["fingerprint"].dump(), fingerprint);
  if (!diff.empty())
    throw Error(dir + " holds results made with a different " + diff +
                "; use --results DIR for a new run, or delete " + dir + " to start over");
  const std::string had = stored.value("shard", "");
  if (had != shard)
    throw Error(dir + " holds " + (had.empty() ? std::string("an unsharded run") : "shard " + had) + ", not " +
                (shard.empty() ? std::string("an unsharded run") : "shard " + shard) + "; use --results DIR");
}

void write_run_json(const std::string& dir, const RunConfig& cfg, const std::string& fp, const TraceSettings& st,
                    const Dataset& data, const Model& model, const RunReport& r, const std::string& status,
                    const std::string& shard) {
  const ModelConfig& mc = model.config();
  const ArchSpec& a = *mc.arch;
  json j = {{"knowtrace_version", kKnowtraceVersion},
            {"status", status},
            {"config", json::parse(config_to_json(cfg))},
            {"fingerprint", json::parse(fp)},
            {"noise", cfg.noise},
            {"noise_level", st.noise.level},
            {"noise_source", st.noise.source},
            {"dataset", data.source},
            {"model",
             {{"path", cfg.model},
              {"architecture", mc.model_type},
              {"layers", mc.n_layers},
              {"hidden", mc.hidden},
              {"sites", {{"embed_name", a.embed_name}, {"layer_name", a.layer_name}, {"attn_name", a.attn_name}, {"mlp_name", a.mlp_name}}}}},
            {"counts",
             {{"facts", r.facts},
              {"data_errors", r.data_errors},
              {"kept", r.kept},
              {"traced_this_run", r.facts_traced},
              {"reused", r.facts_reused},
              {"trace_errors", r.trace_errors}}}};
  if (!shard.empty()) j["shard"] = shard;
  write_file_checked(run_json_path(dir), j.dump(2) + "\n");
}

std::string strip(const std::string& s) {
  const char* ws = " \t\n\r\f\v";
  const size_t a = s.find_first_not_of(ws);
  if (a == std::string::npos) return "";
  return s.substr(a, s.find_last_not_of(ws) - a + 1);
}

// Verdicts for `facts`, equal-length prompts batched together. A prompt the
// model cannot take (no tokens, longer than its context) gets no verdict:
// it goes to `errors`.
// `checkpoint` receives the verdicts done so far every ~20 s, so that a
// killed filter of a large model keeps most of its work.
std::vector<Verdict> compute_verdicts(const Model& model, const std::vector<Fact>& facts, Progress& progress,
                                      std::vector<FactError>& errors,
                                      const std::function<void(const std::vector<Verdict>&)>& checkpoint) {
  c10::InferenceMode guard;
  const Tokenizer& tok = model.tokenizer();
  std::vector<Verdict> out(facts.size());
  std::map<size_t, std::vector<size_t>> by_len;
  std::vector<std::vector<int32_t>> ids(facts.size());
  for (size_t i = 0; i < facts.size(); ++i) {
    const Fact& f = facts[i];
    Verdict& v = out[i];
    v.id = f.id, v.prompt = f.prompt, v.subject = f.subject, v.attribute = f.attribute;
    ids[i] = tok.encode(f.prompt).ids;
    v.n_tokens = static_cast<int64_t>(ids[i].size());
    const auto first = tok.encode(" " + f.attribute, /*add_special=*/false).ids;
    v.attribute_first_id = first.empty() ? -1 : first[0];
    if (ids[i].empty()) {
      errors.push_back({f.id, "filter", "prompt '" + f.prompt + "' encodes to no tokens"});
    } else if (v.n_tokens > model.config().max_positions) {
      errors.push_back({f.id, "filter", "prompt has " + std::to_string(v.n_tokens) + " tokens, more than the model's context of " +
                                            std::to_string(model.config().max_positions)});
    } else {
      by_len[ids[i].size()].push_back(i);
      continue;
    }
    progress.tick();
  }
  const int64_t max_batch_tokens = 4096;
  std::vector<char> done(facts.size(), 0);
  auto done_so_far = [&] {
    std::vector<Verdict> good;
    for (size_t i = 0; i < facts.size(); ++i)
      if (done[i]) good.push_back(out[i]);
    return good;
  };
  auto last_checkpoint = std::chrono::steady_clock::now();
  for (const auto& [len, idx] : by_len) {
    const size_t chunk = std::max<size_t>(1, std::min<size_t>(64, static_cast<size_t>(max_batch_tokens) / len));
    for (size_t s = 0; s < idx.size() && !stop_requested(); s += chunk) {
      const size_t n = std::min(chunk, idx.size() - s);
      std::vector<int64_t> flat;
      for (size_t k = 0; k < n; ++k) flat.insert(flat.end(), ids[idx[s + k]].begin(), ids[idx[s + k]].end());
      at::Tensor batch = at::tensor(flat, at::kLong).view({static_cast<int64_t>(n), static_cast<int64_t>(len)});
      at::Tensor probs = at::softmax(model.forward(batch, nullptr, /*last_only=*/true), -1);
      auto [p, a] = probs.max(-1);
      p = p.to(at::kDouble).cpu(), a = a.cpu();
      for (size_t k = 0; k < n; ++k) {
        Verdict& v = out[idx[s + k]];
        v.top1_id = static_cast<int32_t>(a[static_cast<int64_t>(k)].item<int64_t>());
        v.top1_prob = p[static_cast<int64_t>(k)].item<double>();
        v.top1_token = tok.decode({v.top1_id});
        v.first_token = v.top1_id == v.attribute_first_id;
        v.rome = strip(v.top1_token) == v.attribute;
        done[idx[s + k]] = 1;
      }
      progress.tick(static_cast<int64_t>(n));
      if (std::chrono::steady_clock::now() - last_checkpoint > std::chrono::seconds(20)) {
        checkpoint(done_so_far());
        last_checkpoint = std::chrono::steady_clock::now();
      }
      crash_point("filter");
    }
  }
  // Interrupted (SIGINT): the verdicts computed so far are kept.
  return done_so_far();
}

// The trace scores the answer the filter judged, with its verdict under the
// run's rule (one computation: no batched vs single-row disagreement).
FactAnswer filter_answer(const Verdict& v, const std::string& rule) {
  FactAnswer a;
  a.expect = v.attribute;
  a.answer_id = v.top1_id;
  a.verdict = rule == "none" ? true : rule == "first-token" ? v.first_token : v.rome;
  a.rule = rule;
  return a;
}

// The counterfactual prompt / answer a fact's trace needs (corruption:
// prompt, metric: logit_diff), from the data set's fields or, with
// counterfactual: same-relation, from the first other fact of the same
// relation with another attribute whose subject gives the prompt as many
// tokens. kt::Error naming the fact and the field when there is none.
void add_counterfactual(FactAnswer& a, const std::string& id, const Dataset& data, const RunConfig& cfg,
                        const TraceSettings& st, const Tokenizer& tok) {
  const bool prompt = st.corruption == Corruption::Prompt, answer = st.metric == Metric::LogitDiff;
  if (!prompt && !answer) return;
  const Fact* f = nullptr;
  for (const Fact& x : data.facts)
    if (x.id == id) f = &x;
  if (!f) return;
  if (cfg.counterfactual == "field") {
    if (prompt && f->counterfactual.empty())
      throw Error("fact " + id + ": corruption prompt needs its 'counterfactual' field (or counterfactual: same-relation)");
    if (answer && f->counterfactual_answer.empty())
      throw Error("fact " + id + ": metric logit_diff needs its 'counterfactual_answer' field (or counterfactual: same-relation)");
    if (prompt) a.counterfactual = f->counterfactual;
    if (answer) a.counterfactual_answer = f->counterfactual_answer;
    return;
  }
  if (f->relation_id.empty())
    throw Error("fact " + id + ": counterfactual same-relation needs its 'relation_id' field");
  const size_t T = tok.encode(f->prompt).ids.size(), at = f->prompt.find(f->subject);
  for (const Fact& o : data.facts) {
    if (o.id == id || o.relation_id != f->relation_id || o.attribute == f->attribute) continue;
    const std::string cf = f->prompt.substr(0, at) + o.subject + f->prompt.substr(at + f->subject.size());
    if (tok.encode(cf).ids.size() != T) continue;
    if (prompt) a.counterfactual = cf;
    if (answer) a.counterfactual_answer = o.attribute;
    return;
  }
  throw Error("fact " + id + ": counterfactual same-relation: no other subject of relation " + f->relation_id +
              " with another attribute gives the prompt its " + std::to_string(T) + " tokens");
}

// Expected cost of tracing a fact, for splitting facts across processes:
// the fast engine recomputes, for each restored token t from the subject's
// first on, the tokens t..n-1 above the restored layer, so the work grows
// with the square of the tokens from the subject on.
double expected_cost(const Model& model, const Verdict& v) {
  const Encoding enc = model.tokenizer().encode(v.prompt);
  const double n = static_cast<double>(enc.ids.size());
  double from = n;
  try {
    from = n - static_cast<double>(subject_token_range(enc, v.prompt, v.subject).first);
  } catch (const Error&) {
    // an untraceable fact is refused quickly
  }
  return from * (from + 1) / 2 + n;
}

// The facts of `facts` that share `index` of `parts` gets when they are
// split by expected cost (every process computes the same split).
std::vector<const Verdict*> own_share(const Model& model, const std::vector<const Verdict*>& facts, int parts, int index) {
  std::vector<double> costs;
  for (const Verdict* v : facts) costs.push_back(expected_cost(model, *v));
  const std::vector<int> share = split_by_cost(costs, parts);
  std::vector<const Verdict*> own;
  for (size_t i = 0; i < facts.size(); ++i)
    if (share[i] == index) own.push_back(facts[i]);
  return own;
}

// What a rank reports to rank 0 after its share of the trace stage.
std::string rank_outcome(const RunReport& r, const std::vector<FactError>& errors) {
  json e = json::array();
  for (const auto& x : errors) e.push_back({x.id, x.stage, x.message});
  return json{{"traced", r.facts_traced}, {"written", r.traces_written}, {"refused", r.trace_errors},
              {"interrupted", r.interrupted}, {"errors", e}}
      .dump();
}

}  // namespace
}  // namespace pipeline

void resolve_noise_from_dataset(TraceSettings& s, const Model& model, const std::string& spec) {
  if (s.noise.std_multiple <= 0) return;
  RunConfig c;
  c.dataset = spec;
  if (spec.empty()) {
    c.dataset = "default";
    for (const auto& p : known_1000_candidates())
      if (fs::exists(p)) c.dataset = "known_1000";
  } else if (spec != "known_1000" && spec != "default" && !fs::exists(spec)) {
    throw NotFound("--noise-subjects: '" + spec + "' not found (a data set file, known_1000 or default)");
  }
  Dataset d;
  try {
    d = load_dataset(c);
  } catch (const NotFound& e) {
    throw NotFound(std::string("--noise-subjects: ") + e.what());
  } catch (const Error& e) {
    throw Error(std::string("--noise-subjects: ") + e.what());
  }
  std::vector<std::string> subjects;
  for (const auto& f : d.facts) subjects.push_back(f.subject);
  if (subjects.empty()) throw Error("--noise-subjects: " + d.source + " holds no subjects to measure the noise on");
  resolve_noise_level(s, model, subjects, d.source);
}

RunReport run_pipeline(RunConfig cfg, const RunOptions& opts) {
  using namespace pipeline;
  clear_stop();
  RunReport rep;
  const ClusterInfo& cl = cluster();
  const bool root = cl.rank == 0;
  const bool ranks = cl.size > 1;  // mpirun: the ranks share one directory
  const bool sharded = opts.shard_count > 1;
  if (opts.shard_count < 1 || opts.shard_index < 0 || opts.shard_index >= opts.shard_count)
    throw Error("--shard " + std::to_string(opts.shard_index) + "/" + std::to_string(opts.shard_count) +
                ": expected i/n with 0 <= i < n");
  if (ranks && sharded)
    throw Error("--shard and mpirun both split the facts: use one of them");
  const std::string shard = sharded ? std::to_string(opts.shard_index) + "/" + std::to_string(opts.shard_count) : "";
  // Tracing needs the verdicts: the filter stage comes with it (stored
  // verdicts are reused, so this costs nothing on a rerun).
  if (has_stage(cfg, "trace") && !has_stage(cfg, "filter")) cfg.stages.insert(cfg.stages.begin(), "filter");
  const bool model_stages = has_stage(cfg, "filter") || has_stage(cfg, "trace");
  // A shard holds part of the facts: `knowtrace merge` summarizes them all.
  const bool summary_stages = (has_stage(cfg, "aggregate") || has_stage(cfg, "plot")) && !sharded;
  check_paths(cfg);
  if (root)
    for (const auto& n : cfg.notes) note(rep, n);
  std::string dir = results_dir(cfg);
  if (sharded && cfg.results.empty())
    dir += "-shard-" + std::to_string(opts.shard_index) + "-of-" + std::to_string(opts.shard_count);
  rep.dir = dir;

  if (!model_stages) {
    if (sharded) throw Error("--shard applies to the filter and trace stages; use knowtrace merge to aggregate shards");
    if (!root) return rep;
    const json j = read_run_json(dir);
    rep.noise_level = j.value("noise_level", 0.0);
    aggregate_stage(cfg, dir, j["fingerprint"].dump(), has_stage(cfg, "plot"), opts, rep);
    return rep;
  }

  // ---- everything checked before any work.
  if (cfg.dataset == "known_1000" && opts.download_data && root) {
    bool have = false;
    for (const auto& p : known_1000_candidates()) have = have || fs::exists(p);
    if (!have) download_known_1000();
  }
  cluster_barrier();
  const Dataset data = load_dataset(cfg);
  const std::vector<Fact> facts = select_facts(data, cfg);
  rep.facts = static_cast<int64_t>(facts.size());
  rep.data_errors = static_cast<int64_t>(data.errors.size());
  LoadOptions lo;
  lo.dtype = parse_dtype(cfg.dtype);
  // mpirun on a node with GPUs: each rank takes the GPU of its local rank.
  if (ranks && cfg.device == "cuda") {
    const int gpus = at::detail::getCUDAHooks().getNumGPUs();
    if (gpus > 0) cfg.device = "cuda:" + std::to_string(cl.local_rank % gpus);
  }
  lo.device = parse_device(cfg.device);
  auto model = Model::load(cfg.model, lo);
  const ModelConfig& mc = model->config();
  check_site_names(cfg, mc);
  if (cfg.window > mc.n_layers) {
    // ROME clips a window to the layers: so does knowtrace, and says so
    // when the config asked for it (the default 10 is clipped silently).
    const bool given = std::any_of(cfg.locations.begin(), cfg.locations.end(), [](const auto& l) { return l.first == "window"; });
    if (given)
      note(rep, cfg.where("window") + ": key 'window': " + std::to_string(cfg.window) + " is more than the model's " +
                  std::to_string(mc.n_layers) + " layers: using " + std::to_string(mc.n_layers));
    cfg.window = mc.n_layers;
  }
  const TraceSettings st = make_settings(cfg, *model, data);
  rep.noise_level = st.noise.level;
  const std::string fp = trace_fingerprint(*model, st);
  const std::string errors_path = (fs::path(dir) / "errors.jsonl").string();
  const std::string filter_path = (fs::path(dir) / "filter.jsonl").string();
  const std::string traces = (fs::path(dir) / "traces").string();
  std::vector<FactError> errors = data.errors;
  InterruptGuard sigint;

  // ---- filter (rank 0): verdicts computed once and stored; reruns reuse them.
  std::vector<Verdict> verdicts;
  std::string filter_status = "ok";
  if (root) {
    check_run_dir(dir, fp, shard, rep);
    fs::create_directories(traces);
    // Files a killed process left half-written: never read, removed here
    // (no other process writes yet: the other ranks wait below).
    remove_stale_temporaries(dir);
    remove_stale_temporaries(traces);
    std::fprintf(stderr, "run: %s -> %s%s\n  model %s (%s, %lld layers), %s, %s, %s engine\n  %zu facts from %s (%zu records skipped: errors.jsonl), noise %s = %.6g\n",
                 cfg.config_path.empty() ? "(config)" : cfg.config_path.c_str(), dir.c_str(),
                 ranks ? (", " + std::to_string(cl.size) + " MPI ranks").c_str() : sharded ? (", shard " + shard).c_str() : "",
                 cfg.model.c_str(), mc.model_type.c_str(), (long long)mc.n_layers, cfg.dtype.c_str(), cfg.device.c_str(),
                 cfg.engine.c_str(), facts.size(), data.source.c_str(), data.errors.size(), cfg.noise.c_str(), st.noise.level);
    write_run_json(dir, cfg, fp, st, data, *model, rep, "running", shard);
    write_errors(errors_path, errors);

    std::vector<Verdict> stored;
    try {
      stored = read_verdicts(filter_path);
    } catch (const Error& e) {
      note(rep, std::string(e.what()) + "; computing the filter again");
    }
    std::map<std::string, const Verdict*> stored_by_id;
    for (const auto& v : stored) stored_by_id[v.id] = &v;
    std::vector<Fact> need;
    for (const auto& f : facts) {
      auto it = stored_by_id.find(f.id);
      if (it != stored_by_id.end() && it->second->same_fact(f)) ++rep.filter_reused;
      else need.push_back(f);
    }
    // Fresh verdicts plus the stored ones still valid, in the data set's order.
    auto with_stored = [&](const std::vector<Verdict>& fresh) {
      std::map<std::string, const Verdict*> now;
      for (const auto& v : fresh) now[v.id] = &v;
      std::vector<Verdict> all;
      for (const auto& f : data.facts) {
        if (auto c = now.find(f.id); c != now.end()) all.push_back(*c->second);
        else if (auto s = stored_by_id.find(f.id); s != stored_by_id.end() && s->second->same_fact(f)) all.push_back(*s->second);
      }
      return all;
    };
    std::vector<Verdict> computed;
    if (!need.empty()) {
      Progress progress("filter", static_cast<int64_t>(need.size()), "facts", opts.progress);
      const size_t n_errors = errors.size();
      computed = compute_verdicts(*model, need, progress, errors,
                                  [&](const std::vector<Verdict>& fresh) { write_verdicts(filter_path, with_stored(fresh)); });
      if (stop_requested()) rep.interrupted = true;
      else progress.finish();
      rep.filter_computed = static_cast<int64_t>(computed.size());
      rep.filter_errors = static_cast<int64_t>(errors.size() - n_errors);
      if (errors.size() > n_errors) write_errors(errors_path, errors);
    }
    verdicts = with_stored(computed);
    if (!computed.empty() || verdicts.size() != stored.size() || !fs::exists(filter_path + ".crc32"))
      write_verdicts(filter_path, verdicts);
    if (rep.interrupted) filter_status = "interrupted";
  }
  // The other ranks wait for the verdicts and the filter's errors.
  filter_status = cluster_broadcast(filter_status);
  if (!root) {
    rep.interrupted = filter_status != "ok";
    if (!rep.interrupted) verdicts = read_verdicts(filter_path);
  }
  const std::vector<Verdict> kept = kept_facts(verdicts, cfg);
  rep.kept = static_cast<int64_t>(kept.size());
  if (!rep.interrupted && root) {
    std::set<std::string> sel;
    for (const auto& f : facts) sel.insert(f.id);
    int64_t n_rome = 0, n_first = 0;
    for (const auto& v : verdicts)
      if (sel.count(v.id)) n_rome += v.rome, n_first += v.first_token;
    std::fprintf(stderr, "filter: %lld facts: %lld correct by rule rome, %lld by rule first-token; tracing %lld (filter %s%s)\n",
                 (long long)facts.size(), (long long)n_rome, (long long)n_first, (long long)kept.size(),
                 cfg.filter.c_str(), cfg.limit > 0 ? (", limit " + std::to_string(cfg.limit)).c_str() : "");
  }

  // ---- trace: every kept fact, every mediator, stored as it finishes.
  std::vector<FactError> trace_errors;
  if (rep.interrupted) {
    if (root) {
      std::fprintf(stderr, "\n");
      note(rep, "interrupted: " + std::to_string(rep.filter_computed) + " filter verdicts stored; rerun the same command to resume");
    }
  } else if (has_stage(cfg, "trace")) {
    // A shard owns a fixed part of the kept facts (its directory is its own).
    std::vector<const Verdict*> mine;
    for (const auto& v : kept) mine.push_back(&v);
    if (sharded) mine = own_share(*model, mine, opts.shard_count, opts.shard_index);
    // A fact is to do when any of its files is missing or unusable.
    std::vector<const Verdict*> todo;
    for (const Verdict* v : mine) {
      bool complete = true;
      for (Mediator m : st.mediators) {
        const std::string path = trace_file_name(traces, v->id, m);
        if (!fs::exists(path)) {
          complete = false;
          continue;
        }
        try {
          const TraceRecord r = read_trace_file(path, v->id, fp);
          if (r.prompt != v->prompt || r.subject != v->subject) throw Error(path + ": stored for another prompt or subject");
        } catch (const std::exception& e) {
          if (root) {
            std::string msg = e.what();
            note(rep, msg.substr(0, msg.find('\n')) + "; recomputing");
          }
          ++rep.traces_invalid;
          complete = false;
        }
      }
      if (complete) ++rep.facts_reused;
      else todo.push_back(v);
    }
    if (ranks) {
      // Every rank has looked at the stored files before any writes; the
      // facts still to do are split by expected cost (same split everywhere).
      cluster_barrier();
      todo = own_share(*model, todo, cl.size, cl.rank);
    }
    if (rep.facts_reused > 0 && root)
      std::fprintf(stderr, "trace: %lld facts already stored, %zu to trace%s\n", (long long)rep.facts_reused, todo.size(),
                   ranks ? " on rank 0" : "");
    // The sweep bound the fast engine will use, said once (for the first fact's length).
    if (root && !todo.empty() && parse_engine(cfg.engine) == Engine::Fast && cfg.max_batch_tokens == kAutoBatchTokens) {
      const int64_t T = static_cast<int64_t>(model->tokenizer().encode(todo.front()->prompt).ids.size());
      const BatchSize bs = auto_batch_size(*model, T, st.corruption == Corruption::Prompt ? 1 : st.samples);
      std::fprintf(stderr, "trace: sweeps of up to %lld live tokens for a %lld-token prompt (%s)\n",
                   (long long)bs.tokens, (long long)T, bs.how.c_str());
    }
    Progress progress("trace", static_cast<int64_t>(todo.size()), "facts", opts.progress && root);
    for (const Verdict* vp : todo) {
      if (stop_requested()) {
        rep.interrupted = true;
        break;
      }
      const Verdict& v = *vp;
      // A fact is always traced whole, even when only one of its files is
      // missing: the fast engine batches the mediators together, and the
      // same batch gives the same bits (a resumed run equals an unbroken one).
      const TraceSettings& s = st;
      FactTrace f;
      FactAnswer answer;
      try {
        validate_fact(*model, v.prompt, v.subject, s);
        answer = filter_answer(v, cfg.filter);
        add_counterfactual(answer, v.id, data, cfg, st, model->tokenizer());
        // The fast engine runs a fact in one sweep: a SIGINT lets it finish;
        // the reference engine stops between restorations.
        EngineOptions eo;
        eo.engine = parse_engine(cfg.engine);
        eo.max_batch_tokens = cfg.max_batch_tokens;
        eo.progress = [&](int64_t done, int64_t total) {
          if (stop_requested()) throw Interrupted{};
          progress.partial(static_cast<double>(done) / static_cast<double>(std::max<int64_t>(total, 1)));
        };
        f = trace_fact(*model, v.prompt, v.subject, s, answer, eo);
      } catch (const Interrupted&) {
        rep.interrupted = true;
        break;
      } catch (const Error& e) {
        trace_errors.push_back({v.id, "trace", e.what()});
        if (!ranks) {
          errors.push_back(trace_errors.back());
          write_errors(errors_path, errors);
        }
        ++rep.trace_errors;
        progress.tick();
        continue;
      }
      for (const auto& m : f.traces) {
        write_trace_npz(trace_file_name(traces, v.id, m.mediator), f, m, s, fp);
        ++rep.traces_written;
      }
      if (cfg.save_states)  // clean and corrupted values of every site, float16
        write_states_npz((fs::path(dir) / "states" / (v.id + "_states.npz")).string(), f,
                         record_fact_states(*model, v.prompt, v.subject, s, answer));
      ++rep.facts_traced;
      progress.tick();
      crash_point("trace");
      if (opts.after_fact) opts.after_fact(v.id);
    }
    if (!rep.interrupted) progress.finish();
  }

  // ---- rank 0 collects what the ranks did.
  if (ranks) {
    const std::vector<std::string> outcomes = cluster_gather(rank_outcome(rep, trace_errors));
    if (root) {
      rep.facts_traced = rep.traces_written = rep.trace_errors = 0;
      for (const auto& text : outcomes) {
        const json o = json::parse(text);
        rep.facts_traced += o["traced"].get<int64_t>();
        rep.traces_written += o["written"].get<int64_t>();
        rep.trace_errors += o["refused"].get<int64_t>();
        rep.interrupted = rep.interrupted || o["interrupted"].get<bool>();
        for (const auto& e : o["errors"]) errors.push_back({e[0], e[1], e[2]});
      }
      if (!trace_errors.empty() || rep.trace_errors > 0) write_errors(errors_path, errors);
    }
  }
  if (!root) return rep;
  if (rep.interrupted && has_stage(cfg, "trace") && filter_status == "ok") {
    std::fprintf(stderr, "\n");
    note(rep, "interrupted: " + std::to_string(rep.facts_traced) + " facts traced in this run, " +
                  std::to_string(rep.facts_reused + rep.facts_traced) + " of " + std::to_string(rep.kept) +
                  " stored; rerun the same command to resume");
  }
  write_run_json(dir, cfg, fp, st, data, *model, rep, rep.interrupted ? "interrupted" : "complete", shard);
  model.reset();
  if (sharded && !rep.interrupted)
    std::fprintf(stderr, "shard %s done: combine the shards with knowtrace merge --into DIR SHARD_DIR...\n", shard.c_str());
  if (rep.interrupted || !summary_stages) return rep;
  aggregate_stage(cfg, dir, fp, has_stage(cfg, "plot"), opts, rep);
  return rep;
}

}  // namespace kt
