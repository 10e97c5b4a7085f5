#include "io/gguf.h"

#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <type_traits>

#include "io/mapped_file.h"
#include "util/error.h"

namespace kt {

namespace {

constexpr uint32_t kMaxDims = 4;         // GGML_MAX_DIMS
constexpr int kMaxArrayDepth = 8;        // nesting of array-of-array
constexpr uint64_t kMaxAlignment = 1u << 20;
// Upper bound on the memory the parsed metadata may take. Real files need a
// few tens of MiB (a 128k-token vocabulary with its merges); hostile files
// made of millions of tiny values are stopped here.
constexpr uint64_t kMetadataBudget = 512ull << 20;

// A name or key from the file made safe for a one-line message: control
// and non-ASCII bytes escaped, long names shortened.
std::string printable(const std::string& s, size_t max_len = 120) {
  std::string out;
  for (size_t k = 0; k < s.size(); ++k) {
    if (out.size() >= max_len) {
      out += "...";
      break;
    }
    const unsigned char c = static_cast<unsigned char>(s[k]);
    if (c >= 0x20 && c < 0x7F && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}

std::string fmt_float(double v, bool single) {
  char buf[40];
  std::snprintf(buf, sizeof buf, single ? "%.7g" : "%.15g", v);
  return buf;
}

// Smallest encoded size of one value of type t (0 for unknown types).
uint64_t min_encoded_size(GgufType t) {
  switch (t) {
    case GgufType::UINT8:
    case GgufType::INT8:
    case GgufType::BOOL: return 1;
    case GgufType::UINT16:
    case GgufType::INT16: return 2;
    case GgufType::UINT32:
    case GgufType::INT32:
    case GgufType::FLOAT32: return 4;
    case GgufType::UINT64:
    case GgufType::INT64:
    case GgufType::FLOAT64:
    case GgufType::STRING: return 8;    // length prefix
    case GgufType::ARRAY: return 4 + 8;  // element type + count
  }
  return 0;
}

bool valid_type(uint32_t t) { return t <= static_cast<uint32_t>(GgufType::FLOAT64); }

std::string type_name_u32(uint32_t t) {
  if (!valid_type(t)) return "type " + std::to_string(t);
  return gguf_type_name(static_cast<GgufType>(t));
}

// Bounds-checked little-endian reader over the mapped bytes.
class Parser {
 public:
  Parser(const GgufFile& file, const uint8_t* data, uint64_t size)
      : file_(file), data_(data), size_(size) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }
  void set_context(const char* section, const std::string* key) {
    section_ = section;
    key_ = key;
  }

  void need(uint64_t n) {
    if (n > remaining()) {
      std::string msg = "truncated " + std::string(section_);
      if (key_) msg += " ('" + printable(*key_) + "')";
      msg += ": " + std::to_string(n) + " bytes needed at offset " + std::to_string(pos_) +
             ", only " + std::to_string(remaining()) + " left in the file";
      file_.fail(msg);
    }
  }
  uint8_t u8() {
    need(1);
    return data_[pos_++];
  }
  uint16_t u16() {
    need(2);
    const uint8_t* p = data_ + pos_;
    pos_ += 2;
    return static_cast<uint16_t>(p[0] | (p[1] << 8));
  }
  uint32_t u32() {
    need(4);
    const uint8_t* p = data_ + pos_;
    pos_ += 4;
    return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
           (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
  }
  uint64_t u64() {
    need(8);
    const uint64_t lo = u32();
    const uint64_t hi = u32();
    return lo | (hi << 32);
  }
  std::string str() {
    const uint64_t len = u64();
    if (len > remaining()) {
      std::string msg = "string length " + std::to_string(len) + " at offset " +
                        std::to_string(pos_ - 8) + " runs past the end of the file";
      msg += " (" + std::to_string(remaining()) + " bytes left) in " + section_;
      if (key_) msg += " ('" + printable(*key_) + "')";
      file_.fail(msg);
    }
    charge(len);
    std::string s(reinterpret_cast<const char*>(data_ + pos_), static_cast<size_t>(len));
    pos_ += len;
    return s;
  }

  // Account for memory the parse is about to allocate.
  void charge(uint64_t bytes) {
    if (bytes > kMetadataBudget - used_) {
      file_.fail("metadata would need more than " + std::to_string(kMetadataBudget >> 20) +
                 " MiB of memory" + (key_ ? " (at '" + printable(*key_) + "')" : std::string()) +
                 "; the file is corrupt or hostile");
    }
    used_ += bytes;
  }

  void value(GgufType t, GgufValue& v, int depth) {
    v.type = t;
    switch (t) {
      case GgufType::UINT8: v.u = u8(); break;
      case GgufType::INT8: v.i = static_cast<int8_t>(u8()); break;
      case GgufType::BOOL: v.u = u8(); break;
      case GgufType::UINT16: v.u = u16(); break;
      case GgufType::INT16: v.i = static_cast<int16_t>(u16()); break;
      case GgufType::UINT32: v.u = u32(); break;
      case GgufType::INT32: v.i = static_cast<int32_t>(u32()); break;
      case GgufType::UINT64: v.u = u64(); break;
      case GgufType::INT64: v.i = static_cast<int64_t>(u64()); break;
      case GgufType::FLOAT32: {
        const uint32_t b = u32();
        float f;
        std::memcpy(&f, &b, 4);
        v.f = f;
        break;
      }
      case GgufType::FLOAT64: {
        const uint64_t b = u64();
        std::memcpy(&v.f, &b, 8);
        break;
      }
      case GgufType::STRING: v.str = str(); break;
      case GgufType::ARRAY: array(v, depth); break;
    }
  }

  void array(GgufValue& v, int depth) {
    if (depth >= kMaxArrayDepth) {
      file_.fail("metadata array nested more than " + std::to_string(kMaxArrayDepth) +
                 " deep" + (key_ ? " in '" + printable(*key_) + "'" : std::string()));
    }
    const uint64_t at = pos_;
    const uint32_t et = u32();
    if (!valid_type(et)) {
      file_.fail("metadata array" + (key_ ? " '" + printable(*key_) + "'" : std::string()) +
                 " at offset " + std::to_string(at) + " has unknown element type " +
                 std::to_string(et) + " (expected 0..12)");
    }
    const uint64_t count = u64();
    const uint64_t min_each = min_encoded_size(static_cast<GgufType>(et));
    if (count > remaining() / min_each) {
      file_.fail("metadata array" + (key_ ? " '" + printable(*key_) + "'" : std::string()) +
                 " claims " + std::to_string(count) + " elements of " + type_name_u32(et) +
                 ", more than the " + std::to_string(remaining()) +
                 " bytes left in the file can hold");
    }
    v.elem_type = static_cast<GgufType>(et);
    charge(count * sizeof(GgufValue));
    v.items.resize(static_cast<size_t>(count));
    for (auto& item : v.items) value(v.elem_type, item, depth + 1);
  }

 private:
  const GgufFile& file_;
  const uint8_t* data_;
  uint64_t size_;
  uint64_t pos_ = 0;
  uint64_t used_ = 0;
  const char* section_ = "header";
  const std::string* key_ = nullptr;
};

std::string bytes_repr(const uint8_t* p, size_t n) {
  std::string out;
  for (size_t k = 0; k < n; ++k) {
    const unsigned char c = p[k];
    if (c >= 0x20 && c < 0x7F && c != '\\' && c != '\'') {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------

std::string gguf_type_name(GgufType t) {
  switch (t) {
    case GgufType::UINT8: return "uint8";
    case GgufType::INT8: return "int8";
    case GgufType::UINT16: return "uint16";
    case GgufType::INT16: return "int16";
    case GgufType::UINT32: return "uint32";
    case GgufType::INT32: return "int32";
    case GgufType::FLOAT32: return "float32";
    case GgufType::BOOL: return "bool";
    case GgufType::STRING: return "string";
    case GgufType::ARRAY: return "array";
    case GgufType::UINT64: return "uint64";
    case GgufType::INT64: return "int64";
    case GgufType::FLOAT64: return "float64";
  }
  return "type " + std::to_string(static_cast<uint32_t>(t));
}

bool GgufValue::is_integer() const {
  switch (type) {
    case GgufType::UINT8:
    case GgufType::INT8:
    case GgufType::UINT16:
    case GgufType::INT16:
    case GgufType::UINT32:
    case GgufType::INT32:
    case GgufType::UINT64:
    case GgufType::INT64: return true;
    default: return false;
  }
}

static bool is_signed_type(GgufType t) {
  return t == GgufType::INT8 || t == GgufType::INT16 || t == GgufType::INT32 ||
         t == GgufType::INT64;
}

std::string GgufValue::type_name() const {
  if (type == GgufType::ARRAY) return "array[" + gguf_type_name(elem_type) + "]";
  return gguf_type_name(type);
}

bool GgufValue::to_i64(int64_t* out) const {
  if (!is_integer()) return false;
  if (is_signed_type(type)) {
    *out = i;
    return true;
  }
  if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return false;
  *out = static_cast<int64_t>(u);
  return true;
}

bool GgufValue::to_u64(uint64_t* out) const {
  if (!is_integer()) return false;
  if (is_signed_type(type)) {
    if (i < 0) return false;
    *out = static_cast<uint64_t>(i);
    return true;
  }
  *out = u;
  return true;
}

std::string GgufValue::to_string(size_t max_items) const {
  switch (type) {
    case GgufType::BOOL: return u ? "true" : "false";
    case GgufType::FLOAT32: return fmt_float(f, true);
    case GgufType::FLOAT64: return fmt_float(f, false);
    case GgufType::STRING: return "\"" + printable(str, 60) + "\"";
    case GgufType::ARRAY: {
      std::string out = "[";
      const size_t n = items.size();
      for (size_t k = 0; k < n && k < max_items; ++k) {
        if (k) out += ", ";
        out += items[k].to_string(max_items);
      }
      if (n > max_items) out += ", ... (" + std::to_string(n) + " items)";
      return out + "]";
    }
    default:
      return is_signed_type(type) ? std::to_string(i) : std::to_string(u);
  }
}

std::string GgufTensorInfo::shape_string() const {
  std::string out = "[";
  for (size_t k = 0; k < shape.size(); ++k) {
    if (k) out += ", ";
    out += std::to_string(shape[k]);
  }
  return out + "]";
}

// ---------------------------------------------------------------------------

GgufFile::GgufFile(const std::string& path) : path_(path) {
  map_ = std::make_unique<MappedFile>(path);
  parse();
}

GgufFile::~GgufFile() = default;

uint64_t GgufFile::file_size() const { return map_->size(); }

void GgufFile::fail(const std::string& msg) const { throw Error(path_ + ": " + msg); }

void GgufFile::parse() {
  const uint8_t* data = map_->data();
  const uint64_t size = map_->size();

  if (size < 4) fail("file of " + std::to_string(size) + " bytes is too short to be GGUF");
  if (std::memcmp(data, "GGUF", 4) != 0)
    fail("not a GGUF file (magic bytes '" + bytes_repr(data, 4) + "', expected 'GGUF')");

  Parser p(*this, data, size);
  p.set_context("header", nullptr);
  p.need(8);
  p.u32();  // magic
  version_ = p.u32();
  if (version_ == 1)
    fail("GGUF version 1 is not supported (expected version 2 or 3; re-convert the model)");
  if (version_ != 2 && version_ != 3) {
    const uint32_t swapped = ((version_ & 0xFFu) << 24) | ((version_ & 0xFF00u) << 8) |
                             ((version_ >> 8) & 0xFF00u) | (version_ >> 24);
    if (swapped >= 1 && swapped <= 3)
      fail("big-endian GGUF file (version bytes read as " + std::to_string(version_) +
           "); only little-endian GGUF is supported");
    fail("unsupported GGUF version " + std::to_string(version_) + " (expected 2 or 3)");
  }
  p.need(16);
  const uint64_t n_tensors = p.u64();
  const uint64_t n_kv = p.u64();

  // Plausibility before reserving anything: a key/value pair takes at least
  // 13 bytes (empty key, type, 1-byte value), a tensor info at least 24.
  if (n_kv > p.remaining() / 13)
    fail("header claims " + std::to_string(n_kv) + " metadata entries, impossible in a file of " +
         std::to_string(size) + " bytes");
  if (n_tensors > p.remaining() / 24)
    fail("header claims " + std::to_string(n_tensors) + " tensors, impossible in a file of " +
         std::to_string(size) + " bytes");

  // ---- metadata ----
  kv_.reserve(static_cast<size_t>(n_kv));
  kv_index_.reserve(static_cast<size_t>(n_kv));
  p.charge(n_kv * (sizeof(std::pair<std::string, GgufValue>) + 32));
  for (uint64_t k = 0; k < n_kv; ++k) {
    p.set_context("metadata key", nullptr);
    std::string key = p.str();
    p.set_context("metadata value", &key);
    const uint64_t at = p.pos();
    const uint32_t t = p.u32();
    if (!valid_type(t))
      fail("metadata key '" + printable(key) + "' at offset " + std::to_string(at) +
           " has unknown value type " + std::to_string(t) + " (expected 0..12)");
    GgufValue v;
    p.value(static_cast<GgufType>(t), v, 0);
    if (kv_index_.count(key)) fail("metadata key '" + printable(key) + "' appears twice");
    kv_index_.emplace(key, kv_.size());
    kv_.emplace_back(std::move(key), std::move(v));
  }

  // ---- alignment ----
  if (const GgufValue* a = find("general.alignment")) {
    uint64_t al = 0;
    if (!a->is_integer() || !a->to_u64(&al))
      fail("metadata key 'general.alignment' has type " + a->type_name() + ", expected uint32");
    if (al == 0 || (al & (al - 1)) != 0 || al > kMaxAlignment)
      fail("general.alignment " + std::to_string(al) +
           " is not a power of two between 1 and " + std::to_string(kMaxAlignment));
    alignment_ = al;
  }

  // ---- tensor infos ----
  tensors_.reserve(static_cast<size_t>(n_tensors));
  tensor_index_.reserve(static_cast<size_t>(n_tensors));
  p.charge(n_tensors * (sizeof(GgufTensorInfo) + 64));
  for (uint64_t k = 0; k < n_tensors; ++k) {
    GgufTensorInfo ti;
    p.set_context("tensor info", nullptr);
    ti.name = p.str();
    p.set_context("tensor info", &ti.name);
    const std::string what = "tensor '" + printable(ti.name) + "'";
    const uint32_t n_dims = p.u32();
    if (n_dims > kMaxDims)
      fail(what + " has " + std::to_string(n_dims) + " dimensions (at most " +
           std::to_string(kMaxDims) + " expected)");
    ti.shape.resize(n_dims);
    uint64_t n_el = 1;
    bool overflow = false;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t ne = p.u64();
      if (ne > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        fail(what + " dimension " + std::to_string(d) + " is " + std::to_string(ne) +
             ", larger than int64");
      ti.shape[d] = static_cast<int64_t>(ne);
      if (ne != 0 && n_el > std::numeric_limits<uint64_t>::max() / ne) overflow = true;
      n_el *= ne;
    }
    const uint32_t type = p.u32();
    ti.type = static_cast<GgmlType>(type);
    ti.offset = p.u64();

    // Zero-sized dimensions make the product 0 whatever came before.
    bool any_zero = false;
    for (int64_t ne : ti.shape) any_zero = any_zero || ne == 0;
    if (any_zero) {
      n_el = 0;
      overflow = false;
    }
    if (overflow || n_el > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      fail(what + " shape " + ti.shape_string() + " has too many elements (overflow)");
    ti.n_elements = n_el;

    const GgmlTypeInfo* info = ggml_type_info(ti.type);
    if (!info) {
      const std::string nm = ggml_type_name(ti.type);
      if (nm.rfind("unknown", 0) == 0)
        fail(what + " has unknown ggml type " + std::to_string(type) +
             " (not a GGML type number; corrupt file or a newer GGML)");
      fail(what + " has ggml " + nm + ", which cannot be loaded; re-convert the model");
    }
    if (n_dims > 0 && static_cast<uint64_t>(ti.shape[0]) % info->block_size != 0)
      fail(what + " of type " + info->name + " has ne[0] = " + std::to_string(ti.shape[0]) +
           ", not a multiple of the block size " + std::to_string(info->block_size));
    if (n_el % info->block_size != 0)
      fail(what + " of type " + info->name + " has " + std::to_string(n_el) +
           " elements, not a multiple of the block size " + std::to_string(info->block_size));
    const uint64_t blocks = n_el / info->block_size;
    if (blocks > std::numeric_limits<uint64_t>::max() / info->type_size)
      fail(what + " shape " + ti.shape_string() + " byte size overflows");
    ti.n_bytes = blocks * info->type_size;
    if (ti.offset % alignment_ != 0)
      fail(what + " data offset " + std::to_string(ti.offset) + " is not a multiple of the " +
           "alignment " + std::to_string(alignment_));
    if (tensor_index_.count(ti.name)) fail(what + " appears twice");
    tensor_index_.emplace(ti.name, tensors_.size());
    tensors_.push_back(std::move(ti));
  }

  // ---- data section ----
  const uint64_t end_of_infos = p.pos();
  data_offset_ = (end_of_infos + alignment_ - 1) / alignment_ * alignment_;
  const uint64_t data_size = data_offset_ <= size ? size - data_offset_ : 0;
  for (const auto& ti : tensors_) {
    if (ti.n_bytes == 0) continue;
    if (data_offset_ > size || ti.offset > data_size || ti.n_bytes > data_size - ti.offset)
      fail("tensor '" + printable(ti.name) + "' data [" + std::to_string(ti.offset) + ", " +
           (ti.offset > std::numeric_limits<uint64_t>::max() - ti.n_bytes
                ? std::string("overflow")
                : std::to_string(ti.offset + ti.n_bytes)) +
           ") runs past the end of the data section (" + std::to_string(data_size) +
           " bytes from offset " + std::to_string(data_offset_) + "; file truncated?)");
  }
}

// ---- metadata getters ------------------------------------------------------

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

const GgufValue& GgufFile::require(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) fail("metadata key '" + printable(key) + "' missing");
  return *v;
}

void GgufFile::wrong_type(const std::string& key, const GgufValue& v,
                          const char* expected) const {
  fail("metadata key '" + printable(key) + "' has type " + v.type_name() + ", expected " +
       expected);
}

namespace {

// Integer conversion with range check; returns false when out of range.
template <class T>
bool int_in_range(const GgufValue& v, T* out) {
  if (std::numeric_limits<T>::is_signed) {
    int64_t x;
    if (!v.to_i64(&x)) return false;
    if (x < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
        x > static_cast<int64_t>(std::numeric_limits<T>::max()))
      return false;
    *out = static_cast<T>(x);
  } else {
    uint64_t x;
    if (!v.to_u64(&x)) return false;
    if (x > static_cast<uint64_t>(std::numeric_limits<T>::max())) return false;
    *out = static_cast<T>(x);
  }
  return true;
}

template <class T>
const char* int_name() {
  if (std::is_same<T, uint32_t>::value) return "uint32";
  if (std::is_same<T, int32_t>::value) return "int32";
  if (std::is_same<T, uint64_t>::value) return "uint64";
  return "int64";
}

}  // namespace

#define KT_GGUF_INT_GETTER(NAME, T)                                                        \
  T GgufFile::NAME(const std::string& key) const {                                        \
    const GgufValue& v = require(key);                                                    \
    if (!v.is_integer()) wrong_type(key, v, int_name<T>());                               \
    T out{};                                                                              \
    if (!int_in_range<T>(v, &out))                                                        \
      fail("metadata key '" + printable(key) + "' value " + v.to_string() +              \
           " out of range for " + int_name<T>());                                        \
    return out;                                                                           \
  }

KT_GGUF_INT_GETTER(get_u32, uint32_t)
KT_GGUF_INT_GETTER(get_i32, int32_t)
KT_GGUF_INT_GETTER(get_u64, uint64_t)
KT_GGUF_INT_GETTER(get_i64, int64_t)
#undef KT_GGUF_INT_GETTER

double GgufFile::get_f64(const std::string& key) const {
  const GgufValue& v = require(key);
  if (!v.is_float()) wrong_type(key, v, "float32 or float64");
  return v.f;
}

float GgufFile::get_f32(const std::string& key) const {
  const GgufValue& v = require(key);
  if (!v.is_float()) wrong_type(key, v, "float32");
  return static_cast<float>(v.f);
}

bool GgufFile::get_bool(const std::string& key) const {
  const GgufValue& v = require(key);
  if (v.type != GgufType::BOOL) wrong_type(key, v, "bool");
  return v.u != 0;
}

std::string GgufFile::get_string(const std::string& key) const {
  const GgufValue& v = require(key);
  if (v.type != GgufType::STRING) wrong_type(key, v, "string");
  return v.str;
}

std::vector<std::string> GgufFile::get_string_array(const std::string& key) const {
  const GgufValue& v = require(key);
  if (!v.is_array() || v.elem_type != GgufType::STRING) wrong_type(key, v, "array[string]");
  std::vector<std::string> out;
  out.reserve(v.items.size());
  for (const auto& item : v.items) out.push_back(item.str);
  return out;
}

namespace {
template <class T>
std::vector<T> int_array(const GgufFile& f, const std::string& key, const GgufValue& v) {
  std::vector<T> out;
  out.reserve(v.items.size());
  for (size_t k = 0; k < v.items.size(); ++k) {
    T x{};
    if (!int_in_range<T>(v.items[k], &x))
      f.fail("metadata key '" + printable(key) + "' element " + std::to_string(k) + " value " +
             v.items[k].to_string() + " out of range for " + int_name<T>());
    out.push_back(x);
  }
  return out;
}
bool is_int_type(GgufType t) {
  GgufValue probe;
  probe.type = t;
  return probe.is_integer();
}
}  // namespace

std::vector<int32_t> GgufFile::get_i32_array(const std::string& key) const {
  const GgufValue& v = require(key);
  if (!v.is_array() || !is_int_type(v.elem_type)) wrong_type(key, v, "array[int32]");
  return int_array<int32_t>(*this, key, v);
}

std::vector<uint32_t> GgufFile::get_u32_array(const std::string& key) const {
  const GgufValue& v = require(key);
  if (!v.is_array() || !is_int_type(v.elem_type)) wrong_type(key, v, "array[uint32]");
  return int_array<uint32_t>(*this, key, v);
}

std::vector<float> GgufFile::get_f32_array(const std::string& key) const {
  const GgufValue& v = require(key);
  if (!v.is_array() || (v.elem_type != GgufType::FLOAT32 && v.elem_type != GgufType::FLOAT64))
    wrong_type(key, v, "array[float32]");
  std::vector<float> out;
  out.reserve(v.items.size());
  for (const auto& item : v.items) out.push_back(static_cast<float>(item.f));
  return out;
}

#define KT_GGUF_OPT(NAME, GET, T)                                     \
  std::optional<T> GgufFile::NAME(const std::string& key) const {     \
    if (!has(key)) return std::nullopt;                                \
    return GET(key);                                                   \
  }
KT_GGUF_OPT(opt_u32, get_u32, uint32_t)
KT_GGUF_OPT(opt_i32, get_i32, int32_t)
KT_GGUF_OPT(opt_u64, get_u64, uint64_t)
KT_GGUF_OPT(opt_f32, get_f32, float)
KT_GGUF_OPT(opt_bool, get_bool, bool)
KT_GGUF_OPT(opt_string, get_string, std::string)
KT_GGUF_OPT(opt_string_array, get_string_array, std::vector<std::string>)
KT_GGUF_OPT(opt_i32_array, get_i32_array, std::vector<int32_t>)
KT_GGUF_OPT(opt_f32_array, get_f32_array, std::vector<float>)
#undef KT_GGUF_OPT

// ---- tensors -----------------------------------------------------------------

const GgufTensorInfo* GgufFile::tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const GgufTensorInfo& GgufFile::require_tensor(const std::string& name) const {
  const GgufTensorInfo* t = tensor(name);
  if (!t) fail("tensor '" + printable(name) + "' missing");
  return *t;
}

const uint8_t* GgufFile::tensor_data(const GgufTensorInfo& info) const {
  if (info.n_bytes == 0) return map_->data();
  return map_->data() + data_offset_ + info.offset;
}

namespace {
void require_dequantizable(const GgufFile& f, const GgufTensorInfo& info) {
  const GgmlTypeInfo* ti = ggml_type_info(info.type);
  if (!ti || !ti->dequantizable)
    f.fail("tensor '" + printable(info.name) + "' has ggml type " + ggml_type_name(info.type) +
           ", which cannot be dequantized (supported: " + dequantizable_type_names() + ")");
}
}  // namespace

void GgufFile::tensor_to_f32(const GgufTensorInfo& info, float* dst) const {
  require_dequantizable(*this, info);
  dequantize(info.type, tensor_data(info), static_cast<size_t>(info.n_elements), dst);
}

void GgufFile::tensor_rows_to_f32(const GgufTensorInfo& info, uint64_t row_begin,
                                  uint64_t n_rows, float* dst) const {
  require_dequantizable(*this, info);
  const uint64_t total = info.n_rows();
  if (row_begin > total || n_rows > total - row_begin)
    fail("tensor '" + printable(info.name) + "' rows [" + std::to_string(row_begin) + ", +" +
         std::to_string(n_rows) + ") are outside its " + std::to_string(total) + " rows");
  if (n_rows == 0) return;
  // Loading checked that ne[0] is a whole number of blocks.
  const uint64_t row_bytes = ggml_nbytes(info.type, info.row_length());
  dequantize(info.type, tensor_data(info) + row_begin * row_bytes,
             static_cast<size_t>(n_rows * info.row_length()), dst);
}

std::vector<float> GgufFile::tensor_to_f32(const GgufTensorInfo& info) const {
  require_dequantizable(*this, info);
  std::vector<float> out(static_cast<size_t>(info.n_elements));
  tensor_to_f32(info, out.data());
  return out;
}

}  // namespace kt
