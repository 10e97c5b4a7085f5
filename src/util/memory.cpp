#include "util/memory.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <utility>

#if defined(__unix__) || defined(__APPLE__)
#if defined(__GLIBC__)
#include <malloc.h>
#endif
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

namespace {

// The first number in a file ("max" or a missing file: -1).
int64_t read_number(const char* path) {
  std::FILE* f = std::fopen(path, "r");
  if (!f) return -1;
  long long v = -1;
  const int n = std::fscanf(f, "%lld", &v);
  std::fclose(f);
  return n == 1 ? static_cast<int64_t>(v) : -1;
}

}  // namespace

int64_t available_memory_bytes() {
  if (const char* e = std::getenv("KNOWTRACE_MEMORY_BUDGET"); e && *e) {
    char* end = nullptr;
    const long long v = std::strtoll(e, &end, 10);
    if (end && *end == '\0' && v > 0) return static_cast<int64_t>(v);
  }
  int64_t avail = -1;
#if defined(__linux__)
  if (std::FILE* f = std::fopen("/proc/meminfo", "r")) {
    char line[256];
    while (std::fgets(line, sizeof line, f)) {
      long long kb = 0;
      if (std::sscanf(line, "MemAvailable: %lld kB", &kb) == 1) avail = static_cast<int64_t>(kb) * 1024;
    }
    std::fclose(f);
  }
  // The cgroup's limit, where one is set (v2, then v1).
  const int64_t limit2 = read_number("/sys/fs/cgroup/memory.max"), used2 = read_number("/sys/fs/cgroup/memory.current");
  const int64_t limit1 = read_number("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
                used1 = read_number("/sys/fs/cgroup/memory/memory.usage_in_bytes");
  for (auto [limit, used] : {std::pair{limit2, used2}, std::pair{limit1, used1}})
    if (limit > 0 && used >= 0 && limit < (int64_t{1} << 60)) {
      const int64_t room = std::max<int64_t>(0, limit - used);
      avail = avail < 0 ? room : std::min(avail, room);
    }
#endif
  return avail;
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

void keep_freed_memory() {
#if defined(__GLIBC__)
  static const bool done = [] {
    const char* e = std::getenv("KNOWTRACE_MALLOC_TUNE");
    if (e && std::string(e) == "0") return false;
    mallopt(M_MMAP_MAX, 0);         // large blocks from the heap too
    mallopt(M_TRIM_THRESHOLD, -1);  // never give the top of the heap back
    mallopt(M_TOP_PAD, 64 << 20);
    mallopt(M_ARENA_MAX, 1);        // worker threads' blocks (oneDNN's scratch) from it too, not from
                                    // per-thread arenas that map and unmap their large blocks
    return true;
  }();
  (void)done;
#endif
}

}  // namespace kt
