#include "model/weights.h"

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

  at::Tensor operator()(const std::string& name, std::vector<int64_t> shape, bool required = true) const {
    at::Tensor t = src.get(name, dtype);
    if (!t.defined()) {
      if (!required) return {};
      throw Error(src.where(name) + ": missing tensor '" + name + "'");
    }
    if (t.sizes() != at::IntArrayRef(shape))
      throw Error(src.where(name) + ": tensor '" + name + "' has shape " + shape_str(t.sizes()) + ", expected " +
                  shape_str(shape));
    return t.to(device);
  }
};

}  // namespace

std::unique_ptr<TensorSource> open_safetensors_source(const std::string& dir) {
  return std::make_unique<SafetensorsSource>(dir);
}

Weights load_weights(const ModelConfig& c, const TensorSource& src, at::ScalarType dtype, at::Device device) {
  Fetch W{src, dtype, device};
  Weights w;
  const int64_t d = c.hidden, V = c.vocab_size, I = c.intermediate;
  const int64_t qd = c.n_heads * c.head_dim, kvd = c.n_kv_heads * c.head_dim;
  const std::string mt = c.model_type;
  w.layers.resize(c.n_layers);

  if (mt == "llama" || mt == "mistral" || mt == "qwen2") {
    w.embed = W("model.embed_tokens.weight", {V, d});
    for (int64_t l = 0; l < c.n_layers; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      LayerWeights& L = w.layers[l];
      L.attn_norm_w = W(p + "input_layernorm.weight", {d});
      L.mlp_norm_w = W(p + "post_attention_layernorm.weight", {d});
      L.q_w = W(p + "self_attn.q_proj.weight", {qd, d});
      L.k_w = W(p + "self_attn.k_proj.weight", {kvd, d});
      L.v_w = W(p + "self_attn.v_proj.weight", {kvd, d});
      L.o_w = W(p + "self_attn.o_proj.weight", {d, qd});
      if (c.qkv_bias) {
        L.q_b = W(p + "self_attn.q_proj.bias", {qd});
        L.k_b = W(p + "self_attn.k_proj.bias", {kvd});
        L.v_b = W(p + "self_attn.v_proj.bias", {kvd});
      }
      if (c.o_bias) L.o_b = W(p + "self_attn.o_proj.bias", {d});
      L.gate_w = W(p + "mlp.gate_proj.weight", {I, d});
      L.up_w = W(p + "mlp.up_proj.weight", {I, d});
      L.down_w = W(p + "mlp.down_proj.weight", {d, I});
      if (c.mlp_bias) {
        L.gate_b = W(p + "mlp.gate_proj.bias", {I});
        L.up_b = W(p + "mlp.up_proj.bias", {I});
        L.down_b = W(p + "mlp.down_proj.bias", {d});
      }
    }
    w.final_norm_w = W("model.norm.weight", {d});
    w.lm_head_w = c.tie_embeddings ? w.embed : W("lm_head.weight", {V, d});
  } else if (mt == "gpt2") {
    w.embed = W("transformer.wte.weight", {V, d});
    w.pos_embed = W("transformer.wpe.weight", {c.max_positions, d});
    for (int64_t l = 0; l < c.n_layers; ++l) {
      const std::string p = "transformer.h." + std::to_string(l) + ".";
      LayerWeights& L = w.layers[l];
      L.attn_norm_w = W(p + "ln_1.weight", {d});
      L.attn_norm_b = W(p + "ln_1.bias", {d});
      L.mlp_norm_w = W(p + "ln_2.weight", {d});
      L.mlp_norm_b = W(p + "ln_2.bias", {d});
      // Conv1D stores [in, out]: transpose to [out, in], then split q/k/v.
      at::Tensor qkv = W(p + "attn.c_attn.weight", {d, 3 * d}).t().contiguous();
      at::Tensor qkv_b = W(p + "attn.c_attn.bias", {3 * d});
      auto ws = qkv.split(d, 0);
      auto bs = qkv_b.split(d, 0);
      L.q_w = ws[0].contiguous(), L.k_w = ws[1].contiguous(), L.v_w = ws[2].contiguous();
      L.q_b = bs[0].contiguous(), L.k_b = bs[1].contiguous(), L.v_b = bs[2].contiguous();
      L.o_w = W(p + "attn.c_proj.weight", {d, d}).t().contiguous();
      L.o_b = W(p + "attn.c_proj.bias", {d});
      L.up_w = W(p + "mlp.c_fc.weight", {d, I}).t().contiguous();
      L.up_b = W(p + "mlp.c_fc.bias", {I});
      L.down_w = W(p + "mlp.c_proj.weight", {I, d}).t().contiguous();
      L.down_b = W(p + "mlp.c_proj.bias", {d});
    }
    w.final_norm_w = W("transformer.ln_f.weight", {d});
    w.final_norm_b = W("transformer.ln_f.bias", {d});
    at::Tensor head = W("lm_head.weight", {V, d}, /*required=*/false);
    w.lm_head_w = head.defined() && !c.tie_embeddings ? head : w.embed;
  } else if (mt == "gpt_neox") {
    w.embed = W("gpt_neox.embed_in.weight", {V, d});
    const int64_t hd = c.head_dim, nh = c.n_heads;
    for (int64_t l = 0; l < c.n_layers; ++l) {
      const std::string p = "gpt_neox.layers." + std::to_string(l) + ".";
      LayerWeights& L = w.layers[l];
      L.attn_norm_w = W(p + "input_layernorm.weight", {d});
      L.attn_norm_b = W(p + "input_layernorm.bias", {d});
      L.mlp_norm_w = W(p + "post_attention_layernorm.weight", {d});
      L.mlp_norm_b = W(p + "post_attention_layernorm.bias", {d});
      // Fused rows are laid out per head as [q(hd), k(hd), v(hd)].
      at::Tensor qkv = W(p + "attention.query_key_value.weight", {3 * qd, d}).view({nh, 3, hd, d});
      L.q_w = qkv.select(1, 0).reshape({qd, d}).contiguous();
      L.k_w = qkv.select(1, 1).reshape({qd, d}).contiguous();
      L.v_w = qkv.select(1, 2).reshape({qd, d}).contiguous();
      if (c.qkv_bias) {
        at::Tensor qkv_b = W(p + "attention.query_key_value.bias", {3 * qd}).view({nh, 3, hd});
        L.q_b = qkv_b.select(1, 0).reshape({qd}).contiguous();
        L.k_b = qkv_b.select(1, 1).reshape({qd}).contiguous();
        L.v_b = qkv_b.select(1, 2).reshape({qd}).contiguous();
      }
      L.o_w = W(p + "attention.dense.weight", {d, qd});
      if (c.o_bias) L.o_b = W(p + "attention.dense.bias", {d});
      L.up_w = W(p + "mlp.dense_h_to_4h.weight", {I, d});
      L.up_b = W(p + "mlp.dense_h_to_4h.bias", {I});
      L.down_w = W(p + "mlp.dense_4h_to_h.weight", {d, I});
      L.down_b = W(p + "mlp.dense_4h_to_h.bias", {d});
    }
    w.final_norm_w = W("gpt_neox.final_layer_norm.weight", {d});
    w.final_norm_b = W("gpt_neox.final_layer_norm.bias", {d});
    w.lm_head_w = c.tie_embeddings ? w.embed : W("embed_out.weight", {V, d});
  } else if (mt == "gptj") {
    w.embed = W("transformer.wte.weight", {V, d});
    for (int64_t l = 0; l < c.n_layers; ++l) {
      const std::string p = "transformer.h." + std::to_string(l) + ".";
      LayerWeights& L = w.layers[l];
      L.attn_norm_w = W(p + "ln_1.weight", {d});
      L.attn_norm_b = W(p + "ln_1.bias", {d});
      L.q_w = W(p + "attn.q_proj.weight", {qd, d});
      L.k_w = W(p + "attn.k_proj.weight", {qd, d});
      L.v_w = W(p + "attn.v_proj.weight", {qd, d});
      L.o_w = W(p + "attn.out_proj.weight", {d, qd});
      L.up_w = W(p + "mlp.fc_in.weight", {I, d});
      L.up_b = W(p + "mlp.fc_in.bias", {I});
      L.down_w = W(p + "mlp.fc_out.weight", {d, I});
      L.down_b = W(p + "mlp.fc_out.bias", {d});
    }
    w.final_norm_w = W("transformer.ln_f.weight", {d});
    w.final_norm_b = W("transformer.ln_f.bias", {d});
    w.lm_head_w = W("lm_head.weight", {V, d});
    w.lm_head_b = W("lm_head.bias", {V});
  } else {
    throw Error("load_weights: no weight layout for model_type '" + mt + "'");
  }
  return w;
}

}  // namespace kt
