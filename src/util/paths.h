// Small filesystem helpers shared by the loaders.
#pragma once
#include <string>

namespace kt {

// Reads a whole file; throws kt::Error naming the path when it cannot.
std::string read_text_file(const std::string& path);

// Where the known_1000 data set lives: $KNOWTRACE_DATA_DIR, else "".
std::string data_dir_from_env();

}  // namespace kt
