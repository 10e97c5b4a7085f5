// Reader for Hugging Face .safetensors files: an 8-byte little-endian header
// length, a JSON header {name: {dtype, shape, data_offsets}}, then raw data.
// The file is memory-mapped; tensors are views into the map.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "io/mapped_file.h"

namespace kt {

enum class StDtype { F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL };

struct StTensor {
  std::string name;
  StDtype dtype;
  std::string dtype_name;  // as written in the file, for messages
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // points into the mapped file
  size_t n_bytes = 0;
};

size_t st_dtype_size(StDtype t);

class SafetensorsFile {
 public:
  // Validates the header and every tensor's byte range; throws kt::Error
  // naming the file and tensor on any inconsistency.
  explicit SafetensorsFile(const std::string& path);
  const std::map<std::string, StTensor>& tensors() const { return tensors_; }
  const StTensor* find(const std::string& name) const;
  const std::string& path() const { return file_->path(); }

 private:
  std::shared_ptr<MappedFile> file_;
  std::map<std::string, StTensor> tensors_;
};

// A checkpoint directory: model.safetensors, or shards listed by
// model.safetensors.index.json. Looks tensors up across shards.
class SafetensorsCheckpoint {
 public:
  explicit SafetensorsCheckpoint(const std::string& dir);
  const StTensor* find(const std::string& name) const;
  // The file a tensor lives in (for error messages), "" when absent.
  std::string file_of(const std::string& name) const;
  std::vector<std::string> names() const;
  std::vector<std::string> files() const;

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
};

}  // namespace kt
