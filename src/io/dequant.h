// GGML tensor types and their conversion to float32.
//
// A GGML tensor is stored as a sequence of blocks: block_size consecutive
// elements (along ne[0], the fastest-varying dimension) packed into
// type_size bytes. Plain types (F32, F16, BF16, ...) have block_size 1.
// The quantized layouts follow GGML's published block structs
// (ggml-common.h); every multi-byte field is little-endian.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace kt {

// Numbering is GGML's `enum ggml_type` (it is what a GGUF file stores).
// Any uint32_t may be held; ggml_type_info() says whether it is known.
enum class GgmlType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
  MXFP4 = 39,
  NVFP4 = 40,
  Q1_0 = 41,
};

struct GgmlTypeInfo {
  GgmlType type;
  const char* name;      // GGML's spelling, e.g. "Q4_K", "BF16"
  uint32_t block_size;   // elements per block
  uint32_t type_size;    // bytes per block
  bool dequantizable;    // dequantize() supports it
};

// nullptr for a number GGML does not define (or has removed).
const GgmlTypeInfo* ggml_type_info(GgmlType type);
// Name for messages: "Q4_K", or "type 31 (Q4_0_4_4, removed from GGML)",
// or "unknown type 99".
std::string ggml_type_name(GgmlType type);
// Every known type, in numeric order.
const std::vector<GgmlTypeInfo>& ggml_types();
// Names of the types dequantize() supports, comma-separated.
std::string dequantizable_type_names();

// Bytes taken by n_elements of `type`. Throws kt::Error when the type is
// unknown, n_elements is not a multiple of the block size, or the size
// overflows.
uint64_t ggml_nbytes(GgmlType type, uint64_t n_elements);

// Convert n_elements (a multiple of the block size) of `type` at src into
// float32 at dst. src needs no particular alignment. Supported: F32, F16,
// BF16, F64, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K,
// Q8_K. Anything else, or a bad count, throws kt::Error naming the type.
void dequantize(GgmlType type, const uint8_t* src, size_t n_elements, float* dst);

// IEEE half / bfloat16 bits to float, exact (NaN payloads kept).
float fp16_to_fp32(uint16_t h);
float bf16_to_fp32(uint16_t h);

}  // namespace kt
