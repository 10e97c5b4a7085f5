// libFuzzer target: kt::read_npz on arbitrary bytes (the input is the whole
// .npz file); inputs that start with the NPY magic go to kt::npy_decode
// directly as well. Every decoded array is validated and converted with each
// accessor (which must either succeed or throw kt::Error).
#include <cstring>

#include "fuzz_common.h"
#include "io/npz.h"

namespace {

void exercise(const kt::NpyArray& a) {
  a.validate("fuzz");
  KT_FUZZ_CHECK(a.data.size() == static_cast<size_t>(a.numel()) * a.itemsize());
  ktfuzz::expect_error_or_value([&] { KT_FUZZ_CHECK(a.to_f32().size() == static_cast<size_t>(a.numel())); });
  ktfuzz::expect_error_or_value([&] { KT_FUZZ_CHECK(a.to_f64().size() == static_cast<size_t>(a.numel())); });
  ktfuzz::expect_error_or_value([&] { KT_FUZZ_CHECK(a.to_i32().size() == static_cast<size_t>(a.numel())); });
  ktfuzz::expect_error_or_value([&] { KT_FUZZ_CHECK(a.to_i64().size() == static_cast<size_t>(a.numel())); });
  ktfuzz::expect_error_or_value([&] { KT_FUZZ_CHECK(a.to_u8().size() == static_cast<size_t>(a.numel())); });
  ktfuzz::expect_error_or_value([&] { KT_FUZZ_CHECK(a.to_bool().size() == static_cast<size_t>(a.numel())); });
  ktfuzz::expect_error_or_value([&] { KT_FUZZ_CHECK(a.to_strings().size() == static_cast<size_t>(a.numel())); });
  ktfuzz::expect_error_or_value([&] { a.item_f64(); });
  ktfuzz::expect_error_or_value([&] { a.item_i64(); });
  ktfuzz::expect_error_or_value([&] { a.item_bool(); });
  ktfuzz::expect_error_or_value([&] { a.item_string(); });
  // What was read can be written again and reads back the same.
  const std::vector<uint8_t> enc = kt::npy_encode(a);
  const kt::NpyArray b = kt::npy_decode(enc.data(), enc.size(), "re-encoded");
  KT_FUZZ_CHECK(b.dtype == a.dtype && b.shape == a.shape && b.data == a.data);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size >= 6 && std::memcmp(data, "\x93NUMPY", 6) == 0) {
    try {
      exercise(kt::npy_decode(data, size, "fuzz.npy"));
    } catch (const kt::Error& e) {
      ktfuzz::check_error(e);
    }
  }
  const std::string path = ktfuzz::write_file("arrays.npz", data, size);
  try {
    const auto arrays = kt::read_npz(path);
    for (const auto& [key, a] : arrays) {
      KT_FUZZ_CHECK(&kt::npz_get(arrays, key, path) == &a);
      exercise(a);
    }
  } catch (const kt::Error& e) {
    ktfuzz::check_error(e);
  }
  return 0;
}
