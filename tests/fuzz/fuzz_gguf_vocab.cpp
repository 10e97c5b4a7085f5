// libFuzzer target: kt::Tokenizer::from_gguf on arbitrary bytes (the input is
// the whole .gguf file: the tokenizer.ggml.* metadata of a byte-level or a
// SentencePiece vocabulary), then the checks of fuzz_tokenizer_checks.h.
#include "fuzz_tokenizer_checks.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = ktfuzz::write_file("vocab.gguf", data, size);
  try {
    ktfuzz::exercise_tokenizer(kt::Tokenizer::from_gguf(path));
  } catch (const kt::Error& e) {
    ktfuzz::check_error(e);
  }
  return 0;
}
