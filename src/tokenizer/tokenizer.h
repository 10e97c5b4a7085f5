// Text <-> token ids for decoder-only models.
//
// One class serves every checkpoint format: it is built either from a
// Hugging Face tokenizer.json (+ tokenizer_config.json) or from a plain
// BpeSpec (which the GGUF loader fills from its metadata). Models: byte-level
// BPE (GPT-2, Llama-3, Qwen2, SmolLM2) and SentencePiece-style BPE with "▁"
// for spaces and "<0xXX>" byte fallback (Llama 2, Mistral, Phi-3, Gemma):
// with merges from tokenizer.json, or with piece scores from GGUF, merged as
// llama.cpp does.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace kt {

class GgufFile;

// The token ids of one text and, for each token, the half-open byte range
// [first, second) of the input text it covers. Tokens inserted by the
// post-processor (BOS/EOS) have an empty range at 0 / at the end.
struct Encoding {
  std::vector<int32_t> ids;
  std::vector<std::pair<size_t, size_t>> offsets;
};

// Named pre-tokenizer split patterns (llama.cpp's `tokenizer.ggml.pre` names
// map onto these too).
enum class SplitPattern { Gpt2, Llama3, Qwen2, SmolLM /* digits alone, then GPT-2 */ };

// Everything a tokenizer from a vocabulary needs, independent of file format.
struct BpeSpec {
  // ByteLevelBpe: tokens in the byte-level alphabet, ranked merges, a split
  // pattern. SentencePieceBpe: pieces with scores (no merges, no split).
  enum class Kind { ByteLevelBpe, SentencePieceBpe } kind = Kind::ByteLevelBpe;
  std::vector<std::string> tokens;           // id -> token string
  std::vector<std::string> merges;           // "left right", highest priority first
  std::vector<float> scores;                 // SentencePiece: one per token
  bool add_space_prefix = false;             // SentencePiece: "▁" in front of each text segment
  std::optional<int32_t> unk_id;             // SentencePiece: for bytes without a piece
  std::vector<int32_t> token_types;          // GGUF types (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte); may be empty
  std::vector<int32_t> special_ids;          // added/special tokens matched before splitting
  SplitPattern pattern = SplitPattern::Gpt2;
  std::optional<int32_t> bos_id, eos_id;
  bool add_bos = false;
  bool add_eos = false;
  // Whether a pre-token that is itself in the vocabulary is emitted whole
  // without applying merges (Hugging Face's `ignore_merges`; llama.cpp does it
  // for the llama3 pre-tokenizer). Unset: true for SplitPattern::Llama3 only.
  std::optional<bool> ignore_merges;
  // Names the origin (e.g. the GGUF path) in error messages.
  std::string source;
};

class Tokenizer {
 public:
  // Loads `dir`/tokenizer.json and, where present, tokenizer_config.json.
  // Throws kt::Error naming the file and field on malformed input.
  // (`dir` may also be the path of a tokenizer.json itself.) BOS/EOS are
  // added as the post-processor says; tokenizer_config.json names bos/eos
  // and, for model-specific tokenizer classes only (as in transformers),
  // add_bos_token / add_eos_token override the post-processor.
  static Tokenizer from_hf_dir(const std::string& dir);
  static Tokenizer from_spec(const BpeSpec& spec);
  // A model's tokenizer alone: a .gguf file's vocabulary, or a checkpoint
  // directory's tokenizer.json (no weights are read).
  static Tokenizer load(const std::string& path);
  // The vocabulary of a .gguf file (no weights are read). Errors name the file.
  static Tokenizer from_gguf(const std::string& path);
  static Tokenizer from_gguf(const GgufFile& file);

  // add_special: insert BOS/EOS as the tokenizer's post-processor says.
  Encoding encode(const std::string& text, bool add_special = true) const;
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const;
  // The text of one token (its raw bytes; may be a partial UTF-8 sequence).
  std::string token_text(int32_t id) const;

  size_t vocab_size() const;
  // What kind of tokenizer this is, in words ("byte-level BPE", ...).
  const std::string& kind() const;
  std::optional<int32_t> bos_id() const;
  std::optional<int32_t> eos_id() const;

  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kt
