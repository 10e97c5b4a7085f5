#include "util/memory.h"

#include <cstdio>

#if defined(__unix__) || defined(__APPLE__)
#include <sys/resource.h>
#include <unistd.h>
#endif

namespace kt {

int64_t peak_rss_bytes() {
#if defined(__unix__) || defined(__APPLE__)
  struct rusage u {};
  if (getrusage(RUSAGE_SELF, &u) != 0) return -1;
#if defined(__APPLE__)
  return static_cast<int64_t>(u.ru_maxrss);  // bytes on macOS
#else
  return static_cast<int64_t>(u.ru_maxrss) * 1024;  // KiB on Linux
#endif
#else
  return -1;
#endif
}

int64_t current_rss_bytes() {
#if defined(__linux__)
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return -1;
  long long size = 0, resident = 0;
  const int n = std::fscanf(f, "%lld %lld", &size, &resident);
  std::fclose(f);
  if (n != 2) return -1;
  return static_cast<int64_t>(resident) * static_cast<int64_t>(sysconf(_SC_PAGESIZE));
#else
  return -1;
#endif
}

std::string format_bytes(int64_t bytes) {
  if (bytes < 0) return "n/a";
  char buf[32];
  const double b = static_cast<double>(bytes);
  if (b >= 1024.0 * 1024 * 1024)
    std::snprintf(buf, sizeof buf, "%.2f GiB", b / (1024.0 * 1024 * 1024));
  else if (b >= 1024.0 * 1024)
    std::snprintf(buf, sizeof buf, "%.1f MiB", b / (1024.0 * 1024));
  else
    std::snprintf(buf, sizeof buf, "%lld KiB", static_cast<long long>(bytes / 1024));
  return buf;
}

}  // namespace kt
