// What both engines do before their restorations: tokenize, find the
// subject, run the clean pass (every site recorded), pick the answer, and
// corrupt embeddings with the fact's noise. Private to src/trace.
#pragma once
#include <ATen/ATen.h>

#include <optional>
#include <string>
#include <vector>

#include "model/model.h"
#include "trace/tracer.h"

namespace kt::detail {

// Index of a site in the flat per-site vectors: embed, then per kind x layer.
inline int64_t site_index(const Site& s, int64_t L) {
  return s.kind == SiteKind::Embed ? 0 : 1 + static_cast<int64_t>(s.kind) * L + s.layer;
}

// The runs a cell can start from.
enum Base : int { kCorrupted = 0, kSecondDraw = 1 /* ROME's notebook severing */, kClean = 2 /* knockouts */ };

// One traced cell (mediator, token t, layer l), the one description both
// engines read: the run it starts from, the sites that take their clean
// value at token t, the sites frozen at token t to the value the fact's
// corrupted run (first noise draw) gave them, and the attention edges
// removed: at every layer of `blocked_layers`, the query at token t no
// longer sees the keys at `blocked_keys`. The reference engine turns it
// into hooks and an attention mask; the fast engine derives its start
// layer, its substitutions and its masks from it.
struct CellPlan {
  Mediator mediator = Mediator::Hidden;
  int64_t t = 0, l = 0;
  int base = kCorrupted;
  std::vector<Site> clean;    // at token t
  std::vector<Site> frozen;   // at token t, from run 0
  std::vector<int64_t> blocked_layers, blocked_keys;
};
// `f`: the fact's subject range and prompt tokens (knockout sets).
CellPlan plan_cell(Mediator m, int64_t t, int64_t l, const TraceSettings& s, int64_t L, const FactTrace& f);
// The cells a mediator traces: (t, l) for t in [first, T) (restorations;
// cells before `first` equal the base run), (T - 1, l) for knockouts.
std::vector<std::pair<int64_t, int64_t>> mediator_cells(Mediator m, int64_t first, int64_t T, int64_t L);

// ROME's window of W layers around l: [l - W//2, l + ceil(W/2)) clipped to [0, L).
std::pair<int64_t, int64_t> layer_window(int64_t l, int64_t W, int64_t L);

// The metric of a cell from the logits at the scored positions.
struct Scorer {
  Metric metric = Metric::Prob;
  std::vector<int64_t> targets;  // target token at each scored position
  int64_t counter = -1;          // logit_diff's counterfactual token
  at::Tensor clean_logp;         // [n, vocab] float64 log-probabilities of the clean run (kl)
  // logits [rows, n, vocab] (float32) -> [rows] float64 metric values.
  at::Tensor rows(const at::Tensor& logits) const;
  // The target's probability (knockouts score its relative change).
  at::Tensor prob_rows(const at::Tensor& logits) const;
  bool needs_float64() const { return metric != Metric::Prob; }
};

// T = the prompt's tokens; the model runs on T + n - 1 tokens when the
// target is the n-token answer (teacher-forced), scored at T-1 .. T+n-2.
struct PreparedFact {
  FactTrace trace;                 // ids, tokens, subject range, answer, high score filled
  std::vector<at::Tensor> clean;   // [1, T_run, d] per site_index
  int64_t samples = 1;             // rows of the corrupted run: S (noise) or 1 (prompt)
  int64_t first_changed = 0;       // the first token the corruption changes
  int64_t n_scored = 1;            // scored positions: the last n of the run
  at::Tensor ids_clean;            // [1, T_run] int64
  at::Tensor ids_samples;          // [samples, T_run] int64
  at::Tensor noise;                // [S, e-b, d] float64 on the model's device
  at::Tensor noise_second;         // the second draw (Severing::RomeNotebook only)
  at::Tensor counter_embeddings;   // Corruption::Prompt: [1, T_run, d] of the counterfactual
  Scorer scorer;
  double clean_prob = 0;           // the target's probability on the clean run
  // A knockout's score: the relative change of the target's probability.
  double knockout_change(double p_knocked) const { return (p_knocked - clean_prob) / clean_prob; }
  int64_t run_tokens() const { return ids_clean.size(1); }
  int64_t prompt_tokens() const { return static_cast<int64_t>(trace.input_ids.size()); }
};

PreparedFact prepare_fact(const Model& model, const std::string& prompt, const std::string& subject,
                          const TraceSettings& st, const FactAnswer& answer);

// The corrupted run's embeddings: the fact's noise added to (or replacing)
// the subject's embeddings of x [S, T, d] (second: the second draw), or the
// counterfactual prompt's embeddings.
void corrupt_embeddings(at::Tensor& x, const PreparedFact& p, const TraceSettings& st, bool second = false);

// Fills the trace's low and high scores from the corrupted run's logits at
// the scored positions ([rows, n, vocab]) and returns its mean metric.
double mean_metric(const PreparedFact& p, const at::Tensor& logits);

// After every cell is scored: normalised fractions (TraceSettings::normalise)
// and each mediator's low / high scores.
void finish_trace(PreparedFact& p, const TraceSettings& st);

}  // namespace kt::detail
