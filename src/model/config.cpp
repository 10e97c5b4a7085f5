#include "model/config.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <deque>
#include <cmath>

#include "util/error.h"
#include "util/paths.h"

namespace kt {
using nlohmann::json;

namespace {

using TN = TensorName;
#define KT_L "model.layers.[LAYER_NUM]."

// The Llama layout, shared by most rows (each adds or swaps a few names).
std::vector<TensorName> llama_tensors(std::vector<TensorName> extra = {}) {
  std::vector<TensorName> t = {
      {Tn::Embed, "model.embed_tokens"},
      {Tn::FinalNorm, "model.norm"},
      {Tn::Head, "lm_head"},
      {Tn::AttnNorm, KT_L "input_layernorm"},
      {Tn::MlpNorm, KT_L "post_attention_layernorm"},
      {Tn::Q, KT_L "self_attn.q_proj", TN::QkvBias},
      {Tn::K, KT_L "self_attn.k_proj", TN::QkvBias},
      {Tn::V, KT_L "self_attn.v_proj", TN::QkvBias},
      {Tn::O, KT_L "self_attn.o_proj", TN::OBias},
      {Tn::Gate, KT_L "mlp.gate_proj", TN::MlpBias},
      {Tn::Up, KT_L "mlp.up_proj", TN::MlpBias},
      {Tn::Down, KT_L "mlp.down_proj", TN::MlpBias},
  };
  for (const TensorName& e : extra) {
    auto it = std::find_if(t.begin(), t.end(), [&](const TensorName& x) { return x.tensor == e.tensor; });
    if (it == t.end())
      t.push_back(e);
    else if (e.hf)
      *it = e;
    else
      t.erase(it);  // a null name drops the tensor
  }
  return t;
}

const std::vector<TensorName> kQkNorms = {{Tn::QNorm, KT_L "self_attn.q_norm"}, {Tn::KNorm, KT_L "self_attn.k_norm"}};
// Gemma-2/3: a norm before and after both attention and MLP.
const std::vector<TensorName> kSandwich = {{Tn::AttnPostNorm, KT_L "post_attention_layernorm"},
                                           {Tn::MlpNorm, KT_L "pre_feedforward_layernorm"},
                                           {Tn::MlpPostNorm, KT_L "post_feedforward_layernorm"}};

std::vector<TensorName> join(std::vector<TensorName> a, const std::vector<TensorName>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// The same tensors under another prefix: a multimodal checkpoint stores its
// language model as "language_model.model.*" (and its head as
// "language_model.lm_head").
std::vector<TensorName> reprefixed(std::vector<TensorName> t, const std::string& from, const char* const* to) {
  static std::deque<std::string> names;  // stable storage: the table lives for the program
  for (TensorName& n : t) {
    const std::string hf = n.hf;
    const std::string out = hf.rfind(from, 0) == 0 ? to[0] + hf.substr(from.size()) : to[1] + hf;
    names.push_back(out);
    n.hf = names.back().c_str();
  }
  return t;
}

const ConfigFlag kNo{nullptr, false}, kYes{nullptr, true};
const char* const kLanguageModel[2] = {"language_model.model.", "language_model."};
const ConfigFlag kAttnBias{"attention_bias", false}, kMlpBias{"mlp_bias", false};
const ConfigFlag kTie{"tie_word_embeddings", false}, kTieYes{"tie_word_embeddings", true};

}  // namespace

const TensorName* ArchSpec::find(Tn t) const {
  for (const TensorName& n : tensors)
    if (n.tensor == t) return &n;
  return nullptr;
}

const std::vector<ArchSpec>& arch_table() {
  using N = NormKind;
  using R = RopeStyle;
  using M = MlpKind;
  using Q = QkNorm;
  using S = SlidingLayers;
  const auto seq = QkvLayout::Sequential;
  // model_type, gguf, norm, rope, mlp, learned_pos, shared_norm, norm+1, qk_norm, scaled_embedding, sliding,
  //   gguf_permuted_qk, qkv_layout | act, eps, rotary, intermediate x hidden, parallel, tie, qkv/o/mlp bias,
  //   head bias | tensors | site names
  static const std::vector<ArchSpec> table = {
      {"llama", "llama", N::RMSNorm, R::Half, M::Gated, false, false, false, Q::None, false, S::None, true, seq,
       "silu", 1e-6, 1.0, 0, kNo, kTie, kAttnBias, kAttnBias, kMlpBias, false, llama_tensors(),
       "model.embed_tokens", "model.layers.[LAYER_NUM]", "model.layers.[LAYER_NUM].self_attn", "model.layers.[LAYER_NUM].mlp"},
      {"mistral", nullptr, N::RMSNorm, R::Half, M::Gated, false, false, false, Q::None, false, S::All, true, seq,
       "silu", 1e-6, 1.0, 0, kNo, kTie, kAttnBias, kAttnBias, kMlpBias, false, llama_tensors(),
       "model.embed_tokens", "model.layers.[LAYER_NUM]", "model.layers.[LAYER_NUM].self_attn", "model.layers.[LAYER_NUM].mlp"},
      {"qwen2", "qwen2", N::RMSNorm, R::Half, M::Gated, false, false, false, Q::None, false, S::None, false, seq,
       "silu", 1e-6, 1.0, 0, kNo, kTie, kYes, kNo, kMlpBias, false, llama_tensors(),
       "model.embed_tokens", "model.layers.[LAYER_NUM]", "model.layers.[LAYER_NUM].self_attn", "model.layers.[LAYER_NUM].mlp"},
      {"qwen3", "qwen3", N::RMSNorm, R::Half, M::Gated, false, false, false, Q::PerHead, false, S::None, false, seq,
       "silu", 1e-6, 1.0, 0, kNo, kTie, kAttnBias, kAttnBias, kMlpBias, false, llama_tensors(kQkNorms),
       "model.embed_tokens", "model.layers.[LAYER_NUM]", "model.layers.[LAYER_NUM].self_attn", "model.layers.[LAYER_NUM].mlp"},
      {"gemma", "gemma", N::RMSNorm, R::Half, M::Gated, false, false, true, Q::None, true, S::None, false, seq,
       "gelu_pytorch_tanh", 1e-6, 1.0, 0, kNo, kTieYes, kAttnBias, kAttnBias, kMlpBias, false, llama_tensors(),
       "model.embed_tokens", "model.layers.[LAYER_NUM]", "model.layers.[LAYER_NUM].self_attn", "model.layers.[LAYER_NUM].mlp"},
      {"gemma2", "gemma2", N::RMSNorm, R::Half, M::Gated, false, false, true, Q::None, true, S::Even, false, seq,
       "gelu_pytorch_tanh", 1e-6, 1.0, 0, kNo, kTieYes, kAttnBias, kAttnBias, kMlpBias, false,
       llama_tensors(kSandwich),
       "model.embed_tokens", "model.layers.[LAYER_NUM]", "model.layers.[LAYER_NUM].self_attn", "model.layers.[LAYER_NUM].mlp"},
      {"gemma3_text", "gemma3", N::RMSNorm, R::Half, M::Gated, false, false, true, Q::PerHead, true, S::AllButNth,
       false, seq, "gelu_pytorch_tanh", 1e-6, 1.0, 0, kNo, kTieYes, kAttnBias, kAttnBias, kMlpBias, false,
       llama_tensors(join(kSandwich, kQkNorms)),
       "model.embed_tokens", "model.layers.[LAYER_NUM]", "model.layers.[LAYER_NUM].self_attn", "model.layers.[LAYER_NUM].mlp"},
      // A Gemma-3 multimodal checkpoint (4B and up): the gemma3_text row for
      // its language model, read from text_config, stored as
      // "language_model.model.*", hooked as "model.language_model.*".
      {"gemma3", nullptr, N::RMSNorm, R::Half, M::Gated, false, false, true, Q::PerHead, true, S::AllButNth, false,
       seq, "gelu_pytorch_tanh", 1e-6, 1.0, 0, kNo, kTieYes, kAttnBias, kAttnBias, kMlpBias, false,
       reprefixed(llama_tensors(join(kSandwich, kQkNorms)), "model.", kLanguageModel),
       "model.language_model.embed_tokens", "model.language_model.layers.[LAYER_NUM]",
       "model.language_model.layers.[LAYER_NUM].self_attn", "model.language_model.layers.[LAYER_NUM].mlp",
       "text_config"},
      {"olmo2", "olmo2", N::RMSNorm, R::Half, M::Gated, false, false, false, Q::Full, false, S::None, false, seq,
       "silu", 1e-6, 1.0, 0, kNo, kTie, kAttnBias, kAttnBias, kMlpBias, false,
       llama_tensors(join({{Tn::AttnNorm, nullptr}, {Tn::MlpNorm, nullptr},
                           {Tn::AttnPostNorm, KT_L "post_attention_layernorm"},
                           {Tn::MlpPostNorm, KT_L "post_feedforward_layernorm"}}, kQkNorms)),
       "model.embed_tokens", "model.layers.[LAYER_NUM]", "model.layers.[LAYER_NUM].self_attn", "model.layers.[LAYER_NUM].mlp"},
      {"phi3", "phi3", N::RMSNorm, R::Half, M::Gated, false, false, false, Q::None, false, S::All, false, seq,
       "silu", 1e-5, 1.0, 0, kNo, kTie, kNo, kNo, kNo, false,
       llama_tensors({{Tn::Q, nullptr}, {Tn::K, nullptr}, {Tn::V, nullptr}, {Tn::Gate, nullptr}, {Tn::Up, nullptr},
                      {Tn::Qkv, KT_L "self_attn.qkv_proj"}, {Tn::GateUp, KT_L "mlp.gate_up_proj"}}),
       "model.embed_tokens", "model.layers.[LAYER_NUM]", "model.layers.[LAYER_NUM].self_attn", "model.layers.[LAYER_NUM].mlp"},
      {"gpt2", nullptr, N::LayerNorm, R::None, M::Plain, true, false, false, Q::None, false, S::None, false, seq,
       "gelu_new", 1e-5, 0.0, 4, kNo, kTieYes, kYes, kYes, kYes, false,
       {{Tn::Embed, "transformer.wte"},
        {Tn::PosEmbed, "transformer.wpe"},
        {Tn::FinalNorm, "transformer.ln_f", TN::WithBias},
        {Tn::Head, "lm_head"},
        {Tn::AttnNorm, "transformer.h.[LAYER_NUM].ln_1", TN::WithBias},
        {Tn::MlpNorm, "transformer.h.[LAYER_NUM].ln_2", TN::WithBias},
        {Tn::Qkv, "transformer.h.[LAYER_NUM].attn.c_attn", TN::WithBias, true},
        {Tn::O, "transformer.h.[LAYER_NUM].attn.c_proj", TN::WithBias, true},
        {Tn::Up, "transformer.h.[LAYER_NUM].mlp.c_fc", TN::WithBias, true},
        {Tn::Down, "transformer.h.[LAYER_NUM].mlp.c_proj", TN::WithBias, true}},
       "transformer.wte", "transformer.h.[LAYER_NUM]", "transformer.h.[LAYER_NUM].attn", "transformer.h.[LAYER_NUM].mlp"},
      {"gpt_neox", nullptr, N::LayerNorm, R::Half, M::Plain, false, false, false, Q::None, false, S::None, false,
       QkvLayout::PerHead, "gelu", 1e-5, 0.25, 0, {"use_parallel_residual", true}, kTie, {"attention_bias", true},
       {"attention_bias", true}, kYes, false,
       {{Tn::Embed, "gpt_neox.embed_in"},
        {Tn::FinalNorm, "gpt_neox.final_layer_norm", TN::WithBias},
        {Tn::Head, "embed_out"},
        {Tn::AttnNorm, "gpt_neox.layers.[LAYER_NUM].input_layernorm", TN::WithBias},
        {Tn::MlpNorm, "gpt_neox.layers.[LAYER_NUM].post_attention_layernorm", TN::WithBias},
        {Tn::Qkv, "gpt_neox.layers.[LAYER_NUM].attention.query_key_value", TN::QkvBias},
        {Tn::O, "gpt_neox.layers.[LAYER_NUM].attention.dense", TN::OBias},
        {Tn::Up, "gpt_neox.layers.[LAYER_NUM].mlp.dense_h_to_4h", TN::WithBias},
        {Tn::Down, "gpt_neox.layers.[LAYER_NUM].mlp.dense_4h_to_h", TN::WithBias}},
       "gpt_neox.embed_in", "gpt_neox.layers.[LAYER_NUM]", "gpt_neox.layers.[LAYER_NUM].attention",
       "gpt_neox.layers.[LAYER_NUM].mlp"},
      {"gptj", nullptr, N::LayerNorm, R::Interleaved, M::Plain, false, true, false, Q::None, false, S::None, false, seq,
       "gelu_new", 1e-5, 1.0, 4, kYes, kTie, kNo, kNo, kYes, true,
       {{Tn::Embed, "transformer.wte"},
        {Tn::FinalNorm, "transformer.ln_f", TN::WithBias},
        {Tn::Head, "lm_head"},
        {Tn::AttnNorm, "transformer.h.[LAYER_NUM].ln_1", TN::WithBias},
        {Tn::Q, "transformer.h.[LAYER_NUM].attn.q_proj"},
        {Tn::K, "transformer.h.[LAYER_NUM].attn.k_proj"},
        {Tn::V, "transformer.h.[LAYER_NUM].attn.v_proj"},
        {Tn::O, "transformer.h.[LAYER_NUM].attn.out_proj"},
        {Tn::Up, "transformer.h.[LAYER_NUM].mlp.fc_in", TN::WithBias},
        {Tn::Down, "transformer.h.[LAYER_NUM].mlp.fc_out", TN::WithBias}},
       "transformer.wte", "transformer.h.[LAYER_NUM]", "transformer.h.[LAYER_NUM].attn", "transformer.h.[LAYER_NUM].mlp"},
  };
  return table;
}
#undef KT_L

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

const ArchSpec& arch_for_gguf(const std::string& gguf_arch, const std::string& where) {
  std::string names;
  for (const auto& a : arch_table()) {
    if (!a.gguf_arch) continue;
    if (gguf_arch == a.gguf_arch) return a;
    names += (names.empty() ? "" : ", ") + std::string(a.gguf_arch);
  }
  throw Error(where + ": general.architecture '" + gguf_arch + "' is not supported for GGUF (supported: " + names + ")");
}

void resolve_sliding_layers(ModelConfig& c, int64_t pattern) {
  c.sliding_layers.assign(static_cast<size_t>(c.n_layers), false);
  if (c.sliding_window <= 0) return;
  for (int64_t l = 0; l < c.n_layers; ++l) {
    switch (c.arch->sliding) {
      case SlidingLayers::None: break;
      case SlidingLayers::All: c.sliding_layers[l] = true; break;
      case SlidingLayers::Even: c.sliding_layers[l] = l % 2 == 0; break;
      case SlidingLayers::AllButNth: c.sliding_layers[l] = pattern <= 0 || (l + 1) % pattern != 0; break;
    }
  }
}

Act parse_act(const std::string& s, const std::string& path) {
  if (s == "silu" || s == "swish") return Act::SiLU;
  if (s == "gelu") return Act::Gelu;
  if (s == "gelu_new" || s == "gelu_pytorch_tanh" || s == "gelu_fast") return Act::GeluTanh;
  if (s == "relu") return Act::Relu;
  throw Error(path + ": unsupported activation '" + s + "' (supported: silu, gelu, gelu_new, gelu_pytorch_tanh, relu)");
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
  std::string string_of(std::initializer_list<const char*> keys, const std::string& dflt) const {
    const json* v = find(keys);
    if (!v) return dflt;
    if (!v->is_string()) throw Error(path + ": field '" + found_key(keys) + "' must be a string");
    return v->get<std::string>();
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


// Rotary settings live at the top level and in "rope_scaling" in older
// configs, and in one "rope_parameters" object since transformers 5.
// Gemma-3 keeps one block per layer kind ("full_attention" for the global
// layers, "sliding_attention" for the local ones): the global one is the
// block here, the local one only gives its base (local_rope_theta).
const json* rope_block(const Fields& f) {
  const json* rp = f.find({"rope_parameters"});
  if (rp && rp->is_object()) {
    auto full = rp->find("full_attention");
    if (full != rp->end() && full->is_object()) return &*full;
    return rp;
  }
  return f.find({"rope_scaling"});
}

// The rotary base of the sliding-window layers when they have their own.
double local_rope_base(const Fields& f) {
  const json* rp = f.find({"rope_parameters"});
  if (rp && rp->is_object()) {
    auto local = rp->find("sliding_attention");
    if (local != rp->end() && local->is_object()) {
      auto t = local->find("rope_type");
      if (t != local->end() && !(t->is_string() && *t == "default"))
        throw Error(f.path + ": rope_parameters.sliding_attention: only the default rope type is supported there");
      auto th = local->find("rope_theta");
      if (th != local->end() && !th->is_number())
        throw Error(f.path + ": rope_parameters.sliding_attention.rope_theta must be a number");
      if (th != local->end()) return th->get<double>();
    }
  }
  return f.number({"rope_local_base_freq"}, 0.0);
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
  if (type == "su") type = "longrope";
  if (type != "" && type != "linear" && type != "llama3" && type != "longrope")
    throw Error(f.path + ": rope type '" + type + "' is not supported (supported: default, linear, llama3, longrope)");
  RopeScaling& r = c->rope_scaling;
  r.type = type;
  r.factor = get_num("factor", 1.0);
  r.low_freq_factor = get_num("low_freq_factor", 1.0);
  r.high_freq_factor = get_num("high_freq_factor", 4.0);
  r.original_max_positions = static_cast<int64_t>(
      get_num("original_max_position_embeddings", f.number({"original_max_position_embeddings"}, 8192)));
  if (type == "longrope") {
    auto factors = [&](const char* k) {
      const int64_t n = c->rotary_dim / 2;
      if (!rs->contains(k) || !(*rs)[k].is_array() || static_cast<int64_t>((*rs)[k].size()) != n)
        throw Error(f.path + ": rope field '" + k + "' must be a list of " + std::to_string(n) +
                    " numbers (rotary dimension / 2)");
      std::vector<double> v;
      for (const json& x : (*rs)[k]) {
        if (!x.is_number()) throw Error(f.path + ": rope field '" + k + "' must be a list of numbers");
        v.push_back(x.get<double>());
      }
      return v;
    };
    r.short_factor = factors("short_factor");
    r.long_factor = factors("long_factor");
    // As transformers: the factor is the context's growth when not given,
    // and the attention factor sqrt(1 + ln factor / ln original) by default.
    if (!rs->contains("factor"))
      r.factor = static_cast<double>(c->max_positions) / static_cast<double>(r.original_max_positions);
    r.attention_factor = r.factor <= 1.0 ? 1.0
                                         : std::sqrt(1 + std::log(r.factor) / std::log(static_cast<double>(r.original_max_positions)));
    r.attention_factor = get_num("attention_factor", r.attention_factor);
  }
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
  Fields top{j, path};
  ModelConfig c;
  if (!top.find({"model_type"})) throw Error(path + ": missing field 'model_type'");
  c.model_type = top.string("model_type", "");
  c.arch = &arch_for(c.model_type, path);
  const ArchSpec& A = *c.arch;
  const json* section = A.config_section ? top.find({A.config_section}) : &j;
  if (!section || !section->is_object())
    throw Error(path + ": missing field '" + std::string(A.config_section) + "' (an object: the language model's config)");
  Fields f{*section, path};
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
  c.bos_token_id = f.optional_id("bos_token_id");
  c.eos_token_id = f.optional_id("eos_token_id");
  auto flag = [&](const ConfigFlag& fl) { return fl.key ? f.boolean(fl.key, fl.dflt) : fl.dflt; };
  c.tie_embeddings = flag(A.tie_embeddings);
  c.parallel_block = flag(A.parallel_block);
  c.qkv_bias = flag(A.qkv_bias);
  c.o_bias = flag(A.o_bias);
  c.mlp_bias = flag(A.mlp_bias);
  c.lm_head_bias = A.head_bias;
  c.intermediate = A.intermediate_x_hidden ? f.integer({"intermediate_size", "n_inner"}, A.intermediate_x_hidden * c.hidden)
                                           : f.integer({"intermediate_size"});
  c.norm_eps = f.number({"rms_norm_eps", "layer_norm_epsilon", "layer_norm_eps"}, A.eps_default);
  c.act = parse_act(f.string_of({"hidden_activation", "hidden_act", "activation_function"}, A.act_default), path);
  if (A.rope != RopeStyle::None) {
    c.rope_theta = rope_number(f, "rope_theta", {"rope_theta", "rotary_emb_base"}, 10000.0);
    if (f.find({"rotary_dim"}))
      c.rotary_dim = f.integer({"rotary_dim"});
    else
      c.rotary_dim = static_cast<int64_t>(
          c.head_dim * rope_number(f, "partial_rotary_factor", {"partial_rotary_factor", "rotary_pct"}, A.rotary_fraction_default));
    parse_rope(f, &c);
  }
  // Gemma's scalings and the sliding window.
  if (const json* s = f.find({"query_pre_attn_scalar"})) {
    if (!s->is_number() || s->get<double>() <= 0) throw Error(path + ": field 'query_pre_attn_scalar' must be a positive number");
    c.attn_scale = 1.0 / std::sqrt(s->get<double>());
  }
  c.attn_softcap = f.number({"attn_logit_softcapping"}, 0.0);
  c.final_softcap = f.number({"final_logit_softcapping"}, 0.0);
  if (A.sliding != SlidingLayers::None && f.boolean("use_sliding_window", true))
    c.sliding_window = f.integer({"sliding_window"}, 0);
  if (c.sliding_window > 0) c.local_rope_theta = local_rope_base(f);
  resolve_sliding_layers(c, f.integer({"sliding_window_pattern"}, 6));
  if (const json* lt = f.find({"layer_types"})) {
    if (!lt->is_array() || static_cast<int64_t>(lt->size()) != c.n_layers)
      throw Error(path + ": field 'layer_types' must be a list of " + std::to_string(c.n_layers) + " strings");
    for (int64_t l = 0; l < c.n_layers; ++l) {
      const json& t = (*lt)[l];
      if (!t.is_string() || (t != "sliding_attention" && t != "full_attention"))
        throw Error(path + ": field 'layer_types' entry " + std::to_string(l) +
                    " must be \"sliding_attention\" or \"full_attention\"");
      c.sliding_layers[l] = t == "sliding_attention";
    }
  }
  if (c.rotary_dim % 2 != 0 || c.rotary_dim > c.head_dim)
    throw Error(path + ": rotary dimension " + std::to_string(c.rotary_dim) + " must be even and at most head_dim " +
                std::to_string(c.head_dim));
  return c;
}

}  // namespace kt
