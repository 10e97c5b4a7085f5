// The closed sets of names knowtrace accepts, one list each, shared by the
// config parser, every command's flags and the stored files.
#pragma once
#include <string>
#include <vector>

namespace kt {

// hidden, hidden_attn_severed, hidden_mlp_severed, mlp, attn (ROME's five),
// knockout_subject, knockout_nonsubject, knockout_last (Geva et al.)
const std::vector<std::string>& mediator_names();

// float32 (fp32, f32, float), bfloat16 (bf16), float16 (fp16, f16, half)
// -> the canonical name; kt::Error "dtype '<s>' is not one of ..." otherwise.
std::string canonical_dtype(const std::string& s);

}  // namespace kt
