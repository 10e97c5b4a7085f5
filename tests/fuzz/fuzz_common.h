// Shared helpers of the libFuzzer targets in tests/fuzz/ (see docs/FUZZING.md).
//
// Contract under test: hostile input makes the readers throw kt::Error with a
// one-line message, never crash, hang, read out of bounds, or throw anything
// else. A non-kt::Error exception escapes the target and libFuzzer reports it
// ("deadly signal" after std::terminate); a multi-line message aborts.
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "util/error.h"

namespace ktfuzz {

// A private scratch directory (tmpfs when available), created once per process.
inline const std::string& scratch_dir() {
  static const std::string dir = [] {
    const char* base = std::getenv("KT_FUZZ_TMP");
    std::string tmpl = std::string(base ? base : (access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp")) +
                       "/ktfuzz.XXXXXX";
    if (!mkdtemp(tmpl.data())) {
      std::perror("mkdtemp");
      std::abort();
    }
    return tmpl;
  }();
  return dir;
}

// Writes bytes to scratch_dir()/name (replacing it) and returns the path.
inline std::string write_file(const std::string& name, const uint8_t* data, size_t size) {
  const std::string path = scratch_dir() + "/" + name;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) {
    std::perror(path.c_str());
    std::abort();
  }
  if (size && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  return path;
}

inline void remove_file(const std::string& name) { std::remove((scratch_dir() + "/" + name).c_str()); }

// kt::Error is the expected outcome of bad input; its message must be one
// non-empty line.
inline void check_error(const kt::Error& e) {
  const char* m = e.what();
  if (!*m || std::strchr(m, '\n') || std::strchr(m, '\r')) {
    std::fprintf(stderr, "kt::Error message is empty or not one line: [%s]\n", m);
    std::abort();
  }
}

// Fails (abort -> libFuzzer crash report) when an invariant of the reader's
// output does not hold.
#define KT_FUZZ_CHECK(cond)                                                              \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);      \
      std::abort();                                                                      \
    }                                                                                    \
  } while (0)

// Runs `f`, which must return or throw a kt::Error with a one-line message.
template <class F>
void expect_error_or_value(F&& f) {
  try {
    f();
  } catch (const kt::Error& e) {
    check_error(e);
  }
}

}  // namespace ktfuzz
