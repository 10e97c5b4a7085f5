// One exception type for every user-facing failure. Its message is the
// single line the CLI prints: it names the file, field or value at fault
// and what was expected. Line breaks that came in with a value from a file
// (a merge "a\nb", a tensor name) are written as \n and \r, so the message
// stays one line whatever the input held.
#pragma once
#include <stdexcept>
#include <string>

namespace kt {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(one_line(msg)) {}

 private:
  static std::string one_line(const std::string& msg) {
    if (msg.find_first_of("\r\n") == std::string::npos) return msg;
    std::string out;
    for (char c : msg) out += c == '\n' ? "\\n" : c == '\r' ? "\\r" : std::string(1, c);
    return out;
  }
};

// A file, folder or cached model that is not there (Python: FileNotFoundError).
class NotFound : public Error {
 public:
  using Error::Error;
};

}  // namespace kt
