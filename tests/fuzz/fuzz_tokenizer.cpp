// libFuzzer target: kt::Tokenizer::from_hf_dir on an arbitrary tokenizer.json
// (and tokenizer_config.json: the input is split at the first line
// "#tokenizer_config.json"), then encode / decode of fixed texts with the
// loaded tokenizer. Ids must be in the vocabulary, offsets inside the text.
#include <string_view>

#include "fuzz_tokenizer_checks.h"


extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  static const std::string_view sep = "\n#tokenizer_config.json\n";
  const size_t cut = in.find(sep);
  const std::string_view tok = in.substr(0, cut);
  ktfuzz::write_file("tokenizer.json", reinterpret_cast<const uint8_t*>(tok.data()), tok.size());
  if (cut != std::string_view::npos) {
    const std::string_view cfg = in.substr(cut + sep.size());
    ktfuzz::write_file("tokenizer_config.json", reinterpret_cast<const uint8_t*>(cfg.data()), cfg.size());
  } else {
    ktfuzz::remove_file("tokenizer_config.json");
  }
  try {
    ktfuzz::exercise_tokenizer(kt::Tokenizer::from_hf_dir(ktfuzz::scratch_dir()));
  } catch (const kt::Error& e) {
    ktfuzz::check_error(e);
  }
  return 0;
}
