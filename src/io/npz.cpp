#include "io/npz.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <new>
#include <set>
#include <stdexcept>

#include "util/crash_point.h"
#include "util/error.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "npz.cpp assumes a little-endian host"
#endif

namespace kt {

namespace {

// ------------------------------------------------------------------ dtypes

enum class Kind { F2, F4, F8, I4, I8, B1, U1, U };

struct DType {
  Kind kind;
  size_t itemsize;  // bytes per element
  size_t ulen = 0;  // code points per element, for U
};

// Longest '<U{n}' accepted, in code points (keeps itemsize arithmetic tame).
constexpr uint64_t kMaxUnicodeLen = uint64_t(1) << 24;

// Printable, single-line rendering of untrusted text for error messages.
std::string printable(const std::string& s, size_t max_len = 200) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < max_len; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      static const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  if (s.size() > max_len) out += "...";
  return out;
}

bool parse_uint(const std::string& s, size_t pos, uint64_t max, uint64_t* out) {
  if (pos >= s.size()) return false;
  uint64_t v = 0;
  for (size_t i = pos; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + static_cast<uint64_t>(s[i] - '0');
    if (v > max) return false;
  }
  *out = v;
  return true;
}

// Parses a canonical descr (what NpyArray::dtype holds). False if unknown.
bool parse_canonical(const std::string& d, DType* out) {
  static const struct {
    const char* name;
    Kind kind;
    size_t size;
  } table[] = {{"<f2", Kind::F2, 2}, {"<f4", Kind::F4, 4}, {"<f8", Kind::F8, 8},
               {"<i4", Kind::I4, 4}, {"<i8", Kind::I8, 8}, {"|b1", Kind::B1, 1},
               {"|u1", Kind::U1, 1}};
  for (const auto& t : table) {
    if (d == t.name) {
      *out = DType{t.kind, t.size, 0};
      return true;
    }
  }
  uint64_t n = 0;
  if (d.size() > 2 && d[0] == '<' && d[1] == 'U' && d[2] != '0' &&
      parse_uint(d, 2, kMaxUnicodeLen, &n) && n >= 1) {
    *out = DType{Kind::U, 4 * n, n};
    return true;
  }
  return false;
}

// Parses a descr found in a .npy header: any byte-order spelling of the
// supported types. Returns the canonical descr and whether to byte-swap.
bool parse_file_descr(const std::string& d, std::string* canonical, bool* swap) {
  if (d.size() < 3) return false;
  const char order = d[0];
  if (order != '<' && order != '>' && order != '=' && order != '|') return false;
  const std::string rest = d.substr(1);
  const bool one_byte = rest == "b1" || rest == "u1";
  if (one_byte) {
    *canonical = "|" + rest;
    *swap = false;
    return true;
  }
  if (order == '|') return false;  // multi-byte types need a byte order
  std::string c = "<" + rest;
  DType dt;
  if (!parse_canonical(c, &dt)) return false;
  *canonical = c;
  *swap = order == '>';
  return true;
}

DType require_dtype(const std::string& dtype, const std::string& context) {
  DType dt;
  if (!parse_canonical(dtype, &dt))
    throw Error(context + ": unsupported dtype '" + printable(dtype) +
                "' (supported: <f2 <f4 <f8 <i4 <i8 |b1 |u1 <U{n})");
  return dt;
}

// Element count of `shape`, or false on a negative dim or a count above `limit`.
bool checked_numel(const std::vector<int64_t>& shape, uint64_t limit, uint64_t* out) {
  for (int64_t d : shape) {
    if (d < 0) return false;
    if (d == 0) {
      *out = 0;
      return true;
    }
  }
  uint64_t n = 1;
  for (int64_t d : shape) {
    const uint64_t ud = static_cast<uint64_t>(d);
    if (n > limit / ud) return false;
    n *= ud;
  }
  if (n > limit) return false;
  *out = n;
  return true;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size() && i < 8; ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  if (shape.size() > 8) s += ", ...";
  if (shape.size() == 1) s += ",";
  return s + ")";
}

// ------------------------------------------------------------------ UTF-8 / UTF-32

// Decodes strict UTF-8 (no overlongs, surrogates, NUL, or > U+10FFFF).
bool utf8_to_utf32(const std::string& s, std::vector<uint32_t>* out) {
  out->clear();
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    const uint8_t c = static_cast<uint8_t>(s[i]);
    uint32_t cp;
    size_t len;
    if (c < 0x80) {
      cp = c;
      len = 1;
    } else if ((c & 0xE0) == 0xC0) {
      cp = c & 0x1F;
      len = 2;
    } else if ((c & 0xF0) == 0xE0) {
      cp = c & 0x0F;
      len = 3;
    } else if ((c & 0xF8) == 0xF0) {
      cp = c & 0x07;
      len = 4;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (size_t k = 1; k < len; ++k) {
      const uint8_t cc = static_cast<uint8_t>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    static const uint32_t min_for_len[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_for_len[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) || cp == 0)
      return false;
    out->push_back(cp);
    i += len;
  }
  return true;
}

void append_utf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    *out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    *out += static_cast<char>(0xC0 | (cp >> 6));
    *out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    *out += static_cast<char>(0xE0 | (cp >> 12));
    *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    *out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    *out += static_cast<char>(0xF0 | (cp >> 18));
    *out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    *out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// ------------------------------------------------------------------ little-endian bytes

uint16_t rd16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t rd32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}
uint64_t rd64(const uint8_t* p) { return rd32(p) | (static_cast<uint64_t>(rd32(p + 4)) << 32); }

void put16(std::vector<uint8_t>* b, uint16_t v) {
  b->push_back(static_cast<uint8_t>(v));
  b->push_back(static_cast<uint8_t>(v >> 8));
}
void put32(std::vector<uint8_t>* b, uint32_t v) {
  for (int i = 0; i < 4; ++i) b->push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void put64(std::vector<uint8_t>* b, uint64_t v) {
  for (int i = 0; i < 8; ++i) b->push_back(static_cast<uint8_t>(v >> (8 * i)));
}

// zlib's crc32 takes a uInt length; feed it in chunks.
uint32_t crc32_update(uint32_t crc, const uint8_t* p, size_t n) {
  uLong c = crc;
  while (n > 0) {
    const size_t chunk = std::min<size_t>(n, 1u << 30);
    c = ::crc32(c, p, static_cast<uInt>(chunk));
    p += chunk;
    n -= chunk;
  }
  return static_cast<uint32_t>(c);
}

// ------------------------------------------------------------------ NpyArray helpers

std::vector<int64_t> resolve_shape(std::vector<int64_t> shape, size_t n, const char* what) {
  if (shape.size() == 1 && shape[0] == -1) return {static_cast<int64_t>(n)};
  uint64_t count = 0;
  if (!checked_numel(shape, std::numeric_limits<uint64_t>::max(), &count) || count != n)
    throw Error(std::string("NpyArray::") + what + ": shape does not match " +
                std::to_string(n) + " values");
  return shape;
}

template <typename T>
NpyArray make_pod(const char* dtype, const std::vector<T>& v, std::vector<int64_t> shape,
                  const char* what) {
  NpyArray a;
  a.dtype = dtype;
  a.shape = resolve_shape(std::move(shape), v.size(), what);
  a.data.resize(v.size() * sizeof(T));
  if (!v.empty()) std::memcpy(a.data.data(), v.data(), a.data.size());
  return a;
}

template <typename T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

std::string dtype_error(const std::string& context, const NpyArray& a, const char* want) {
  return context + ": dtype '" + printable(a.dtype) + "' cannot be read as " + want;
}

// Elementwise conversion of a validated array through a per-dtype loader.
template <typename Out, typename F>
std::vector<Out> convert(const NpyArray& a, const std::string& context, F&& f) {
  const DType dt = require_dtype(a.dtype, context);
  a.validate(context);
  const size_t n = static_cast<size_t>(a.numel());
  std::vector<Out> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) out.push_back(f(dt.kind, a.data.data() + i * dt.itemsize));
  return out;
}

}  // namespace

// ------------------------------------------------------------------ half

uint16_t float_to_half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) {  // inf / nan
    if (ax == 0x7f800000u) return sign | 0x7c00u;
    uint16_t m = static_cast<uint16_t>((ax & 0x7fffffu) >> 13);
    if (m == 0) m = 1;  // keep it a NaN
    return static_cast<uint16_t>(sign | 0x7c00u | m);
  }
  if (ax >= 0x477ff000u) return sign | 0x7c00u;  // rounds to >= 65520: inf
  if (ax < 0x38800000u) {                        // half subnormal or zero
    if (ax < 0x33000000u) return sign;           // below 2^-25: rounds to 0
    const uint32_t e = ax >> 23;
    const uint32_t m = (ax & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - e;  // 14..24
    uint32_t h = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1);
    const uint32_t halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (h & 1))) ++h;
    return static_cast<uint16_t>(sign | h);
  }
  uint32_t h = (ax >> 13) - (112u << 10);
  const uint32_t rem = ax & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) ++h;
  return static_cast<uint16_t>(sign | h);
}

float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1fu;
  const uint32_t m = h & 0x3ffu;
  uint32_t x;
  if (e == 0) {
    if (m == 0) {
      x = sign;
    } else {
      float v = static_cast<float>(m) * (1.0f / 16777216.0f);  // m * 2^-24, exact
      std::memcpy(&x, &v, 4);
      x |= sign;
    }
  } else if (e == 31) {
    x = sign | 0x7f800000u | (m << 13);
  } else {
    x = sign | ((e + 112) << 23) | (m << 13);
  }
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

// ------------------------------------------------------------------ NpyArray

int64_t NpyArray::numel() const {
  uint64_t n = 0;
  if (!checked_numel(shape, static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), &n))
    return -1;
  return static_cast<int64_t>(n);
}

size_t NpyArray::itemsize() const {
  DType dt;
  return parse_canonical(dtype, &dt) ? dt.itemsize : 0;
}

void NpyArray::validate(const std::string& context) const {
  const DType dt = require_dtype(dtype, context);
  uint64_t n = 0;
  if (!checked_numel(shape, std::numeric_limits<uint64_t>::max() / dt.itemsize, &n))
    throw Error(context + ": invalid shape (negative or overflowing dimension)");
  if (data.size() != n * dt.itemsize)
    throw Error(context + ": data holds " + std::to_string(data.size()) + " bytes, shape needs " +
                std::to_string(n * dt.itemsize));
}

NpyArray NpyArray::from_f16(const std::vector<float>& v, std::vector<int64_t> shape) {
  std::vector<uint16_t> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) h[i] = float_to_half(v[i]);
  return make_pod("<f2", h, std::move(shape), "from_f16");
}
NpyArray NpyArray::from_f32(const std::vector<float>& v, std::vector<int64_t> shape) {
  return make_pod("<f4", v, std::move(shape), "from_f32");
}
NpyArray NpyArray::from_f64(const std::vector<double>& v, std::vector<int64_t> shape) {
  return make_pod("<f8", v, std::move(shape), "from_f64");
}
NpyArray NpyArray::from_i32(const std::vector<int32_t>& v, std::vector<int64_t> shape) {
  return make_pod("<i4", v, std::move(shape), "from_i32");
}
NpyArray NpyArray::from_i64(const std::vector<int64_t>& v, std::vector<int64_t> shape) {
  return make_pod("<i8", v, std::move(shape), "from_i64");
}
NpyArray NpyArray::from_u8(const std::vector<uint8_t>& v, std::vector<int64_t> shape) {
  return make_pod("|u1", v, std::move(shape), "from_u8");
}
NpyArray NpyArray::from_bool(const std::vector<bool>& v, std::vector<int64_t> shape) {
  std::vector<uint8_t> b(v.size());
  for (size_t i = 0; i < v.size(); ++i) b[i] = v[i] ? 1 : 0;
  return make_pod("|b1", b, std::move(shape), "from_bool");
}

NpyArray NpyArray::from_strings(const std::vector<std::string>& v, std::vector<int64_t> shape) {
  std::vector<std::vector<uint32_t>> cps(v.size());
  size_t width = 1;
  for (size_t i = 0; i < v.size(); ++i) {
    if (!utf8_to_utf32(v[i], &cps[i]))
      throw Error("NpyArray::from_strings: string " + std::to_string(i) + " ('" +
                  printable(v[i], 60) + "') is not valid UTF-8 without NUL characters");
    width = std::max(width, cps[i].size());
  }
  if (width > kMaxUnicodeLen) throw Error("NpyArray::from_strings: string too long");
  NpyArray a;
  a.dtype = "<U" + std::to_string(width);
  a.shape = resolve_shape(std::move(shape), v.size(), "from_strings");
  a.data.assign(v.size() * width * 4, 0);
  for (size_t i = 0; i < v.size(); ++i)
    for (size_t k = 0; k < cps[i].size(); ++k)
      std::memcpy(a.data.data() + (i * width + k) * 4, &cps[i][k], 4);
  return a;
}

NpyArray NpyArray::scalar_f32(float x) { return from_f32({x}, {}); }
NpyArray NpyArray::scalar_f64(double x) { return from_f64({x}, {}); }
NpyArray NpyArray::scalar_i32(int32_t x) { return from_i32({x}, {}); }
NpyArray NpyArray::scalar_i64(int64_t x) { return from_i64({x}, {}); }
NpyArray NpyArray::scalar_bool(bool x) { return from_bool({x}, {}); }
NpyArray NpyArray::scalar_string(const std::string& s) { return from_strings({s}, {}); }

std::vector<float> NpyArray::to_f32(const std::string& context) const {
  if (dtype != "<f2" && dtype != "<f4") throw Error(dtype_error(context, *this, "float32"));
  return convert<float>(*this, context, [](Kind k, const uint8_t* p) {
    return k == Kind::F2 ? half_to_float(load<uint16_t>(p)) : load<float>(p);
  });
}

std::vector<double> NpyArray::to_f64(const std::string& context) const {
  if (dtype != "<f2" && dtype != "<f4" && dtype != "<f8" && dtype != "<i4" && dtype != "|u1" &&
      dtype != "|b1")
    throw Error(dtype_error(context, *this, "float64"));
  return convert<double>(*this, context, [](Kind k, const uint8_t* p) -> double {
    switch (k) {
      case Kind::F2: return half_to_float(load<uint16_t>(p));
      case Kind::F4: return load<float>(p);
      case Kind::F8: return load<double>(p);
      case Kind::I4: return load<int32_t>(p);
      case Kind::U1: return *p;
      default: return *p != 0 ? 1.0 : 0.0;
    }
  });
}

std::vector<int32_t> NpyArray::to_i32(const std::string& context) const {
  if (dtype != "<i4" && dtype != "|u1" && dtype != "|b1")
    throw Error(dtype_error(context, *this, "int32"));
  return convert<int32_t>(*this, context, [](Kind k, const uint8_t* p) -> int32_t {
    if (k == Kind::I4) return load<int32_t>(p);
    if (k == Kind::U1) return *p;
    return *p != 0 ? 1 : 0;
  });
}

std::vector<int64_t> NpyArray::to_i64(const std::string& context) const {
  if (dtype != "<i4" && dtype != "<i8" && dtype != "|u1" && dtype != "|b1")
    throw Error(dtype_error(context, *this, "int64"));
  return convert<int64_t>(*this, context, [](Kind k, const uint8_t* p) -> int64_t {
    if (k == Kind::I4) return load<int32_t>(p);
    if (k == Kind::I8) return load<int64_t>(p);
    if (k == Kind::U1) return *p;
    return *p != 0 ? 1 : 0;
  });
}

std::vector<uint8_t> NpyArray::to_u8(const std::string& context) const {
  if (dtype != "|u1" && dtype != "|b1") throw Error(dtype_error(context, *this, "uint8"));
  return convert<uint8_t>(*this, context, [](Kind k, const uint8_t* p) -> uint8_t {
    return k == Kind::U1 ? *p : (*p != 0 ? 1 : 0);
  });
}

std::vector<bool> NpyArray::to_bool(const std::string& context) const {
  if (dtype != "|b1") throw Error(dtype_error(context, *this, "bool"));
  std::vector<uint8_t> b = to_u8(context);
  return std::vector<bool>(b.begin(), b.end());
}

std::vector<std::string> NpyArray::to_strings(const std::string& context) const {
  const DType dt = require_dtype(dtype, context);
  if (dt.kind != Kind::U) throw Error(dtype_error(context, *this, "strings"));
  validate(context);
  const size_t n = static_cast<size_t>(numel());
  std::vector<std::string> out(n);
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* p = data.data() + i * dt.itemsize;
    size_t len = dt.ulen;
    while (len > 0 && load<uint32_t>(p + (len - 1) * 4) == 0) --len;  // numpy drops trailing NULs
    for (size_t k = 0; k < len; ++k) {
      const uint32_t cp = load<uint32_t>(p + k * 4);
      if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        throw Error(context + ": element " + std::to_string(i) +
                    " holds an invalid code point " + std::to_string(cp));
      append_utf8(cp, &out[i]);
    }
  }
  return out;
}

namespace {
void require_single(const NpyArray& a, const std::string& context) {
  if (a.numel() != 1)
    throw Error(context + ": expected a single value, array has " + std::to_string(a.numel()) +
                " elements");
}
}  // namespace

double NpyArray::item_f64(const std::string& context) const {
  require_single(*this, context);
  if (dtype == "<i8") return static_cast<double>(to_i64(context)[0]);
  return to_f64(context)[0];
}

int64_t NpyArray::item_i64(const std::string& context) const {
  require_single(*this, context);
  return to_i64(context)[0];
}

bool NpyArray::item_bool(const std::string& context) const {
  require_single(*this, context);
  return to_bool(context)[0];
}

std::string NpyArray::item_string(const std::string& context) const {
  require_single(*this, context);
  return to_strings(context)[0];
}

// ------------------------------------------------------------------ .npy encode

namespace {

std::string npy_header_dict(const NpyArray& a) {
  std::string shape = "(";
  for (size_t i = 0; i < a.shape.size(); ++i) {
    if (i) shape += ", ";
    shape += std::to_string(a.shape[i]);
  }
  if (a.shape.size() == 1) shape += ",";
  shape += ")";
  return "{'descr': '" + a.dtype + "', 'fortran_order': False, 'shape': " + shape + ", }";
}

// The magic, version, header length and padded header (everything before the data).
std::vector<uint8_t> npy_preamble(const NpyArray& a) {
  const std::string dict = npy_header_dict(a);
  // Version 1.0: 10-byte prefix, uint16 length; 2.0: 12 bytes, uint32 length.
  // The data starts at a multiple of 64 bytes, as numpy writes it.
  const bool v2 = dict.size() + 1 + 10 + 63 > 0xFFFF;
  const size_t prefix = v2 ? 12 : 10;
  size_t total = prefix + dict.size() + 1;
  total = (total + 63) / 64 * 64;
  const size_t hlen = total - prefix;
  std::vector<uint8_t> out;
  out.reserve(total);
  const uint8_t magic[] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  out.insert(out.end(), magic, magic + 6);
  out.push_back(v2 ? 2 : 1);
  out.push_back(0);
  if (v2) {
    put32(&out, static_cast<uint32_t>(hlen));
  } else {
    put16(&out, static_cast<uint16_t>(hlen));
  }
  out.insert(out.end(), dict.begin(), dict.end());
  while (out.size() < total - 1) out.push_back(' ');
  out.push_back('\n');
  return out;
}

}  // namespace

std::vector<uint8_t> npy_encode(const NpyArray& a) {
  a.validate("npy_encode");
  std::vector<uint8_t> out = npy_preamble(a);
  out.insert(out.end(), a.data.begin(), a.data.end());
  return out;
}

// ------------------------------------------------------------------ .npy decode

namespace {

// Parser for the Python dict literal of a .npy header.
class HeaderParser {
 public:
  HeaderParser(const std::string& s, const std::string& context) : s_(s), ctx_(context) {}

  void parse(std::string* descr, bool* fortran, std::vector<int64_t>* shape) {
    bool have_descr = false, have_fortran = false, have_shape = false;
    ws();
    expect('{');
    ws();
    while (peek() != '}') {
      const std::string key = string_literal();
      ws();
      expect(':');
      ws();
      if (key == "descr") {
        if (have_descr) fail("duplicate key 'descr'");
        if (peek() == '[') fail("structured dtypes are not supported");
        if (peek() != '\'' && peek() != '"') fail("'descr' is not a string");
        *descr = string_literal();
        have_descr = true;
      } else if (key == "fortran_order") {
        if (have_fortran) fail("duplicate key 'fortran_order'");
        *fortran = boolean();
        have_fortran = true;
      } else if (key == "shape") {
        if (have_shape) fail("duplicate key 'shape'");
        *shape = tuple();
        have_shape = true;
      } else {
        fail("unexpected key '" + printable(key, 40) + "'");
      }
      ws();
      if (peek() == ',') {
        ++pos_;
        ws();
      } else if (peek() != '}') {
        fail("expected ',' or '}'");
      }
    }
    ++pos_;
    while (pos_ < s_.size()) {
      const char c = s_[pos_++];
      if (c != ' ' && c != '\n' && c != '\t' && c != '\r' && c != '\0')
        fail("unexpected text after the header dict");
    }
    if (!have_descr || !have_fortran || !have_shape)
      fail("header lacks one of 'descr', 'fortran_order', 'shape'");
  }

 private:
  [[noreturn]] void fail(const std::string& what) {
    throw Error(ctx_ + ": bad .npy header (" + what + ")");
  }
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  void ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n'))
      ++pos_;
  }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++pos_;
  }
  std::string string_literal() {
    const char q = peek();
    if (q != '\'' && q != '"') fail("expected a quoted string");
    ++pos_;
    const size_t start = pos_;
    while (pos_ < s_.size() && s_[pos_] != q) {
      if (s_[pos_] == '\\' || s_[pos_] == '\n') fail("unsupported string literal");
      ++pos_;
    }
    if (pos_ >= s_.size()) fail("unterminated string");
    std::string out = s_.substr(start, pos_ - start);
    ++pos_;
    return out;
  }
  bool boolean() {
    if (s_.compare(pos_, 4, "True") == 0) {
      pos_ += 4;
      return true;
    }
    if (s_.compare(pos_, 5, "False") == 0) {
      pos_ += 5;
      return false;
    }
    fail("'fortran_order' is not True or False");
  }
  int64_t integer() {
    if (peek() < '0' || peek() > '9') fail("shape holds a non-integer");
    uint64_t v = 0;
    while (peek() >= '0' && peek() <= '9') {
      v = v * 10 + static_cast<uint64_t>(peek() - '0');
      if (v > (uint64_t(1) << 62)) fail("shape dimension too large");
      ++pos_;
    }
    if (peek() == 'L') ++pos_;  // Python 2 long literal
    return static_cast<int64_t>(v);
  }
  std::vector<int64_t> tuple() {
    std::vector<int64_t> dims;
    expect('(');
    ws();
    bool trailing_comma = false;
    while (peek() != ')') {
      if (dims.size() >= 64) fail("too many dimensions");
      dims.push_back(integer());
      ws();
      trailing_comma = false;
      if (peek() == ',') {
        ++pos_;
        trailing_comma = true;
        ws();
      } else if (peek() != ')') {
        fail("bad shape tuple");
      }
    }
    ++pos_;
    if (dims.size() == 1 && !trailing_comma) fail("shape is not a tuple");
    return dims;
  }

  const std::string& s_;
  const std::string& ctx_;
  size_t pos_ = 0;
};

// Parses the header at the front of `buf`, then turns `buf` into the data
// (moving it, without a copy of the whole payload).
NpyArray npy_decode_owned(std::vector<uint8_t>&& buf, const std::string& context) {
  const uint8_t magic[] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  if (buf.size() < 10 || std::memcmp(buf.data(), magic, 6) != 0)
    throw Error(context + ": not a .npy array (bad magic)");
  const uint8_t major = buf[6], minor = buf[7];
  if (major < 1 || major > 3 || minor != 0)
    throw Error(context + ": unsupported .npy format version " + std::to_string(major) + "." +
                std::to_string(minor));
  size_t start, hlen;
  if (major == 1) {
    start = 10;
    hlen = rd16(buf.data() + 8);
  } else {
    if (buf.size() < 12) throw Error(context + ": truncated .npy header");
    start = 12;
    hlen = rd32(buf.data() + 8);
  }
  if (hlen > buf.size() - start) throw Error(context + ": truncated .npy header");
  const std::string header(reinterpret_cast<const char*>(buf.data() + start), hlen);

  std::string descr;
  bool fortran = false;
  std::vector<int64_t> shape;
  HeaderParser(header, context).parse(&descr, &fortran, &shape);

  std::string canonical;
  bool swap = false;
  if (!parse_file_descr(descr, &canonical, &swap))
    throw Error(context + ": unsupported dtype '" + printable(descr, 40) +
                "' (supported: f2 f4 f8 i4 i8 b1 u1 U{n})");
  DType dt;
  parse_canonical(canonical, &dt);
  const size_t payload = buf.size() - start - hlen;
  uint64_t n = 0;
  if (!checked_numel(shape, payload / dt.itemsize + 1, &n) || n * dt.itemsize != payload)
    throw Error(context + ": data size " + std::to_string(payload) +
                " bytes does not match dtype '" + printable(descr, 40) + "' and shape " +
                shape_str(shape));

  NpyArray a;
  a.dtype = canonical;
  a.shape = shape;
  buf.erase(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(start + hlen));
  a.data = std::move(buf);

  if (swap) {
    const size_t unit = dt.kind == Kind::U ? 4 : dt.itemsize;
    for (size_t off = 0; off + unit <= a.data.size(); off += unit)
      std::reverse(a.data.begin() + static_cast<std::ptrdiff_t>(off),
                   a.data.begin() + static_cast<std::ptrdiff_t>(off + unit));
  }
  if (fortran && shape.size() > 1 && n > 1) {
    // Reorder from column-major to row-major.
    std::vector<uint8_t> c(a.data.size());
    const size_t nd = shape.size();
    std::vector<uint64_t> fstride(nd);
    uint64_t s = 1;
    for (size_t d = 0; d < nd; ++d) {
      fstride[d] = s;
      s *= static_cast<uint64_t>(shape[d]);
    }
    std::vector<uint64_t> idx(nd, 0);
    uint64_t foff = 0;
    for (uint64_t i = 0; i < n; ++i) {
      std::memcpy(c.data() + i * dt.itemsize, a.data.data() + foff * dt.itemsize, dt.itemsize);
      for (size_t d = nd; d-- > 0;) {  // advance the C-order index
        ++idx[d];
        foff += fstride[d];
        if (idx[d] < static_cast<uint64_t>(shape[d])) break;
        foff -= idx[d] * fstride[d];
        idx[d] = 0;
      }
    }
    a.data = std::move(c);
  }
  return a;
}

}  // namespace

NpyArray npy_decode(const uint8_t* bytes, size_t size, const std::string& context) {
  return npy_decode_owned(std::vector<uint8_t>(bytes, bytes + size), context);
}

// ------------------------------------------------------------------ files

namespace {

std::string errno_text() { return std::strerror(errno); }

class OutFile {
 public:
  OutFile(const std::string& final_path) : final_(final_path) {
    tmp_ = final_path + ".tmp." + std::to_string(::getpid());
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) throw Error(final_ + ": cannot create " + tmp_ + " (" + errno_text() + ")");
  }
  ~OutFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(tmp_.c_str());
  }
  OutFile(const OutFile&) = delete;
  OutFile& operator=(const OutFile&) = delete;

  uint64_t offset() const { return offset_; }

  void write(const uint8_t* p, size_t n) {
    offset_ += n;
    if (buf_.size() + n <= kBuf) {
      buf_.insert(buf_.end(), p, p + n);
      return;
    }
    flush();
    if (n >= kBuf) {
      raw_write(p, n);
    } else {
      buf_.insert(buf_.end(), p, p + n);
    }
  }
  void write(const std::vector<uint8_t>& v) { write(v.data(), v.size()); }

  void commit() {
    flush();
    crash_point("write");  // a kill here leaves only the temporary file
    if (::fsync(fd_) != 0) fail("fsync failed");
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) fail("close failed");
    if (::rename(tmp_.c_str(), final_.c_str()) != 0) fail("rename failed");
    committed_ = true;
    const size_t slash = final_.find_last_of('/');
    const std::string dir = slash == std::string::npos ? "." : final_.substr(0, slash + 1);
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) throw Error(final_ + ": cannot open its directory to fsync (" + errno_text() + ")");
    const int rc = ::fsync(dfd);
    const int err = errno;
    ::close(dfd);
    // Some file systems cannot fsync a directory; the rename is done either way.
    if (rc != 0 && err != EINVAL && err != EROFS && err != ENOTSUP)
      throw Error(final_ + ": fsync of its directory failed (" + std::strerror(err) + ")");
  }

 private:
  static constexpr size_t kBuf = size_t(1) << 20;

  [[noreturn]] void fail(const std::string& what) {
    throw Error(final_ + ": cannot write npz: " + what + " (" + errno_text() + ")");
  }
  void flush() {
    if (!buf_.empty()) raw_write(buf_.data(), buf_.size());
    buf_.clear();
  }
  void raw_write(const uint8_t* p, size_t n) {
    while (n > 0) {
      const ssize_t w = ::write(fd_, p, std::min<size_t>(n, size_t(1) << 30));
      if (w < 0) {
        if (errno == EINTR) continue;
        fail("write failed");
      }
      p += w;
      n -= static_cast<size_t>(w);
    }
  }

  std::string final_, tmp_;
  int fd_ = -1;
  bool committed_ = false;
  uint64_t offset_ = 0;
  std::vector<uint8_t> buf_;
};

class InFile {
 public:
  explicit InFile(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) throw Error(path + ": cannot open (" + errno_text() + ")");
    struct stat st {};
    if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd_);
      throw Error(path + ": not a regular file");
    }
    size_ = static_cast<uint64_t>(st.st_size);
  }
  ~InFile() { ::close(fd_); }
  InFile(const InFile&) = delete;
  InFile& operator=(const InFile&) = delete;

  uint64_t size() const { return size_; }

  // Reads exactly n bytes at off; the caller has checked off + n <= size().
  void read(uint64_t off, uint8_t* p, size_t n, const std::string& what) const {
    while (n > 0) {
      const ssize_t r = ::pread(fd_, p, std::min<size_t>(n, size_t(1) << 30),
                                static_cast<off_t>(off));
      if (r < 0) {
        if (errno == EINTR) continue;
        throw Error(path_ + ": read error in " + what + " (" + errno_text() + ")");
      }
      if (r == 0) throw Error(path_ + ": truncated (" + what + " ends past end of file)");
      p += r;
      off += static_cast<uint64_t>(r);
      n -= static_cast<size_t>(r);
    }
  }
  std::vector<uint8_t> read(uint64_t off, uint64_t n, const std::string& what) const {
    if (off > size_ || n > size_ - off)
      throw Error(path_ + ": truncated (" + what + " ends past end of file)");
    std::vector<uint8_t> v(static_cast<size_t>(n));
    read(off, v.data(), v.size(), what);
    return v;
  }

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

constexpr uint32_t kLocalSig = 0x04034b50;
constexpr uint32_t kCentralSig = 0x02014b50;
constexpr uint32_t kEndSig = 0x06054b50;
constexpr uint32_t kEnd64Sig = 0x06064b50;
constexpr uint32_t kLocator64Sig = 0x07064b50;
constexpr uint16_t kDosDate1980 = (0 << 9) | (1 << 5) | 1;  // 1980-01-01
constexpr uint32_t k32 = 0xFFFFFFFFu;

bool is_ascii(const std::string& s) {
  for (char c : s)
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  return true;
}

}  // namespace

namespace npz_detail {

void write_zip_stored(const std::string& path, const std::vector<ZipMember>& members,
                      bool force_zip64) {
  struct Written {
    uint32_t crc;
    uint64_t size;
    uint64_t offset;
  };
  std::set<std::string> seen;
  for (const auto& m : members) {
    if (m.name.empty() || m.name.size() > 0xFFFF - 4)
      throw Error(path + ": invalid zip member name length");
    if (!seen.insert(m.name).second)
      throw Error(path + ": duplicate zip member '" + printable(m.name) + "'");
  }

  OutFile out(path);
  std::vector<Written> written;
  written.reserve(members.size());
  std::vector<uint8_t> h;
  for (const auto& m : members) {
    uint32_t crc = static_cast<uint32_t>(::crc32(0L, Z_NULL, 0));
    uint64_t size = 0;
    for (const auto& part : m.parts) {
      crc = crc32_update(crc, part.first, part.second);
      size += part.second;
    }
    const uint64_t offset = out.offset();
    const bool z64 = force_zip64 || size >= k32;
    const uint16_t flags = is_ascii(m.name) ? 0 : 0x0800;  // bit 11: UTF-8 name
    h.clear();
    put32(&h, kLocalSig);
    put16(&h, z64 ? 45 : 20);
    put16(&h, flags);
    put16(&h, 0);  // stored
    put16(&h, 0);  // time 00:00:00
    put16(&h, kDosDate1980);
    put32(&h, crc);
    put32(&h, z64 ? k32 : static_cast<uint32_t>(size));
    put32(&h, z64 ? k32 : static_cast<uint32_t>(size));
    put16(&h, static_cast<uint16_t>(m.name.size()));
    put16(&h, z64 ? 20 : 0);
    h.insert(h.end(), m.name.begin(), m.name.end());
    if (z64) {
      put16(&h, 0x0001);
      put16(&h, 16);
      put64(&h, size);
      put64(&h, size);
    }
    out.write(h);
    for (const auto& part : m.parts) out.write(part.first, part.second);
    written.push_back({crc, size, offset});
  }

  const uint64_t cd_offset = out.offset();
  for (size_t i = 0; i < members.size(); ++i) {
    const auto& m = members[i];
    const auto& w = written[i];
    const bool big_size = force_zip64 || w.size >= k32;
    const bool big_off = force_zip64 || w.offset >= k32;
    std::vector<uint8_t> extra;
    if (big_size || big_off) {
      put16(&extra, 0x0001);
      put16(&extra, static_cast<uint16_t>((big_size ? 16 : 0) + (big_off ? 8 : 0)));
      if (big_size) {
        put64(&extra, w.size);
        put64(&extra, w.size);
      }
      if (big_off) put64(&extra, w.offset);
    }
    const bool z64 = !extra.empty();
    h.clear();
    put32(&h, kCentralSig);
    put16(&h, (3 << 8) | 45);  // made by: Unix, zip 4.5
    put16(&h, z64 ? 45 : 20);
    put16(&h, is_ascii(m.name) ? 0 : 0x0800);
    put16(&h, 0);
    put16(&h, 0);
    put16(&h, kDosDate1980);
    put32(&h, w.crc);
    put32(&h, big_size ? k32 : static_cast<uint32_t>(w.size));
    put32(&h, big_size ? k32 : static_cast<uint32_t>(w.size));
    put16(&h, static_cast<uint16_t>(m.name.size()));
    put16(&h, static_cast<uint16_t>(extra.size()));
    put16(&h, 0);                 // comment
    put16(&h, 0);                 // disk
    put16(&h, 0);                 // internal attributes
    put32(&h, 0100644u << 16);    // external: regular file, rw-r--r--
    put32(&h, big_off ? k32 : static_cast<uint32_t>(w.offset));
    h.insert(h.end(), m.name.begin(), m.name.end());
    h.insert(h.end(), extra.begin(), extra.end());
    out.write(h);
  }
  const uint64_t cd_size = out.offset() - cd_offset;
  const uint64_t count = members.size();
  const bool z64_end = force_zip64 || count >= 0xFFFF || cd_size >= k32 || cd_offset >= k32;
  h.clear();
  if (z64_end) {
    const uint64_t end64_offset = out.offset();
    put32(&h, kEnd64Sig);
    put64(&h, 44);
    put16(&h, (3 << 8) | 45);
    put16(&h, 45);
    put32(&h, 0);
    put32(&h, 0);
    put64(&h, count);
    put64(&h, count);
    put64(&h, cd_size);
    put64(&h, cd_offset);
    put32(&h, kLocator64Sig);
    put32(&h, 0);
    put64(&h, end64_offset);
    put32(&h, 1);
  }
  put32(&h, kEndSig);
  put16(&h, 0);
  put16(&h, 0);
  const uint16_t count16 = (force_zip64 || count >= 0xFFFF) ? 0xFFFF : static_cast<uint16_t>(count);
  put16(&h, count16);
  put16(&h, count16);
  put32(&h, (force_zip64 || cd_size >= k32) ? k32 : static_cast<uint32_t>(cd_size));
  put32(&h, (force_zip64 || cd_offset >= k32) ? k32 : static_cast<uint32_t>(cd_offset));
  put16(&h, 0);
  out.write(h);
  out.commit();
}

}  // namespace npz_detail

void write_npz(const std::string& path, const std::vector<std::pair<std::string, NpyArray>>& arrays,
               const NpzWriteOptions& options) {
  std::vector<std::vector<uint8_t>> preambles;
  preambles.reserve(arrays.size());
  std::vector<npz_detail::ZipMember> members;
  members.reserve(arrays.size());
  std::set<std::string> keys;
  for (const auto& kv : arrays) {
    const std::string& key = kv.first;
    if (key.empty() || key.find_first_of(std::string("/\\\0", 3)) != std::string::npos)
      throw Error(path + ": invalid array name '" + printable(key) +
                  "' (must be non-empty, without '/', '\\' or NUL)");
    if (!keys.insert(key).second) throw Error(path + ": duplicate array name '" + printable(key) + "'");
    kv.second.validate(path + ": array '" + printable(key) + "'");
    preambles.push_back(npy_preamble(kv.second));
    npz_detail::ZipMember m;
    m.name = key + ".npy";
    m.parts.push_back({preambles.back().data(), preambles.back().size()});
    if (!kv.second.data.empty()) m.parts.push_back({kv.second.data.data(), kv.second.data.size()});
    members.push_back(std::move(m));
  }
  npz_detail::write_zip_stored(path, members, options.force_zip64);
}

// ------------------------------------------------------------------ reading

namespace {

struct CentralEntry {
  std::string name;
  uint16_t method = 0;
  uint32_t crc = 0;
  uint64_t csize = 0, usize = 0, offset = 0;
};

// Inflates a raw deflate stream that must produce exactly `usize` bytes. The
// output grows with what the stream really yields, so a hostile declared
// size costs no memory up front.
std::vector<uint8_t> inflate_raw(const std::vector<uint8_t>& in, uint64_t usize,
                                 const std::string& context) {
  std::vector<uint8_t> out;
  out.resize(static_cast<size_t>(std::min<uint64_t>(usize, std::max<uint64_t>(in.size() * 4, 1 << 16))));
  z_stream zs{};
  if (inflateInit2(&zs, -MAX_WBITS) != Z_OK) throw Error(context + ": zlib inflateInit failed");
  struct Guard {
    z_stream* z;
    ~Guard() { inflateEnd(z); }
  } guard{&zs};
  constexpr size_t kChunk = size_t(1) << 30;  // z_stream counts are 32-bit
  size_t in_pos = 0, out_pos = 0;
  uint8_t spill[1];  // offered once `usize` bytes are out, to detect overruns
  while (true) {
    if (zs.avail_in == 0 && in_pos < in.size()) {
      const size_t chunk = std::min(in.size() - in_pos, kChunk);
      zs.next_in = const_cast<Bytef*>(in.data() + in_pos);
      zs.avail_in = static_cast<uInt>(chunk);
      in_pos += chunk;
    }
    if (out_pos == out.size() && out.size() < usize)
      out.resize(static_cast<size_t>(std::min<uint64_t>(usize, uint64_t(out.size()) * 2)));
    const bool full = out_pos == out.size();
    size_t chunk = 0;
    if (full) {
      zs.next_out = spill;
      zs.avail_out = 1;
    } else {
      chunk = std::min(out.size() - out_pos, kChunk);
      zs.next_out = out.data() + out_pos;
      zs.avail_out = static_cast<uInt>(chunk);
    }
    const int rc = ::inflate(&zs, Z_NO_FLUSH);
    if (full && zs.avail_out == 0)
      throw Error(context + ": compressed data inflates past its declared size");
    if (!full) out_pos += chunk - zs.avail_out;
    if (rc == Z_STREAM_END) break;
    if (rc == Z_BUF_ERROR && zs.avail_in == 0 && in_pos == in.size())
      throw Error(context + ": truncated compressed data");
    if (rc != Z_OK && rc != Z_BUF_ERROR)
      throw Error(context + ": corrupt compressed data (" + (zs.msg ? zs.msg : "zlib error") + ")");
  }
  if (out_pos != usize)
    throw Error(context + ": compressed data inflates to " + std::to_string(out_pos) +
                " bytes, declared " + std::to_string(usize));
  return out;
}

}  // namespace

namespace {

std::map<std::string, NpyArray> read_npz_impl(const std::string& path) {
  InFile f(path);
  const uint64_t size = f.size();
  if (size < 22) throw Error(path + ": not an npz file (too short for a zip archive)");

  // End of central directory: the last record whose comment reaches the end.
  const uint64_t tail_len = std::min<uint64_t>(size, 22 + 0xFFFF);
  const uint64_t tail_off = size - tail_len;
  const std::vector<uint8_t> tail = f.read(tail_off, tail_len, "end of central directory");
  int64_t eocd = -1;
  for (int64_t i = static_cast<int64_t>(tail_len) - 22; i >= 0; --i) {
    const uint8_t* p = tail.data() + i;
    if (rd32(p) == kEndSig && static_cast<uint64_t>(i) + 22 + rd16(p + 20) == tail_len) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0)
    throw Error(path + ": not an npz file (no zip end-of-central-directory record; truncated?)");
  const uint8_t* e = tail.data() + eocd;
  const uint64_t eocd_pos = tail_off + static_cast<uint64_t>(eocd);
  uint64_t disk = rd16(e + 4), cd_disk = rd16(e + 6);
  uint64_t n_disk = rd16(e + 8), n_total = rd16(e + 10);
  uint64_t cd_size = rd32(e + 12), cd_offset = rd32(e + 16);
  uint64_t cd_limit = eocd_pos;  // the central directory ends before this

  bool have64 = false;
  if (eocd_pos >= 20) {
    const std::vector<uint8_t> loc = f.read(eocd_pos - 20, 20, "zip64 locator");
    if (rd32(loc.data()) == kLocator64Sig) {
      have64 = true;
      const uint64_t end64 = rd64(loc.data() + 8);
      if (rd32(loc.data() + 4) != 0 || rd32(loc.data() + 16) != 1)
        throw Error(path + ": multi-disk zip archives are not supported");
      if (end64 > eocd_pos - 20 || eocd_pos - 20 - end64 < 56)
        throw Error(path + ": corrupt zip64 end-of-central-directory locator");
      const std::vector<uint8_t> r = f.read(end64, 56, "zip64 end of central directory");
      if (rd32(r.data()) != kEnd64Sig)
        throw Error(path + ": corrupt zip64 end-of-central-directory record");
      disk = rd32(r.data() + 16);
      cd_disk = rd32(r.data() + 20);
      n_disk = rd64(r.data() + 24);
      n_total = rd64(r.data() + 32);
      cd_size = rd64(r.data() + 40);
      cd_offset = rd64(r.data() + 48);
      cd_limit = end64;
    }
  }
  if (!have64 && (n_total == 0xFFFF || cd_size == k32 || cd_offset == k32))
    throw Error(path + ": corrupt zip archive (zip64 fields without a zip64 record)");
  if (disk != 0 || cd_disk != 0 || n_disk != n_total)
    throw Error(path + ": multi-disk zip archives are not supported");
  if (cd_offset > cd_limit || cd_size > cd_limit - cd_offset)
    throw Error(path + ": corrupt zip archive (central directory out of bounds; truncated?)");
  if (n_total > cd_size / 46)
    throw Error(path + ": corrupt zip archive (entry count does not fit the central directory)");

  const std::vector<uint8_t> cd = f.read(cd_offset, cd_size, "central directory");
  std::vector<CentralEntry> entries;
  entries.reserve(static_cast<size_t>(n_total));
  size_t pos = 0;
  for (uint64_t i = 0; i < n_total; ++i) {
    const std::string where = path + ": central directory entry " + std::to_string(i);
    if (cd.size() - pos < 46 || rd32(cd.data() + pos) != kCentralSig)
      throw Error(where + " is corrupt");
    const uint8_t* p = cd.data() + pos;
    const uint16_t flags = rd16(p + 8);
    CentralEntry ce;
    ce.method = rd16(p + 10);
    ce.crc = rd32(p + 16);
    ce.csize = rd32(p + 20);
    ce.usize = rd32(p + 24);
    const size_t nlen = rd16(p + 28), xlen = rd16(p + 30), clen = rd16(p + 32);
    const uint16_t start_disk = rd16(p + 34);
    ce.offset = rd32(p + 42);
    if (cd.size() - pos - 46 < nlen + xlen + clen) throw Error(where + " is truncated");
    ce.name.assign(reinterpret_cast<const char*>(p + 46), nlen);
    const std::string mctx = path + ": member '" + printable(ce.name) + "'";
    // zip64 extra field: the 0xFFFFFFFF fields, in order usize, csize, offset.
    const uint8_t* x = p + 46 + nlen;
    size_t xpos = 0;
    bool need_u = ce.usize == k32, need_c = ce.csize == k32, need_o = ce.offset == k32;
    while (xlen - xpos >= 4) {
      const uint16_t id = rd16(x + xpos), len = rd16(x + xpos + 2);
      xpos += 4;
      if (len > xlen - xpos) throw Error(mctx + ": corrupt extra field");
      if (id == 0x0001) {
        size_t q = 0;
        auto take = [&](uint64_t* v) {
          if (len - q < 8) throw Error(mctx + ": corrupt zip64 extra field");
          *v = rd64(x + xpos + q);
          q += 8;
        };
        if (need_u) take(&ce.usize), need_u = false;
        if (need_c) take(&ce.csize), need_c = false;
        if (need_o) take(&ce.offset), need_o = false;
      }
      xpos += len;
    }
    if (need_u || need_c || need_o) throw Error(mctx + ": zip64 sizes missing");
    if (flags & 0x0001) throw Error(mctx + ": encrypted members are not supported");
    if (start_disk != 0 && start_disk != 0xFFFF)
      throw Error(path + ": multi-disk zip archives are not supported");
    if (ce.method != 0 && ce.method != 8)
      throw Error(mctx + ": compression method " + std::to_string(ce.method) +
                  " is not supported (only stored and deflate)");
    entries.push_back(std::move(ce));
    pos += 46 + nlen + xlen + clen;
  }

  std::map<std::string, NpyArray> out;
  for (const auto& ce : entries) {
    const std::string mctx = path + ": member '" + printable(ce.name) + "'";
    if (ce.name.size() <= 4 || ce.name.compare(ce.name.size() - 4, 4, ".npy") != 0)
      throw Error(mctx + " is not a .npy array");
    const std::string key = ce.name.substr(0, ce.name.size() - 4);
    if (out.count(key)) throw Error(mctx + " appears twice");

    // Local header: must lie before the central directory and name the same member.
    if (ce.offset > cd_offset || cd_offset - ce.offset < 30)
      throw Error(mctx + ": local header out of bounds");
    const std::vector<uint8_t> lh = f.read(ce.offset, 30, "local header of '" + printable(ce.name) + "'");
    if (rd32(lh.data()) != kLocalSig) throw Error(mctx + ": bad local header signature");
    const uint64_t lnlen = rd16(lh.data() + 26), lxlen = rd16(lh.data() + 28);
    if (rd16(lh.data() + 8) != ce.method)
      throw Error(mctx + ": local and central headers disagree on the compression method");
    if (lnlen != ce.name.size()) throw Error(mctx + ": local header names another member");
    const uint64_t data_off = ce.offset + 30 + lnlen + lxlen;
    if (data_off > cd_offset || ce.csize > cd_offset - data_off)
      throw Error(mctx + ": data out of bounds (truncated?)");
    const std::vector<uint8_t> lname = f.read(ce.offset + 30, lnlen, "local header");
    if (std::memcmp(lname.data(), ce.name.data(), lnlen) != 0)
      throw Error(mctx + ": local header names another member");

    std::vector<uint8_t> bytes;
    if (ce.method == 0) {
      if (ce.csize != ce.usize) throw Error(mctx + ": stored member with differing sizes");
      bytes = f.read(data_off, ce.csize, "member '" + printable(ce.name) + "'");
    } else {
      // Deflate expands at most ~1032:1; refuse sizes no real stream can reach.
      if (ce.usize / 1032 > ce.csize + 64)
        throw Error(mctx + ": implausible uncompressed size " + std::to_string(ce.usize));
      const std::vector<uint8_t> comp = f.read(data_off, ce.csize, "member '" + printable(ce.name) + "'");
      bytes = inflate_raw(comp, ce.usize, mctx);
    }
    const uint32_t crc =
        crc32_update(static_cast<uint32_t>(::crc32(0L, Z_NULL, 0)), bytes.data(), bytes.size());
    if (crc != ce.crc) throw Error(mctx + ": CRC-32 mismatch (file is corrupt)");
    out.emplace(key, npy_decode_owned(std::move(bytes), mctx));
  }
  return out;
}

}  // namespace

std::map<std::string, NpyArray> read_npz(const std::string& path) {
  try {
    return read_npz_impl(path);
  } catch (const std::bad_alloc&) {
    throw Error(path + ": out of memory while reading the npz file");
  } catch (const std::length_error&) {
    throw Error(path + ": array too large to read");
  }
}

const NpyArray& npz_get(const std::map<std::string, NpyArray>& arrays, const std::string& key,
                        const std::string& path) {
  auto it = arrays.find(key);
  if (it != arrays.end()) return it->second;
  std::string have;
  for (const auto& kv : arrays) have += (have.empty() ? "" : ", ") + printable(kv.first, 60);
  throw Error(path + ": no array '" + printable(key) + "' (has: " + have + ")");
}

}  // namespace kt
