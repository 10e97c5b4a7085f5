// NumPy .npy arrays and .npz archives (ROME-compatible result files).
//
// write_npz() writes a zip of "<key>.npy" members (NPY format 1.0, stored,
// zip64 where sizes need it) that numpy.load opens; the write is atomic
// (temporary file in the same directory, fsync, rename, fsync of the
// directory). read_npz() reads numpy's own output (np.savez and
// np.savez_compressed) and validates everything: zip structures, CRC-32 of
// every member, NPY magic, header, dtype and shape against the data size.
// Anything malformed or truncated throws kt::Error with one line naming the
// file (and member).
//
// Supported dtypes (NpyArray::dtype holds the canonical numpy descr):
//   "<f2" "<f4" "<f8" "<i4" "<i8" "|b1" "|u1" and "<U{n}" (UTF-32LE, n code
//   points per element, NUL-padded). The reader also accepts the big-endian
//   and native-order spellings of these ('>f4', '=i8', ...) and converts
//   them to the little-endian canonical form, and converts Fortran-ordered
//   arrays to C order. A shape of {} is a 0-d scalar.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace kt {

struct NpyArray {
  std::string dtype;           // canonical descr, see above
  std::vector<int64_t> shape;  // {} for a 0-d scalar
  std::vector<uint8_t> data;   // elements in C order, little-endian

  // Number of elements (1 for a 0-d scalar) and bytes per element.
  int64_t numel() const;
  size_t itemsize() const;
  // Throws kt::Error (prefixed with `context`) if dtype is unsupported or
  // data.size() != numel() * itemsize().
  void validate(const std::string& context = "npy array") const;

  // ---- construction. `shape` defaults to 1-d {v.size()} (the {-1} default
  // means exactly that); a given shape must have exactly v.size() elements
  // (kt::Error otherwise); {} makes a 0-d array from one value.
  static NpyArray from_f16(const std::vector<float>& v, std::vector<int64_t> shape = {-1});
  static NpyArray from_f32(const std::vector<float>& v, std::vector<int64_t> shape = {-1});
  static NpyArray from_f64(const std::vector<double>& v, std::vector<int64_t> shape = {-1});
  static NpyArray from_i32(const std::vector<int32_t>& v, std::vector<int64_t> shape = {-1});
  static NpyArray from_i64(const std::vector<int64_t>& v, std::vector<int64_t> shape = {-1});
  static NpyArray from_u8(const std::vector<uint8_t>& v, std::vector<int64_t> shape = {-1});
  static NpyArray from_bool(const std::vector<bool>& v, std::vector<int64_t> shape = {-1});
  // UTF-8 strings -> '<U{n}', n = longest string in code points (at least
  // 1, as numpy does). Strings must be valid UTF-8 without NUL characters.
  static NpyArray from_strings(const std::vector<std::string>& v,
                               std::vector<int64_t> shape = {-1});
  // 0-d scalars.
  static NpyArray scalar_f32(float x);
  static NpyArray scalar_f64(double x);
  static NpyArray scalar_i32(int32_t x);
  static NpyArray scalar_i64(int64_t x);
  static NpyArray scalar_bool(bool x);
  static NpyArray scalar_string(const std::string& utf8);

  // ---- reading back (kt::Error prefixed with `context` on a dtype that
  // cannot be converted exactly).
  std::vector<float> to_f32(const std::string& context = "npy array") const;   // f2, f4
  std::vector<double> to_f64(const std::string& context = "npy array") const;  // f2, f4, f8, i4, u1, b1
  std::vector<int32_t> to_i32(const std::string& context = "npy array") const; // i4, u1, b1
  std::vector<int64_t> to_i64(const std::string& context = "npy array") const; // i4, i8, u1, b1
  std::vector<uint8_t> to_u8(const std::string& context = "npy array") const;  // u1, b1
  std::vector<bool> to_bool(const std::string& context = "npy array") const;   // b1
  std::vector<std::string> to_strings(const std::string& context = "npy array") const;  // U (UTF-8, trailing NULs dropped)
  // Single-element arrays (0-d or any shape with one element).
  double item_f64(const std::string& context = "npy array") const;      // any float/int/bool
  int64_t item_i64(const std::string& context = "npy array") const;     // i4, i8, u1, b1
  bool item_bool(const std::string& context = "npy array") const;       // b1
  std::string item_string(const std::string& context = "npy array") const;  // U
};

// IEEE half <-> float, round to nearest even (numpy's astype(float16)).
uint16_t float_to_half(float f);
float half_to_float(uint16_t h);

// One .npy file image (NPY format 1.0; 2.0 only if the header needs it).
std::vector<uint8_t> npy_encode(const NpyArray& a);
// Parses a .npy image; `context` (e.g. "file.npz: member 'x.npy'") starts
// every error message.
NpyArray npy_decode(const uint8_t* bytes, size_t size, const std::string& context);

struct NpzWriteOptions {
  // Write zip64 records even for small files (numpy itself does so for the
  // local headers); used by tests to exercise the zip64 paths.
  bool force_zip64 = false;
};

// Keys must be unique, non-empty, and free of NUL, '/' and '\\'; each is
// stored as member "<key>.npy". Every array is validate()d first.
void write_npz(const std::string& path, const std::vector<std::pair<std::string, NpyArray>>& arrays,
               const NpzWriteOptions& options = {});

// Key = member name without ".npy". Deflate-compressed members are supported.
std::map<std::string, NpyArray> read_npz(const std::string& path);

// Looks up `key`; throws "<path>: no array 'key' (has: a, b, c)" if absent.
const NpyArray& npz_get(const std::map<std::string, NpyArray>& arrays, const std::string& key,
                        const std::string& path);

namespace npz_detail {
// Low-level writer used by write_npz and by tests that need well-formed zips
// with arbitrary member bytes. Atomic like write_npz.
struct ZipMember {
  std::string name;
  std::vector<std::pair<const uint8_t*, size_t>> parts;  // concatenated
};
void write_zip_stored(const std::string& path, const std::vector<ZipMember>& members,
                      bool force_zip64 = false);
}  // namespace npz_detail

}  // namespace kt
