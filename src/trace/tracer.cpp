#include "trace/tracer.h"

#include <c10/core/InferenceMode.h>

#include <algorithm>

#include "model/model.h"
#include "trace/fact_setup.h"
#include "trace/subject.h"
#include "util/error.h"
#include "util/memory.h"
#include "util/names.h"

namespace kt {

// util/names.h's mediator_names() is the one table: Mediator's values in order.
std::string mediator_name(Mediator m) { return mediator_names().at(static_cast<size_t>(m)); }

std::vector<Mediator> all_mediators() {
  return {Mediator::Hidden, Mediator::HiddenAttnSevered, Mediator::HiddenMlpSevered, Mediator::Mlp, Mediator::Attn};
}

bool is_knockout(Mediator m) {
  return m == Mediator::KnockoutSubject || m == Mediator::KnockoutNonSubject || m == Mediator::KnockoutLast;
}

Mediator parse_mediator(const std::string& name) {
  const auto& names = mediator_names();
  for (size_t i = 0; i < names.size(); ++i)
    if (names[i] == name) return static_cast<Mediator>(i);
  std::string valid;
  for (const auto& n : mediator_names()) valid += (valid.empty() ? "" : ", ") + n;
  throw Error("unknown mediator '" + name + "' (valid: " + valid + ")");
}

namespace {

// One closed set of names per enum: name -> value, in order.
template <class E>
E parse_named(const std::string& what, const std::string& s, const std::vector<std::pair<const char*, E>>& table) {
  std::string valid;
  for (const auto& [n, e] : table) {
    if (s == n) return e;
    valid += (valid.empty() ? "" : ", ") + std::string(n);
  }
  throw Error(what + " '" + s + "' is not one of " + valid);
}
template <class E>
std::string named(E e, const std::vector<std::pair<const char*, E>>& table) {
  for (const auto& [n, v] : table)
    if (v == e) return n;
  return "";
}
const std::vector<std::pair<const char*, Corruption>> kCorruptions = {{"noise", Corruption::Noise},
                                                                      {"prompt", Corruption::Prompt}};
const std::vector<std::pair<const char*, Target>> kTargets = {{"first-token", Target::FirstToken},
                                                              {"answer", Target::Answer}};
const std::vector<std::pair<const char*, Metric>> kMetrics = {
    {"prob", Metric::Prob}, {"logprob", Metric::LogProb}, {"logit_diff", Metric::LogitDiff}, {"kl", Metric::Kl}};

}  // namespace

std::string corruption_name(Corruption c) { return named(c, kCorruptions); }
std::string target_name(Target t) { return named(t, kTargets); }
std::string metric_name(Metric m) { return named(m, kMetrics); }
Corruption parse_corruption(const std::string& s) { return parse_named("corruption", s, kCorruptions); }
Target parse_target(const std::string& s) { return parse_named("target", s, kTargets); }
Metric parse_metric(const std::string& s) { return parse_named("metric", s, kMetrics); }

std::string convention_name(HiddenConvention c) {
  return c == HiddenConvention::ResidPost ? "resid_post" : "resid_pre";
}

HiddenConvention parse_convention(const std::string& name) {
  if (name == "resid_post") return HiddenConvention::ResidPost;
  if (name == "resid_pre") return HiddenConvention::ResidPre;
  throw Error("hidden-state convention '" + name + "' is not one of resid_post (ROME), resid_pre");
}

void validate_fact(const Model& model, const std::string& prompt, const std::string& subject,
                   const TraceSettings& s) {
  if (prompt.empty()) throw Error("prompt is empty");
  if (subject.empty()) throw Error("subject is empty");
  if (prompt.find(subject) == std::string::npos)
    throw Error("subject '" + subject + "' does not occur in prompt '" + prompt + "'");
  if (subject == prompt)
    throw Error("subject '" + subject + "' is the whole prompt: nothing follows it to predict from");
  if (s.samples < 1) throw Error("samples must be at least 1 (got " + std::to_string(s.samples) + ")");
  const int64_t L = model.config().n_layers;
  if (s.window < 1 || s.window > L)
    throw Error("window " + std::to_string(s.window) + " must be between 1 and the model's " + std::to_string(L) +
                " layers");
  if (s.corruption == Corruption::Noise && s.noise.std_multiple > 0) throw Error("noise '" + s.noise.text + "' must be resolved to a number before tracing");
  const int64_t T = static_cast<int64_t>(model.tokenizer().encode(prompt).ids.size());
  if (T > model.config().max_positions)
    throw Error("prompt has " + std::to_string(T) + " tokens, more than the model's context of " +
                std::to_string(model.config().max_positions));
}

namespace detail {

std::pair<int64_t, int64_t> layer_window(int64_t l, int64_t W, int64_t L) {
  return {std::max<int64_t>(0, l - W / 2), std::min<int64_t>(L, l + (W + 1) / 2)};
}

CellPlan plan_cell(Mediator m, int64_t t, int64_t l, const TraceSettings& s, int64_t L, const FactTrace& f) {
  CellPlan p;
  p.mediator = m, p.t = t, p.l = l;
  const SiteKind hidden = s.convention == HiddenConvention::ResidPost ? SiteKind::ResidPost : SiteKind::ResidPre;
  switch (m) {
    case Mediator::Hidden: p.clean.push_back({hidden, l}); break;
    case Mediator::HiddenAttnSevered:
    case Mediator::HiddenMlpSevered: {
      p.clean.push_back({hidden, l});
      const SiteKind frozen = m == Mediator::HiddenAttnSevered ? SiteKind::Attn : SiteKind::Mlp;
      for (int64_t k = 0; k < L; ++k) p.frozen.push_back({frozen, k});
      if (s.notebook_severing(m)) p.base = kSecondDraw;
      break;
    }
    case Mediator::Mlp:
    case Mediator::Attn: {
      const auto [lo, hi] = layer_window(l, s.window, L);
      for (int64_t k = lo; k < hi; ++k) p.clean.push_back({m == Mediator::Mlp ? SiteKind::Mlp : SiteKind::Attn, k});
      break;
    }
    case Mediator::KnockoutSubject:
    case Mediator::KnockoutNonSubject:
    case Mediator::KnockoutLast: {
      p.base = kClean;
      const auto [lo, hi] = layer_window(l, s.knockout_window, L);
      for (int64_t k = lo; k < hi; ++k) p.blocked_layers.push_back(k);
      const int64_t T = static_cast<int64_t>(f.input_ids.size()), b = f.subject_begin, e = f.subject_end;
      for (int64_t j = 0; j < T; ++j) {
        const bool subject = j >= b && j < e;
        if (m == Mediator::KnockoutSubject ? subject : m == Mediator::KnockoutLast ? j == T - 1 : !subject && j < T - 1)
          p.blocked_keys.push_back(j);
      }
      break;
    }
  }
  return p;
}

std::vector<std::pair<int64_t, int64_t>> mediator_cells(Mediator m, int64_t first, int64_t T, int64_t L) {
  std::vector<std::pair<int64_t, int64_t>> cells;
  for (int64_t t = is_knockout(m) ? T - 1 : first; t < T; ++t)
    for (int64_t l = 0; l < L; ++l) cells.emplace_back(t, l);
  return cells;
}

at::Tensor Scorer::prob_rows(const at::Tensor& logits) const {
  const int64_t n = static_cast<int64_t>(targets.size());
  if (n == 1) return at::softmax(logits.select(1, 0), -1).select(1, targets[0]).to(at::kDouble);
  at::Tensor lp = at::log_softmax(logits.to(at::kDouble), -1);
  at::Tensor sum = at::zeros({logits.size(0)}, lp.options());
  for (int64_t i = 0; i < n; ++i) sum += lp.select(1, i).select(1, targets[static_cast<size_t>(i)]);
  return sum.exp();
}

at::Tensor Scorer::rows(const at::Tensor& logits) const {
  if (metric == Metric::Prob) return prob_rows(logits);
  const int64_t n = static_cast<int64_t>(targets.size());
  if (metric == Metric::LogitDiff) {
    at::Tensor first = logits.select(1, 0).to(at::kDouble);
    return first.select(1, targets[0]) - first.select(1, counter);
  }
  at::Tensor lp = at::log_softmax(logits.to(at::kDouble), -1);  // [rows, n, vocab]
  if (metric == Metric::LogProb) {
    at::Tensor sum = at::zeros({logits.size(0)}, lp.options());
    for (int64_t i = 0; i < n; ++i) sum += lp.select(1, i).select(1, targets[static_cast<size_t>(i)]);
    return sum / static_cast<double>(n);
  }
  // kl: sum_v p_clean (log p_clean - log p_row), mean over the positions.
  at::Tensor c = clean_logp.to(lp.device()).unsqueeze(0);
  return (c.exp() * (c - lp)).sum(-1).mean(1);
}

PreparedFact prepare_fact(const Model& model, const std::string& prompt, const std::string& subject,
                          const TraceSettings& st, const FactAnswer& answer) {
  validate_fact(model, prompt, subject, st);
  keep_freed_memory();
  const Tokenizer& tok = model.tokenizer();
  const int64_t L = model.config().n_layers;
  PreparedFact p;
  FactTrace& f = p.trace;
  f.prompt = prompt;
  f.subject = subject;
  Encoding enc = tok.encode(prompt);
  f.input_ids = enc.ids;
  for (int32_t id : enc.ids) f.input_tokens.push_back(tok.decode({id}));
  std::tie(f.subject_begin, f.subject_end) = subject_token_range(enc, prompt, subject);
  const int64_t T = static_cast<int64_t>(enc.ids.size());
  auto to_ids = [](const std::vector<int32_t>& v) {
    return at::tensor(std::vector<int64_t>(v.begin(), v.end()), at::kLong).unsqueeze(0);
  };
  // The answer's tokens, teacher-forced after the prompt (Target::Answer).
  std::vector<int32_t> answer_tokens, run_ids = enc.ids;
  if (st.target == Target::Answer) {
    if (!answer.expect || answer.expect->empty())
      throw Error("target answer needs the fact's attribute (the answer's text); none was given");
    answer_tokens = tok.encode(" " + *answer.expect, /*add_special=*/false).ids;
    if (answer_tokens.empty()) throw Error("attribute '" + *answer.expect + "' encodes to no tokens");
    run_ids.insert(run_ids.end(), answer_tokens.begin(), answer_tokens.end() - 1);
    if (static_cast<int64_t>(run_ids.size()) > model.config().max_positions)
      throw Error("prompt and answer have " + std::to_string(run_ids.size()) + " tokens, more than the model's context of " +
                  std::to_string(model.config().max_positions));
  }
  p.n_scored = st.target == Target::Answer ? static_cast<int64_t>(answer_tokens.size()) : 1;
  p.ids_clean = to_ids(run_ids);
  const int64_t T_run = p.ids_clean.size(1);

  p.clean.resize(1 + 5 * L);
  SiteHook record = [&](const Site& s, at::Tensor& v) { p.clean[site_index(s, L)] = v; };
  at::Tensor logits = model.forward_tail(p.ids_clean, p.n_scored, record);  // [1, n, vocab]
  at::Tensor probs = at::softmax(logits[0][0], -1);
  f.answer_id = answer.answer_id ? *answer.answer_id : static_cast<int32_t>(probs.argmax().item<int64_t>());
  if (f.answer_id < 0 || f.answer_id >= probs.size(0))
    throw Error("answer id " + std::to_string(f.answer_id) + " is outside the vocabulary of " +
                std::to_string(probs.size(0)) + " tokens");
  f.answer = tok.decode({f.answer_id});
  f.target_ids = st.target == Target::Answer ? answer_tokens : std::vector<int32_t>{f.answer_id};
  if (answer.verdict) {
    f.correct_prediction = *answer.verdict;
    f.correct_rule = answer.rule;
  } else if (answer.expect) {
    std::string a = f.answer;
    a.erase(0, a.find_first_not_of(" \t\n\r\f\v"));
    a.erase(a.find_last_not_of(" \t\n\r\f\v") + 1);
    f.correct_prediction = a == *answer.expect;
    f.correct_rule = "rome";
  }

  // The scorer: targets, the counterfactual answer, the clean distribution.
  Scorer& sc = p.scorer;
  sc.metric = st.metric;
  sc.targets.assign(f.target_ids.begin(), f.target_ids.end());
  if (st.metric == Metric::LogitDiff) {
    if (!answer.counterfactual_answer || answer.counterfactual_answer->empty())
      throw Error("metric logit_diff needs a counterfactual answer (field counterfactual_answer); none was given");
    const auto c = tok.encode(" " + *answer.counterfactual_answer, /*add_special=*/false).ids;
    if (c.empty()) throw Error("counterfactual answer '" + *answer.counterfactual_answer + "' encodes to no tokens");
    sc.counter = c[0];
    f.counter_id = c[0];
  }
  if (st.metric == Metric::Kl) sc.clean_logp = at::log_softmax(logits[0].to(at::kDouble), -1);
  p.clean_prob = sc.prob_rows(logits).item<double>();
  f.high_score = sc.rows(logits).item<double>();

  const int64_t n = f.subject_end - f.subject_begin, d = model.config().hidden;
  if (st.corruption == Corruption::Prompt) {
    if (!answer.counterfactual || answer.counterfactual->empty())
      throw Error("corruption prompt needs a counterfactual prompt (field counterfactual); none was given");
    const auto cf = tok.encode(*answer.counterfactual).ids;
    if (static_cast<int64_t>(cf.size()) != T)
      throw Error("counterfactual '" + *answer.counterfactual + "' has " + std::to_string(cf.size()) +
                  " tokens; the prompt has " + std::to_string(T) + " (they must be equal)");
    std::vector<int32_t> cf_run = cf;
    cf_run.insert(cf_run.end(), run_ids.begin() + T, run_ids.end());
    p.counter_embeddings = model.embed(to_ids(cf_run));
    p.first_changed = T;
    for (int64_t j = T - 1; j >= 0; --j)
      if (cf[static_cast<size_t>(j)] != enc.ids[static_cast<size_t>(j)]) p.first_changed = j;
    if (p.first_changed == T) throw Error("counterfactual '" + *answer.counterfactual + "' has the prompt's tokens");
    f.counterfactual = *answer.counterfactual;
    p.samples = 1;
  } else {
    // One noise draw per fact, as ROME reseeds per trace call.
    p.samples = st.samples;
    p.first_changed = f.subject_begin;
    p.noise = draw_noise(st.noise, st.samples, n, d).to(model.device());
    if (std::any_of(st.mediators.begin(), st.mediators.end(), [&](Mediator m) { return st.notebook_severing(m); }))
      p.noise_second = draw_noise(st.noise, st.samples, n, d, 1).to(model.device());
  }
  check_knockout_window(st, L);
  p.ids_samples = p.ids_clean.expand({p.samples, T_run}).contiguous();
  return p;
}

void corrupt_embeddings(at::Tensor& x, const PreparedFact& p, const TraceSettings& st, bool second) {
  if (p.counter_embeddings.defined()) {
    x = p.counter_embeddings.expand_as(x).clone();
    return;
  }
  const int64_t b = p.trace.subject_begin, n = p.trace.subject_end - b;
  const at::Tensor& noise = second ? p.noise_second : p.noise;
  at::Tensor out = x.clone();
  at::Tensor span = out.narrow(1, b, n);
  at::Tensor noisy = st.noise.replace ? noise : span.to(at::kDouble) + noise;
  span.copy_(noisy.to(x.scalar_type()));
  x = out;
}

double mean_metric(const PreparedFact& p, const at::Tensor& logits) {
  return p.scorer.rows(logits).mean().item<double>();
}

void finish_trace(PreparedFact& p, const TraceSettings& st) {
  FactTrace& f = p.trace;
  f.raw_low = f.low_score, f.raw_high = f.high_score;
  if (st.normalise) {
    const double span = f.raw_high - f.raw_low;
    if (span == 0)
      throw Error("normalise: the clean and corrupted runs score the same " + metric_name(st.metric) + " (" +
                  std::to_string(f.raw_high) + "): there is no effect to take a fraction of");
    for (MediatorTrace& m : f.traces)
      if (!is_knockout(m.mediator)) m.scores = (m.scores - f.raw_low) / span;
    f.low_score = 0, f.high_score = 1;
  }
  for (MediatorTrace& m : f.traces) {
    if (is_knockout(m.mediator)) {
      m.low_score = 0, m.high_score = p.clean_prob;
    } else {
      m.low_score = f.low_score, m.high_score = f.high_score;
    }
  }
}

}  // namespace detail

using detail::site_index;

FactStates record_fact_states(const Model& model, const std::string& prompt, const std::string& subject,
                              const TraceSettings& st, const FactAnswer& answer) {
  c10::InferenceMode guard;
  detail::PreparedFact p = detail::prepare_fact(model, prompt, subject, st, answer);
  const ModelConfig& cfg = model.config();
  const int64_t L = cfg.n_layers;
  std::vector<at::Tensor> corrupted(1 + 5 * L);
  SiteHook record = [&](const Site& s, at::Tensor& v) {
    if (s.kind == SiteKind::Embed) detail::corrupt_embeddings(v, p, st);
    corrupted[site_index(s, L)] = v;
  };
  model.forward(p.ids_samples, record, true);
  FactStates out;
  for (const Site& s : all_sites(cfg)) {
    out.sites.push_back(site_name(cfg, s));
    out.clean.push_back(p.clean[site_index(s, L)]);
    out.corrupted.push_back(corrupted[site_index(s, L)]);
  }
  return out;
}

FactTrace trace_fact_reference(const Model& model, const std::string& prompt, const std::string& subject,
                               const TraceSettings& st, const FactAnswer& answer,
                               const TraceProgress& progress) {
  c10::InferenceMode guard;
  detail::PreparedFact p = detail::prepare_fact(model, prompt, subject, st, answer);
  FactTrace& f = p.trace;
  const ModelConfig& cfg = model.config();
  const int64_t L = cfg.n_layers, T = p.prompt_tokens(), n = p.n_scored;
  const std::vector<at::Tensor>& clean = p.clean;
  // Logits at the scored positions: [rows, n, vocab].
  auto run = [&](const at::Tensor& ids, const SiteHook& hook, const AttentionBlock& block = nullptr) {
    return model.forward_tail(ids, n, hook, block);
  };

  // Corrupted run: attention and MLP outputs recorded for severing.
  std::vector<at::Tensor> corrupted(1 + 5 * L);
  SiteHook corrupt_and_record = [&](const Site& s, at::Tensor& v) {
    if (s.kind == SiteKind::Embed) detail::corrupt_embeddings(v, p, st);
    corrupted[site_index(s, L)] = v;
  };
  f.low_score = detail::mean_metric(p, run(p.ids_samples, corrupt_and_record));

  int64_t total = 0, done = 0;
  for (Mediator m : st.mediators) total += static_cast<int64_t>(detail::mediator_cells(m, 0, T, L).size());
  for (Mediator m : st.mediators) {
    const bool knockout = is_knockout(m);
    at::Tensor scores = at::zeros({knockout ? 1 : T, L}, at::kDouble);
    auto acc = scores.accessor<double, 2>();
    for (const auto& [t, l] : detail::mediator_cells(m, 0, T, L)) {
      const detail::CellPlan plan = detail::plan_cell(m, t, l, st, L, f);
      std::vector<char> restore(1 + 5 * L, 0), freeze(1 + 5 * L, 0);
      for (const Site& s : plan.clean) restore[site_index(s, L)] = 1;
      for (const Site& s : plan.frozen) freeze[site_index(s, L)] = 1;
      const bool from_clean = plan.base == detail::kClean;
      const int64_t rows = from_clean ? 1 : p.samples;
      SiteHook hook = [&](const Site& s, at::Tensor& v) {
        if (s.kind == SiteKind::Embed) {
          if (!from_clean) detail::corrupt_embeddings(v, p, st, plan.base == detail::kSecondDraw);
          return;
        }
        const int64_t i = site_index(s, L);
        const at::Tensor* src = restore[i] ? &clean[i] : freeze[i] ? &corrupted[i] : nullptr;
        if (!src) return;
        at::Tensor out = v.clone();
        out.select(1, t).copy_((*src).select(1, t).expand({rows, cfg.hidden}));
        v = out;
      };
      // Removed attention edges: query t, keys blocked_keys, at blocked_layers.
      at::Tensor mask;
      AttentionBlock block = nullptr;
      if (!plan.blocked_layers.empty()) {
        mask = at::zeros({p.run_tokens(), p.run_tokens()}, at::kBool);
        for (int64_t k : plan.blocked_keys) mask[t][k] = true;
        mask = mask.to(model.device());
        block = [&](int64_t layer) {
          const auto& bl = plan.blocked_layers;
          return std::find(bl.begin(), bl.end(), layer) != bl.end() ? mask : at::Tensor();
        };
      }
      const at::Tensor lg = run(from_clean ? p.ids_clean : p.ids_samples, hook, block);
      acc[knockout ? 0 : t][l] = knockout ? p.knockout_change(p.scorer.prob_rows(lg).mean().item<double>())
                                          : detail::mean_metric(p, lg);
      if (progress) progress(++done, total);
    }
    f.traces.push_back({m, scores});
  }
  detail::finish_trace(p, st);
  return std::move(p.trace);
}

TraceSettings make_trace_settings(int64_t samples, int64_t window, const std::string& convention,
                                  const std::vector<std::string>& mediators, const std::string& noise, uint32_t seed,
                                  bool replace, const std::string& severing) {
  TraceSettings s;
  s.samples = samples;
  s.window = window;
  s.convention = parse_convention(convention);
  s.mediators.clear();
  for (const auto& m : mediators) s.mediators.push_back(parse_mediator(m));
  s.noise = parse_noise(noise, seed, replace);
  s.severing = parse_severing(severing);
  return s;
}

void set_interventions(TraceSettings& s, const InterventionText& t) {
  s.corruption = parse_corruption(t.corruption);
  s.target = parse_target(t.target);
  s.metric = parse_metric(t.metric);
  s.normalise = t.normalise;
  if (t.knockout_window < 1) throw Error("knockout_window must be at least 1 (got " + std::to_string(t.knockout_window) + ")");
  s.knockout_window = t.knockout_window;
}

void check_knockout_window(const TraceSettings& s, int64_t L, const std::string& name) {
  if (std::any_of(s.mediators.begin(), s.mediators.end(), is_knockout) && s.knockout_window > L)
    throw Error(name + " " + std::to_string(s.knockout_window) + " is larger than the model's " + std::to_string(L) +
                " layers");
}

std::string severing_name(Severing s) { return s == Severing::SameDraw ? "same-draw" : "rome-notebook"; }

Severing parse_severing(const std::string& name) {
  if (name == "same-draw") return Severing::SameDraw;
  if (name == "rome-notebook") return Severing::RomeNotebook;
  throw Error("severing '" + name + "' is not one of same-draw, rome-notebook");
}

void resolve_noise_level(TraceSettings& s, const Model& model, const std::vector<std::string>& subjects,
                         const std::string& source) {
  if (s.noise.std_multiple <= 0) return;
  s.noise.level = s.noise.std_multiple * subject_embedding_std(model, subjects);
  s.noise.std_multiple = 0;
  s.noise.source = (source.empty() ? std::string("given subjects") : source) + ": " + std::to_string(subjects.size()) +
                   (subjects.size() == 1 ? " subject" : " subjects");
}

}  // namespace kt
