// Loading a model from one .gguf file: metadata -> ModelConfig, logical
// tensors -> llama.cpp's tensor names, quantized blocks -> dequantized float
// tensors; the vocabulary is Tokenizer::from_gguf's.
#include "io/gguf.h"
#include "model/model.h"
#include "util/error.h"

namespace kt {

namespace {

// llama.cpp's names of the logical tensors (its LLM_TENSOR_NAMES, the same
// for every architecture knowtrace reads); "%" stands for the layer.
const char* gguf_tensor(Tn t) {
  switch (t) {
    case Tn::Embed: return "token_embd";
    case Tn::PosEmbed: return "position_embd";
    case Tn::FinalNorm: return "output_norm";
    case Tn::Head: return "output";
    case Tn::AttnNorm: return "blk.%.attn_norm";
    case Tn::AttnPostNorm: return "blk.%.post_attention_norm";
    case Tn::MlpNorm: return "blk.%.ffn_norm";
    case Tn::MlpPostNorm: return "blk.%.post_ffw_norm";
    case Tn::QNorm: return "blk.%.attn_q_norm";
    case Tn::KNorm: return "blk.%.attn_k_norm";
    case Tn::Q: return "blk.%.attn_q";
    case Tn::K: return "blk.%.attn_k";
    case Tn::V: return "blk.%.attn_v";
    case Tn::Qkv: return "blk.%.attn_qkv";
    case Tn::O: return "blk.%.attn_output";
    case Tn::Gate: return "blk.%.ffn_gate";
    case Tn::Up: case Tn::GateUp: return "blk.%.ffn_up";  // phi3's fused gate_up is llama.cpp's ffn_up
    case Tn::Down: return "blk.%.ffn_down";
  }
  return "";
}

// llama.cpp's converter interleaves the rows of q/k projections for its
// rotary layout (per head: [pairs, 2] instead of [2, pairs]); undo it.
at::Tensor unpermute_rows(const at::Tensor& w, int64_t n_heads) {
  const int64_t rows = w.size(0);
  std::vector<int64_t> shape{n_heads, rows / n_heads / 2, 2};
  for (int64_t i = 1; i < w.dim(); ++i) shape.push_back(w.size(i));
  std::vector<int64_t> back{rows};
  for (int64_t i = 1; i < w.dim(); ++i) back.push_back(w.size(i));
  return w.reshape(shape).transpose(1, 2).reshape(back).contiguous();
}

class GgufSource : public TensorSource {
 public:
  GgufSource(const GgufFile& f, const ModelConfig& c) : f_(f), cfg_(c) {}

  std::string name_of(const ArchSpec&, Tn t, int64_t layer, bool bias) const override {
    std::string n = gguf_tensor(t);
    const size_t p = n.find('%');
    if (p != std::string::npos) n.replace(p, 1, std::to_string(layer));
    return n + (bias ? ".bias" : ".weight");
  }

  at::Tensor get(const std::string& name, at::ScalarType dtype) const override {
    const GgufTensorInfo* info = f_.tensor(name);
    if (!info) return {};
    at::Tensor t = at::empty({static_cast<int64_t>(info->n_elements)}, at::kFloat);
    f_.tensor_to_f32(*info, t.data_ptr<float>());
    std::vector<int64_t> shape(info->shape.rbegin(), info->shape.rend());  // ne[0] fastest -> last dim
    t = t.view(shape);
    if (cfg_.arch->gguf_permuted_qk) {
      if (name.find(".attn_q.") != std::string::npos) t = unpermute_rows(t, cfg_.n_heads);
      if (name.find(".attn_k.") != std::string::npos) t = unpermute_rows(t, cfg_.n_kv_heads);
    }
    return t.to(dtype);
  }

  std::string where(const std::string&) const override { return f_.path(); }  // messages name the tensor

  bool norms_include_one() const override { return true; }  // llama.cpp's converter adds Gemma's 1

  at::Tensor rope_factors(const ModelConfig& c) const override {
    const GgufTensorInfo* info = f_.tensor("rope_freqs.weight");
    if (!info) return {};
    if (static_cast<int64_t>(info->n_elements) != c.rotary_dim / 2)
      f_.fail("tensor 'rope_freqs.weight' has " + std::to_string(info->n_elements) + " elements, expected " +
              std::to_string(c.rotary_dim / 2) + " (rope.dimension_count / 2)");
    at::Tensor t = at::empty({static_cast<int64_t>(info->n_elements)}, at::kFloat);
    f_.tensor_to_f32(*info, t.data_ptr<float>());
    return t;
  }

 private:
  const GgufFile& f_;
  const ModelConfig& cfg_;
};

ModelConfig gguf_config(const GgufFile& f) {
  const std::string arch = f.architecture();
  ModelConfig c;
  c.arch = &arch_for_gguf(arch, f.path());
  const ArchSpec& A = *c.arch;
  c.model_type = A.model_type;
  const std::string p = arch + ".";
  c.n_layers = f.get_u32(p + "block_count");
  c.hidden = f.get_u32(p + "embedding_length");
  c.intermediate = f.get_u32(p + "feed_forward_length");
  c.n_heads = f.get_u32(p + "attention.head_count");
  c.n_kv_heads = f.opt_u32(p + "attention.head_count_kv").value_or(c.n_heads);
  if (c.n_heads == 0 || c.n_kv_heads == 0 || c.n_heads % c.n_kv_heads != 0)
    f.fail("attention.head_count " + std::to_string(c.n_heads) + " must be a positive multiple of head_count_kv " +
           std::to_string(c.n_kv_heads));
  if (!f.opt_u32(p + "attention.key_length") && c.hidden % c.n_heads != 0)
    f.fail("attention.head_count " + std::to_string(c.n_heads) + " does not divide embedding_length " +
           std::to_string(c.hidden) + " (and there is no attention.key_length)");
  c.head_dim = f.opt_u32(p + "attention.key_length").value_or(c.hidden / c.n_heads);
  c.max_positions = f.opt_u32(p + "context_length").value_or(2048);
  c.norm_eps = f.opt_f32(p + "attention.layer_norm_rms_epsilon").value_or(static_cast<float>(A.eps_default));
  c.rope_theta = f.opt_f32(p + "rope.freq_base").value_or(10000.0f);
  c.rotary_dim = f.opt_u32(p + "rope.dimension_count").value_or(c.head_dim);
  if (auto type = f.opt_string(p + "rope.scaling.type"); type && *type != "none") {
    if (*type != "linear") f.fail("rope.scaling.type '" + *type + "' is not supported (supported: none, linear)");
    c.rope_scaling.type = "linear";
    c.rope_scaling.factor = f.get_f32(p + "rope.scaling.factor");
  }
  const GgufTensorInfo& emb = f.require_tensor("token_embd.weight");
  if (emb.shape.size() != 2) f.fail("tensor 'token_embd.weight' must have 2 dimensions");
  c.vocab_size = emb.shape[1];
  c.tie_embeddings = f.tensor("output.weight") == nullptr;
  c.act = parse_act(A.act_default, f.path());  // the row's (GGUF stores no activation)
  c.qkv_bias = f.tensor("blk.0.attn_q.bias") != nullptr || f.tensor("blk.0.attn_qkv.bias") != nullptr;
  // Gemma-2/3: what llama.cpp reads (query scaling 1/sqrt(head_dim), the
  // window and soft-capping from the file; Gemma-3's local rotary base and
  // every 6th layer global, as transformers' Gemma3TextConfig defaults).
  if (A.sliding != SlidingLayers::None) c.sliding_window = f.opt_u32(p + "attention.sliding_window").value_or(0);
  c.attn_softcap = f.opt_f32(p + "attn_logit_softcapping").value_or(0.f);
  c.final_softcap = f.opt_f32(p + "final_logit_softcapping").value_or(0.f);
  if (A.sliding == SlidingLayers::AllButNth) c.local_rope_theta = 10000.0;  // gemma3's local layers
  resolve_sliding_layers(c, f.opt_u32(p + "attention.sliding_window_pattern").value_or(6));
  if (auto bos = f.opt_u32("tokenizer.ggml.bos_token_id")) c.bos_token_id = *bos;
  if (auto eos = f.opt_u32("tokenizer.ggml.eos_token_id")) c.eos_token_id = *eos;
  return c;
}

}  // namespace

std::unique_ptr<Model> load_gguf_model(const std::string& path, const LoadOptions& opts) {
  GgufFile f(path);
  ModelConfig cfg = gguf_config(f);
  auto tok = std::make_unique<Tokenizer>(Tokenizer::from_gguf(f));
  GgufSource src(f, cfg);
  Weights w = load_weights(cfg, src, opts.dtype, opts.device);
  return std::make_unique<Model>(std::move(cfg), std::move(tok), std::move(w), opts, path);
}

}  // namespace kt
