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

struct LayerWeights {
  at::Tensor attn_norm_w, attn_norm_b;  // ln_1 / input_layernorm
  at::Tensor mlp_norm_w, mlp_norm_b;    // ln_2 / post_attention_layernorm (absent for gptj)
  at::Tensor q_w, q_b, k_w, k_b, v_w, v_b, o_w, o_b;
  at::Tensor gate_w, gate_b;            // gated MLPs only
  at::Tensor up_w, up_b, down_w, down_b;
};

struct Weights {
  at::Tensor embed;      // [vocab, hidden]
  at::Tensor pos_embed;  // [max_positions, hidden] (gpt2)
  std::vector<LayerWeights> layers;
  at::Tensor final_norm_w, final_norm_b;
  at::Tensor lm_head_w, lm_head_b;
};

// Where raw tensors come from, addressed by their Hugging Face names.
class TensorSource {
 public:
  virtual ~TensorSource() = default;
  // The tensor converted to `dtype` on the CPU, or an undefined tensor when
  // the source has no tensor of that name.
  virtual at::Tensor get(const std::string& hf_name, at::ScalarType dtype) const = 0;
  // The file a tensor is (or would be) read from, for error messages.
  virtual std::string where(const std::string& hf_name) const = 0;
};

// Safetensors checkpoint directory (single file or sharded with an index).
std::unique_ptr<TensorSource> open_safetensors_source(const std::string& dir);

// Reads every weight the architecture needs, checks shapes, converts to
// dtype and moves to device. Errors name the file and the tensor.
Weights load_weights(const ModelConfig& cfg, const TensorSource& src, at::ScalarType dtype, at::Device device);

}  // namespace kt
