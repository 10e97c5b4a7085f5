// One exception type for every user-facing failure. Its message is the
// single line the CLI prints: it names the file, field or value at fault
// and what was expected.
#pragma once
#include <stdexcept>
#include <string>

namespace kt {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

}  // namespace kt
