// Model weights in one canonical layout for every architecture: linear
// weights as [out, in] (torch.nn.Linear), fused projections split, GPT-2's
// Conv1D transposed. Loaders translate each checkpoint format into it.
#pragma once
#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <vector>

#include "model/config.h"

namespace kt {

// An undefined norm weight means no such norm (the identity): olmo2 has
// no pre-norms, only gemma2/3 and olmo2 have post-norms, and so on.
struct LayerWeights {
  at::Tensor attn_norm_w, attn_norm_b;  // ln_1 / input_layernorm
  at::Tensor attn_post_norm_w;          // applied to the attention output before the residual add
  at::Tensor mlp_norm_w, mlp_norm_b;    // ln_2 / post_attention_layernorm / pre_feedforward_layernorm
  at::Tensor mlp_post_norm_w;           // applied to the MLP output before the residual add
  at::Tensor q_norm_w, k_norm_w;        // RMSNorm of q / k (per head or whole, QkNorm)
  at::Tensor q_w, q_b, k_w, k_b, v_w, v_b, o_w, o_b;
  at::Tensor gate_w, gate_b;            // gated MLPs only
  at::Tensor up_w, up_b, down_w, down_b;
  // The rows of q, k, v (and of gate, up) in one tensor, so each is one
  // product; q_w .. v_w (gate_w, up_w) and their biases are views of them.
  at::Tensor qkv_w, qkv_b, gate_up_w, gate_up_b;
};

struct Weights {
  at::Tensor embed;      // [vocab, hidden]
  at::Tensor rope_factors;  // [rotary_dim / 2]: llama.cpp's rope_freqs (inv_freq divided by them), or undefined
  at::Tensor pos_embed;  // [max_positions, hidden] (gpt2)
  std::vector<LayerWeights> layers;
  at::Tensor final_norm_w, final_norm_b;
  at::Tensor lm_head_w, lm_head_b;
};

// Where raw tensors come from. A logical tensor's name in the source is
// name_of's: the architecture row's Hugging Face name by default.
class TensorSource {
 public:
  virtual ~TensorSource() = default;
  virtual std::string name_of(const ArchSpec& arch, Tn t, int64_t layer, bool bias) const;
  // The tensor converted to `dtype` on the CPU, or an undefined tensor when
  // the source has no tensor of that name.
  virtual at::Tensor get(const std::string& hf_name, at::ScalarType dtype) const = 0;
  // The file a tensor is (or would be) read from, for error messages.
  virtual std::string where(const std::string& hf_name) const = 0;
  // Whether Gemma's norm weights arrive as 1 + w already (llama.cpp's
  // converter adds the 1; Hugging Face checkpoints store w).
  virtual bool norms_include_one() const { return false; }
  // llama.cpp's rope_freqs tensor (Llama-3.1/3.2 GGUF): the divisors of the
  // rotary frequencies, float32 [rotary_dim / 2]; undefined elsewhere.
  virtual at::Tensor rope_factors(const ModelConfig&) const { return {}; }
};

// Safetensors checkpoint directory (single file or sharded with an index).
std::unique_ptr<TensorSource> open_safetensors_source(const std::string& dir);

// Reads every weight the architecture needs, checks shapes, converts to
// dtype and moves to device. Errors name the file and the tensor.
Weights load_weights(const ModelConfig& cfg, const TensorSource& src, at::ScalarType dtype, at::Device device);

// The operands of linear() (q/k/v, o, gate/up, down, head) as float32
// holding their values, their row views re-made on them; the embedding,
// norms and biases keep their dtype (bf16_gemm_backend() in model.h).
void widen_projections(Weights& w);

}  // namespace kt
