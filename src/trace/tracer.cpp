#include "trace/tracer.h"

#include <c10/core/InferenceMode.h>

#include <algorithm>

#include "model/model.h"
#include "trace/fact_setup.h"
#include "trace/subject.h"
#include "util/error.h"

namespace kt {

std::string mediator_name(Mediator m) {
  switch (m) {
    case Mediator::Hidden: return "hidden";
    case Mediator::HiddenAttnSevered: return "hidden_attn_severed";
    case Mediator::HiddenMlpSevered: return "hidden_mlp_severed";
    case Mediator::Mlp: return "mlp";
    case Mediator::Attn: return "attn";
  }
  return "";
}

std::vector<Mediator> all_mediators() {
  return {Mediator::Hidden, Mediator::HiddenAttnSevered, Mediator::HiddenMlpSevered, Mediator::Mlp, Mediator::Attn};
}

Mediator parse_mediator(const std::string& name) {
  for (Mediator m : all_mediators())
    if (mediator_name(m) == name) return m;
  throw Error("unknown mediator '" + name + "' (valid: hidden, hidden_attn_severed, hidden_mlp_severed, mlp, attn)");
}

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
  if (s.noise.std_multiple > 0) throw Error("noise '" + s.noise.text + "' must be resolved to a number before tracing");
  const int64_t T = static_cast<int64_t>(model.tokenizer().encode(prompt).ids.size());
  if (T > model.config().max_positions)
    throw Error("prompt has " + std::to_string(T) + " tokens, more than the model's context of " +
                std::to_string(model.config().max_positions));
}

namespace detail {

CellPlan plan_cell(Mediator m, int64_t t, int64_t l, const TraceSettings& s, int64_t L) {
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
      if (s.notebook_severing(m)) p.base = 1;
      break;
    }
    case Mediator::Mlp:
    case Mediator::Attn: {
      // ROME's window: [l - W//2, l + ceil(W/2)) clipped to the layers.
      const int64_t lo = std::max<int64_t>(0, l - s.window / 2);
      const int64_t hi = std::min<int64_t>(L, l + (s.window + 1) / 2);
      for (int64_t k = lo; k < hi; ++k) p.clean.push_back({m == Mediator::Mlp ? SiteKind::Mlp : SiteKind::Attn, k});
      break;
    }
  }
  return p;
}

PreparedFact prepare_fact(const Model& model, const std::string& prompt, const std::string& subject,
                          const TraceSettings& st, const FactAnswer& answer) {
  validate_fact(model, prompt, subject, st);
  const Tokenizer& tok = model.tokenizer();
  const int64_t L = model.config().n_layers, S = st.samples;
  PreparedFact p;
  FactTrace& f = p.trace;
  f.prompt = prompt;
  f.subject = subject;
  Encoding enc = tok.encode(prompt);
  f.input_ids = enc.ids;
  for (int32_t id : enc.ids) f.input_tokens.push_back(tok.decode({id}));
  std::tie(f.subject_begin, f.subject_end) = subject_token_range(enc, prompt, subject);
  const int64_t T = static_cast<int64_t>(enc.ids.size());
  at::Tensor ids1 = at::tensor(std::vector<int64_t>(enc.ids.begin(), enc.ids.end()), at::kLong).unsqueeze(0);
  p.ids_samples = ids1.expand({S, T}).contiguous();

  p.clean.resize(1 + 5 * L);
  SiteHook record = [&](const Site& s, at::Tensor& v) { p.clean[site_index(s, L)] = v; };
  at::Tensor probs = at::softmax(model.forward(ids1, record, true)[0], -1);
  f.answer_id = answer.answer_id ? *answer.answer_id : static_cast<int32_t>(probs.argmax().item<int64_t>());
  if (f.answer_id < 0 || f.answer_id >= probs.size(0))
    throw Error("answer id " + std::to_string(f.answer_id) + " is outside the vocabulary of " +
                std::to_string(probs.size(0)) + " tokens");
  f.high_score = probs[f.answer_id].item<double>();
  f.answer = tok.decode({f.answer_id});
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
  // One noise draw per fact, as ROME reseeds per trace call.
  const int64_t n = f.subject_end - f.subject_begin, d = model.config().hidden;
  p.noise = draw_noise(st.noise, S, n, d).to(model.device());
  if (std::any_of(st.mediators.begin(), st.mediators.end(), [&](Mediator m) { return st.notebook_severing(m); }))
    p.noise_second = draw_noise(st.noise, S, n, d, 1).to(model.device());
  return p;
}

void corrupt_embeddings(at::Tensor& x, const PreparedFact& p, const TraceSettings& st, bool second) {
  const int64_t b = p.trace.subject_begin, n = p.trace.subject_end - b;
  const at::Tensor& noise = second ? p.noise_second : p.noise;
  at::Tensor out = x.clone();
  at::Tensor span = out.narrow(1, b, n);
  at::Tensor noisy = st.noise.replace ? noise : span.to(at::kDouble) + noise;
  span.copy_(noisy.to(x.scalar_type()));
  x = out;
}

double answer_probability(const at::Tensor& last_logits, int32_t answer_id) {
  return at::softmax(last_logits, -1).select(1, answer_id).mean().item<double>();
}

}  // namespace detail

using detail::site_index;

FactStates record_fact_states(const Model& model, const std::string& prompt, const std::string& subject,
                              const TraceSettings& st) {
  c10::InferenceMode guard;
  detail::PreparedFact p = detail::prepare_fact(model, prompt, subject, st, {});
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
  const int64_t L = cfg.n_layers, S = st.samples, T = static_cast<int64_t>(f.input_ids.size());
  const at::Tensor& idsS = p.ids_samples;
  const std::vector<at::Tensor>& clean = p.clean;
  auto corrupt = [&](at::Tensor& x) { detail::corrupt_embeddings(x, p, st); };
  auto score = [&](const at::Tensor& last) { return detail::answer_probability(last, f.answer_id); };

  // Corrupted run: attention and MLP outputs recorded for severing.
  std::vector<at::Tensor> corrupted(1 + 5 * L);
  SiteHook corrupt_and_record = [&](const Site& s, at::Tensor& v) {
    if (s.kind == SiteKind::Embed) corrupt(v);
    corrupted[site_index(s, L)] = v;
  };
  f.low_score = score(model.forward(idsS, corrupt_and_record, true));

  const int64_t total = static_cast<int64_t>(st.mediators.size()) * T * L;
  int64_t done = 0;
  for (Mediator m : st.mediators) {
    at::Tensor scores = at::zeros({T, L}, at::kDouble);
    auto acc = scores.accessor<double, 2>();
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t l = 0; l < L; ++l) {
        const detail::CellPlan plan = detail::plan_cell(m, t, l, st, L);
        std::vector<char> restore(1 + 5 * L, 0), freeze(1 + 5 * L, 0);
        for (const Site& s : plan.clean) restore[site_index(s, L)] = 1;
        for (const Site& s : plan.frozen) freeze[site_index(s, L)] = 1;
        SiteHook hook = [&](const Site& s, at::Tensor& v) {
          if (s.kind == SiteKind::Embed) return detail::corrupt_embeddings(v, p, st, plan.base == 1);
          const int64_t i = site_index(s, L);
          const at::Tensor* src = restore[i] ? &clean[i] : freeze[i] ? &corrupted[i] : nullptr;
          if (!src) return;
          at::Tensor out = v.clone();
          out.select(1, t).copy_((*src).select(1, t).expand({S, cfg.hidden}));
          v = out;
        };
        acc[t][l] = score(model.forward(idsS, hook, true));
        if (progress) progress(++done, total);
      }
    }
    f.traces.push_back({m, scores});
  }
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
