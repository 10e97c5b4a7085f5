#include "util/names.h"

#include <map>

#include "util/error.h"

namespace kt {

const std::vector<std::string>& mediator_names() {
  static const std::vector<std::string> v = {"hidden",           "hidden_attn_severed", "hidden_mlp_severed",
                                             "mlp",              "attn",                "knockout_subject",
                                             "knockout_nonsubject", "knockout_last"};
  return v;
}

std::string canonical_dtype(const std::string& s) {
  static const std::map<std::string, std::string> alias = {
      {"float32", "float32"}, {"fp32", "float32"},  {"f32", "float32"},     {"float", "float32"},
      {"bfloat16", "bfloat16"}, {"bf16", "bfloat16"}, {"float16", "float16"}, {"fp16", "float16"},
      {"f16", "float16"},     {"half", "float16"}};
  auto it = alias.find(s);
  if (it != alias.end()) return it->second;
  throw Error("dtype '" + s + "' is not one of float32 (fp32, f32, float), bfloat16 (bf16), float16 (fp16, f16, half)");
}

}  // namespace kt
