#include "util/paths.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "util/error.h"

namespace kt {

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open file");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw Error(path + ": read error");
  return ss.str();
}

std::string data_dir_from_env() {
  const char* d = std::getenv("KNOWTRACE_DATA_DIR");
  return d ? std::string(d) : std::string();
}

}  // namespace kt
