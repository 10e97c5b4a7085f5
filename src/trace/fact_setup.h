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

// One traced cell (mediator, token t, layer l), the one description both
// engines read: the corrupted run it starts from, the sites that take their
// clean value at token t, and the sites frozen at token t to the value the
// fact's corrupted run (first noise draw) gave them. The reference engine
// turns it into hooks; the fast engine derives its start layer and its
// substitutions from it.
struct CellPlan {
  Mediator mediator = Mediator::Hidden;
  int64_t t = 0, l = 0;
  int base = 0;               // 0: the corrupted run; 1: the second draw's (ROME's notebook severing)
  std::vector<Site> clean;    // at token t
  std::vector<Site> frozen;   // at token t, from run 0
};
CellPlan plan_cell(Mediator m, int64_t t, int64_t l, const TraceSettings& s, int64_t L);

struct PreparedFact {
  FactTrace trace;                 // ids, tokens, subject range, answer, high score filled
  std::vector<at::Tensor> clean;   // [1, T, d] per site_index
  at::Tensor ids_samples;          // [S, T] int64
  at::Tensor noise;                // [S, e-b, d] float64 on the model's device
  at::Tensor noise_second;         // the second draw (Severing::RomeNotebook only)
};

PreparedFact prepare_fact(const Model& model, const std::string& prompt, const std::string& subject,
                          const TraceSettings& st, const FactAnswer& answer);

// Adds the fact's noise to (or replaces) the subject's embeddings of x
// [S, T, d] in place of x (second: the second draw).
void corrupt_embeddings(at::Tensor& x, const PreparedFact& p, const TraceSettings& st, bool second = false);

// Mean over samples of p(answer) from last-position logits [S, vocab].
double answer_probability(const at::Tensor& last_logits, int32_t answer_id);

}  // namespace kt::detail
