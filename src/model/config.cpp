#include "model/config.h"

#include <nlohmann/json.hpp>

#include <cmath>

#include "util/error.h"
#include "util/paths.h"

namespace kt {
using nlohmann::json;

const std::vector<ArchSpec>& arch_table() {
  // model_type, norm, rope, mlp, learned_pos, parallel, shared_norm, names...
  static const std::vector<ArchSpec> table = {
      {"llama", NormKind::RMSNorm, RopeStyle::Half, MlpKind::GatedSiLU, false, false, false,
       "model.embed_tokens", "model.layers.[LAYER_NUM]", "model.layers.[LAYER_NUM].self_attn",
       "model.layers.[LAYER_NUM].mlp"},
      {"mistral", NormKind::RMSNorm, RopeStyle::Half, MlpKind::GatedSiLU, false, false, false,
       "model.embed_tokens", "model.layers.[LAYER_NUM]", "model.layers.[LAYER_NUM].self_attn",
       "model.layers.[LAYER_NUM].mlp"},
      {"qwen2", NormKind::RMSNorm, RopeStyle::Half, MlpKind::GatedSiLU, false, false, false,
       "model.embed_tokens", "model.layers.[LAYER_NUM]", "model.layers.[LAYER_NUM].self_attn",
       "model.layers.[LAYER_NUM].mlp"},
      {"gpt2", NormKind::LayerNorm, RopeStyle::None, MlpKind::Plain, true, false, false,
       "transformer.wte", "transformer.h.[LAYER_NUM]", "transformer.h.[LAYER_NUM].attn",
       "transformer.h.[LAYER_NUM].mlp"},
      {"gpt_neox", NormKind::LayerNorm, RopeStyle::Half, MlpKind::Plain, false, true, false,
       "gpt_neox.embed_in", "gpt_neox.layers.[LAYER_NUM]", "gpt_neox.layers.[LAYER_NUM].attention",
       "gpt_neox.layers.[LAYER_NUM].mlp"},
      {"gptj", NormKind::LayerNorm, RopeStyle::Interleaved, MlpKind::Plain, false, true, true,
       "transformer.wte", "transformer.h.[LAYER_NUM]", "transformer.h.[LAYER_NUM].attn",
       "transformer.h.[LAYER_NUM].mlp"},
  };
  return table;
}

std::string supported_model_types() {
  std::string s;
  for (const auto& a : arch_table()) s += (s.empty() ? "" : ", ") + std::string(a.model_type);
  return s;
}

const ArchSpec& arch_for(const std::string& model_type, const std::string& where) {
  for (const auto& a : arch_table())
    if (model_type == a.model_type) return a;
  throw Error(where + ": unsupported model_type '" + model_type + "' (supported: " + supported_model_types() + ")");
}

std::string layer_template(const std::string& tmpl, int64_t layer) {
  std::string out = tmpl;
  const std::string key = "[LAYER_NUM]";
  for (size_t p; (p = out.find(key)) != std::string::npos;) out.replace(p, key.size(), std::to_string(layer));
  return out;
}

namespace {

// Typed access to config.json fields with one-line errors.
struct Fields {
  const json& j;
  const std::string& path;
  const json* find(std::initializer_list<const char*> keys) const {
    for (const char* k : keys)
      if (j.contains(k) && !j[k].is_null()) return &j[k];
    return nullptr;
  }
  // The key of `keys` the file uses (messages name it, not an alias).
  const char* found_key(std::initializer_list<const char*> keys) const {
    for (const char* k : keys)
      if (j.contains(k) && !j[k].is_null()) return k;
    return *keys.begin();
  }
  // "'num_hidden_layers' (or 'n_layer')": every name the field may have.
  static std::string any_of(std::initializer_list<const char*> keys) {
    std::string out;
    size_t i = 0;
    for (const char* k : keys) out += std::string(i == 0 ? "'" : i == 1 ? " (or '" : ", '") + k + "'", ++i;
    return i > 1 ? out + ")" : out;
  }
  int64_t integer(std::initializer_list<const char*> keys, std::optional<int64_t> dflt = std::nullopt) const {
    const json* v = find(keys);
    if (!v) {
      if (dflt) return *dflt;
      throw Error(path + ": missing field " + any_of(keys));
    }
    if (!v->is_number_integer() || v->get<int64_t>() < 0)
      throw Error(path + ": field '" + found_key(keys) + "' must be a non-negative integer");
    return v->get<int64_t>();
  }
  double number(std::initializer_list<const char*> keys, double dflt) const {
    const json* v = find(keys);
    if (!v) return dflt;
    if (!v->is_number()) throw Error(path + ": field '" + found_key(keys) + "' must be a number");
    return v->get<double>();
  }
  bool boolean(const char* key, bool dflt) const {
    const json* v = find({key});
    if (!v) return dflt;
    if (!v->is_boolean()) throw Error(path + ": field '" + key + "' must be true or false");
    return v->get<bool>();
  }
  std::string string(const char* key, const std::string& dflt) const {
    const json* v = find({key});
    if (!v) return dflt;
    if (!v->is_string()) throw Error(path + ": field '" + key + "' must be a string");
    return v->get<std::string>();
  }
  std::optional<int64_t> optional_id(const char* key) const {
    const json* v = find({key});
    if (!v) return std::nullopt;
    if (v->is_array() && !v->empty() && (*v)[0].is_number_integer()) return (*v)[0].get<int64_t>();
    if (!v->is_number_integer()) throw Error(path + ": field '" + key + "' must be an integer");
    return v->get<int64_t>();
  }
};

Act parse_act(const std::string& s, const std::string& path) {
  if (s == "silu" || s == "swish") return Act::SiLU;
  if (s == "gelu") return Act::Gelu;
  if (s == "gelu_new" || s == "gelu_pytorch_tanh" || s == "gelu_fast") return Act::GeluTanh;
  if (s == "relu") return Act::Relu;
  throw Error(path + ": unsupported activation '" + s + "' (supported: silu, gelu, gelu_new, gelu_pytorch_tanh, relu)");
}

// Rotary settings live at the top level and in "rope_scaling" in older
// configs, and in one "rope_parameters" object since transformers 5.
const json* rope_block(const Fields& f) {
  const json* rp = f.find({"rope_parameters"});
  if (rp && rp->is_object()) return rp;
  return f.find({"rope_scaling"});
}

double rope_number(const Fields& f, const char* key_in_block, std::initializer_list<const char*> top_keys,
                   double dflt) {
  const json* rb = rope_block(f);
  if (rb && rb->is_object() && rb->contains(key_in_block) && (*rb)[key_in_block].is_number())
    return (*rb)[key_in_block].get<double>();
  return f.number(top_keys, dflt);
}

void parse_rope(const Fields& f, ModelConfig* c) {
  const json* rs = rope_block(f);
  if (!rs) return;
  if (!rs->is_object()) throw Error(f.path + ": field 'rope_scaling' must be an object or null");
  auto get_num = [&](const char* k, double d) {
    if (!rs->contains(k)) return d;
    if (!(*rs)[k].is_number()) throw Error(f.path + ": rope field '" + k + "' must be a number");
    return (*rs)[k].get<double>();
  };
  std::string type;
  for (const char* k : {"rope_type", "type"})
    if (rs->contains(k) && (*rs)[k].is_string()) {
      type = (*rs)[k].get<std::string>();
      break;
    }
  if (type == "default") type = "";
  if (type != "" && type != "linear" && type != "llama3")
    throw Error(f.path + ": rope type '" + type + "' is not supported (supported: default, linear, llama3)");
  c->rope_scaling.type = type;
  c->rope_scaling.factor = get_num("factor", 1.0);
  c->rope_scaling.low_freq_factor = get_num("low_freq_factor", 1.0);
  c->rope_scaling.high_freq_factor = get_num("high_freq_factor", 4.0);
  c->rope_scaling.original_max_positions = static_cast<int64_t>(get_num("original_max_position_embeddings", 8192));
}

}  // namespace

ModelConfig parse_hf_config(const std::string& path) {
  json j;
  try {
    j = json::parse(read_text_file(path));
  } catch (const json::exception& e) {
    throw Error(path + ": not valid JSON");
  }
  if (!j.is_object()) throw Error(path + ": expected a JSON object");
  Fields f{j, path};
  ModelConfig c;
  if (!f.find({"model_type"})) throw Error(path + ": missing field 'model_type'");
  c.model_type = f.string("model_type", "");
  c.arch = &arch_for(c.model_type, path);
  const std::string mt = c.model_type;
  c.vocab_size = f.integer({"vocab_size"});
  c.hidden = f.integer({"hidden_size", "n_embd"});
  c.n_layers = f.integer({"num_hidden_layers", "n_layer"});
  c.n_heads = f.integer({"num_attention_heads", "n_head"});
  if (c.hidden == 0 || c.n_layers == 0 || c.n_heads == 0 || c.vocab_size == 0)
    throw Error(path + ": hidden_size, num_hidden_layers, num_attention_heads and vocab_size must be positive");
  c.n_kv_heads = f.integer({"num_key_value_heads"}, c.n_heads);
  c.head_dim = f.integer({"head_dim"}, c.hidden / c.n_heads);
  if (c.n_kv_heads == 0 || c.n_heads % c.n_kv_heads != 0)
    throw Error(path + ": num_attention_heads (" + std::to_string(c.n_heads) +
                ") must be a multiple of num_key_value_heads (" + std::to_string(c.n_kv_heads) + ")");
  c.max_positions = f.integer({"max_position_embeddings", "n_positions", "n_ctx"}, 2048);
  c.tie_embeddings = f.boolean("tie_word_embeddings", mt == "gpt2");  // HF defaults per model class
  c.bos_token_id = f.optional_id("bos_token_id");
  c.eos_token_id = f.optional_id("eos_token_id");
  c.parallel_block = c.arch->parallel_block;

  if (mt == "llama" || mt == "mistral" || mt == "qwen2") {
    c.intermediate = f.integer({"intermediate_size"});
    c.norm_eps = f.number({"rms_norm_eps"}, 1e-6);
    c.act = parse_act(f.string("hidden_act", "silu"), path);
    c.rope_theta = rope_number(f, "rope_theta", {"rope_theta"}, 10000.0);
    c.rotary_dim = static_cast<int64_t>(c.head_dim * rope_number(f, "partial_rotary_factor", {"partial_rotary_factor"}, 1.0));
    c.qkv_bias = mt == "qwen2" ? true : f.boolean("attention_bias", false);
    c.o_bias = mt == "qwen2" ? false : f.boolean("attention_bias", false);
    c.mlp_bias = f.boolean("mlp_bias", false);
    parse_rope(f, &c);
  } else if (mt == "gpt2") {
    c.intermediate = f.integer({"n_inner"}, 4 * c.hidden);
    c.norm_eps = f.number({"layer_norm_epsilon"}, 1e-5);
    c.act = parse_act(f.string("activation_function", "gelu_new"), path);
    c.qkv_bias = c.o_bias = c.mlp_bias = true;
  } else if (mt == "gpt_neox") {
    c.intermediate = f.integer({"intermediate_size"});
    c.norm_eps = f.number({"layer_norm_eps"}, 1e-5);
    c.act = parse_act(f.string("hidden_act", "gelu"), path);
    c.rope_theta = rope_number(f, "rope_theta", {"rotary_emb_base", "rope_theta"}, 10000.0);
    c.rotary_dim = static_cast<int64_t>(c.head_dim * rope_number(f, "partial_rotary_factor", {"rotary_pct", "partial_rotary_factor"}, 0.25));
    c.parallel_block = f.boolean("use_parallel_residual", true);
    c.qkv_bias = c.o_bias = f.boolean("attention_bias", true);
    c.mlp_bias = true;
  } else if (mt == "gptj") {
    c.intermediate = f.integer({"n_inner"}, 4 * c.hidden);
    c.norm_eps = f.number({"layer_norm_epsilon"}, 1e-5);
    c.act = parse_act(f.string("activation_function", "gelu_new"), path);
    c.rotary_dim = f.integer({"rotary_dim"}, c.head_dim);
    c.mlp_bias = true;
    c.lm_head_bias = true;
  }
  if (c.rotary_dim % 2 != 0 || c.rotary_dim > c.head_dim)
    throw Error(path + ": rotary dimension " + std::to_string(c.rotary_dim) + " must be even and at most head_dim " +
                std::to_string(c.head_dim));
  return c;
}

}  // namespace kt
