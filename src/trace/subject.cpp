#include "trace/subject.h"

#include "util/error.h"

namespace kt {

std::pair<int64_t, int64_t> subject_token_range(const Encoding& enc, const std::string& prompt,
                                                const std::string& subject) {
  if (subject.empty()) throw Error("subject is empty");
  const size_t sb = prompt.find(subject);
  if (sb == std::string::npos) throw Error("subject '" + subject + "' does not occur in prompt '" + prompt + "'");
  const size_t se = sb + subject.size();
  int64_t b = -1, e = -1;
  for (size_t i = 0; i < enc.offsets.size(); ++i) {
    const size_t end = enc.offsets[i].second;
    if (enc.offsets[i].first == enc.offsets[i].second) continue;  // BOS/EOS cover no text
    if (b < 0 && end > sb) b = static_cast<int64_t>(i);
    if (e < 0 && end >= se) {
      e = static_cast<int64_t>(i) + 1;
      break;
    }
  }
  if (b < 0 || e < 0) throw Error("subject '" + subject + "': no tokens cover it in prompt '" + prompt + "'");
  return {b, e};
}

std::pair<int64_t, int64_t> rome_token_range(const Tokenizer& tok, const std::vector<int32_t>& ids,
                                             const std::string& subject) {
  std::vector<std::string> toks;
  std::string whole;
  for (int32_t id : ids) {
    toks.push_back(tok.decode({id}));
    whole += toks.back();
  }
  const size_t loc0 = whole.find(subject);
  if (loc0 == std::string::npos) throw Error("subject '" + subject + "' not found in decoded tokens");
  size_t loc = 0;
  int64_t b = -1, e = -1;
  for (size_t i = 0; i < toks.size(); ++i) {
    loc += toks[i].size();
    if (b < 0 && loc > loc0) b = static_cast<int64_t>(i);
    if (e < 0 && loc >= loc0 + subject.size()) {
      e = static_cast<int64_t>(i) + 1;
      break;
    }
  }
  return {b, e};
}

}  // namespace kt
