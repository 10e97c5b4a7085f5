#include "trace/fast_engine.h"

#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <map>
#include <string>

#include "model/device_memory.h"
#include "trace/fact_setup.h"
#include "util/error.h"
#include "util/memory.h"

namespace kt {

namespace {

using detail::site_index;

// What a restoration does to the value at its token in layer k.
enum class Sub : uint8_t { None, Clean, Corrupted };

// A cell's plan (detail::CellPlan) as this engine computes it: starting
// at layer `start` from the residual of run `base`, putting the clean
// residual back at t as the input of block `restore_at` (-1: never),
// substituting attention / MLP outputs at t layer by layer, and removing
// the attention of token t to `blocked_keys` in the layers marked.
struct Restoration {
  size_t mediator_slot;
  Mediator mediator;
  int64_t t, l;
  int64_t start = 0;
  int64_t restore_at = -1;
  // The layer below `start` whose only change is at token t, after its
  // attention (an attention / MLP output substituted there): the other
  // positions keep the base run's values, so the cell's token t is computed
  // alone through it from the base run's attention output (-1: none).
  int64_t token_layer = -1;
  int base = 0;
  bool knockout = false;
  // A cell computed as `parent` (same token and base run) up to its
  // token layer, where the two differ at token t alone: it starts a layer
  // later from the parent's state, token t computed alone through the
  // token layer from the parent's input and attention output there. A
  // severed cell's parent is its hidden cell; a windowed cell's, the one
  // of the layer below whose window starts at the same layer (the bottom
  // layers' windows, clipped at 0). Both run in the same sweep.
  Restoration* parent = nullptr;
  std::vector<Restoration*> children;
  std::vector<Sub> attn_sub, mlp_sub;  // [layers]
  std::vector<char> blocked;           // [layers]
  std::vector<int64_t> blocked_keys;
  double score = 0;
  Sub attn(int64_t k) const { return attn_sub[static_cast<size_t>(k)]; }
  Sub mlp(int64_t k) const { return mlp_sub[static_cast<size_t>(k)]; }
};

// The first layer where a cell's computation leaves its base run: its
// restored residual, its first clean attention / MLP output, or (on the
// second draw's run only) its first frozen value. Frozen values of the
// cell's own base run change nothing below that layer, so they are
// substituted from it on only.
Restoration from_plan(size_t slot, const detail::CellPlan& plan, int64_t L) {
  Restoration r{slot, plan.mediator, plan.t, plan.l};
  r.base = plan.base;
  r.knockout = is_knockout(plan.mediator);
  r.attn_sub.assign(static_cast<size_t>(L), Sub::None);
  r.mlp_sub.assign(static_cast<size_t>(L), Sub::None);
  r.blocked.assign(static_cast<size_t>(L), 0);
  r.blocked_keys = plan.blocked_keys;
  int64_t start = L;
  for (int64_t k : plan.blocked_layers) {
    r.blocked[static_cast<size_t>(k)] = 1;
    start = std::min(start, k);
  }
  for (const Site& s : plan.clean) {
    if (s.kind == SiteKind::ResidPost || s.kind == SiteKind::ResidPre) {
      r.restore_at = s.kind == SiteKind::ResidPost ? s.layer + 1 : s.layer;
      start = std::min(start, r.restore_at);
    } else {
      (s.kind == SiteKind::Attn ? r.attn_sub : r.mlp_sub)[static_cast<size_t>(s.layer)] = Sub::Clean;
      start = std::min(start, s.layer);
    }
  }
  if (plan.base == detail::kSecondDraw)
    for (const Site& s : plan.frozen) start = std::min(start, s.layer);
  for (const Site& s : plan.frozen)
    if (s.layer >= start) (s.kind == SiteKind::Attn ? r.attn_sub : r.mlp_sub)[static_cast<size_t>(s.layer)] = Sub::Corrupted;
  // Windowed cells (and the second draw's frozen ones): the first layer
  // changes token t's attention / MLP output only.
  if (start < L && r.restore_at != start && !r.blocked[static_cast<size_t>(start)]) r.token_layer = start++;
  r.start = start;
  return r;
}

// A base run (corrupted, second draw or clean), kept per layer: block
// inputs, attention / MLP outputs, and queries / keys / values (already
// rotated): a restoration reads the keys / values before its token, and at
// its first layer the queries / keys / values after it.
struct CorruptedRun {
  std::vector<at::Tensor> block_in;  // [L + 1] of [rows, T, d]; block_in[L] = final residual
  std::vector<at::Tensor> attn, mlp, queries, keys, values;
  double low_score = 0;              // its mean metric
  int64_t rows() const { return block_in[0].size(0); }
};

CorruptedRun run_corrupted(const Model& model, const detail::PreparedFact& p, const TraceSettings& st, int base) {
  const ModelConfig& c = model.config();
  CorruptedRun r;
  at::Tensor x = model.embed(base == detail::kClean ? p.ids_clean : p.ids_samples);
  if (base != detail::kClean) detail::corrupt_embeddings(x, p, st, base == detail::kSecondDraw);
  x = model.input_embeddings(x);
  for (int64_t k = 0; k < c.n_layers; ++k) {
    r.block_in.push_back(x);
    x = model.block(
        k, x,
        [&](const at::Tensor& h1) {
          auto [q, kk, v] = model.qkv(k, h1, 0);
          r.queries.push_back(q), r.keys.push_back(kk), r.values.push_back(v);
          return model.attn_out(k, model.attend(k, q, kk, v, 0));
        },
        [&](at::Tensor& a) { r.attn.push_back(a); }, [&](at::Tensor& m) { r.mlp.push_back(m); });
  }
  r.block_in.push_back(x);
  r.low_score = detail::mean_metric(p, model.logits(x.narrow(1, x.size(1) - p.n_scored, p.n_scored)));
  return r;
}

// Per-layer arithmetic of the shapes actually computed (multiply-adds x 2).
struct FlopCounter {
  const ModelConfig& c;
  double total = 0;
  // The projections of n tokens: q/k/v, then the output projection and the
  // MLP (mlp_only: the MLP alone).
  void qkv(int64_t n) {
    const double d = c.hidden, qd = c.n_heads * c.head_dim, kvd = c.n_kv_heads * c.head_dim;
    total += 2.0 * n * (d * qd + 2 * d * kvd);
  }
  void out_mlp(int64_t n, bool mlp_only = false) {
    const double d = c.hidden, qd = c.n_heads * c.head_dim, I = c.intermediate;
    const double mlp = c.arch->mlp == MlpKind::Gated ? 3 * d * I : 2 * d * I;
    total += 2.0 * n * ((mlp_only ? 0 : qd * d) + mlp);
  }
  void tokens(int64_t n) { qkv(n), out_mlp(n); }
  void attention(int64_t rows, int64_t tq, int64_t tk) { total += 4.0 * rows * c.n_heads * tq * tk * c.head_dim; }
  void head(int64_t rows) { total += 2.0 * rows * c.hidden * c.vocab_size; }
  // One forward of `rows` rows of T tokens, scored at the last n positions.
  void run(int64_t rows, int64_t T, int64_t n) {
    for (int64_t k = 0; k < c.n_layers; ++k) tokens(rows * T), attention(rows, T, T);
    head(rows * n);
  }
};

// Every cell of the fact the engine computes, as restorations. Cells before
// the first changed token equal their base run: score = its low score (the
// second draw's for ROME's notebook severing: token t < b is clean in both
// draws, so freezing and restoring it change nothing). Knockouts have one
// cell per layer.
std::vector<Restoration> plan_restorations(const detail::PreparedFact& p, const TraceSettings& st, int64_t L) {
  std::vector<Restoration> all;
  for (size_t mi = 0; mi < st.mediators.size(); ++mi)
    for (const auto& [t, l] : detail::mediator_cells(st.mediators[mi], p.first_changed, p.prompt_tokens(), L))
      all.push_back(from_plan(mi, detail::plan_cell(st.mediators[mi], t, l, st, L, p.trace), L));
  auto adopt = [](Restoration& child, Restoration& parent, int64_t layer) {
    child.parent = &parent, parent.children.push_back(&child);
    child.token_layer = layer, child.start = layer + 1;
  };
  // The severed cells of a (t, l) whose hidden cell starts at the same
  // layer from the same run, with the same restored residual, differ from
  // it in that first block at t only (ROME's notebook severing starts from
  // another run).
  auto shares = [L](const Restoration& r) {
    return r.base == detail::kCorrupted && r.token_layer < 0 && r.restore_at == r.start && r.start < L;
  };
  std::map<std::pair<int64_t, int64_t>, Restoration*> hidden;
  for (Restoration& r : all)
    if (r.mediator == Mediator::Hidden && shares(r)) hidden[{r.t, r.l}] = &r;
  for (Restoration& r : all) {
    if (r.mediator != Mediator::HiddenAttnSevered && r.mediator != Mediator::HiddenMlpSevered) continue;
    auto it = hidden.find({r.t, r.l});
    if (shares(r) && it != hidden.end() && it->second->start == r.start) adopt(r, *it->second, r.start);
  }
  // Windowed cells of a token whose windows start at the same layer: the
  // cell of the next layer up substitutes at one more layer, the first
  // where the two differ (cells come layer by layer, windows growing).
  std::map<std::tuple<size_t, int64_t, int64_t>, std::pair<Restoration*, int64_t>> below;  // (slot, t, lo) -> cell, hi
  for (Restoration& r : all) {
    if ((r.mediator != Mediator::Mlp && r.mediator != Mediator::Attn) || r.token_layer < 0) continue;
    const auto [lo, hi] = detail::layer_window(r.l, st.window, L);
    auto& [cell, cell_hi] = below[{r.mediator_slot, r.t, lo}];
    if (cell && cell_hi < hi) adopt(r, *cell, cell_hi);
    cell = &r, cell_hi = hi;
  }
  return all;
}

int64_t shared_count(const std::vector<Restoration>& all) {
  return std::count_if(all.begin(), all.end(), [](const Restoration& r) { return r.parent != nullptr; });
}

// The FLOPs of the runs a fact's restorations start from (corrupted, second
// draw, clean), and of ROME's loop for the same cells: one forward of S + 1
// rows per cell (every cell, before the subject too) and one more for the
// clean and corrupted scores.
void count_base_runs(const detail::PreparedFact& p, const std::vector<Restoration>& all, FlopCounter& flops) {
  flops.run(p.samples, p.run_tokens(), p.n_scored);
  if (p.noise_second.defined()) flops.run(p.samples, p.run_tokens(), p.n_scored);
  if (std::any_of(all.begin(), all.end(), [](const Restoration& r) { return r.knockout; }))
    flops.run(1, p.run_tokens(), p.n_scored);
}
double rome_flops(const ModelConfig& c, const detail::PreparedFact& p, const TraceSettings& st) {
  int64_t cells = 0;
  for (Mediator m : st.mediators)
    cells += static_cast<int64_t>(detail::mediator_cells(m, 0, p.prompt_tokens(), c.n_layers).size());
  return static_cast<double>(cells + 1) * forward_flops(c, p.samples + 1, p.run_tokens(), p.n_scored);
}

// Restorations that share a restored token and a base run: same live
// positions t..T-1, same keys/values before t, same rows per restoration.
struct Group {
  int64_t t;
  int base = 0;
  int64_t rows = 1;                   // rows per restoration: the base run's
  std::vector<Restoration*> members;  // sorted by start layer
  size_t active = 0;                  // members[0..active) are being computed
  at::Tensor h;                       // [active * rows, T - t, d]
};

// Writes `value` ([rows, d] or [1, d]) at local position 0 of every row
// of the group's restorations for which `pick` says Clean / Corrupted.
void substitute(at::Tensor& packed, int64_t offset, const Group& g, int64_t len,
                const std::function<Sub(const Restoration&)>& pick, const at::Tensor& clean_t,
                const at::Tensor& corrupted_t) {
  const int64_t S = g.rows;
  std::vector<int64_t> rows;
  std::vector<at::Tensor> vals;
  for (size_t i = 0; i < g.active; ++i) {
    Sub s = pick(*g.members[i]);
    if (s == Sub::None) continue;
    for (int64_t j = 0; j < S; ++j) rows.push_back(offset + (static_cast<int64_t>(i) * S + j) * len);
    vals.push_back(s == Sub::Clean ? clean_t.expand({S, clean_t.size(-1)}) : corrupted_t);
  }
  if (rows.empty()) return;
  at::Tensor idx = at::tensor(rows, at::kLong).to(packed.device());
  packed.index_copy_(0, idx, at::cat(vals, 0).to(packed.scalar_type()));
}

// The attention edges the group's active members remove at layer k, as a
// mask [rows, 1, 1, T] for the query at the group's token (undefined: none).
at::Tensor knockout_mask(const Group& g, int64_t k, int64_t len, int64_t T, at::Device device) {
  bool any = false;
  for (size_t i = 0; i < g.active; ++i) any = any || g.members[i]->blocked[static_cast<size_t>(k)];
  if (!any) return {};
  at::Tensor mask = at::zeros({static_cast<int64_t>(g.active) * g.rows, 1, len, T}, at::kBool);
  auto acc = mask.accessor<bool, 4>();
  for (size_t i = 0; i < g.active; ++i) {
    const Restoration& r = *g.members[i];
    if (!r.blocked[static_cast<size_t>(k)]) continue;
    for (int64_t j = 0; j < g.rows; ++j)
      for (int64_t key : r.blocked_keys) acc[static_cast<int64_t>(i) * g.rows + j][0][0][key] = true;
  }
  return mask.to(device);
}

// runs[base]: the corrupted run (the frozen values of every severed
// mediator), the second draw's (ROME's notebook severing), the clean run
// (knockouts); absent ones are null.
void sweep(const Model& model, const detail::PreparedFact& p, const std::vector<const CorruptedRun*>& runs,
           std::vector<Restoration*>& chunk, FlopCounter& flops, const std::function<void()>& poll) {
  const ModelConfig& c = model.config();
  const int64_t L = c.n_layers, T = p.run_tokens(), d = c.hidden, n = p.n_scored;
  const CorruptedRun& cr = *runs[detail::kCorrupted];
  std::map<std::pair<int64_t, int>, Group> groups;
  for (Restoration* r : chunk) groups[{r->t, r->base}].members.push_back(r);
  for (auto& [key, g] : groups) {
    g.t = key.first;
    g.base = key.second;
    g.rows = runs[static_cast<size_t>(g.base)]->rows();
    // By start layer; of those starting together, the ones that take a
    // parent's state first, so the ones starting from the base run are
    // the last rows of the batch at their first layer.
    std::stable_sort(g.members.begin(), g.members.end(), [](const Restoration* a, const Restoration* b) {
      return a->start != b->start ? a->start < b->start : (a->parent != nullptr) > (b->parent != nullptr);
    });
  }
  // Clean values at a token, [1, d]: block inputs (block L = final residual).
  auto clean_block_in = [&](int64_t k, int64_t t) {
    const Site s = k < L ? Site{SiteKind::ResidPre, k} : Site{SiteKind::ResidPost, L - 1};
    return p.clean[site_index(s, L)].select(1, t);
  };
  auto clean_at = [&](SiteKind kind, int64_t k, int64_t t) {
    return p.clean[site_index({kind, k}, L)].select(1, t);
  };
  // The Attn / Mlp site values of layer k at group g's token, in `v` (packed
  // from `offset`, `len` positions per row): clean or frozen to the
  // corrupted run's, as each member's plan says.
  auto substitute_site = [&](at::Tensor& v, int64_t offset, const Group& g, int64_t len, SiteKind kind, int64_t k) {
    auto pick = [k, kind](const Restoration& r) { return kind == SiteKind::Attn ? r.attn(k) : r.mlp(k); };
    const at::Tensor& frozen = kind == SiteKind::Attn ? cr.attn[k] : cr.mlp[k];
    substitute(v, offset, g, len, pick, clean_at(kind, k, g.t), frozen.select(1, g.t));
  };
  // Token t of restorations `ms` of group g through layer j, where only it
  // changes: from its block input x and attention output a there ([ms x
  // rows, d]), with the members' substitutions; [ms x rows, d].
  auto token_block = [&](const Group& g, const std::vector<Restoration*>& ms, int64_t j, const at::Tensor& x,
                         const at::Tensor& a) {
    const Group one{g.t, g.base, g.rows, ms, ms.size()};
    flops.out_mlp(static_cast<int64_t>(ms.size()) * g.rows, /*mlp_only=*/true);
    return model.block(
        j, x, [&](const at::Tensor&) { return a; },
        [&](at::Tensor& v) { substitute_site(v, 0, one, 1, SiteKind::Attn, j); },
        [&](at::Tensor& v) { substitute_site(v, 0, one, 1, SiteKind::Mlp, j); });
  };
  // A parent's input and attention output at its token, [rows, d], in the
  // layers where a child branches off: the child's token t goes through
  // that layer from them.
  std::map<std::pair<const Restoration*, int64_t>, std::pair<at::Tensor, at::Tensor>> at_branch;
  auto branches_at = [](const Restoration& r, int64_t k) {
    return std::any_of(r.children.begin(), r.children.end(), [k](const Restoration* c) { return c->token_layer == k; });
  };
  // Restorations starting at layer k join their group's batch, from the
  // base run's state or their parent's (after their token layer, if any);
  // then every member restoring the input of block k gets the clean
  // residual at t. Past the last block (k = L) only the scored positions
  // are kept: a change at t < T - n is not read there.
  auto start_members = [&](int64_t k) {
    for (auto& [key, g] : groups) {
      const int64_t t = g.t, p0 = k == L ? T - n : t;
      const bool t_kept = t >= p0;
      const CorruptedRun& base = *runs[static_cast<size_t>(g.base)];
      const size_t before = g.active;
      std::vector<at::Tensor> fresh;
      std::vector<Restoration*> by_token, children;
      std::vector<size_t> by_token_at, children_at;
      while (g.active < g.members.size() && g.members[g.active]->start == k) {
        Restoration* r = g.members[g.active++];
        if (r->parent) {
          const auto ip = std::find(g.members.begin(), g.members.begin() + static_cast<std::ptrdiff_t>(before), r->parent) -
                          g.members.begin();
          fresh.push_back(g.h.narrow(0, ip * g.rows, g.rows).clone());
          if (t_kept) children.push_back(r), children_at.push_back(fresh.size() - 1);
          continue;
        }
        fresh.push_back(base.block_in[k].narrow(1, p0, T - p0).clone());
        if (r->token_layer >= 0 && t_kept) by_token.push_back(r), by_token_at.push_back(fresh.size() - 1);
      }
      auto put_token = [&](const std::vector<Restoration*>& ms, const std::vector<size_t>& at_fresh, const at::Tensor& x,
                           const at::Tensor& a) {
        if (ms.empty()) return;
        const at::Tensor out = token_block(g, ms, k - 1, x, a);
        for (size_t i = 0; i < ms.size(); ++i)
          fresh[at_fresh[i]].select(1, 0).copy_(out.narrow(0, static_cast<int64_t>(i) * g.rows, g.rows));
      };
      const int64_t m = static_cast<int64_t>(by_token.size());
      if (m) put_token(by_token, by_token_at, base.block_in[k - 1].select(1, t).repeat({m, 1}),
                       base.attn[k - 1].select(1, t).repeat({m, 1}));
      if (!children.empty()) {  // from the parent's input and attention output at t
        std::vector<at::Tensor> x, a;
        for (const Restoration* r : children) {
          const auto& [xt, at_t] = at_branch.at({r->parent, k - 1});
          x.push_back(xt), a.push_back(at_t);
        }
        put_token(children, children_at, at::cat(x, 0), at::cat(a, 0));
      }
      if (!fresh.empty()) {
        if (g.h.defined()) fresh.insert(fresh.begin(), g.h);
        g.h = at::cat(fresh, 0);
      }
      for (size_t i = 0; i < g.active && t_kept; ++i)
        if (g.members[i]->restore_at == k)
          g.h.narrow(0, static_cast<int64_t>(i) * g.rows, g.rows).select(1, 0).copy_(clean_block_in(k, t).expand({g.rows, d}));
    }
  };

  for (int64_t k = 0; k < L; ++k) {
    if (poll) poll();
    start_members(k);
    std::vector<Group*> live;
    for (auto& [key, g] : groups)
      if (g.active) live.push_back(&g);
    if (live.empty()) continue;
    // Pack every live token of every group into one matrix. The last
    // block's output is read at the scored positions only: there every
    // position gives its keys / values, and only the last n go on through
    // the attention's queries, the output projection and the MLP.
    const bool last_block = k == L - 1;
    std::vector<at::Tensor> parts, tails;
    std::vector<int64_t> offsets, out_offsets;
    int64_t n_tok = 0, n_out = 0;
    for (Group* g : live) {
      offsets.push_back(n_tok), out_offsets.push_back(n_out);
      parts.push_back(g->h.reshape({-1, d}));
      n_tok += parts.back().size(0);
      if (last_block) tails.push_back(g->h.narrow(1, T - g->t - n, n).reshape({-1, d}));
      n_out += last_block ? tails.back().size(0) : parts.back().size(0);
    }
    const at::Tensor x_in = at::cat(parts, 0);
    const at::Tensor x_out = last_block ? at::cat(tails, 0) : x_in;
    const at::Tensor normed_in = last_block ? model.attn_norm(k, x_in) : at::Tensor();
    flops.out_mlp(n_out);
    auto out_len = [&](const Group& g) { return last_block ? n : T - g.t; };
    // Attention of each group over its own live tokens, with the base
    // run's keys/values of the positions before them. Members in their
    // first layer from the base run have its inputs after t: their
    // queries / keys / values there are the base run's, and only token t
    // is projected.
    auto attention = [&](const at::Tensor& normed_out) {
      const at::Tensor& h1 = last_block ? normed_in : normed_out;
      std::vector<at::Tensor> outs;
      for (size_t gi = 0; gi < live.size(); ++gi) {
        Group& g = *live[gi];
        const CorruptedRun& base = *runs[static_cast<size_t>(g.base)];
        const int64_t len = T - g.t, rows = static_cast<int64_t>(g.active) * g.rows, q_len = out_len(g);
        KvPrefix prefix;  // each member's g.rows rows see the base run's rows' keys before t
        if (g.t > 0) prefix = {base.keys[k].narrow(2, 0, g.t), base.values[k].narrow(2, 0, g.t)};
        at::Tensor mask = knockout_mask(g, k, len, T, h1.device());
        if (mask.defined() && q_len < len) mask = mask.narrow(2, len - q_len, q_len);
        auto attend_rows = [&](at::Tensor q, const at::Tensor& kk, const at::Tensor& v, int64_t row0, int64_t n_rows) {
          if (q_len < len) q = q.narrow(2, len - q_len, q_len);
          flops.attention(n_rows, q_len, T);
          const at::Tensor m = mask.defined() ? mask.narrow(0, row0, n_rows) : at::Tensor();
          outs.push_back(model.attend(k, q, kk, v, T - q_len, m, prefix).reshape({n_rows * q_len, -1}));
        };
        size_t computed = g.active;  // members [computed, active): first layer, from the base run
        while (computed > 0 && g.members[computed - 1]->start == k && !g.members[computed - 1]->parent) --computed;
        const at::Tensor h = h1.narrow(0, offsets[gi], rows * len).view({rows, len, d});
        const int64_t rows_all = static_cast<int64_t>(computed) * g.rows, rows_first = rows - rows_all;
        if (rows_all) {
          auto [q, kk, v] = model.qkv(k, h.narrow(0, 0, rows_all), g.t);
          flops.qkv(rows_all * len);
          attend_rows(q, kk, v, 0, rows_all);
        }
        if (rows_first) {
          auto [q, kk, v] = model.qkv(k, h.narrow(0, rows_all, rows_first).narrow(1, 0, 1), g.t, T);
          flops.qkv(rows_first);
          if (len > 1) {
            const int64_t reps = rows_first / g.rows;
            auto with_base = [&](const at::Tensor& own, const at::Tensor& b) {
              return at::cat({own, b.narrow(2, g.t + 1, len - 1).repeat({reps, 1, 1, 1})}, 2);
            };
            q = with_base(q, base.queries[k]), kk = with_base(kk, base.keys[k]), v = with_base(v, base.values[k]);
          }
          attend_rows(q, kk, v, rows_all, rows_first);
        }
      }
      return model.attn_out(k, at::cat(outs, 0));
    };
    // Substitutions at t: where t is still among the output positions.
    auto substitute_all = [&](at::Tensor& v, SiteKind kind) {
      for (size_t gi = 0; gi < live.size(); ++gi)
        if (out_len(*live[gi]) == T - live[gi]->t)
          substitute_site(v, out_offsets[gi], *live[gi], out_len(*live[gi]), kind, k);
    };
    // Parents a child branches off from here keep their input and
    // attention output at t (where t is an output position: else no child
    // reads them).
    auto keep_branch_points = [&](const at::Tensor& a) {
      for (size_t gi = 0; gi < live.size(); ++gi) {
        const Group& g = *live[gi];
        const int64_t len = out_len(g);
        if (len != T - g.t) continue;
        for (size_t i = 0; i < g.active; ++i) {
          if (!branches_at(*g.members[i], k)) continue;
          const int64_t row = static_cast<int64_t>(i) * g.rows;
          at_branch[{g.members[i], k}] = {
              g.h.narrow(0, row, g.rows).select(1, 0).clone(),
              a.narrow(0, out_offsets[gi] + row * len, g.rows * len).view({g.rows, len, -1}).select(1, 0).clone()};
        }
      }
    };
    const at::Tensor x = model.block(
        k, x_out, attention,
        [&](at::Tensor& a) {
          keep_branch_points(a);
          substitute_all(a, SiteKind::Attn);
        },
        [&](at::Tensor& m) { substitute_all(m, SiteKind::Mlp); });
    for (size_t gi = 0; gi < live.size(); ++gi) {
      Group& g = *live[gi];
      const int64_t len = out_len(g);
      g.h = x.narrow(0, out_offsets[gi], static_cast<int64_t>(g.active) * g.rows * len).view({-1, len, d});
    }
  }
  start_members(L);  // restorations of the last block's output

  // Scores: the scored positions of every row, through the head in slices
  // (the vocabulary makes these logits the largest tensor of a trace).
  std::vector<at::Tensor> scored;
  std::vector<Restoration*> order;
  std::vector<int64_t> row_counts;
  bool knockouts = false;
  for (auto& [key, g] : groups) {
    scored.push_back(g.h.narrow(1, g.h.size(1) - n, n));
    order.insert(order.end(), g.members.begin(), g.members.end());
    row_counts.insert(row_counts.end(), g.members.size(), g.rows);
    knockouts = knockouts || g.base == detail::kClean;
  }
  at::Tensor final_rows = at::cat(scored, 0);  // [rows, n, d]
  // Slices of about 2^26 logits (256 MB in float32, and as much again for
  // the softmax): 1360 rows for a 49k vocabulary, 250 for Gemma's 262k;
  // half as many when the metric works in float64.
  const int64_t budget = p.scorer.needs_float64() || n > 1 ? int64_t{1} << 25 : int64_t{1} << 26;
  const int64_t slice = std::max<int64_t>(1, budget / (c.vocab_size * n));
  std::vector<at::Tensor> metric, prob;
  for (int64_t i = 0; i < final_rows.size(0); i += slice) {
    const at::Tensor lg = model.logits(final_rows.narrow(0, i, std::min(slice, final_rows.size(0) - i)));
    metric.push_back(p.scorer.rows(lg));
    if (knockouts) prob.push_back(p.scorer.prob_rows(lg));
  }
  flops.head(final_rows.size(0) * n);
  const at::Tensor per = at::cat(metric, 0).cpu();
  const at::Tensor per_prob = knockouts ? at::cat(prob, 0).cpu() : at::Tensor();
  int64_t row = 0;
  for (size_t i = 0; i < order.size(); ++i) {
    const int64_t R = row_counts[i];
    if (order[i]->knockout) {
      order[i]->score = p.knockout_change(per_prob.narrow(0, row, R).mean().item<double>());
    } else {
      order[i]->score = per.narrow(0, row, R).mean().item<double>();
    }
    row += R;
  }
}

}  // namespace

int64_t auto_batch_cap(c10::Device dev) { return dev.is_cpu() ? kAutoBatchTokensCpu : kAutoBatchTokensDevice; }

BatchSize auto_batch_size(const Model& model, int64_t T, int64_t rows) {
  const ModelConfig& c = model.config();
  BatchSize b;
  const double units = c.hidden + c.n_heads * c.head_dim * (1.0 + T) + 2.0 * c.n_kv_heads * c.head_dim +
                       3.0 * c.intermediate + static_cast<double>(c.n_heads) * T;
  b.bytes_per_token = static_cast<int64_t>(units * 4 * (model.dtype() == at::kFloat ? 1.25 : 2.5));
  const int64_t least = rows * T;  // one restoration
  const bool cpu = model.device().is_cpu();
  const int64_t cap = auto_batch_cap(model.device());
  const std::string where = cpu ? "" : " on " + model.device().str();
  b.available_bytes = cpu ? available_memory_bytes() : device_free_bytes(model.device());
  if (b.available_bytes <= 0) {
    const int64_t fallback = cpu ? cap : kAutoBatchTokensUnknown;
    b.tokens = std::max<int64_t>(least, fallback);
    b.how = "auto" + where + ": " + std::to_string(fallback) + " (" + (cpu ? "available" : "free") +
            " memory unknown)";
    return b;
  }
  const int64_t fits = b.available_bytes / 2 / b.bytes_per_token;
  b.tokens = std::max<int64_t>(least, std::min(fits, cap));
  b.how = "auto" + where + ": " + format_bytes(b.available_bytes / 2) + " of " + format_bytes(b.available_bytes) +
          (cpu ? " available, " : " free, ") + format_bytes(b.bytes_per_token) + " per live token" +
          (fits > cap ? ", at most " + std::to_string(cap) : "");
  return b;
}

int64_t parse_batch_tokens(const std::string& s, const std::string& what) {
  if (s == "auto") return kAutoBatchTokens;
  size_t used = 0;
  long long v = -1;
  try {
    v = std::stoll(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != s.size() || s.empty() || v < 0)
    throw Error(what + " '" + s + "' is not auto, 0 (no limit) or a positive number of tokens");
  return static_cast<int64_t>(v);
}

FactTrace trace_fact_fast(const Model& model, const std::string& prompt, const std::string& subject,
                          const TraceSettings& st, const FactAnswer& answer,
                          const FastOptions& opt, FastStats* stats) {
  c10::InferenceMode guard;
  detail::PreparedFact p = detail::prepare_fact(model, prompt, subject, st, answer);
  FactTrace& f = p.trace;
  const ModelConfig& c = model.config();
  const int64_t L = c.n_layers, S = p.samples, T = p.prompt_tokens(), T_run = p.run_tokens();
  FlopCounter flops{c};
  std::vector<Restoration> all = plan_restorations(p, st, L);
  count_base_runs(p, all, flops);

  std::vector<const CorruptedRun*> runs(3, nullptr);
  CorruptedRun cr = run_corrupted(model, p, st, detail::kCorrupted), second, clean;
  f.low_score = cr.low_score;
  runs[detail::kCorrupted] = &cr;
  if (p.noise_second.defined()) {
    second = run_corrupted(model, p, st, detail::kSecondDraw);
    runs[detail::kSecondDraw] = &second;
  }
  if (std::any_of(all.begin(), all.end(), [](const Restoration& r) { return r.knockout; })) {
    clean = run_corrupted(model, p, st, detail::kClean);
    runs[detail::kClean] = &clean;
  }

  // Chunks bounded by live tokens (each restoration holds rows x (T_run - t));
  // a cell goes with its parent.
  const int64_t limit =
      opt.max_batch_tokens == kAutoBatchTokens ? auto_batch_size(model, T_run, S).tokens : opt.max_batch_tokens;
  std::vector<std::vector<Restoration*>> chunks(1);
  int64_t budget = 0;
  for (Restoration& r : all) {
    if (r.parent) continue;
    std::vector<Restoration*> unit{&r};  // r and its descendants
    for (size_t i = 0; i < unit.size(); ++i) unit.insert(unit.end(), unit[i]->children.begin(), unit[i]->children.end());
    int64_t cost = 0;
    for (const Restoration* u : unit) cost += runs[static_cast<size_t>(u->base)]->rows() * (T_run - u->t);
    if (limit > 0 && budget + cost > limit && !chunks.back().empty()) {
      chunks.emplace_back();
      budget = 0;
    }
    chunks.back().insert(chunks.back().end(), unit.begin(), unit.end());
    budget += cost;
  }
  for (auto& chunk : chunks) sweep(model, p, runs, chunk, flops, opt.poll);

  for (size_t mi = 0; mi < st.mediators.size(); ++mi) {
    const Mediator m = st.mediators[mi];
    const double before = st.notebook_severing(m) ? second.low_score : f.low_score;
    f.traces.push_back({m, at::full({is_knockout(m) ? 1 : T, L}, before, at::kDouble)});
  }
  for (const Restoration& r : all)
    f.traces[r.mediator_slot].scores.accessor<double, 2>()[r.knockout ? 0 : r.t][r.l] = r.score;
  detail::finish_trace(p, st);
  if (stats) {
    stats->restorations = static_cast<int64_t>(all.size());
    stats->shared = shared_count(all);
    stats->sweeps = static_cast<int64_t>(chunks.size());
    stats->max_batch_tokens = limit;
    stats->flops = flops.total;
    stats->rome_flops = rome_flops(c, p, st);
  }
  return std::move(p.trace);
}

double forward_flops(const ModelConfig& c, int64_t rows, int64_t T, int64_t scored) {
  FlopCounter f{c};
  f.run(rows, T, scored);
  return f.total;
}

FastStats count_trace_flops(const Model& model, const std::string& prompt, const std::string& subject,
                            const TraceSettings& st, const FactAnswer& answer) {
  c10::InferenceMode guard;
  const detail::PreparedFact p = detail::prepare_fact(model, prompt, subject, st, answer);
  const ModelConfig& c = model.config();
  const std::vector<Restoration> all = plan_restorations(p, st, c.n_layers);
  FlopCounter flops{c};
  count_base_runs(p, all, flops);
  // What a sweep computes for each: token t's MLP through its token layer;
  // from its start layer on, its rows x live tokens (at the start layer,
  // q / k / v of token t alone unless it starts from a parent), their
  // attention over the whole run (in the last block: the scored positions'
  // queries, output projection and MLP only), and the head at the scored
  // positions.
  const int64_t L = c.n_layers, T = p.run_tokens(), n = p.n_scored;
  for (const Restoration& r : all) {
    const int64_t rows = r.base == detail::kClean ? 1 : p.samples, len = T - r.t;
    if (r.token_layer >= 0 && (r.start < L || r.t == T - n)) flops.out_mlp(rows, /*mlp_only=*/true);
    for (int64_t k = r.start; k < L; ++k) {
      const int64_t out = k == L - 1 ? n : len, projected = k == r.start && !r.parent ? 1 : len;
      flops.qkv(rows * projected), flops.out_mlp(rows * out), flops.attention(rows, out, T);
    }
    flops.head(rows * n);
  }
  FastStats s;
  s.restorations = static_cast<int64_t>(all.size());
  s.shared = shared_count(all);
  s.flops = flops.total;
  s.rome_flops = rome_flops(c, p, st);
  return s;
}

}  // namespace kt
