// libFuzzer target: kt::Tokenizer::from_hf_dir on an arbitrary tokenizer.json
// (and tokenizer_config.json: the input is split at the first line
// "#tokenizer_config.json"), then encode / decode of fixed texts with the
// loaded tokenizer. Ids must be in the vocabulary, offsets inside the text.
#include <cstring>
#include <string_view>

#include "fuzz_common.h"
#include "tokenizer/tokenizer.h"

namespace {

const char* const kTexts[] = {
    "The Eiffel Tower is located in the city of",
    " Paris, 1889: 330 m tall!\n\n  It's <|endoftext|> <fact> don't  \t end",
    "h\xC3\xA9llo w\xC3\xB6rld \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E \xF0\x9F\x98\x80 e\xCC\x81",  // UTF-8, combining accent
    "bad \xFF\xFE utf8 \xC3 \xE6\x97 trailing\xF0\x9F",
    "",
};

}  // namespace

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
    const kt::Tokenizer t = kt::Tokenizer::from_hf_dir(ktfuzz::scratch_dir());
    const size_t vocab = t.vocab_size();
    if (auto b = t.bos_id()) KT_FUZZ_CHECK(*b >= 0 && static_cast<size_t>(*b) < vocab);
    if (auto e = t.eos_id()) KT_FUZZ_CHECK(*e >= 0 && static_cast<size_t>(*e) < vocab);
    for (const char* text : kTexts) {
      const size_t n = std::strlen(text);
      for (bool special : {true, false}) {
        try {
          const kt::Encoding enc = t.encode(text, special);
          KT_FUZZ_CHECK(enc.ids.size() == enc.offsets.size());
          for (size_t k = 0; k < enc.ids.size(); ++k) {
            KT_FUZZ_CHECK(enc.ids[k] >= 0 && static_cast<size_t>(enc.ids[k]) < vocab);
            KT_FUZZ_CHECK(enc.offsets[k].first <= enc.offsets[k].second && enc.offsets[k].second <= n);
            (void)t.token_text(enc.ids[k]);
          }
          (void)t.decode(enc.ids, false);
          (void)t.decode(enc.ids, true);
        } catch (const kt::Error& e) {
          ktfuzz::check_error(e);  // e.g. a character the vocabulary cannot spell
        }
      }
    }
    // Every id decodes; ids outside the vocabulary are refused with kt::Error.
    for (size_t id = 0; id < vocab && id < 4096; ++id) (void)t.token_text(static_cast<int32_t>(id));
    for (int32_t bad : {-1, static_cast<int32_t>(vocab)}) {
      try {
        (void)t.decode({bad});
      } catch (const kt::Error& e) {
        ktfuzz::check_error(e);
      }
    }
  } catch (const kt::Error& e) {
    ktfuzz::check_error(e);
  }
  return 0;
}
