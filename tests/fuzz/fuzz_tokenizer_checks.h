// What the tokenizer fuzz targets do with a tokenizer that loaded: encode
// fixed texts (ASCII, special-token texts, SentencePiece pieces spelled out,
// UTF-8, invalid UTF-8, empty) with and without specials, decode them, and
// decode every id. Ids must be in the vocabulary, offsets inside the text,
// and every failure a one-line kt::Error.
#pragma once
#include <cstring>

#include "fuzz_common.h"
#include "tokenizer/tokenizer.h"

namespace ktfuzz {

inline void exercise_tokenizer(const kt::Tokenizer& t) {
  static const char* const kTexts[] = {
      "The Eiffel Tower is located in the city of",
      " Paris, 1889: 330 m tall!\n\n  It's <|endoftext|> <fact> don't  \t end",
      "<s>[INST] <start_of_turn>user\n\xE2\x96\x81<0x41> <unk></s>  \xE2\x96\x81\xE2\x96\x81x",
      "h\xC3\xA9llo w\xC3\xB6rld \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E \xF0\x9F\x98\x80 e\xCC\x81",  // UTF-8, combining accent
      "bad \xFF\xFE utf8 \xC3 \xE6\x97 trailing\xF0\x9F",
      "",
  };
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
          (void)t.decode({enc.ids[k]});
        }
        (void)t.decode(enc.ids, false);
        (void)t.decode(enc.ids, true);
      } catch (const kt::Error& e) {
        check_error(e);  // e.g. a character the vocabulary cannot spell
      }
    }
  }
  // Every id decodes; ids outside the vocabulary are refused with kt::Error.
  for (size_t id = 0; id < vocab && id < 4096; ++id) (void)t.token_text(static_cast<int32_t>(id));
  for (int32_t bad : {-1, static_cast<int32_t>(vocab)}) {
    try {
      (void)t.decode({bad});
    } catch (const kt::Error& e) {
      check_error(e);
    }
  }
}

}  // namespace ktfuzz
