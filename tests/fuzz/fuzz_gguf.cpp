// libFuzzer target: kt::GgufFile on arbitrary bytes (the input is the whole
// .gguf file), then every typed getter on every metadata key, and the
// dequantization of every small tensor (whole and by rows).
#include <vector>

#include "fuzz_common.h"
#include "io/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = ktfuzz::write_file("model.gguf", data, size);
  try {
    kt::GgufFile f(path);
    KT_FUZZ_CHECK(f.file_size() == size);
    // data_offset() may lie past the end (alignment padding) only when no
    // tensor has any bytes.
    bool any_bytes = false;
    for (const auto& t : f.tensors()) any_bytes = any_bytes || t.n_bytes > 0;
    KT_FUZZ_CHECK(!any_bytes || f.data_offset() <= size);
    for (const auto& kv : f.metadata()) {
      const std::string& key = kv.first;
      const kt::GgufValue& v = kv.second;
      KT_FUZZ_CHECK(f.find(key) == &v);
      (void)v.to_string();
      (void)v.type_name();
      ktfuzz::expect_error_or_value([&] { f.get_u32(key); });
      ktfuzz::expect_error_or_value([&] { f.get_i32(key); });
      ktfuzz::expect_error_or_value([&] { f.get_u64(key); });
      ktfuzz::expect_error_or_value([&] { f.get_i64(key); });
      ktfuzz::expect_error_or_value([&] { f.get_f32(key); });
      ktfuzz::expect_error_or_value([&] { f.get_f64(key); });
      ktfuzz::expect_error_or_value([&] { f.get_bool(key); });
      ktfuzz::expect_error_or_value([&] { f.get_string(key); });
      ktfuzz::expect_error_or_value([&] { f.get_string_array(key); });
      ktfuzz::expect_error_or_value([&] { f.get_i32_array(key); });
      ktfuzz::expect_error_or_value([&] { f.get_u32_array(key); });
      ktfuzz::expect_error_or_value([&] { f.get_f32_array(key); });
      ktfuzz::expect_error_or_value([&] { f.opt_f32_array(key); });
    }
    ktfuzz::expect_error_or_value([&] { f.architecture(); });
    ktfuzz::expect_error_or_value([&] { f.require_tensor("token_embd.weight"); });
    for (const auto& t : f.tensors()) {
      KT_FUZZ_CHECK(f.tensor(t.name) == &t);
      // The bytes lie inside the file.
      KT_FUZZ_CHECK(t.n_bytes == 0 || (t.offset <= size - f.data_offset() &&
                                       t.n_bytes <= size - f.data_offset() - t.offset));
      (void)t.shape_string();
      // Keep each run fast (and allocations small: ne[0] may be huge when
      // another dimension is 0).
      if (t.n_elements > (1u << 16) || t.row_length() > (1u << 16)) continue;
      ktfuzz::expect_error_or_value([&] {
        std::vector<float> all = f.tensor_to_f32(t);
        KT_FUZZ_CHECK(all.size() == t.n_elements);
      });
      const uint64_t rows = t.n_rows();
      if (rows > 0 && t.row_length() > 0) {
        ktfuzz::expect_error_or_value([&] {
          std::vector<float> last(t.row_length());
          f.tensor_rows_to_f32(t, rows - 1, 1, last.data());
        });
      }
      // Out-of-range rows must be refused.
      try {
        std::vector<float> buf(t.row_length() + 1);
        f.tensor_rows_to_f32(t, rows, 1, buf.data());
        KT_FUZZ_CHECK(!"rows past the end accepted");
      } catch (const kt::Error& e) {
        ktfuzz::check_error(e);
      }
    }
  } catch (const kt::Error& e) {
    ktfuzz::check_error(e);
  }
  return 0;
}
