// links: kt_util
#include <gtest/gtest.h>

#include <vector>

#include "util/memory.h"

TEST(Memory, PeakRssIsReportedAndGrows) {
  const int64_t before = kt::peak_rss_bytes();
#if defined(__linux__)
  ASSERT_GT(before, 0);
  std::vector<char> block(64 << 20, 1);  // touch 64 MiB
  volatile char sink = block[block.size() / 2];
  (void)sink;
  const int64_t after = kt::peak_rss_bytes();
  EXPECT_GE(after, before);
  EXPECT_GE(after, static_cast<int64_t>(block.size()));
  EXPECT_GT(kt::current_rss_bytes(), 0);
#endif
}

TEST(Memory, FormatBytes) {
  EXPECT_EQ(kt::format_bytes(-1), "n/a");
  EXPECT_EQ(kt::format_bytes(2048), "2 KiB");
  EXPECT_EQ(kt::format_bytes(3 * 1024 * 1024 + 512 * 1024), "3.5 MiB");
  EXPECT_EQ(kt::format_bytes(int64_t{5} << 30), "5.00 GiB");
}

#if defined(__linux__)
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <utility>

namespace {

// This process's cgroup directory with a memory limit to set: v1's memory
// hierarchy, else v2's; "" when neither is found.
std::pair<std::string, std::string> own_memory_cgroup() {
  std::ifstream in("/proc/self/cgroup");
  std::string line, v1, v2;
  bool has_v2 = false;
  while (std::getline(in, line)) {
    const size_t a = line.find(':'), b = line.find(':', a + 1);
    if (b == std::string::npos) continue;
    const std::string ctl = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
    if (("," + ctl + ",").find(",memory,") != std::string::npos) v1 = path;
    if (line.compare(0, a, "0") == 0 && ctl.empty()) v2 = path, has_v2 = true;
  }
  if (!v1.empty()) return {"/sys/fs/cgroup/memory" + (v1 == "/" ? "" : v1), "memory.limit_in_bytes"};
  if (has_v2) return {"/sys/fs/cgroup" + (v2 == "/" ? "" : v2), "memory.max"};
  return {"", ""};
}

bool write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  out.close();
  return static_cast<bool>(out);
}

}  // namespace

// A real cgroup, not the budget override: a child process joins a new
// memory cgroup limited to 256 MiB below this one and measures what it may
// use there. Creating cgroups needs root (CI has it); skipped otherwise.
TEST(Memory, AvailableMemoryFollowsTheProcessCgroup) {
  const auto [parent, limit_file] = own_memory_cgroup();
  if (parent.empty()) GTEST_SKIP() << "no memory cgroup found in /proc/self/cgroup";
  const std::string dir = parent + "/knowtrace-test-" + std::to_string(getpid());
  if (mkdir(dir.c_str(), 0755) != 0) GTEST_SKIP() << "cannot create " << dir << " (not root?)";
  const int64_t limit = int64_t{256} << 20;
  if (!write_file(dir + "/" + limit_file, std::to_string(limit))) {
    rmdir(dir.c_str());
    GTEST_SKIP() << "cannot set " << dir << "/" << limit_file;
  }
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    unsetenv("KNOWTRACE_MEMORY_BUDGET");
    long long v = -2;  // -2: could not join the cgroup
    if (write_file(dir + "/cgroup.procs", std::to_string(getpid()))) v = kt::available_memory_bytes();
    (void)!write(fds[1], &v, sizeof v);
    _exit(0);
  }
  close(fds[1]);
  long long v = -3;
  const ssize_t got = read(fds[0], &v, sizeof v);
  close(fds[0]);
  int status = 0;
  waitpid(child, &status, 0);
  rmdir(dir.c_str());
  ASSERT_EQ(got, static_cast<ssize_t>(sizeof v));
  if (v == -2) GTEST_SKIP() << "cannot move a process into " << dir;
  EXPECT_GT(v, 0);
  EXPECT_LE(v, limit);  // the machine has far more: only the cgroup's limit gives this
  // And outside it, this process sees more than the child's limit.
  if (!std::getenv("KNOWTRACE_MEMORY_BUDGET")) EXPECT_GT(kt::available_memory_bytes(), limit);
}
#endif
