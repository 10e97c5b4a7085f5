// GGUF reader (versions 2 and 3, little-endian). The file is memory-mapped;
// metadata is parsed into GgufValue trees, tensor data stays in the map.
//
// Every failure is a kt::Error whose one-line message starts with the file
// path, e.g. "m.gguf: metadata key 'llama.block_count' missing" or
// "m.gguf: tensor 'blk.0.attn_q.weight' data [1024, 5120) runs past the end
// of the file (4096 bytes)". Hostile input never crashes, hangs or makes the
// reader allocate much more than the file's own size.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "io/dequant.h"

namespace kt {

class MappedFile;

// GGUF metadata value types, numbered as in the file.
enum class GgufType : uint32_t {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
};

// "uint32", "string", "array", ...; "type N" for an unknown number.
std::string gguf_type_name(GgufType t);

struct GgufValue {
  GgufType type = GgufType::UINT8;

  // Scalars: unsigned integers and bool in u, signed integers in i,
  // float32/float64 in f (float32 widened exactly). Strings in str.
  uint64_t u = 0;
  int64_t i = 0;
  double f = 0.0;
  std::string str;

  // ARRAY: element type and elements (each a scalar, string or, for
  // nested arrays, an array GgufValue of its own).
  GgufType elem_type = GgufType::UINT8;
  std::vector<GgufValue> items;

  bool is_array() const { return type == GgufType::ARRAY; }
  bool is_integer() const;  // any of the 8 integer types (not bool)
  bool is_float() const { return type == GgufType::FLOAT32 || type == GgufType::FLOAT64; }
  // "uint32", "array[string]", "array[array]".
  std::string type_name() const;
  // Integer value as signed/unsigned if it is an integer that fits.
  bool to_i64(int64_t* out) const;
  bool to_u64(uint64_t* out) const;
  // Short human-readable rendering: numbers, quoted strings, arrays as
  // "[a, b, c, ... (N items)]" showing at most max_items elements.
  std::string to_string(size_t max_items = 8) const;
};

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> shape;  // ne[0..n_dims): ne[0] varies fastest
  GgmlType type = GgmlType::F32;
  uint64_t offset = 0;         // from the start of the data section
  uint64_t n_elements = 0;
  uint64_t n_bytes = 0;
  // "[576, 49152]"
  std::string shape_string() const;
  // The tensor as rows of ne[0] elements: ne[0] and the product of the rest.
  uint64_t row_length() const { return shape.empty() ? 1 : static_cast<uint64_t>(shape[0]); }
  uint64_t n_rows() const { return row_length() ? n_elements / row_length() : 0; }
};

class GgufFile {
 public:
  // Maps and parses the file; throws kt::Error (message starts with path).
  explicit GgufFile(const std::string& path);
  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // absolute, in the file
  uint64_t file_size() const;

  // ---- metadata ----
  // All key/value pairs in file order.
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return kv_; }
  const GgufValue* find(const std::string& key) const;  // nullptr if absent
  bool has(const std::string& key) const { return find(key) != nullptr; }
  // Required getters: throw "PATH: metadata key 'K' missing" or
  // "PATH: metadata key 'K' has type X, expected Y" (or "... value V out of
  // range for Y"). Integer getters accept any integer type whose value fits;
  // float getters accept float32 and float64.
  uint32_t get_u32(const std::string& key) const;
  int32_t get_i32(const std::string& key) const;
  uint64_t get_u64(const std::string& key) const;
  int64_t get_i64(const std::string& key) const;
  float get_f32(const std::string& key) const;
  double get_f64(const std::string& key) const;
  bool get_bool(const std::string& key) const;
  std::string get_string(const std::string& key) const;
  std::vector<std::string> get_string_array(const std::string& key) const;
  std::vector<int32_t> get_i32_array(const std::string& key) const;
  std::vector<uint32_t> get_u32_array(const std::string& key) const;
  std::vector<float> get_f32_array(const std::string& key) const;
  // Optional getters: std::nullopt when the key is absent; a present key of
  // the wrong type still throws.
  std::optional<uint32_t> opt_u32(const std::string& key) const;
  std::optional<int32_t> opt_i32(const std::string& key) const;
  std::optional<uint64_t> opt_u64(const std::string& key) const;
  std::optional<float> opt_f32(const std::string& key) const;
  std::optional<bool> opt_bool(const std::string& key) const;
  std::optional<std::string> opt_string(const std::string& key) const;
  std::optional<std::vector<std::string>> opt_string_array(const std::string& key) const;
  std::optional<std::vector<int32_t>> opt_i32_array(const std::string& key) const;
  std::optional<std::vector<float>> opt_f32_array(const std::string& key) const;
  // general.architecture (required).
  std::string architecture() const { return get_string("general.architecture"); }

  // ---- tensors ----
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* tensor(const std::string& name) const;  // nullptr if absent
  // Throws "PATH: tensor 'NAME' missing".
  const GgufTensorInfo& require_tensor(const std::string& name) const;
  // Start of the tensor's bytes in the map (n_bytes long, bounds checked at load).
  const uint8_t* tensor_data(const GgufTensorInfo& info) const;
  // Dequantized copy (n_elements floats, ne[0] fastest). Throws
  // "PATH: tensor 'NAME' has ggml type X, which cannot be dequantized ...".
  std::vector<float> tensor_to_f32(const GgufTensorInfo& info) const;
  void tensor_to_f32(const GgufTensorInfo& info, float* dst) const;
  // Rows [row_begin, row_begin + n_rows) only (n_rows * row_length() floats
  // into dst), e.g. a few embedding rows of a large vocabulary. Throws when
  // the range is outside the tensor.
  void tensor_rows_to_f32(const GgufTensorInfo& info, uint64_t row_begin, uint64_t n_rows,
                          float* dst) const;

  // Error with the file path prefixed: "PATH: msg".
  [[noreturn]] void fail(const std::string& msg) const;

 private:
  void parse();
  const GgufValue& require(const std::string& key) const;
  [[noreturn]] void wrong_type(const std::string& key, const GgufValue& v,
                               const char* expected) const;

  std::string path_;
  std::unique_ptr<MappedFile> map_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::unordered_map<std::string, size_t> kv_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::unordered_map<std::string, size_t> tensor_index_;
};

}  // namespace kt
