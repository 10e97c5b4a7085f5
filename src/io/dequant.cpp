#include "io/dequant.h"

#include <cstring>
#include <limits>

#include "util/error.h"

namespace kt {

namespace {

constexpr uint32_t kQK = 32;    // elements per block of the *_0 / *_1 types
constexpr uint32_t kQKK = 256;  // elements per super-block of the *_K types

const std::vector<GgmlTypeInfo>& type_table() {
  static const std::vector<GgmlTypeInfo> table = {
      {GgmlType::F32, "F32", 1, 4, true},
      {GgmlType::F16, "F16", 1, 2, true},
      {GgmlType::Q4_0, "Q4_0", kQK, 2 + kQK / 2, true},
      {GgmlType::Q4_1, "Q4_1", kQK, 2 + 2 + kQK / 2, true},
      {GgmlType::Q5_0, "Q5_0", kQK, 2 + 4 + kQK / 2, true},
      {GgmlType::Q5_1, "Q5_1", kQK, 2 + 2 + 4 + kQK / 2, true},
      {GgmlType::Q8_0, "Q8_0", kQK, 2 + kQK, true},
      {GgmlType::Q8_1, "Q8_1", kQK, 2 + 2 + kQK, false},
      {GgmlType::Q2_K, "Q2_K", kQKK, kQKK / 16 + kQKK / 4 + 2 + 2, true},
      {GgmlType::Q3_K, "Q3_K", kQKK, kQKK / 8 + kQKK / 4 + 12 + 2, true},
      {GgmlType::Q4_K, "Q4_K", kQKK, 2 + 2 + 12 + kQKK / 2, true},
      {GgmlType::Q5_K, "Q5_K", kQKK, 2 + 2 + 12 + kQKK / 8 + kQKK / 2, true},
      {GgmlType::Q6_K, "Q6_K", kQKK, kQKK / 2 + kQKK / 4 + kQKK / 16 + 2, true},
      {GgmlType::Q8_K, "Q8_K", kQKK, 4 + kQKK + kQKK / 8, true},
      {GgmlType::IQ2_XXS, "IQ2_XXS", kQKK, 2 + kQKK / 4, false},
      {GgmlType::IQ2_XS, "IQ2_XS", kQKK, 2 + kQKK / 4 + kQKK / 32, false},
      {GgmlType::IQ3_XXS, "IQ3_XXS", kQKK, 2 + kQKK / 4 + kQKK / 8, false},
      {GgmlType::IQ1_S, "IQ1_S", kQKK, 2 + kQKK / 8 + kQKK / 16, false},
      {GgmlType::IQ4_NL, "IQ4_NL", kQK, 2 + kQK / 2, false},
      {GgmlType::IQ3_S, "IQ3_S", kQKK, 2 + kQKK / 4 + kQKK / 8 + kQKK / 32 + 4, false},
      {GgmlType::IQ2_S, "IQ2_S", kQKK, 2 + kQKK / 4 + kQKK / 16, false},
      {GgmlType::IQ4_XS, "IQ4_XS", kQKK, 2 + 2 + kQKK / 2 + kQKK / 64, false},
      {GgmlType::I8, "I8", 1, 1, false},
      {GgmlType::I16, "I16", 1, 2, false},
      {GgmlType::I32, "I32", 1, 4, false},
      {GgmlType::I64, "I64", 1, 8, false},
      {GgmlType::F64, "F64", 1, 8, true},
      {GgmlType::IQ1_M, "IQ1_M", kQKK, kQKK / 8 + kQKK / 16 + kQKK / 32, false},
      {GgmlType::BF16, "BF16", 1, 2, true},
      {GgmlType::TQ1_0, "TQ1_0", kQKK, 2 + 4 * 13, false},
      {GgmlType::TQ2_0, "TQ2_0", kQKK, 2 + 64, false},
      {GgmlType::MXFP4, "MXFP4", 32, 1 + 16, false},
      {GgmlType::NVFP4, "NVFP4", 64, 4 + 32, false},
      {GgmlType::Q1_0, "Q1_0", 128, 2 + 16, false},
  };
  return table;
}

// Numbers GGML once used and has since dropped; named in messages only.
const char* removed_type_name(uint32_t t) {
  switch (t) {
    case 4: return "Q4_2";
    case 5: return "Q4_3";
    case 31: return "Q4_0_4_4";
    case 32: return "Q4_0_4_8";
    case 33: return "Q4_0_8_8";
    case 36: return "IQ4_NL_4_4";
    case 37: return "IQ4_NL_4_8";
    case 38: return "IQ4_NL_8_8";
    default: return nullptr;
  }
}

inline uint16_t rd16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
inline uint32_t rd32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}
inline uint64_t rd64(const uint8_t* p) {
  return static_cast<uint64_t>(rd32(p)) | (static_cast<uint64_t>(rd32(p + 4)) << 32);
}
inline float bits_to_f32(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}
inline float half(const uint8_t* p) { return fp16_to_fp32(rd16(p)); }

// ---- 32-element block types ------------------------------------------------

// Q4_0: half d | 16 bytes of nibbles. Element j < 16 is the low nibble of
// byte j, element j + 16 its high nibble; value (q - 8) * d.
void deq_q4_0(const uint8_t* b, float* y) {
  const float d = half(b);
  const uint8_t* qs = b + 2;
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>((qs[j] & 0x0F) - 8) * d;
    y[j + 16] = static_cast<float>((qs[j] >> 4) - 8) * d;
  }
}

// Q4_1: half d | half m | nibbles as Q4_0; value q * d + m.
void deq_q4_1(const uint8_t* b, float* y) {
  const float d = half(b);
  const float m = half(b + 2);
  const uint8_t* qs = b + 4;
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>(qs[j] & 0x0F) * d + m;
    y[j + 16] = static_cast<float>(qs[j] >> 4) * d + m;
  }
}

// Q5_0: half d | u32 high bits (bit i belongs to element i) | nibbles as
// Q4_0; value (q5 - 16) * d.
void deq_q5_0(const uint8_t* b, float* y) {
  const float d = half(b);
  const uint32_t qh = rd32(b + 2);
  const uint8_t* qs = b + 6;
  for (int j = 0; j < 16; ++j) {
    const int lo = (qs[j] & 0x0F) | static_cast<int>(((qh >> j) & 1u) << 4);
    const int hi = (qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
    y[j] = static_cast<float>(lo - 16) * d;
    y[j + 16] = static_cast<float>(hi - 16) * d;
  }
}

// Q5_1: half d | half m | u32 high bits | nibbles; value q5 * d + m.
void deq_q5_1(const uint8_t* b, float* y) {
  const float d = half(b);
  const float m = half(b + 2);
  const uint32_t qh = rd32(b + 4);
  const uint8_t* qs = b + 8;
  for (int j = 0; j < 16; ++j) {
    const int lo = (qs[j] & 0x0F) | static_cast<int>(((qh >> j) & 1u) << 4);
    const int hi = (qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
    y[j] = static_cast<float>(lo) * d + m;
    y[j + 16] = static_cast<float>(hi) * d + m;
  }
}

// Q8_0: half d | 32 x int8; value q * d.
void deq_q8_0(const uint8_t* b, float* y) {
  const float d = half(b);
  const int8_t* qs = reinterpret_cast<const int8_t*>(b + 2);
  for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(qs[j]) * d;
}

// ---- 256-element super-block types ------------------------------------------

// Q2_K: scales[16] (low nibble: scale, high nibble: min, one pair per 16
// elements) | qs[64] (2-bit) | half d | half dmin.
// Element i = 128*h + 32*s + l (h < 2, s < 4, l < 32) is bits 2s..2s+1 of
// qs[32*h + l]; value d*sc * q - dmin*mn with sc/mn of sub-block i/16.
void deq_q2_k(const uint8_t* b, float* y) {
  const uint8_t* scales = b;
  const uint8_t* qs = b + 16;
  const float d = half(b + 80);
  const float dmin = half(b + 82);
  for (int h = 0; h < 2; ++h) {
    for (int s = 0; s < 4; ++s) {
      for (int l = 0; l < 32; ++l) {
        const int i = 128 * h + 32 * s + l;
        const uint8_t sc = scales[i / 16];
        const float dl = d * static_cast<float>(sc & 0x0F);
        const float ml = dmin * static_cast<float>(sc >> 4);
        const int q = (qs[32 * h + l] >> (2 * s)) & 3;
        y[i] = dl * static_cast<float>(q) - ml;
      }
    }
  }
}

// Q3_K: hmask[32] | qs[64] (low 2 bits) | scales[12] (16 x 6-bit, biased
// by 32) | half d.
// Scale k: low 4 bits from byte k (k < 8, low nibble) or byte k-8 (high
// nibble); high 2 bits are bits 2*(k/4).. of byte 8 + k%4.
// Element i = 128*h + 32*s + l: low bits as Q2_K; its high bit is bit i/32
// of hmask[l]; a clear high bit subtracts 4. Value d*(sc-32) * q.
void deq_q3_k(const uint8_t* b, float* y) {
  const uint8_t* hmask = b;
  const uint8_t* qs = b + 32;
  const uint8_t* sb = b + 96;
  const float d = half(b + 108);
  float dl[16];
  for (int k = 0; k < 16; ++k) {
    const int lo = k < 8 ? (sb[k] & 0x0F) : (sb[k - 8] >> 4);
    const int hi = (sb[8 + (k % 4)] >> (2 * (k / 4))) & 3;
    const int sc = (lo | (hi << 4)) - 32;
    dl[k] = d * static_cast<float>(sc);
  }
  for (int h = 0; h < 2; ++h) {
    for (int s = 0; s < 4; ++s) {
      for (int l = 0; l < 32; ++l) {
        const int i = 128 * h + 32 * s + l;
        const int low = (qs[32 * h + l] >> (2 * s)) & 3;
        const int high = (hmask[l] >> (i / 32)) & 1;
        const int q = low - (high ? 0 : 4);
        y[i] = dl[i / 16] * static_cast<float>(q);
      }
    }
  }
}

// The 12 scale bytes of Q4_K / Q5_K hold 8 (scale, min) pairs of 6 bits.
// j < 4: scale = byte j & 63, min = byte j+4 & 63.
// j >= 4: scale = (byte j+4 & 15) | (byte j-4 >> 6) << 4,
//         min   = (byte j+4 >> 4) | (byte j >> 6) << 4.
void k_scale_min(const uint8_t* s, int j, int* sc, int* mn) {
  if (j < 4) {
    *sc = s[j] & 63;
    *mn = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
    *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// Q4_K: half d | half dmin | scales[12] | qs[128].
// Element i = 64*c + 32*h + l is nibble h of qs[32*c + l], in sub-block
// i/32; value d*sc * q - dmin*mn.
void deq_q4_k(const uint8_t* b, float* y) {
  const float d = half(b);
  const float dmin = half(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qs = b + 16;
  for (int c = 0; c < 4; ++c) {
    for (int h = 0; h < 2; ++h) {
      int sc, mn;
      k_scale_min(scales, 2 * c + h, &sc, &mn);
      const float d1 = d * static_cast<float>(sc);
      const float m1 = dmin * static_cast<float>(mn);
      for (int l = 0; l < 32; ++l) {
        const int q = (qs[32 * c + l] >> (4 * h)) & 0x0F;
        y[64 * c + 32 * h + l] = d1 * static_cast<float>(q) - m1;
      }
    }
  }
}

// Q5_K: half d | half dmin | scales[12] | qh[32] | qs[128].
// Low 4 bits as Q4_K; the fifth bit of element i is bit i/32 of qh[i%32].
void deq_q5_k(const uint8_t* b, float* y) {
  const float d = half(b);
  const float dmin = half(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* qs = b + 48;
  for (int c = 0; c < 4; ++c) {
    for (int h = 0; h < 2; ++h) {
      int sc, mn;
      k_scale_min(scales, 2 * c + h, &sc, &mn);
      const float d1 = d * static_cast<float>(sc);
      const float m1 = dmin * static_cast<float>(mn);
      const int sub = 2 * c + h;
      for (int l = 0; l < 32; ++l) {
        const int q = ((qs[32 * c + l] >> (4 * h)) & 0x0F) | (((qh[l] >> sub) & 1) << 4);
        y[32 * sub + l] = d1 * static_cast<float>(q) - m1;
      }
    }
  }
}

// Q6_K: ql[128] | qh[64] | int8 scales[16] | half d.
// Element i = 128*h + 64*n + l (l < 64) has low nibble n of ql[64*h + l];
// element i = 128*h + 32*s + l (l < 32) has high bits 2s..2s+1 of
// qh[32*h + l]. Value d*sc[i/16] * (q6 - 32).
void deq_q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = half(b + 208);
  for (int h = 0; h < 2; ++h) {
    for (int l = 0; l < 32; ++l) {
      const uint8_t hb = qh[32 * h + l];
      const uint8_t a = ql[64 * h + l];
      const uint8_t c = ql[64 * h + l + 32];
      const int q0 = ((a & 0x0F) | ((hb & 3) << 4)) - 32;
      const int q1 = ((c & 0x0F) | (((hb >> 2) & 3) << 4)) - 32;
      const int q2 = ((a >> 4) | (((hb >> 4) & 3) << 4)) - 32;
      const int q3 = ((c >> 4) | (((hb >> 6) & 3) << 4)) - 32;
      const int base = 128 * h + l;
      const int idx[4] = {base, base + 32, base + 64, base + 96};
      const int q[4] = {q0, q1, q2, q3};
      for (int k = 0; k < 4; ++k) {
        const float dk = d * static_cast<float>(sc[idx[k] / 16]);
        y[idx[k]] = dk * static_cast<float>(q[k]);
      }
    }
  }
}

// Q8_K: float d | int8 qs[256] | int16 bsums[16] (sums, unused here).
void deq_q8_k(const uint8_t* b, float* y) {
  const float d = bits_to_f32(rd32(b));
  const int8_t* qs = reinterpret_cast<const int8_t*>(b + 4);
  for (int j = 0; j < 256; ++j) y[j] = static_cast<float>(qs[j]) * d;
}

using BlockFn = void (*)(const uint8_t*, float*);

BlockFn block_fn(GgmlType t) {
  switch (t) {
    case GgmlType::Q4_0: return deq_q4_0;
    case GgmlType::Q4_1: return deq_q4_1;
    case GgmlType::Q5_0: return deq_q5_0;
    case GgmlType::Q5_1: return deq_q5_1;
    case GgmlType::Q8_0: return deq_q8_0;
    case GgmlType::Q2_K: return deq_q2_k;
    case GgmlType::Q3_K: return deq_q3_k;
    case GgmlType::Q4_K: return deq_q4_k;
    case GgmlType::Q5_K: return deq_q5_k;
    case GgmlType::Q6_K: return deq_q6_k;
    case GgmlType::Q8_K: return deq_q8_k;
    default: return nullptr;
  }
}

}  // namespace

float fp16_to_fp32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  const uint32_t man = h & 0x3FFu;
  if (exp == 0) {
    // Zero or subnormal: man * 2^-24, exact in float.
    const float mag = static_cast<float>(man) * 5.9604644775390625e-08f;
    return sign ? -mag : mag;
  }
  if (exp == 31) return bits_to_f32(sign | 0x7F800000u | (man << 13));  // inf / NaN
  return bits_to_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

float bf16_to_fp32(uint16_t h) { return bits_to_f32(static_cast<uint32_t>(h) << 16); }

const std::vector<GgmlTypeInfo>& ggml_types() { return type_table(); }

const GgmlTypeInfo* ggml_type_info(GgmlType type) {
  for (const auto& info : type_table())
    if (info.type == type) return &info;
  return nullptr;
}

std::string ggml_type_name(GgmlType type) {
  const uint32_t t = static_cast<uint32_t>(type);
  if (const GgmlTypeInfo* info = ggml_type_info(type)) return info->name;
  if (const char* removed = removed_type_name(t))
    return "type " + std::to_string(t) + " (" + removed + ", removed from GGML)";
  return "unknown type " + std::to_string(t);
}

std::string dequantizable_type_names() {
  std::string out;
  for (const auto& info : type_table()) {
    if (!info.dequantizable) continue;
    if (!out.empty()) out += ", ";
    out += info.name;
  }
  return out;
}

uint64_t ggml_nbytes(GgmlType type, uint64_t n_elements) {
  const GgmlTypeInfo* info = ggml_type_info(type);
  if (!info) throw Error("ggml " + ggml_type_name(type) + " is not a known tensor type");
  if (n_elements % info->block_size != 0)
    throw Error("ggml type " + std::string(info->name) + ": " + std::to_string(n_elements) +
                " elements is not a multiple of the block size " +
                std::to_string(info->block_size));
  const uint64_t blocks = n_elements / info->block_size;
  if (blocks > std::numeric_limits<uint64_t>::max() / info->type_size)
    throw Error("ggml type " + std::string(info->name) + ": byte size of " +
                std::to_string(n_elements) + " elements overflows");
  return blocks * info->type_size;
}

void dequantize(GgmlType type, const uint8_t* src, size_t n_elements, float* dst) {
  const GgmlTypeInfo* info = ggml_type_info(type);
  if (!info || !info->dequantizable)
    throw Error("dequantize: ggml " + (info ? "type " + ggml_type_name(type) : ggml_type_name(type)) +
                " is not supported (supported: " + dequantizable_type_names() + ")");
  if (n_elements % info->block_size != 0)
    throw Error("dequantize: " + std::to_string(n_elements) + " elements of " + info->name +
                " is not a multiple of the block size " + std::to_string(info->block_size));
  switch (type) {
    case GgmlType::F32:
      if (n_elements) std::memcpy(dst, src, n_elements * 4);
      return;
    case GgmlType::F16:
      for (size_t i = 0; i < n_elements; ++i) dst[i] = fp16_to_fp32(rd16(src + 2 * i));
      return;
    case GgmlType::BF16:
      for (size_t i = 0; i < n_elements; ++i) dst[i] = bf16_to_fp32(rd16(src + 2 * i));
      return;
    case GgmlType::F64:
      for (size_t i = 0; i < n_elements; ++i) {
        const uint64_t bits = rd64(src + 8 * i);
        double v;
        std::memcpy(&v, &bits, 8);
        dst[i] = static_cast<float>(v);
      }
      return;
    default:
      break;
  }
  const BlockFn fn = block_fn(type);
  const size_t n_blocks = n_elements / info->block_size;
  for (size_t bi = 0; bi < n_blocks; ++bi)
    fn(src + bi * info->type_size, dst + bi * info->block_size);
}

}  // namespace kt
