// Loading a model from one .gguf file: metadata -> ModelConfig, GGUF tensor
// names -> the Hugging Face names load_weights() asks for, quantized blocks
// -> dequantized float tensors; the vocabulary is Tokenizer::from_gguf's.
#include <regex>

#include "io/gguf.h"
#include "model/model.h"
#include "util/error.h"

namespace kt {

namespace {

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

  at::Tensor get(const std::string& hf_name, at::ScalarType dtype) const override {
    std::string name = gguf_name(hf_name);
    const GgufTensorInfo* info = name.empty() ? nullptr : f_.tensor(name);
    if (!info) return {};
    at::Tensor t = at::empty({static_cast<int64_t>(info->n_elements)}, at::kFloat);
    f_.tensor_to_f32(*info, t.data_ptr<float>());
    std::vector<int64_t> shape(info->shape.rbegin(), info->shape.rend());  // ne[0] fastest -> last dim
    t = t.view(shape);
    if (name.find("attn_q.") != std::string::npos) t = unpermute_rows(t, cfg_.n_heads);
    if (name.find("attn_k.") != std::string::npos) t = unpermute_rows(t, cfg_.n_kv_heads);
    return t.to(dtype);
  }

  std::string where(const std::string& hf_name) const override {
    std::string n = gguf_name(hf_name);
    return f_.path() + (n.empty() ? "" : " (tensor '" + n + "')");
  }

 private:
  static std::string gguf_name(const std::string& hf) {
    static const std::vector<std::pair<std::regex, std::string>> map = {
        {std::regex(R"(model\.embed_tokens\.weight)"), "token_embd.weight"},
        {std::regex(R"(model\.norm\.weight)"), "output_norm.weight"},
        {std::regex(R"(lm_head\.weight)"), "output.weight"},
        {std::regex(R"(model\.layers\.(\d+)\.input_layernorm\.weight)"), "blk.$1.attn_norm.weight"},
        {std::regex(R"(model\.layers\.(\d+)\.post_attention_layernorm\.weight)"), "blk.$1.ffn_norm.weight"},
        {std::regex(R"(model\.layers\.(\d+)\.self_attn\.q_proj\.(weight|bias))"), "blk.$1.attn_q.$2"},
        {std::regex(R"(model\.layers\.(\d+)\.self_attn\.k_proj\.(weight|bias))"), "blk.$1.attn_k.$2"},
        {std::regex(R"(model\.layers\.(\d+)\.self_attn\.v_proj\.(weight|bias))"), "blk.$1.attn_v.$2"},
        {std::regex(R"(model\.layers\.(\d+)\.self_attn\.o_proj\.(weight|bias))"), "blk.$1.attn_output.$2"},
        {std::regex(R"(model\.layers\.(\d+)\.mlp\.gate_proj\.weight)"), "blk.$1.ffn_gate.weight"},
        {std::regex(R"(model\.layers\.(\d+)\.mlp\.up_proj\.weight)"), "blk.$1.ffn_up.weight"},
        {std::regex(R"(model\.layers\.(\d+)\.mlp\.down_proj\.weight)"), "blk.$1.ffn_down.weight"},
    };
    for (const auto& [re, fmt] : map)
      if (std::regex_match(hf, re)) return std::regex_replace(hf, re, fmt);
    return "";
  }
  const GgufFile& f_;
  const ModelConfig& cfg_;
};

ModelConfig gguf_config(const GgufFile& f) {
  const std::string arch = f.architecture();
  // GGUF architectures whose tensors follow llama's layout.
  if (arch != "llama" && arch != "qwen2")
    f.fail("general.architecture '" + arch + "' is not supported for GGUF (supported: llama, qwen2)");
  ModelConfig c;
  c.model_type = arch;
  c.arch = &arch_for(arch, f.path());
  const std::string p = arch + ".";
  c.n_layers = f.get_u32(p + "block_count");
  c.hidden = f.get_u32(p + "embedding_length");
  c.intermediate = f.get_u32(p + "feed_forward_length");
  c.n_heads = f.get_u32(p + "attention.head_count");
  c.n_kv_heads = f.opt_u32(p + "attention.head_count_kv").value_or(c.n_heads);
  if (c.n_heads == 0 || c.n_kv_heads == 0 || c.n_heads % c.n_kv_heads != 0 || c.hidden % c.n_heads != 0)
    f.fail("attention.head_count " + std::to_string(c.n_heads) + " / head_count_kv " +
           std::to_string(c.n_kv_heads) + " do not divide embedding_length " + std::to_string(c.hidden));
  c.head_dim = f.opt_u32(p + "attention.key_length").value_or(c.hidden / c.n_heads);
  c.max_positions = f.opt_u32(p + "context_length").value_or(2048);
  c.norm_eps = f.opt_f32(p + "attention.layer_norm_rms_epsilon").value_or(1e-5f);
  c.rope_theta = f.opt_f32(p + "rope.freq_base").value_or(10000.0f);
  c.rotary_dim = f.opt_u32(p + "rope.dimension_count").value_or(c.head_dim);
  if (auto type = f.opt_string(p + "rope.scaling.type"); type && *type != "none") {
    if (*type != "linear") f.fail("rope.scaling.type '" + *type + "' is not supported (supported: none, linear)");
    c.rope_scaling.type = "linear";
    c.rope_scaling.factor = f.get_f32(p + "rope.scaling.factor");
  }
  if (f.tensor("rope_freqs.weight"))
    f.fail("tensor 'rope_freqs.weight' (Llama-3.1 style rope scaling) is not supported for GGUF yet");
  const GgufTensorInfo& emb = f.require_tensor("token_embd.weight");
  if (emb.shape.size() != 2) f.fail("tensor 'token_embd.weight' must have 2 dimensions");
  c.vocab_size = emb.shape[1];
  c.tie_embeddings = f.tensor("output.weight") == nullptr;
  c.act = Act::SiLU;
  c.qkv_bias = f.tensor("blk.0.attn_q.bias") != nullptr;
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
