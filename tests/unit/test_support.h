// Helpers shared by the test binaries: a temporary folder per binary
// (removed at the end unless KT_KEEP_TMP=1), files written in one call, and
// the message of the kt::Error a call throws.
#pragma once
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "util/error.h"

namespace kt_test {

namespace fs = std::filesystem;

// The tiny fixture checkpoints under tests/fixtures/models/ (made by
// tests/reference/make_fixtures.py), one per architecture row and setting.
inline const std::vector<std::string>& fixture_archs() {
  static const std::vector<std::string> archs = {"llama", "mistral", "qwen2", "gpt2", "gpt_neox", "gptj",
                                                 "gemma", "gemma2", "gemma3_text", "qwen3", "olmo2", "phi3",
                                                 "mistral_window", "phi3_longrope", "gemma3_mm"};
  return archs;
}

// /tmp/kt_test_<binary>_<pid>, created once per test binary.
inline fs::path temp_root() {
  static const fs::path root = [] {
    std::string exe = "tests";
    char buf[4096];
    const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n > 0) exe = fs::path(std::string(buf, static_cast<size_t>(n))).filename().string();
    fs::path p = fs::temp_directory_path() / ("kt_" + exe + "_" + std::to_string(::getpid()));
    fs::remove_all(p);
    fs::create_directories(p);
    return p;
  }();
  return root;
}

class TempCleanup : public ::testing::Environment {
 public:
  void TearDown() override {
    if (!std::getenv("KT_KEEP_TMP")) fs::remove_all(temp_root());
  }
};
inline const auto* const kTempCleanup = ::testing::AddGlobalTestEnvironment(new TempCleanup);

// An empty (removed) path under temp_root().
inline fs::path fresh_dir(const std::string& name) {
  fs::path p = temp_root() / name;
  fs::remove_all(p);
  return p;
}

// Sets an environment variable for a scope; the old value (or its absence) comes back after.
struct EnvVar {
  std::string name;
  std::optional<std::string> old;
  EnvVar(const char* n, const std::string& v) : name(n) {
    if (const char* o = std::getenv(n)) old = o;
    ::setenv(n, v.c_str(), 1);
  }
  ~EnvVar() {
    if (old)
      ::setenv(name.c_str(), old->c_str(), 1);
    else
      ::unsetenv(name.c_str());
  }
};

inline std::string write_file(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << text;
  return p.string();
}

// The message of the kt::Error `f` throws; "" and a test failure when it
// throws nothing or another exception (bad input must give a kt::Error).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const kt::Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not a kt::Error: " << e.what();
    return std::string("<std::exception> ") + e.what();
  }
  ADD_FAILURE() << "expected a kt::Error, nothing was thrown";
  return "";
}

}  // namespace kt_test
