#include "util/memory.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>

#include "util/error.h"

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

#if defined(__linux__)
// The room left under the memory limits of this process's cgroup and of
// every cgroup above it (a Slurm job's, a container's, a systemd slice's),
// v2 and v1; -1 where none is set or none can be read.
int64_t cgroup_room() {
  std::FILE* f = std::fopen("/proc/self/cgroup", "r");
  if (!f) return -1;
  std::string v2, v1;  // this process's paths in the two hierarchies
  char line[4096];
  while (std::fgets(line, sizeof line, f)) {
    std::string l(line);
    if (!l.empty() && l.back() == '\n') l.pop_back();
    const size_t a = l.find(':'), b = a == std::string::npos ? a : l.find(':', a + 1);
    if (b == std::string::npos) continue;
    const std::string controllers = l.substr(a + 1, b - a - 1), path = l.substr(b + 1);
    if (l.compare(0, a, "0") == 0 && controllers.empty()) v2 = path;
    for (size_t i = 0; i <= controllers.size();) {  // "memory" among v1's comma-separated controllers
      const size_t j = std::min(controllers.find(',', i), controllers.size());
      if (controllers.compare(i, j - i, "memory") == 0) v1 = path;
      i = j + 1;
    }
  }
  std::fclose(f);
  int64_t room = -1;
  auto walk = [&](const std::string& root, std::string path, const char* limit_file, const char* usage_file) {
    while (true) {
      const std::string dir = root + (path == "/" ? "" : path) + "/";
      const int64_t limit = read_number((dir + limit_file).c_str()), used = read_number((dir + usage_file).c_str());
      if (limit > 0 && used >= 0 && limit < (int64_t{1} << 60)) {
        const int64_t r = std::max<int64_t>(0, limit - used);
        room = room < 0 ? r : std::min(room, r);
      }
      if (path.empty() || path == "/") break;
      const size_t cut = path.find_last_of('/');
      path = cut == 0 || cut == std::string::npos ? "/" : path.substr(0, cut);
    }
  };
  // With a cgroup namespace the process's own cgroup is the mount's root
  // ("/"); the walk then reads just the root's files.
  walk("/sys/fs/cgroup", v2.empty() ? "/" : v2, "memory.max", "memory.current");
  walk("/sys/fs/cgroup/memory", v1.empty() ? "/" : v1, "memory.limit_in_bytes", "memory.usage_in_bytes");
  return room;
}
#endif

}  // namespace

int64_t memory_budget_override() {
  const char* e = std::getenv("KNOWTRACE_MEMORY_BUDGET");
  if (!e || !*e) return -1;
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(e, &end, 10);
  if (errno != 0 || !end || *end != '\0' || v <= 0)
    throw Error(std::string("KNOWTRACE_MEMORY_BUDGET: expected a positive number of bytes, got '") + e + "'");
  return static_cast<int64_t>(v);
}

int64_t available_memory_bytes() {
  if (const int64_t forced = memory_budget_override(); forced > 0) return forced;
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
  if (const int64_t room = cgroup_room(); room >= 0) avail = avail < 0 ? room : std::min(avail, room);
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
