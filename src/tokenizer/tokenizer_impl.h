// Internals of kt::Tokenizer shared by its loaders (tokenizer.json, BpeSpec).
// Private to src/tokenizer.
//
// Pipeline of encode(), mirroring Hugging Face `tokenizers`:
//   1. added tokens are found in the raw text (leftmost, longest first) and
//      become tokens of their own; the text between them is
//   2. normalized (NFC/NFKC, Prepend, Replace, and Metaspace's space
//      rewrite), keeping the input bytes of every normalized byte,
//   3. cut into pre-tokens by the pre-tokenizer steps (regex splits,
//      ByteLevel with its optional prefix space, Metaspace's split),
//   4. each pre-token is turned into ids by the model (byte-level BPE,
//      SentencePiece-style BPE with merges, or SentencePiece scores),
//   5. the post-processor trims offsets and adds BOS/EOS.
// decode() maps byte-level tokens straight back to bytes, and runs the
// decoder steps over the token texts of the SentencePiece-style ones.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tokenizer/bpe.h"
#include "tokenizer/decoder.h"
#include "tokenizer/normalize.h"
#include "tokenizer/regex.h"
#include "tokenizer/tokenizer.h"

namespace kt::tok {

struct AddedToken {
  std::string content;
  int32_t id = 0;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
};

enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

struct PreStep {
  enum class Kind { Split, ByteLevel } kind = Kind::Split;
  std::shared_ptr<const Regex> regex;  // Split: its pattern; ByteLevel: GPT-2's when use_regex
  SplitBehavior behavior = SplitBehavior::Isolated;
  bool invert = false;
  bool add_prefix_space = false;  // ByteLevel only
};

// The pattern strings of the named split patterns.
extern const char* const kGpt2Pattern;
extern const char* const kLlama3Pattern;
extern const char* const kQwen2Pattern;

// Regexes are compiled once per process and shared between tokenizers.
std::shared_ptr<const Regex> shared_regex(const std::string& pattern, bool literal = false);

}  // namespace kt::tok

namespace kt {

struct Tokenizer::Impl {
  std::unique_ptr<tok::WordModel> model;
  std::string kind;  // what `knowtrace inspect` calls it
  std::vector<tok::AddedToken> added;                  // matched in the raw text
  std::unordered_map<int32_t, size_t> added_by_id;     // id -> index in `added`
  std::vector<std::vector<size_t>> added_by_first_byte;  // 256 buckets, longest first
  std::vector<tok::NormStep> norm_steps;
  std::vector<tok::PreStep> pre_steps;
  bool byte_level = true;                  // decode: tokens are raw bytes
  std::vector<tok::DecodeStep> decoder;    // decode otherwise
  bool trim_offsets = false;
  std::vector<int32_t> prefix_ids, suffix_ids;  // added by the post-processor
  std::optional<int32_t> bos, eos;
  size_t vocab_size = 0;

  // Call once `model` and `added` are set.
  void finish();

  Encoding encode(const std::string& text, bool add_special) const;
  std::string decode(const std::vector<int32_t>& ids, bool skip_special) const;
  std::string token_text(int32_t id) const;

 private:
  struct Segment {
    bool is_added;
    int32_t id;  // when is_added
    size_t begin, end;
  };
  std::vector<Segment> split_added(const std::string& text) const;
  void encode_segment(const std::string& text, size_t begin, size_t end, Encoding& enc,
                      std::vector<int32_t>& lead_spaces, std::vector<int32_t>& trail_spaces) const;
};

}  // namespace kt
