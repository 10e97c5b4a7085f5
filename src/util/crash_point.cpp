#include "util/crash_point.h"

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <string>

namespace kt {

void crash_point(const char* point) {
  // Parsed once; a malformed value disables the hook (it is a test tool).
  static const struct Target {
    std::string point;
    long count = 0;
    Target() {
      const char* v = std::getenv("KNOWTRACE_CRASH_AT");
      if (v == nullptr) return;
      const char* colon = std::strrchr(v, ':');
      if (colon == nullptr) return;
      point.assign(v, colon);
      count = std::strtol(colon + 1, nullptr, 10);
    }
  } target;
  static long hits = 0;
  if (target.count <= 0 || target.point != point) return;
  if (++hits == target.count) std::raise(SIGKILL);
}

}  // namespace kt
