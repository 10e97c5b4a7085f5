#include "pipeline/config.h"

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include "trace/noise_spec.h"
#include "util/error.h"
#include "util/hf_cache.h"
#include "util/names.h"
#include "util/paths.h"

namespace kt {
namespace fs = std::filesystem;

namespace {

const std::vector<std::string> kStages = {"filter", "trace", "aggregate", "plot"};

std::string join(const std::vector<std::string>& v, const std::string& sep = ", ") {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? sep : "") + v[i];
  return out;
}

std::string trim(const std::string& s) {
  const char* ws = " \t\r\n";
  const size_t a = s.find_first_not_of(ws);
  if (a == std::string::npos) return "";
  return s.substr(a, s.find_last_not_of(ws) - a + 1);
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s + ",") {
    if (c == ',' || c == ' ' || c == '\t') {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  return out;
}

// A number as written: digits, optional sign, fraction and exponent.
bool is_number(const std::string& s, double* value = nullptr) {
  if (s.empty()) return false;
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size() || !std::isfinite(v)) return false;
  if (value) *value = v;
  return true;
}

// Error messages are one line whatever the file held ("a\nb" in quotes).
std::string one_line(std::string s) {
  for (char& ch : s)
    if (ch == '\n' || ch == '\r') ch = ' ';
  return s;
}

// Messages: "<where>: key '<key>': <what>".
[[noreturn]] void fail(const std::string& where, const std::string& key, const std::string& what) {
  throw Error(one_line(where + ": key '" + key + "': " + what));
}

// Strict UTF-8 (no overlongs, surrogates or code points past U+10FFFF):
// values end up in run.json, which must be valid JSON.
bool valid_utf8(const std::string& s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t len = 0;
    uint32_t cp = 0;
    if (c < 0x80) { ++i; continue; }
    if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
    else return false;
    if (i + len > n) return false;
    for (size_t k = 1; k < len; ++k) {
      const unsigned char d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
      return false;
    i += len;
  }
  return true;
}

std::string check_enum(const std::string& where, const std::string& key, const std::string& v,
                       const std::vector<std::string>& valid) {
  if (std::find(valid.begin(), valid.end(), v) != valid.end()) return v;
  std::string hint = nearest_name(v, valid);
  fail(where, key, "'" + v + "' is not one of " + join(valid, ", ") + (hint.empty() ? "" : " (did you mean '" + hint + "'?)"));
}

std::string normalize_dtype(const std::string& where, const std::string& key, const std::string& v) {
  try {
    return canonical_dtype(v);
  } catch (const Error& e) {
    fail(where, key, e.what());
  }
}

std::string check_device(const std::string& where, const std::string& key, const std::string& v) {
  if (v == "cpu" || v == "cuda") return v;
  if (v.rfind("cuda:", 0) == 0 && v.size() > 5 && v.find_first_not_of("0123456789", 5) == std::string::npos) return v;
  fail(where, key, "'" + v + "' is not a device (cpu, cuda, cuda:N)");
}

void check_noise(const std::string& where, const std::string& key, const std::string& v) {
  try {
    parse_noise(v);
  } catch (const Error&) {
    fail(where, key, "'" + v + "' is not a noise level: expected " + kNoiseForms);
  }
}

void check_fact_id(const std::string& where, const std::string& key, const std::string& id) {
  if (id.empty() || id.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") !=
                        std::string::npos || id[0] == '.')
    fail(where, key, "fact id '" + id + "' may only hold letters, digits, '_', '-' and '.'");
}

// ---- typed access to YAML nodes, every failure naming file:line and key.

std::string mark(const std::string& origin, const YAML::Mark& m) {
  if (m.is_null()) return origin;
  return origin + ":" + std::to_string(m.line + 1);
}


struct Field {
  const YAML::Node& node;
  std::string where;  // "file:line"
  std::string key;
  std::string origin;  // the file, for the lines of nested keys

  std::string scalar(const char* expected) const {
    if (!node.IsScalar()) fail(where, key, std::string("expected ") + expected + ", got a " + (node.IsSequence() ? "list" : node.IsMap() ? "mapping" : "null value"));
    return utf8(node.Scalar());
  }
  const std::string& utf8(const std::string& s) const {
    if (!valid_utf8(s)) fail(where, key, "the value is not valid UTF-8 text");
    return s;
  }
  std::string str() const {
    std::string s = scalar("a string");
    if (s.empty()) fail(where, key, "must not be empty");
    return s;
  }
  int64_t integer(int64_t lo, int64_t hi) const {
    const std::string s = scalar("an integer");
    int64_t v = 0;
    try {
      v = node.as<int64_t>();
    } catch (const YAML::Exception&) {
      fail(where, key, "expected an integer, got '" + s + "'");
    }
    if (v < lo || v > hi)
      fail(where, key, std::to_string(v) + " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return v;
  }
  bool boolean() const {
    const std::string s = scalar("true or false");
    try {
      return node.as<bool>();
    } catch (const YAML::Exception&) {
      fail(where, key, "expected true or false, got '" + s + "'");
    }
  }
  // A list, or a scalar holding a comma/space separated list.
  std::vector<std::string> list() const {
    std::vector<std::string> out;
    if (node.IsScalar()) return split_list(utf8(node.Scalar()));
    if (!node.IsSequence()) fail(where, key, "expected a list");
    for (const auto& item : node) {
      if (!item.IsScalar()) fail(where + "", key, "expected a list of strings, got a nested " + std::string(item.IsSequence() ? "list" : "mapping"));
      out.push_back(utf8(item.Scalar()));
    }
    return out;
  }
};


// Each key: how to read it into the config.
using Setter = std::function<void(RunConfig&, const Field&)>;

// The seed project's nested keys (BaixuanLi/Knowledge-Tracing,
// hparams/llama_config.yaml), read as they are: calls `each` with every
// sub-key's Field after checking it is one of `known`.
void for_each_subkey(RunConfig& c, const Field& f, const std::vector<std::string>& known,
                     const std::function<void(const std::string&, const Field&)>& each) {
  if (!f.node.IsMap()) fail(f.where, f.key, "expected a mapping of " + join(known));
  for (auto it = f.node.begin(); it != f.node.end(); ++it) {
    const std::string sub = it->first.Scalar();
    const std::string where = mark(f.origin, it->first.Mark());
    const std::string name = f.key + "." + sub;
    if (std::find(known.begin(), known.end(), sub) == known.end()) {
      const std::string hint = nearest_name(sub, known);
      fail(where, name, "unknown key" + (hint.empty() ? "" : " (did you mean '" + f.key + "." + hint + "'?)") +
                            "; valid: " + join(known));
    }
    const YAML::Node value = it->second;
    if (value.IsNull()) fail(where, name, "has no value");
    c.locations.emplace_back(name, where);
    each(sub, Field{value, where, name, f.origin});
  }
}

// A site-name template set by the seed's hook_layer and by our own key:
// refused when both give it.
void set_template(RunConfig& c, std::string& slot, const std::string& value, const Field& f, const char* ours) {
  if (!slot.empty()) fail(f.where, f.key, "sets the same site as '" + std::string(ours) + "' (" + c.where(ours) + "): give one");
  slot = value;
  c.locations.emplace_back(ours, f.where);
}

void read_model(RunConfig& c, const Field& f) {
  if (!f.node.IsMap()) {
    c.model = f.str();
    return;
  }
  // The seed's form: model: {pth: <hub id or path>, name: <results name>}.
  for_each_subkey(c, f, {"pth", "name"}, [&](const std::string& sub, const Field& v) {
    if (sub == "pth") c.model = v.str();
    else c.seed_name = v.str();
  });
  if (c.model.empty()) fail(f.where, f.key, "needs 'pth' (a Hugging Face hub ID, checkpoint directory or .gguf file)");
}

void read_hook_layer(RunConfig& c, const Field& f) {
  for_each_subkey(c, f, {"clean_save", "corrupt", "corrupted_save", "clean_replace", "attn_sever", "mlp_sever"},
                  [&](const std::string& sub, const Field& v) {
                    if (sub == "clean_replace") set_template(c, c.layer_name, v.str(), v, "layer_name");
                    else if (sub == "attn_sever") set_template(c, c.attn_name, v.str(), v, "attn_name");
                    else if (sub == "mlp_sever") set_template(c, c.mlp_name, v.str(), v, "mlp_name");
                    else if (sub == "corrupt") set_template(c, c.embed_name, v.str(), v, "embed_name");
                    else
                      for (const auto& t : v.list()) c.saved_sites.emplace_back(v.key, t);
                  });
}

// One typed description per key: how YAML (and a command-line flag, read
// as a YAML scalar) sets it, and how run.json stores it and reads it back.
// The seed's nested keys have no stored form: they set other keys.
struct KeySpec {
  std::string name;
  Setter read;
  std::function<nlohmann::json(const RunConfig&)> save;
  std::function<void(RunConfig&, const nlohmann::json&)> load;
};

template <class T>
KeySpec stored(const char* name, T RunConfig::*member, Setter read) {
  return {name, std::move(read), [member](const RunConfig& c) { return nlohmann::json(c.*member); },
          [member](RunConfig& c, const nlohmann::json& j) { c.*member = j.get<T>(); }};
}
template <class T>
KeySpec field(const char* name, T RunConfig::*member, std::function<T(const Field&)> parse) {
  return stored(name, member, [member, parse](RunConfig& c, const Field& f) { c.*member = parse(f); });
}
KeySpec yaml_only(const char* name, Setter read) { return {name, std::move(read), nullptr, nullptr}; }

// Value parsers; closed sets are one list each.
std::function<std::string(const Field&)> text() {
  return [](const Field& f) { return f.str(); };
}
std::function<std::string(const Field&)> one_of(std::vector<std::string> valid) {
  return [valid](const Field& f) { return check_enum(f.where, f.key, f.str(), valid); };
}
std::function<int64_t(const Field&)> integer(int64_t lo, int64_t hi) {
  return [lo, hi](const Field& f) { return f.integer(lo, hi); };
}
std::function<bool(const Field&)> boolean() {
  return [](const Field& f) { return f.boolean(); };
}
// `one` names an item when the list may not be empty ("mediator").
std::function<std::vector<std::string>(const Field&)> list_of(std::vector<std::string> valid, std::string one = "") {
  return [valid, one](const Field& f) {
    std::vector<std::string> v = f.list();
    if (!one.empty() && v.empty()) fail(f.where, f.key, "needs at least one " + one + " (" + join(valid) + ")");
    for (const auto& x : v) check_enum(f.where, f.key, x, valid);
    return v;
  };
}

const std::vector<KeySpec>& key_specs() {
  static const std::vector<KeySpec> s = {
      stored("model", &RunConfig::model, read_model),
      yaml_only("hook_layer", read_hook_layer),
      yaml_only("result_pth",
                [](RunConfig& c, const Field& f) {
                  for_each_subkey(c, f, {"base_pth"}, [&](const std::string&, const Field& v) { c.seed_base = v.str(); });
                }),
      yaml_only("generation_args",
                [](RunConfig& c, const Field& f) {
                  c.notes.push_back(f.where + ": key 'generation_args' is not needed (knowtrace reads the next token's "
                                    "probabilities from one forward pass): ignored");
                }),
      field("layer_name", &RunConfig::layer_name, text()),
      field("attn_name", &RunConfig::attn_name, text()),
      field("mlp_name", &RunConfig::mlp_name, text()),
      field("embed_name", &RunConfig::embed_name, text()),
      field("dataset", &RunConfig::dataset, text()),
      field("samples", &RunConfig::samples, integer(1, 100000)),
      field<std::string>("noise", &RunConfig::noise,
                         [](const Field& f) {
                           check_noise(f.where, f.key, f.str());
                           return f.str();
                         }),
      field<uint32_t>("seed", &RunConfig::seed,
                      [](const Field& f) { return static_cast<uint32_t>(f.integer(0, 4294967295LL)); }),
      field("replace", &RunConfig::replace, boolean()),
      field("mediators", &RunConfig::mediators, list_of(mediator_names(), "mediator")),
      field("window", &RunConfig::window, integer(1, 100000)),
      field("convention", &RunConfig::convention, one_of({"resid_post", "resid_pre"})),
      field("severing", &RunConfig::severing, one_of({"same-draw", "rome-notebook"})),
      field("corruption", &RunConfig::corruption, one_of({"noise", "prompt"})),
      field("counterfactual", &RunConfig::counterfactual, one_of({"field", "same-relation"})),
      field("target", &RunConfig::target, one_of({"first-token", "answer"})),
      field("metric", &RunConfig::metric, one_of({"prob", "logprob", "logit_diff", "kl"})),
      field("normalise", &RunConfig::normalise, boolean()),
      field("knockout_window", &RunConfig::knockout_window, integer(1, 100000)),
      field("positions", &RunConfig::positions, one_of({"rome6", "seed4"})),
      field("average", &RunConfig::average, one_of({"tokens", "facts"})),
      field("aie", &RunConfig::aie, one_of({"rome", "per-row"})),
      field("bands", &RunConfig::bands, one_of({"rome", "per-row"})),
      field("filter", &RunConfig::filter, one_of({"rome", "first-token", "none"})),
      field<std::string>("device", &RunConfig::device, [](const Field& f) { return check_device(f.where, f.key, f.str()); }),
      field<std::string>("dtype", &RunConfig::dtype, [](const Field& f) { return normalize_dtype(f.where, f.key, f.str()); }),
      field("results", &RunConfig::results, text()),
      field("limit", &RunConfig::limit, integer(0, int64_t(1) << 40)),
      field<std::vector<std::string>>("facts", &RunConfig::facts,
                                      [](const Field& f) {
                                        std::vector<std::string> v = f.list();
                                        for (const auto& id : v) check_fact_id(f.where, f.key, id);
                                        return v;
                                      }),
      field("save_states", &RunConfig::save_states, boolean()),
      field("engine", &RunConfig::engine, one_of({"reference", "fast"})),
      KeySpec{"max_batch_tokens",
              [](RunConfig& c, const Field& f) {
                c.max_batch_tokens = f.str() == "auto" ? -1 : f.integer(0, int64_t(1) << 40);
              },
              [](const RunConfig& c) {
                return c.max_batch_tokens < 0 ? nlohmann::json("auto") : nlohmann::json(c.max_batch_tokens);
              },
              [](RunConfig& c, const nlohmann::json& j) {
                c.max_batch_tokens = j.is_string() ? -1 : j.get<int64_t>();
              }},
      field("formats", &RunConfig::formats, list_of({"png", "pdf", "svg"})),
      field<std::vector<std::string>>("stages", &RunConfig::stages,
                                      [](const Field& f) {
                                        try {
                                          return parse_stages(join(f.list(), ","));
                                        } catch (const Error& e) {
                                          fail(f.where, f.key, e.what());
                                        }
                                      }),
  };
  return s;
}

const KeySpec* find_key(const std::string& name) {
  for (const auto& k : key_specs())
    if (k.name == name) return &k;
  return nullptr;
}

// Checks a [LAYER_NUM] template's shape (the model check comes later).
void check_template(const RunConfig& c, const std::string& key, const std::string& v, bool needs_layer) {
  const bool has = v.find("[LAYER_NUM]") != std::string::npos;
  if (needs_layer && !has) fail(c.where(key), key, "'" + v + "' needs the [LAYER_NUM] placeholder, e.g. model.layers.[LAYER_NUM]");
  if (!needs_layer && has) fail(c.where(key), key, "'" + v + "' names one module: it takes no [LAYER_NUM]");
}

}  // namespace

std::string RunConfig::where(const std::string& key) const {
  for (const auto& [k, w] : locations)
    if (k == key) return w;
  return config_path.empty() ? "config" : config_path;
}

const std::vector<std::string>& config_keys() {
  static const std::vector<std::string> keys = [] {
    std::vector<std::string> k;
    for (const auto& spec : key_specs()) k.push_back(spec.name);
    return k;
  }();
  return keys;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string nearest_name(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_d = std::string::npos;
  for (const auto& c : candidates) {
    const size_t d = edit_distance(word, c);
    if (d < best_d) best_d = d, best = c;
  }
  // Close enough: a third of the longer word, at least 2 edits.
  const size_t limit = std::max<size_t>(2, std::max(word.size(), best.size()) / 3);
  return best_d <= limit ? best : "";
}

std::vector<std::string> parse_stages(const std::string& comma_list) {
  std::set<std::string> want;
  for (const auto& s : split_list(comma_list)) {
    if (std::find(kStages.begin(), kStages.end(), s) == kStages.end()) {
      std::string hint = nearest_name(s, kStages);
      throw Error("unknown stage '" + s + "' (valid: " + join(kStages) + ")" +
                  (hint.empty() ? "" : "; did you mean '" + hint + "'?"));
    }
    want.insert(s);
  }
  if (want.empty()) throw Error("no stage given (valid: " + join(kStages) + ")");
  std::vector<std::string> out;
  for (const auto& s : kStages)
    if (want.count(s)) out.push_back(s);
  return out;
}

bool has_stage(const RunConfig& cfg, const std::string& stage) {
  return std::find(cfg.stages.begin(), cfg.stages.end(), stage) != cfg.stages.end();
}

RunConfig parse_config(const std::string& yaml_text, const std::string& origin) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::ParserException& e) {
    throw Error(one_line(mark(origin, e.mark) + ": not valid YAML: " + e.msg));
  }
  RunConfig c;
  c.config_path = origin;
  c.name = fs::path(origin).stem().string();
  if (!root || root.IsNull()) throw Error(origin + ": the config is empty (it needs at least 'model')");
  if (!root.IsMap()) throw Error(mark(origin, root.Mark()) + ": the config must be a mapping of keys to values");
  std::set<std::string> seen;
  for (auto it = root.begin(); it != root.end(); ++it) {
    const std::string where = mark(origin, it->first.Mark());
    if (!it->first.IsScalar()) throw Error(where + ": keys must be plain names");
    const std::string key = it->first.Scalar();
    const KeySpec* spec = find_key(key);
    if (!spec) {
      const std::string hint = nearest_name(key, config_keys());
      throw Error(one_line(where + ": unknown key '" + key + "'" + (hint.empty() ? "" : " (did you mean '" + hint + "'?)") +
                           "; valid keys: " + join(config_keys())));
    }
    if (!seen.insert(key).second) throw Error(one_line(where + ": key '" + key + "' is given twice"));
    // A copy: the iterator yields a temporary pair, it->second dies with it.
    const YAML::Node value = it->second;
    c.locations.emplace_back(key, where);
    if (value.IsNull()) fail(where, key, "has no value");
    spec->read(c, Field{value, where, key, origin});
  }
  if (c.model.empty()) throw Error(origin + ": key 'model' is missing (a Hugging Face checkpoint directory or a .gguf file)");
  // The seed's results: result_pth.base_pth + model.name.
  if (!c.seed_name.empty()) c.name = c.seed_name;
  if (!c.seed_base.empty() && c.results.empty()) c.results = (fs::path(c.seed_base) / c.name).lexically_normal().string();
  if (!c.layer_name.empty()) check_template(c, "layer_name", c.layer_name, true);
  if (!c.attn_name.empty()) check_template(c, "attn_name", c.attn_name, true);
  if (!c.mlp_name.empty()) check_template(c, "mlp_name", c.mlp_name, true);
  if (!c.embed_name.empty()) check_template(c, "embed_name", c.embed_name, false);
  return c;
}

RunConfig load_config(const std::string& path) {
  if (!fs::exists(path)) throw NotFound(path + ": config file not found");
  if (fs::is_directory(path)) throw Error(path + ": is a directory, not a YAML config file");
  return parse_config(read_text_file(path), path);
}

void apply_overrides(RunConfig& c, const ConfigOverrides& o) {
  // A flag sets its key through the key's own description: the same checks
  // and messages as in a file, with the flag in place of file:line.
  auto set = [&](const std::string& key, const std::string& value) {
    c.locations.erase(std::remove_if(c.locations.begin(), c.locations.end(), [&](const auto& p) { return p.first == key; }),
                      c.locations.end());
    const YAML::Node node(value);
    find_key(key)->read(c, Field{node, "--" + key, key, ""});
    c.locations.emplace_back(key, "--" + key);
  };
  if (o.results) set("results", *o.results);
  if (o.device) set("device", *o.device);
  if (o.dtype) set("dtype", *o.dtype);
  if (o.engine) set("engine", *o.engine);
  if (o.model) set("model", *o.model);
  if (o.dataset) set("dataset", *o.dataset);
  if (o.limit) set("limit", std::to_string(*o.limit));
  if (o.stages) set("stages", join(*o.stages, ","));
}

void set_config_value(RunConfig& c, const std::string& key, const std::string& yaml_value, const std::string& where) {
  const KeySpec* spec = find_key(key);
  if (!spec) {
    const std::string hint = nearest_name(key, config_keys());
    throw Error(where + ": unknown key '" + key + "'" + (hint.empty() ? "" : " (did you mean '" + hint + "'?)") +
                "; valid keys: " + join(config_keys()));
  }
  YAML::Node node;
  try {
    node = YAML::Load(yaml_value);
  } catch (const YAML::Exception& e) {
    throw Error(where + ": key '" + key + "': not a YAML value (" + e.msg + ")");
  }
  if (!node || node.IsNull()) fail(where, key, "has no value");
  c.locations.erase(std::remove_if(c.locations.begin(), c.locations.end(), [&](const auto& p) { return p.first == key; }),
                    c.locations.end());
  spec->read(c, Field{node, where, key, ""});
  c.locations.emplace_back(key, where);
}

std::string resolve_input_path(const RunConfig& c, const std::string& key, const std::string& value) {
  const fs::path p(value);
  std::vector<fs::path> tried;
  if (p.is_absolute()) {
    tried.push_back(p);
  } else {
    tried.push_back(fs::current_path() / p);
    if (!c.config_path.empty()) {
      fs::path dir = fs::absolute(c.config_path).parent_path();
      for (; !dir.empty(); dir = dir.parent_path()) {
        tried.push_back(dir / p);
        if (dir == dir.root_path()) break;
      }
    }
  }
  for (auto& t : tried) t = t.lexically_normal();
  for (size_t i = 1; i < tried.size(); ++i)
    if (std::find(tried.begin(), tried.begin() + static_cast<std::ptrdiff_t>(i), tried[i]) != tried.begin() + static_cast<std::ptrdiff_t>(i))
      tried.erase(tried.begin() + static_cast<std::ptrdiff_t>(i--));
  for (const auto& t : tried)
    if (fs::exists(t)) return t.string();
  std::string looked;
  for (size_t i = 0; i < tried.size() && i < 4; ++i) looked += (i ? ", " : "") + tried[i].string();
  if (tried.size() > 4) looked += ", ... (every folder above the config)";
  throw NotFound(c.where(key) + ": key '" + key + "': '" + value + "' not found (looked at " + looked + ")");
}

void check_paths(RunConfig& c) {
  if (has_stage(c, "filter") || has_stage(c, "trace")) {
    // Paths first; then a hub ID ("org/name", the seed's form) from the local
    // Hugging Face cache.
    try {
      c.model = resolve_input_path(c, "model", c.model);
    } catch (const Error& e) {
      if (!looks_like_hub_id(c.model)) throw;
      if (auto snap = find_in_hf_cache(c.model)) {
        c.model = *snap;
      } else {
        throw NotFound(std::string(e.what()) + "; nor in the Hugging Face cache (" + hf_cache_dirs_text() +
                    "): fetch it with `" + hf_download_command(c.model) + "`");
      }
    }
    if (c.dataset != "default" && c.dataset != "known_1000") c.dataset = resolve_input_path(c, "dataset", c.dataset);
  }
}

std::string results_dir(const RunConfig& c) {
  if (!c.results.empty()) return c.results;
  return (fs::path("results") / (c.name.empty() ? "run" : c.name)).string();
}

std::string config_to_json(const RunConfig& c) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& k : key_specs())
    if (k.save) j[k.name] = k.save(c);
  j["config_path"] = c.config_path;
  j["name"] = c.name;
  // Values from parse_config are valid UTF-8; a config path need not be.
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
}

RunConfig config_from_json(const std::string& text, const std::string& origin) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(origin + ": not valid JSON (" + std::string(e.what()) + ")");
  }
  RunConfig c;
  try {
    if (!j.contains("model")) throw Error(origin + ": config: no 'model'");
    // Keys a run.json of an older version lacks keep their defaults.
    for (const auto& k : key_specs())
      if (k.load && j.contains(k.name)) k.load(c, j.at(k.name));
    c.config_path = j.value("config_path", std::string());
    c.name = j.value("name", std::string());
  } catch (const nlohmann::json::exception& e) {
    throw Error(origin + ": config: " + std::string(e.what()));
  }
  return c;
}

}  // namespace kt
