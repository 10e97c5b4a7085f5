// libFuzzer target: kt::SafetensorsFile on arbitrary bytes (the input is the
// whole .safetensors file). On success every tensor must lie inside the data
// section, hold exactly shape x dtype bytes, and match the input's bytes at
// its data_offsets.
#include <nlohmann/json.hpp>

#include <cstring>

#include "fuzz_common.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = ktfuzz::write_file("model.safetensors", data, size);
  try {
    kt::SafetensorsFile f(path);
    uint64_t header_len = 0;
    std::memcpy(&header_len, data, 8);
    const uint8_t* section = data + 8 + header_len;
    const uint64_t section_size = size - 8 - header_len;
    const auto header = nlohmann::json::parse(data + 8, section);
    for (const auto& [name, t] : f.tensors()) {
      KT_FUZZ_CHECK(f.find(name) == &t);
      uint64_t n = 1;
      for (int64_t d : t.shape) {
        KT_FUZZ_CHECK(d >= 0);
        n *= static_cast<uint64_t>(d);
      }
      KT_FUZZ_CHECK(t.n_bytes == n * kt::st_dtype_size(t.dtype));
      const uint64_t b = header.at(name).at("data_offsets").at(0).get<uint64_t>();
      KT_FUZZ_CHECK(b <= section_size && t.n_bytes <= section_size - b);
      KT_FUZZ_CHECK(t.n_bytes == 0 || std::memcmp(t.data, section + b, t.n_bytes) == 0);
    }
  } catch (const kt::Error& e) {
    ktfuzz::check_error(e);
  }
  return 0;
}
