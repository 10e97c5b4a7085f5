// Model hyper-parameters and the table of supported architectures.
//
// Like llama.cpp, architectures are rows of a table (ArchSpec), not classes.
// A row holds everything that differs between families: the forward
// switches (norm kind, rotary style, MLP, block wiring, Gemma's scalings),
// the config.json defaults, the Hugging Face tensor names of each logical
// tensor (weights.cpp reads them; gguf_model.cpp maps logical tensors to
// llama.cpp's names), its GGUF architecture name and its site names. The
// forward pass reads the row; adding an architecture is adding a row.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace kt {

enum class NormKind { RMSNorm, LayerNorm };
enum class RopeStyle { None, Half /* rotate_half: llama, neox */, Interleaved /* gptj */ };
enum class MlpKind { Gated /* down(act(gate) * up) */, Plain /* down(act(up)) */ };
enum class Act { SiLU, Gelu /* erf */, GeluTanh /* gelu_new / gelu_pytorch_tanh */, Relu };
// Q/K RMSNorm before rotary: none, over each head (qwen3, gemma3) or over
// the whole projection (olmo2).
enum class QkNorm { None, PerHead, Full };
// Which layers attend within a sliding window when config.json has no
// "layer_types" list: none, every layer (mistral), the even layers
// (gemma2), all but every n-th (gemma3: sliding_window_pattern).
enum class SlidingLayers { None, All, Even, AllButNth };

// Logical tensors of the canonical layout (weights.h); Q/K/V, gate/up may
// be stored fused (FusedQkv, GateUp) and are split on load.
enum class Tn {
  Embed, PosEmbed, FinalNorm, Head,
  AttnNorm, AttnPostNorm, MlpNorm, MlpPostNorm, QNorm, KNorm,
  Q, K, V, Qkv, O, Gate, Up, GateUp, Down,
};
// How a fused Q/K/V tensor is laid out: rows [q; k; v] (gpt2 after the
// Conv1D transpose, phi3), or per head [q_h; k_h; v_h] (gpt_neox).
enum class QkvLayout { Sequential, PerHead };

// One tensor of an architecture: the Hugging Face name without its
// ".weight" / ".bias" ("[LAYER_NUM]" for the layer), whether it has a
// bias, and whether it is a GPT-2 Conv1D ([in, out]).
struct TensorName {
  Tn tensor;
  const char* hf;
  enum Bias { NoBias, WithBias, QkvBias, OBias, MlpBias } bias = NoBias;  // the last three follow the config
  bool conv1d = false;
};

// A boolean that config.json may set under `key` (nullptr: fixed to `dflt`).
struct ConfigFlag {
  const char* key;
  bool dflt;
};

struct ArchSpec {
  const char* model_type;  // config.json "model_type"
  const char* gguf_arch;   // GGUF general.architecture, or nullptr
  // Forward switches.
  NormKind norm;
  RopeStyle rope;
  MlpKind mlp;
  bool learned_positions;    // gpt2: wpe added after the token embedding
  bool shared_block_norm;    // gptj: one ln_1 feeds attention and MLP
  bool norm_plus_one;        // gemma: RMSNorm scales by (1 + w); Hugging Face stores w
  QkNorm qk_norm;
  bool scaled_embedding;     // gemma: embeddings x sqrt(hidden) inside the embedding module (its hook sees them scaled)
  SlidingLayers sliding;
  bool gguf_permuted_qk;     // llama.cpp permutes q/k rows of this architecture
  QkvLayout qkv_layout;      // of a fused Qkv tensor
  // config.json defaults.
  const char* act_default;
  double eps_default;
  double rotary_fraction_default;
  int64_t intermediate_x_hidden;  // 0: intermediate_size is required; else its default multiple of hidden
  ConfigFlag parallel_block;      // gptj always; gpt_neox when use_parallel_residual
  ConfigFlag tie_embeddings;
  ConfigFlag qkv_bias, o_bias, mlp_bias;
  bool head_bias;
  // The tensors this architecture reads.
  std::vector<TensorName> tensors;
  // Hugging Face module names of the sites; [LAYER_NUM] stands for the layer.
  const char* embed_name;
  const char* layer_name;
  const char* attn_name;
  const char* mlp_name;
  // The config.json object that holds the language model's fields
  // ("text_config" of a multimodal gemma3 checkpoint), or nullptr: the top level.
  const char* config_section = nullptr;

  const TensorName* find(Tn t) const;
};

// All rows; model types that are aliases (mistral -> llama) appear as rows.
const std::vector<ArchSpec>& arch_table();
// The row for a model_type; throws kt::Error listing the supported ones.
const ArchSpec& arch_for(const std::string& model_type, const std::string& where);
// The row for a GGUF general.architecture; throws kt::Error listing them.
const ArchSpec& arch_for_gguf(const std::string& gguf_arch, const std::string& where);
std::string supported_model_types();

struct RopeScaling {
  std::string type;  // "" (none), "linear", "llama3", "longrope" (Phi-3's; "su" in older configs)
  double factor = 1.0;
  double low_freq_factor = 1.0, high_freq_factor = 4.0;
  int64_t original_max_positions = 8192;
  // longrope: per-frequency divisors for prompts up to original_max_positions
  // tokens and beyond, and the factor cos/sin are scaled by.
  std::vector<double> short_factor, long_factor;
  double attention_factor = 1.0;
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
  RopeScaling rope_scaling;      // global layers only where local_rope_theta is set
  double local_rope_theta = 0;   // gemma3: rotary base of the sliding-window layers (0: rope_theta)
  Act act = Act::SiLU;
  bool tie_embeddings = false;
  bool parallel_block = false;   // resolved from arch + config
  bool qkv_bias = false, o_bias = false, mlp_bias = false, lm_head_bias = false;
  double attn_scale = 0;         // query scaling; 0: 1 / sqrt(head_dim)
  double attn_softcap = 0;       // gemma2: tanh soft-capping of attention scores (0: none)
  double final_softcap = 0;      // gemma2: of the logits
  int64_t sliding_window = 0;    // keys a query of a sliding layer sees, itself included (0: none)
  std::vector<bool> sliding_layers;  // [n_layers]: which layers use the window
  std::optional<int64_t> bos_token_id, eos_token_id;

  bool is_sliding(int64_t layer) const {
    return sliding_window > 0 && layer < static_cast<int64_t>(sliding_layers.size()) && sliding_layers[layer];
  }
};

// Parses a Hugging Face config.json. Errors name the file and the field.
ModelConfig parse_hf_config(const std::string& path);

// Fills the per-layer sliding-window flags from the row's rule (config.json
// "layer_types" overrides it) once n_layers and sliding_window are known.
void resolve_sliding_layers(ModelConfig& c, int64_t pattern);

// A Hugging Face activation name ("silu", "gelu_pytorch_tanh", ...); kt::Error
// naming `where` otherwise.
Act parse_act(const std::string& name, const std::string& where);

// "model.layers.[LAYER_NUM]" -> "model.layers.7".
std::string layer_template(const std::string& tmpl, int64_t layer);

}  // namespace kt
