#include "model/weights.h"

#include <algorithm>
#include <initializer_list>
#include <sstream>

#include "io/safetensors.h"
#include "util/error.h"

namespace kt {

namespace {

class SafetensorsSource : public TensorSource {
 public:
  explicit SafetensorsSource(const std::string& dir) : ckpt_(dir) {}

  at::Tensor get(const std::string& name, at::ScalarType dtype) const override {
    const StTensor* t = lookup(name);
    if (!t) return {};
    at::ScalarType st;
    switch (t->dtype) {
      case StDtype::F32: st = at::kFloat; break;
      case StDtype::F16: st = at::kHalf; break;
      case StDtype::BF16: st = at::kBFloat16; break;
      case StDtype::F64: st = at::kDouble; break;
      default:
        throw Error(ckpt_.file_of(t->name) + ": tensor '" + t->name + "' has dtype " + t->dtype_name +
                    ", expected F32, F16 or BF16");
    }
    // The map is read-only; from_blob only views it and .to() copies out.
    at::Tensor view = at::from_blob(const_cast<uint8_t*>(t->data), t->shape, at::TensorOptions().dtype(st));
    return view.to(dtype, /*non_blocking=*/false, /*copy=*/true);
  }

  std::string where(const std::string& name) const override {
    const StTensor* t = lookup(name);
    if (t) return ckpt_.file_of(t->name);
    auto files = ckpt_.files();
    return files.size() == 1 ? files[0] : files.empty() ? std::string("checkpoint") : files[0] + " (and other shards)";
  }

 private:
  // Checkpoints saved from the bare model class lack the "model." /
  // "transformer." / "gpt_neox." prefix: accept both spellings.
  const StTensor* lookup(const std::string& name) const {
    if (const StTensor* t = ckpt_.find(name)) return t;
    auto dot = name.find('.');
    if (dot != std::string::npos) return ckpt_.find(name.substr(dot + 1));
    return nullptr;
  }
  SafetensorsCheckpoint ckpt_;
};

std::string shape_str(at::IntArrayRef s) {
  std::ostringstream o;
  o << "[";
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  o << "]";
  return o.str();
}

// Fetches tensors by HF name with shape checks and one-line errors.
struct Fetch {
  const TensorSource& src;
  at::ScalarType dtype;
  at::Device device;

  at::Tensor operator()(const std::string& name, std::vector<int64_t> shape) const {
    at::Tensor t = src.get(name, dtype);
    if (!t.defined()) {
      throw Error(src.where(name) + ": missing tensor '" + name + "'");
    }
    if (t.sizes() != at::IntArrayRef(shape))
      throw Error(src.where(name) + ": tensor '" + name + "' has shape " + shape_str(t.sizes()) + ", expected " +
                  shape_str(shape));
    return t.to(device);
  }
};

}  // namespace

std::string TensorSource::name_of(const ArchSpec& arch, Tn t, int64_t layer, bool bias) const {
  const TensorName* n = arch.find(t);
  return layer_template(n ? n->hf : "", layer) + (bias ? ".bias" : ".weight");
}

std::unique_ptr<TensorSource> open_safetensors_source(const std::string& dir) {
  return std::make_unique<SafetensorsSource>(dir);
}

namespace {

// Stacks the rows of weights `ws` into `w` (their biases into `b`, zeros
// for an unbiased one, when any has one) and makes each weight and bias a
// view of its rows there.
void fuse_rows(std::initializer_list<at::Tensor*> ws, std::initializer_list<at::Tensor*> bs, at::Tensor& w,
               at::Tensor& b) {
  const bool biased = std::any_of(bs.begin(), bs.end(), [](const at::Tensor* t) { return t->defined(); });
  std::vector<at::Tensor> rows, biases;
  auto bias = bs.begin();
  for (at::Tensor* t : ws) {
    rows.push_back(*t);
    if (biased) biases.push_back((*bias)->defined() ? **bias : at::zeros({t->size(0)}, t->options()));
    ++bias;
  }
  w = at::cat(rows, 0);
  if (biased) b = at::cat(biases, 0);
  int64_t row = 0;
  bias = bs.begin();
  for (at::Tensor* t : ws) {
    const int64_t n = t->size(0);
    *t = w.narrow(0, row, n);
    if (biased) **bias = b.narrow(0, row, n);
    row += n, ++bias;
  }
}

}  // namespace

Weights load_weights(const ModelConfig& c, const TensorSource& src, at::ScalarType dtype, at::Device device) {
  Fetch W{src, dtype, device};
  const ArchSpec& A = *c.arch;
  const int64_t d = c.hidden, V = c.vocab_size, I = c.intermediate, hd = c.head_dim;
  const int64_t qd = c.n_heads * hd, kvd = c.n_kv_heads * hd;
  // The stored [out, in] shape of each logical tensor (a norm: [size]).
  auto shape_of = [&](Tn t) -> std::vector<int64_t> {
    switch (t) {
      case Tn::Embed: case Tn::Head: return {V, d};
      case Tn::PosEmbed: return {c.max_positions, d};
      case Tn::FinalNorm: case Tn::AttnNorm: case Tn::AttnPostNorm: case Tn::MlpNorm: case Tn::MlpPostNorm: return {d};
      case Tn::QNorm: return {A.qk_norm == QkNorm::Full ? qd : hd};
      case Tn::KNorm: return {A.qk_norm == QkNorm::Full ? kvd : hd};
      case Tn::Q: return {qd, d};
      case Tn::K: case Tn::V: return {kvd, d};
      case Tn::Qkv: return {qd + 2 * kvd, d};
      case Tn::O: return {d, qd};
      case Tn::Gate: case Tn::Up: return {I, d};
      case Tn::GateUp: return {2 * I, d};
      case Tn::Down: return {d, I};
    }
    return {};
  };
  auto is_norm = [](Tn t) {
    return t == Tn::FinalNorm || t == Tn::AttnNorm || t == Tn::AttnPostNorm || t == Tn::MlpNorm ||
           t == Tn::MlpPostNorm || t == Tn::QNorm || t == Tn::KNorm;
  };
  // Weight (and bias, when the row and the config want one) of a logical
  // tensor in layer l; undefined when the architecture has no such tensor.
  auto get = [&](Tn t, int64_t l, at::Tensor* bias = nullptr) -> at::Tensor {
    const TensorName* n = A.find(t);
    if (!n) return {};
    std::vector<int64_t> shape = shape_of(t);
    if (n->conv1d) std::swap(shape[0], shape[1]);  // GPT-2's Conv1D stores [in, out]
    at::Tensor w = W(src.name_of(A, t, l, false), shape);
    if (n->conv1d) w = w.t().contiguous();
    if (A.norm_plus_one && is_norm(t) && !src.norms_include_one()) w = w + 1;
    const bool want_bias = n->bias == TensorName::WithBias || (n->bias == TensorName::QkvBias && c.qkv_bias) ||
                           (n->bias == TensorName::OBias && c.o_bias) || (n->bias == TensorName::MlpBias && c.mlp_bias);
    if (bias && want_bias) *bias = W(src.name_of(A, t, l, true), {shape_of(t)[0]});
    return w;
  };

  Weights w;
  w.embed = get(Tn::Embed, 0);
  w.pos_embed = get(Tn::PosEmbed, 0);
  w.layers.resize(c.n_layers);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    LayerWeights& L = w.layers[l];
    L.attn_norm_w = get(Tn::AttnNorm, l, &L.attn_norm_b);
    L.attn_post_norm_w = get(Tn::AttnPostNorm, l);
    L.mlp_norm_w = get(Tn::MlpNorm, l, &L.mlp_norm_b);
    L.mlp_post_norm_w = get(Tn::MlpPostNorm, l);
    L.q_norm_w = get(Tn::QNorm, l);
    L.k_norm_w = get(Tn::KNorm, l);
    if (A.find(Tn::Qkv)) {
      at::Tensor b;
      at::Tensor qkv = get(Tn::Qkv, l, &b);
      auto split = [&](const at::Tensor& t) -> std::vector<at::Tensor> {
        if (A.qkv_layout == QkvLayout::PerHead) {  // rows per head: [q_h, k_h, v_h] (no grouped kv)
          at::Tensor v = t.reshape({c.n_heads, 3, hd, -1});
          std::vector<at::Tensor> out;
          for (int64_t i = 0; i < 3; ++i) out.push_back(v.select(1, i).reshape({qd, -1}).contiguous());
          return out;
        }
        auto parts = t.split_with_sizes({qd, kvd, kvd}, 0);
        return {parts[0].contiguous(), parts[1].contiguous(), parts[2].contiguous()};
      };
      auto ws = split(qkv);
      L.q_w = ws[0], L.k_w = ws[1], L.v_w = ws[2];
      if (b.defined()) {
        auto bs = split(b.unsqueeze(-1));
        L.q_b = bs[0].squeeze(-1), L.k_b = bs[1].squeeze(-1), L.v_b = bs[2].squeeze(-1);
      }
    } else {
      L.q_w = get(Tn::Q, l, &L.q_b);
      L.k_w = get(Tn::K, l, &L.k_b);
      L.v_w = get(Tn::V, l, &L.v_b);
    }
    L.o_w = get(Tn::O, l, &L.o_b);
    if (A.find(Tn::GateUp)) {  // phi3: rows [gate; up]
      at::Tensor gu = get(Tn::GateUp, l);
      L.gate_w = gu.narrow(0, 0, I).contiguous();
      L.up_w = gu.narrow(0, I, I).contiguous();
    } else {
      L.gate_w = get(Tn::Gate, l, &L.gate_b);
      L.up_w = get(Tn::Up, l, &L.up_b);
    }
    L.down_w = get(Tn::Down, l, &L.down_b);
    fuse_rows({&L.q_w, &L.k_w, &L.v_w}, {&L.q_b, &L.k_b, &L.v_b}, L.qkv_w, L.qkv_b);
    if (L.gate_w.defined()) fuse_rows({&L.gate_w, &L.up_w}, {&L.gate_b, &L.up_b}, L.gate_up_w, L.gate_up_b);
  }
  w.final_norm_w = get(Tn::FinalNorm, 0, &w.final_norm_b);
  if (c.tie_embeddings) {
    w.lm_head_w = w.embed;
  } else {
    w.lm_head_w = get(Tn::Head, 0);
    if (c.lm_head_bias) w.lm_head_b = W(src.name_of(A, Tn::Head, 0, true), {V});
  }
  w.rope_factors = src.rope_factors(c);
  return w;
}

void widen_projections(Weights& w) {
  // `whole` as float32, and `parts` (views of its rows) as views of that
  auto widen = [](at::Tensor& whole, std::initializer_list<at::Tensor*> parts) {
    if (!whole.defined()) return;
    whole = whole.to(at::kFloat);
    int64_t row = 0;
    for (at::Tensor* t : parts) {
      if (!t->defined()) continue;
      const int64_t n = t->size(0);
      *t = whole.narrow(0, row, n);
      row += n;
    }
  };
  for (LayerWeights& L : w.layers) {
    widen(L.qkv_w, {&L.q_w, &L.k_w, &L.v_w});
    widen(L.o_w, {});
    if (L.gate_up_w.defined())
      widen(L.gate_up_w, {&L.gate_w, &L.up_w});
    else
      widen(L.up_w, {});
    widen(L.down_w, {});
  }
  widen(w.lm_head_w, {});  // tied: a float32 copy; the embedding lookup keeps its dtype
}

}  // namespace kt
