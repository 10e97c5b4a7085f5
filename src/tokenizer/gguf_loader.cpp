// Tokenizer::from_gguf: the vocabulary of a .gguf file (tokenizer.ggml.*
// metadata, as llama.cpp's converter writes it) as a BpeSpec.
#include "io/gguf.h"
#include "tokenizer/tokenizer.h"
#include "util/hf_cache.h"

namespace kt {

namespace {

SplitPattern split_pattern(const GgufFile& f) {
  const std::string pre = f.opt_string("tokenizer.ggml.pre").value_or("default");
  if (pre == "smollm") return SplitPattern::SmolLM;
  if (pre == "llama-bpe" || pre == "llama3") return SplitPattern::Llama3;
  if (pre == "qwen2") return SplitPattern::Qwen2;
  if (pre == "gpt-2" || pre == "default") return SplitPattern::Gpt2;
  f.fail("tokenizer.ggml.pre '" + pre + "' is not supported (supported: smollm, llama-bpe, qwen2, gpt-2, default)");
}

BpeSpec gguf_spec(const GgufFile& f) {
  const std::string model = f.get_string("tokenizer.ggml.model");
  BpeSpec s;
  if (model == "gpt2") {
    s.kind = BpeSpec::Kind::ByteLevelBpe;
  } else if (model == "llama") {
    s.kind = BpeSpec::Kind::SentencePieceBpe;
  } else {
    f.fail("tokenizer.ggml.model '" + model +
           "' is not supported (supported: gpt2 = byte-level BPE, llama = SentencePiece with scores)");
  }
  s.source = f.path();  // messages about the vocabulary name the .gguf file
  s.tokens = f.get_string_array("tokenizer.ggml.tokens");
  s.token_types = f.opt_i32_array("tokenizer.ggml.token_type").value_or(std::vector<int32_t>{});
  auto check_length = [&](const char* key, size_t n) {
    if (n != s.tokens.size())
      f.fail(std::string(key) + ": expected " + std::to_string(s.tokens.size()) +
             " entries (one per tokenizer.ggml.tokens entry), got " + std::to_string(n));
  };
  if (!s.token_types.empty()) check_length("tokenizer.ggml.token_type", s.token_types.size());
  if (s.kind == BpeSpec::Kind::ByteLevelBpe) {
    s.merges = f.get_string_array("tokenizer.ggml.merges");
    s.pattern = split_pattern(f);
  } else {
    s.scores = f.get_f32_array("tokenizer.ggml.scores");
    check_length("tokenizer.ggml.scores", s.scores.size());
    // llama.cpp's default for SentencePiece vocabularies is a space prefix.
    s.add_space_prefix = f.opt_bool("tokenizer.ggml.add_space_prefix").value_or(true);
    if (auto u = f.opt_u32("tokenizer.ggml.unknown_token_id")) s.unk_id = static_cast<int32_t>(*u);
  }
  if (auto b = f.opt_u32("tokenizer.ggml.bos_token_id")) s.bos_id = static_cast<int32_t>(*b);
  if (auto e = f.opt_u32("tokenizer.ggml.eos_token_id")) s.eos_id = static_cast<int32_t>(*e);
  const bool spm = s.kind == BpeSpec::Kind::SentencePieceBpe;
  s.add_bos = f.opt_bool("tokenizer.ggml.add_bos_token").value_or(spm);  // llama.cpp: SPM adds BOS unless told
  s.add_eos = f.opt_bool("tokenizer.ggml.add_eos_token").value_or(false);
  // Control and user-defined pieces are matched in the text by from_spec (token_types).
  return s;
}

}  // namespace

Tokenizer Tokenizer::from_gguf(const GgufFile& f) { return from_spec(gguf_spec(f)); }

Tokenizer Tokenizer::from_gguf(const std::string& path) { return from_gguf(GgufFile(path)); }

Tokenizer Tokenizer::load(const std::string& path_or_id) {
  const std::string path = resolve_model_path(path_or_id);
  const size_t n = path.size();
  if (n > 5 && path.compare(n - 5, 5, ".gguf") == 0) return from_gguf(path);
  return from_hf_dir(path);
}

}  // namespace kt
