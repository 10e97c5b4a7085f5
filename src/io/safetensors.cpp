#include "io/safetensors.h"

#include <nlohmann/json.hpp>

#include <cstring>
#include <filesystem>
#include <set>

#include "util/error.h"
#include "util/paths.h"

namespace kt {
namespace fs = std::filesystem;
using nlohmann::json;

size_t st_dtype_size(StDtype t) {
  switch (t) {
    case StDtype::F64: case StDtype::I64: return 8;
    case StDtype::F32: case StDtype::I32: return 4;
    case StDtype::F16: case StDtype::BF16: case StDtype::I16: return 2;
    default: return 1;
  }
}

// A name or value from the file as it goes into a one-line message: control
// characters (a tensor named "a\nb") written as \xNN.
static std::string printable(const std::string& s) {
  std::string out;
  for (const char c : s) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7F) {
      static const char hex[] = "0123456789abcdef";
      out += "\\x";
      out += hex[(c >> 4) & 0xF];
      out += hex[c & 0xF];
    } else {
      out += c;
    }
  }
  return out;
}

static bool parse_dtype(const std::string& s, StDtype* out) {
  static const std::map<std::string, StDtype> m = {
      {"F32", StDtype::F32}, {"F16", StDtype::F16}, {"BF16", StDtype::BF16},
      {"F64", StDtype::F64}, {"I64", StDtype::I64}, {"I32", StDtype::I32},
      {"I16", StDtype::I16}, {"I8", StDtype::I8},   {"U8", StDtype::U8},
      {"BOOL", StDtype::BOOL}};
  auto it = m.find(s);
  if (it == m.end()) return false;
  *out = it->second;
  return true;
}

SafetensorsFile::SafetensorsFile(const std::string& path)
    : file_(std::make_shared<MappedFile>(path)) {
  const size_t size = file_->size();
  if (size < 8) throw Error(path + ": truncated safetensors file (" + std::to_string(size) + " bytes, expected at least 8)");
  uint64_t header_len = 0;
  std::memcpy(&header_len, file_->data(), 8);  // little-endian hosts only (x86/ARM)
  if (header_len > size - 8)
    throw Error(path + ": header length " + std::to_string(header_len) + " runs past the end of the file (" +
                std::to_string(size) + " bytes)");
  json header;
  try {
    header = json::parse(file_->data() + 8, file_->data() + 8 + header_len);
  } catch (const std::exception& e) {
    throw Error(path + ": header is not valid JSON");
  }
  if (!header.is_object()) throw Error(path + ": header is not a JSON object");
  const uint8_t* base = file_->data() + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;
  for (auto& [name, info] : header.items()) {
    if (name == "__metadata__") continue;
    const std::string where = path + ": tensor '" + printable(name) + "'";
    if (!info.is_object() || !info.contains("dtype") || !info.contains("shape") || !info.contains("data_offsets"))
      throw Error(where + ": expected an object with dtype, shape and data_offsets");
    StTensor t;
    t.name = name;
    if (!info["dtype"].is_string()) throw Error(where + ": dtype is not a string");
    t.dtype_name = info["dtype"].get<std::string>();
    if (!parse_dtype(t.dtype_name, &t.dtype)) throw Error(where + ": unsupported dtype '" + printable(t.dtype_name) + "'");
    const json& shape = info["shape"];
    if (!shape.is_array()) throw Error(where + ": shape is not an array");
    uint64_t n = 1;
    for (const json& d : shape) {
      if (!d.is_number_unsigned()) throw Error(where + ": shape has a non-integer or negative dimension");
      uint64_t v = d.get<uint64_t>();
      if (v != 0 && n > (uint64_t(1) << 48) / v) throw Error(where + ": shape is too large");
      n *= v;
      t.shape.push_back(static_cast<int64_t>(v));
    }
    const json& off = info["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      throw Error(where + ": data_offsets must be two non-negative integers");
    uint64_t b = off[0].get<uint64_t>(), e = off[1].get<uint64_t>();
    if (b > e || e > data_size)
      throw Error(where + ": data_offsets [" + std::to_string(b) + ", " + std::to_string(e) +
                  ") point outside the data section (" + std::to_string(data_size) + " bytes)");
    if (e - b != n * st_dtype_size(t.dtype))
      throw Error(where + ": holds " + std::to_string(e - b) + " bytes but shape and dtype need " +
                  std::to_string(n * st_dtype_size(t.dtype)));
    t.data = base + b;
    t.n_bytes = e - b;
    tensors_.emplace(name, std::move(t));
  }
}

const StTensor* SafetensorsFile::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

SafetensorsCheckpoint::SafetensorsCheckpoint(const std::string& dir) {
  const fs::path single = fs::path(dir) / "model.safetensors";
  const fs::path index = fs::path(dir) / "model.safetensors.index.json";
  if (fs::exists(single)) {
    files_.push_back(std::make_unique<SafetensorsFile>(single.string()));
    return;
  }
  if (!fs::exists(index))
    throw Error(dir + ": no model.safetensors or model.safetensors.index.json found");
  json j;
  try {
    j = json::parse(read_text_file(index.string()));
  } catch (const json::exception&) {
    throw Error(index.string() + ": not valid JSON");
  }
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
    throw Error(index.string() + ": weight_map: expected an object {tensor: file}");
  std::set<std::string> shard_names;
  for (auto& [name, file] : j["weight_map"].items()) {
    if (!file.is_string()) throw Error(index.string() + ": weight_map['" + printable(name) + "'] is not a file name");
    std::string f = file.get<std::string>();
    if (f.find('/') != std::string::npos || f.find("..") != std::string::npos)
      throw Error(index.string() + ": weight_map['" + printable(name) + "'] = '" + printable(f) + "' is not a plain file name");
    shard_names.insert(f);
  }
  for (const auto& f : shard_names) files_.push_back(std::make_unique<SafetensorsFile>((fs::path(dir) / f).string()));
}

const StTensor* SafetensorsCheckpoint::find(const std::string& name) const {
  for (const auto& f : files_)
    if (const StTensor* t = f->find(name)) return t;
  return nullptr;
}

std::string SafetensorsCheckpoint::file_of(const std::string& name) const {
  for (const auto& f : files_)
    if (f->find(name)) return f->path();
  return "";
}

std::vector<std::string> SafetensorsCheckpoint::names() const {
  std::vector<std::string> out;
  for (const auto& f : files_)
    for (const auto& [n, t] : f->tensors()) out.push_back(n);
  return out;
}

std::vector<std::string> SafetensorsCheckpoint::files() const {
  std::vector<std::string> out;
  for (const auto& f : files_) out.push_back(f->path());
  return out;
}

}  // namespace kt
