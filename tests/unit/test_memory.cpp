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
