// `predict`, `inspect` and `tokenize`: the commands that only need a loaded
// model (or, for `tokenize`, only its tokenizer).
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>

#include "cli/commands.h"
#include "model/model.h"
#include "util/error.h"
#include "util/paths.h"

namespace kt::cli {
namespace {

struct ModelArgs {
  std::string model, device = "cpu", dtype = "float32";
  void add(CLI::App* cmd) {
    cmd->add_option("--model", model, "Hugging Face checkpoint directory or .gguf file")->required();
    cmd->add_option("--device", device, "cpu | cuda | cuda:N")->capture_default_str();
    cmd->add_option("--dtype", dtype, "float32 | bfloat16 | float16")->capture_default_str();
  }
  std::unique_ptr<Model> load() const {
    LoadOptions o;
    o.dtype = parse_dtype(dtype);
    o.device = parse_device(device);
    return Model::load(model, o);
  }
};

// Shows a token's bytes readably: newlines/tabs escaped, broken UTF-8 as \xNN.
std::string printable(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    unsigned char c = s[i];
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    bool ok = len > 0 && i + len <= s.size();
    for (int k = 1; ok && k < len; ++k) ok = (static_cast<unsigned char>(s[i + k]) >> 6) == 2;
    if (!ok) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02X", c);
      out += buf;
      ++i;
    } else if (c == '\n') {
      out += "\\n", ++i;
    } else if (c == '\t') {
      out += "\\t", ++i;
    } else {
      out += s.substr(i, len), i += len;
    }
  }
  return out;
}

void run_predict(const ModelArgs& ma, const std::string& prompt, int top_k, bool as_json) {
  if (top_k < 1) throw Error("--top-k must be at least 1 (got " + std::to_string(top_k) + ")");
  auto model = ma.load();
  Encoding enc = model->tokenizer().encode(prompt);
  if (enc.ids.empty()) throw Error("--prompt: the prompt encodes to no tokens");
  at::Tensor ids = at::tensor(std::vector<int64_t>(enc.ids.begin(), enc.ids.end()), at::kLong).unsqueeze(0);
  at::Tensor probs = at::softmax(model->forward(ids, nullptr, /*last_only=*/true)[0], -1);
  auto [p, idx] = probs.topk(std::min<int64_t>(top_k, probs.size(0)));
  p = p.cpu(), idx = idx.cpu();
  if (as_json) {
    nlohmann::json j;
    j["prompt"] = prompt;
    j["model"] = ma.model;
    j["input_ids"] = enc.ids;
    nlohmann::json top = nlohmann::json::array();
    for (int64_t i = 0; i < p.size(0); ++i) {
      int32_t id = static_cast<int32_t>(idx[i].item<int64_t>());
      top.push_back({{"id", id}, {"token", model->tokenizer().token_text(id)}, {"prob", p[i].item<float>()}});
    }
    j["top"] = top;
    std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    return;
  }
  std::cout << "prompt: " << prompt << "  (" << enc.ids.size() << " tokens)\n";
  for (int64_t i = 0; i < p.size(0); ++i) {
    int32_t id = static_cast<int32_t>(idx[i].item<int64_t>());
    std::printf("%3lld  %8.5f  id %-7d '%s'\n", static_cast<long long>(i + 1), p[i].item<float>(), id,
                printable(model->tokenizer().token_text(id)).c_str());
  }
}

void run_inspect(const ModelArgs& ma) {
  auto model = ma.load();
  const ModelConfig& c = model->config();
  std::printf("model        %s\narchitecture %s\nlayers       %lld\nhidden       %lld\nheads        %lld (kv %lld, head_dim %lld)\n"
              "mlp          %lld\nvocab        %lld\ncontext      %lld\nrotary dims  %lld (theta %g%s)\nnorm eps     %g\n"
              "tied embed   %s\nparallel     %s\n",
              ma.model.c_str(), c.model_type.c_str(), (long long)c.n_layers, (long long)c.hidden,
              (long long)c.n_heads, (long long)c.n_kv_heads, (long long)c.head_dim, (long long)c.intermediate,
              (long long)c.vocab_size, (long long)c.max_positions, (long long)c.rotary_dim, c.rope_theta,
              c.rope_scaling.type.empty() ? "" : (", scaling " + c.rope_scaling.type).c_str(), c.norm_eps,
              c.tie_embeddings ? "yes" : "no", c.parallel_block ? "yes" : "no");
  if (c.sliding_window > 0) {
    int64_t n = 0;
    for (int64_t l = 0; l < c.n_layers; ++l) n += c.is_sliding(l) ? 1 : 0;
    char theta[64] = "";
    if (c.local_rope_theta > 0) std::snprintf(theta, sizeof theta, " (their rotary theta %g)", c.local_rope_theta);
    std::printf("window       %lld tokens on %lld of %lld layers%s\n", (long long)c.sliding_window, (long long)n,
                (long long)c.n_layers, theta);
  }
  if (c.attn_scale > 0 || c.attn_softcap > 0 || c.final_softcap > 0)
    std::printf("attention    query scale %g, soft-capping %g (scores) / %g (logits; 0 = none)\n",
                c.attn_scale > 0 ? c.attn_scale : 1.0 / std::sqrt(double(c.head_dim)), c.attn_softcap, c.final_softcap);
  const Tokenizer& tok = model->tokenizer();
  std::printf("tokenizer    %s, %zu tokens (bos %s, eos %s)\n", tok.kind().c_str(), tok.vocab_size(),
              tok.bos_id() ? std::to_string(*tok.bos_id()).c_str() : "none",
              tok.eos_id() ? std::to_string(*tok.eos_id()).c_str() : "none");
  std::printf("sites (%zu):\n", all_sites(c).size());
  for (const Site& s : all_sites(c)) std::printf("  %s\n", site_name(c, s).c_str());
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// One text: every token with its id, the input bytes it covers and its text.
// A data set (a JSON list of objects with "prompt"): every prompt, timed.
void run_tokenize(const std::string& model, const std::string& text, const std::string& dataset, bool as_json,
                  bool no_special) {
  if (text.empty() == dataset.empty()) throw Error("tokenize: give exactly one of --text and --dataset");
  auto t0 = std::chrono::steady_clock::now();
  const Tokenizer tok = Tokenizer::load(model);
  const double load_s = seconds_since(t0);
  if (!dataset.empty()) {
    nlohmann::json facts;
    try {
      facts = nlohmann::json::parse(read_text_file(dataset));
    } catch (const nlohmann::json::exception& e) {
      throw Error(dataset + ": invalid JSON (" + std::string(e.what()) + ")");
    }
    if (!facts.is_array()) throw Error(dataset + ": expected a JSON list of objects with \"prompt\"");
    std::vector<std::string> prompts;
    for (size_t i = 0; i < facts.size(); ++i) {
      const auto& f = facts[i];
      if (!f.is_object() || !f.contains("prompt") || !f["prompt"].is_string())
        throw Error(dataset + ": entry " + std::to_string(i) + ": expected an object with a string \"prompt\"");
      prompts.push_back(f["prompt"].get<std::string>());
    }
    t0 = std::chrono::steady_clock::now();
    size_t n_tokens = 0;
    nlohmann::json rows = nlohmann::json::array();
    for (const std::string& p : prompts) {
      Encoding enc = tok.encode(p, !no_special);
      n_tokens += enc.ids.size();
      if (as_json) rows.push_back(enc.ids);
    }
    const double enc_s = seconds_since(t0);
    if (as_json) {
      std::cout << nlohmann::json({{"model", model}, {"tokenizer", tok.kind()}, {"load_s", load_s},
                                   {"encode_s", enc_s}, {"input_ids", rows}})
                       .dump()
                << "\n";
    } else {
      std::printf("tokenizer: %s, %zu tokens, loaded in %.3f s\n%zu prompts -> %zu tokens in %.4f s\n",
                  tok.kind().c_str(), tok.vocab_size(), load_s, prompts.size(), n_tokens, enc_s);
    }
    return;
  }
  const Encoding enc = tok.encode(text, !no_special);
  if (as_json) {
    nlohmann::json offsets = nlohmann::json::array(), pieces = nlohmann::json::array();
    for (size_t i = 0; i < enc.ids.size(); ++i) {
      offsets.push_back({enc.offsets[i].first, enc.offsets[i].second});
      pieces.push_back(tok.decode({enc.ids[i]}));
    }
    std::cout << nlohmann::json({{"text", text}, {"tokenizer", tok.kind()}, {"input_ids", enc.ids},
                                 {"offsets", offsets}, {"tokens", pieces}})
                     .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
              << "\n";
    return;
  }
  std::printf("tokenizer: %s, %zu tokens\n%zu tokens:\n", tok.kind().c_str(), tok.vocab_size(), enc.ids.size());
  for (size_t i = 0; i < enc.ids.size(); ++i)
    std::printf("%4zu  id %-7d bytes [%zu, %zu)  '%s'\n", i, enc.ids[i], enc.offsets[i].first, enc.offsets[i].second,
                printable(tok.token_text(enc.ids[i])).c_str());
}

}  // namespace

void add_tokenize(CLI::App& app) {
  auto* cmd = app.add_subcommand("tokenize", "Token ids and byte offsets of a text, or timing over a data set (loads only the tokenizer)");
  auto model = std::make_shared<std::string>();
  auto text = std::make_shared<std::string>();
  auto dataset = std::make_shared<std::string>();
  auto as_json = std::make_shared<bool>(false);
  auto no_special = std::make_shared<bool>(false);
  cmd->add_option("--model", *model, "Hugging Face checkpoint directory or .gguf file")->required();
  cmd->add_option("--text", *text, "Text to tokenize");
  cmd->add_option("--dataset", *dataset, "JSON list of facts: tokenize every \"prompt\" and time it");
  cmd->add_flag("--json", *as_json, "One JSON object on stdout");
  cmd->add_flag("--no-special", *no_special, "Do not add BOS/EOS");
  cmd->callback([=] { run_tokenize(*model, *text, *dataset, *as_json, *no_special); });
}

void add_predict(CLI::App& app) {
  auto* cmd = app.add_subcommand("predict", "Print the top-k next tokens after a prompt");
  auto ma = std::make_shared<ModelArgs>();
  ma->add(cmd);
  auto prompt = std::make_shared<std::string>();
  auto top_k = std::make_shared<int>(10);
  auto as_json = std::make_shared<bool>(false);
  cmd->add_option("--prompt", *prompt, "Prompt text")->required();
  cmd->add_option("--top-k", *top_k, "How many tokens to print")->capture_default_str();
  cmd->add_flag("--json", *as_json, "One JSON object on stdout (includes the prompt's token ids)");
  cmd->callback([=] { run_predict(*ma, *prompt, *top_k, *as_json); });
}

void add_inspect(CLI::App& app) {
  auto* cmd = app.add_subcommand("inspect", "Print the architecture, sizes and every site name");
  auto ma = std::make_shared<ModelArgs>();
  ma->add(cmd);
  cmd->callback([=] { run_inspect(*ma); });
}

}  // namespace kt::cli
