// The YAML run configuration of `knowtrace run` (one file per model family
// in hparams/), validated before any work starts. No model, no torch: the
// checks that need the model (site names) live in pipeline.cpp.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace kt {

struct RunConfig {
  std::string config_path;  // the YAML file ("" when built in code)
  std::string name;         // config file stem: default results dir results/<name>

  // model: HF checkpoint directory or .gguf file, resolved to a path that exists
  // (see resolve_input_path) when the model is needed.
  std::string model;
  // Site-name templates with [LAYER_NUM]; "" = the architecture's own names.
  std::string layer_name, attn_name, mlp_name, embed_name;

  // dataset: "default" (bundled data/facts_default.json), "known_1000", or a
  // path to a JSON list / JSONL file of {prompt, subject, attribute, ...}.
  std::string dataset = "default";
  int64_t samples = 10;
  std::string noise = "s3";  // s<k> | number | u<x>
  uint32_t seed = 1;
  bool replace = false;
  std::vector<std::string> mediators = {"hidden", "hidden_attn_severed", "hidden_mlp_severed", "mlp", "attn"};
  int64_t window = 10;
  std::string convention = "resid_post";  // resid_post | resid_pre
  std::string severing = "same-draw";     // same-draw | rome-notebook (ROME's frozen-MLP/attn notebook)
  std::string corruption = "noise";       // noise (ROME) | prompt (a counterfactual prompt's clean run)
  std::string counterfactual = "field";   // where counterfactuals come from: field (the data set's
                                          // counterfactual / counterfactual_answer) | same-relation (the first
                                          // other subject of the relation with another attribute and as many tokens)
  std::string target = "first-token";     // first-token (ROME) | answer (all tokens of " " + attribute, teacher-forced)
  std::string metric = "prob";            // prob (ROME) | logprob | logit_diff | kl
  bool normalise = false;                 // scores as (m - m_corrupted) / (m_clean - m_corrupted)
  int64_t knockout_window = 9;            // layers per knockout cell (Geva et al.)
  std::string positions = "rome6";        // rome6 | seed4: the scheme of the figures
  std::string average = "tokens";         // tokens (ROME: every token row a sample) | facts
  std::string aie = "rome";               // rome (ROME's notebook: mean score - mean low) | per-row
  std::string bands = "rome";             // rome (population std of scores / sqrt(facts)) | per-row
  std::string filter = "rome";            // rome | first-token | none
  std::string device = "cpu";
  std::string dtype = "float32";
  std::string results;                    // "" = results/<name>
  int64_t limit = 0;                      // 0 = no limit: at most this many kept facts are traced
  std::vector<std::string> facts;         // subset of fact ids (empty = all)
  bool save_states = false;               // also store every site's clean/corrupted values (float16)
  std::string engine = "fast";            // fast (the default of every command) | reference (ROME's loop, the
                                          // oracle): the same numbers to fp32 rounding
  int64_t max_batch_tokens = -1;          // fast engine: live tokens per sweep: -1 = auto (YAML `auto`: sized
                                          // from the memory available), 0 = unlimited
  std::vector<std::string> formats = {"png", "pdf", "svg"};
  std::vector<std::string> stages = {"filter", "trace", "aggregate", "plot"};

  // The seed project's keys (model.name, result_pth.base_pth, the
  // hook_layer lists clean_save / corrupted_save: checked against the model
  // as the other site names), and notes on keys read but not needed.
  std::string seed_name, seed_base;
  std::vector<std::pair<std::string, std::string>> saved_sites;  // (key, [LAYER_NUM] template)
  std::vector<std::string> notes;

  // Where each key was set ("file:line") for messages about values that are
  // only checkable later (site names, the model's layer count).
  std::string where(const std::string& key) const;
  std::vector<std::pair<std::string, std::string>> locations;
};

// Every key a config file may hold, in documentation order.
const std::vector<std::string>& config_keys();

// Parses and validates a YAML config: unknown keys (with the nearest valid
// one suggested), wrong types, bad enum values, out-of-range numbers. Every
// failure is one kt::Error line "<file>:<line>: key '<k>': ...". Paths are
// not checked here (see check_paths).
RunConfig load_config(const std::string& path);
// The same from YAML text (`origin` names it in messages).
RunConfig parse_config(const std::string& yaml_text, const std::string& origin);

// Command-line overrides; each value is validated as its key would be
// (messages name the flag).
struct ConfigOverrides {
  std::optional<std::string> results, device, dtype, engine, model, dataset;
  std::optional<int64_t> limit;
  std::optional<std::vector<std::string>> stages;
};
void apply_overrides(RunConfig& cfg, const ConfigOverrides& o);
// Any key, from a YAML (or JSON) value text, checked as in a file; `where`
// names the source in messages ("keyword argument"). kt::Error on an
// unknown key (with the nearest suggested) or a bad value.
void set_config_value(RunConfig& cfg, const std::string& key, const std::string& yaml_value, const std::string& where);

// Resolves a relative input path: the current directory first, then the
// config file's directory and each of its ancestors (so `models/x.gguf` in
// hparams/x.yaml works from anywhere inside the repository). Returns the
// path that exists, or throws kt::Error naming the key, the file and line,
// and every place looked at.
std::string resolve_input_path(const RunConfig& cfg, const std::string& key, const std::string& value);

// Checks the input files the requested stages need (the model for filter
// and trace, the dataset for filter and trace).
void check_paths(RunConfig& cfg);

// The results directory (cfg.results or results/<name>).
std::string results_dir(const RunConfig& cfg);

// Levenshtein distance, used to suggest the nearest valid name.
size_t edit_distance(const std::string& a, const std::string& b);
// The candidate nearest to `word`, or "" when none is close enough.
std::string nearest_name(const std::string& word, const std::vector<std::string>& candidates);

// Stages in their fixed order; kt::Error on an unknown one.
std::vector<std::string> parse_stages(const std::string& comma_list);
bool has_stage(const RunConfig& cfg, const std::string& stage);

// The resolved config as JSON text (for run.json) and back.
std::string config_to_json(const RunConfig& cfg);
RunConfig config_from_json(const std::string& json_text, const std::string& origin);

}  // namespace kt
