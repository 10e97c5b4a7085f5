#include "util/stored_file.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>

#include "util/crash_point.h"
#include "util/error.h"
#include "util/paths.h"

namespace kt {
namespace fs = std::filesystem;

namespace {

std::string errno_text() { return std::strerror(errno); }

void write_all(int fd, const char* p, size_t n, const std::function<void(const std::string&)>& fail) {
  size_t done = 0;
  while (done < n) {
    const ssize_t w = ::write(fd, p + done, n - done);
    if (w < 0) {
      if (errno == EINTR) continue;
      fail("write failed");
    }
    done += static_cast<size_t>(w);
  }
}

std::string checksum_line(const std::string& path, const std::string& content) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%08" PRIx32 "  %zu  ", crc32_of(content), content.size());
  return buf + fs::path(path).filename().string() + "\n";
}

}  // namespace

uint32_t crc32_of(const std::string& bytes) {
  uLong c = ::crc32(0L, Z_NULL, 0);
  const auto* p = reinterpret_cast<const Bytef*>(bytes.data());
  size_t left = bytes.size();
  while (left > 0) {  // zlib takes a uInt length
    const size_t n = std::min<size_t>(left, 1u << 30);
    c = ::crc32(c, p, static_cast<uInt>(n));
    p += n, left -= n;
  }
  return static_cast<uint32_t>(c);
}

void write_file_atomic(const std::string& path, const std::string& content) {
  const fs::path target(path);
  std::error_code ec;
  if (target.has_parent_path()) {
    fs::create_directories(target.parent_path(), ec);
    if (ec) throw Error(path + ": cannot create its directory (" + ec.message() + ")");
  }
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(tmp + ": cannot create (" + errno_text() + ")");
  auto fail = [&](const std::string& what) {
    const std::string why = errno_text();
    ::close(fd);
    ::unlink(tmp.c_str());
    throw Error(tmp + ": " + what + " (" + why + ")");
  };
  const size_t half = content.size() / 2;
  write_all(fd, content.data(), half, fail);
  crash_point("write");  // a kill here leaves only the temporary file
  write_all(fd, content.data() + half, content.size() - half, fail);
  if (::fsync(fd) != 0) fail("fsync failed");
  if (::close(fd) != 0) {
    const std::string why = errno_text();
    ::unlink(tmp.c_str());
    throw Error(tmp + ": close failed (" + why + ")");
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = errno_text();
    ::unlink(tmp.c_str());
    throw Error(path + ": rename from temporary file failed (" + why + ")");
  }
}

void write_file_checked(const std::string& path, const std::string& content) {
  // Data first, then its checksum: a kill in between leaves a stale
  // checksum, which reads back as "corrupt" and the file is recomputed.
  write_file_atomic(path, content);
  write_file_atomic(path + ".crc32", checksum_line(path, content));
}

std::string read_file_checked(const std::string& path) {
  const std::string content = read_text_file(path);
  const std::string sum_path = path + ".crc32";
  if (!fs::exists(sum_path))
    throw Error(path + ": its checksum file " + fs::path(sum_path).filename().string() +
                " is missing (written by another tool, or the writer was killed)");
  const std::string stored = read_text_file(sum_path);
  const std::string now = checksum_line(path, content);
  if (stored != now) {
    const std::string want = stored.substr(0, stored.find('\n'));
    throw Error(path + ": checksum mismatch (stored '" + want + "', file has " + now.substr(0, now.size() - 1) +
                "): the file is truncated or corrupt");
  }
  return content;
}

int remove_stale_temporaries(const std::string& dir) {
  int n = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.find(".tmp.") != std::string::npos && e.is_regular_file(ec)) n += fs::remove(e.path(), ec) ? 1 : 0;
  }
  return n;
}

}  // namespace kt
