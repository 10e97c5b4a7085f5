// Model hyper-parameters and the table of supported architectures.
//
// Like llama.cpp, architectures are rows of a table (ArchSpec), not classes:
// one decoder forward reads the row's switches (norm kind, rotary style,
// parallel block, biases) and its Hugging Face module names.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace kt {

enum class NormKind { RMSNorm, LayerNorm };
enum class RopeStyle { None, Half /* rotate_half: llama, neox */, Interleaved /* gptj */ };
enum class MlpKind { GatedSiLU /* down(silu(gate) * up) */, Plain /* down(act(up)) */ };
enum class Act { SiLU, Gelu /* erf */, GeluTanh /* gelu_new / gelu_pytorch_tanh */, Relu };

struct ArchSpec {
  const char* model_type;       // config.json "model_type"
  NormKind norm;
  RopeStyle rope;
  MlpKind mlp;
  bool learned_positions;       // gpt2: wpe added after the token embedding
  bool parallel_block;          // gptj always; gpt_neox when use_parallel_residual
  bool shared_block_norm;       // gptj: one ln_1 feeds attention and MLP
  // Hugging Face module names; [LAYER_NUM] stands for the layer index.
  const char* embed_name;
  const char* layer_name;
  const char* attn_name;
  const char* mlp_name;
};

// All rows; model types that are aliases (mistral -> llama) appear as rows.
const std::vector<ArchSpec>& arch_table();
// The row for a model_type; throws kt::Error listing the supported ones.
const ArchSpec& arch_for(const std::string& model_type, const std::string& where);
std::string supported_model_types();

struct RopeScaling {
  std::string type;  // "" (none), "linear", "llama3"
  double factor = 1.0;
  double low_freq_factor = 1.0, high_freq_factor = 4.0;
  int64_t original_max_positions = 8192;
};

struct ModelConfig {
  std::string model_type;
  const ArchSpec* arch = nullptr;
  int64_t vocab_size = 0;
  int64_t hidden = 0;
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t intermediate = 0;
  int64_t max_positions = 0;
  int64_t rotary_dim = 0;        // dims of each head that are rotated
  double norm_eps = 1e-5;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  Act act = Act::SiLU;
  bool tie_embeddings = false;
  bool parallel_block = false;   // resolved from arch + config
  bool qkv_bias = false, o_bias = false, mlp_bias = false, lm_head_bias = false;
  std::optional<int64_t> bos_token_id, eos_token_id;
};

// Parses a Hugging Face config.json. Errors name the file and the field.
ModelConfig parse_hf_config(const std::string& path);

// "model.layers.[LAYER_NUM]" -> "model.layers.7".
std::string layer_template(const std::string& tmpl, int64_t layer);

}  // namespace kt
