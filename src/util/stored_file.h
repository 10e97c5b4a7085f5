// How knowtrace writes and reads back the files of a results directory:
// never half-written (temporary file + fsync + rename), and checked on the
// way back in (a CRC-32 "<file>.crc32" beside each text file; .npz files
// carry CRC-32s of their own members, see io/npz.h).
#pragma once
#include <cstdint>
#include <string>

namespace kt {

// Writes `content` to `path` atomically; creates missing parent
// directories. kt::Error names the path on failure.
void write_file_atomic(const std::string& path, const std::string& content);

// write_file_atomic, then "<path>.crc32" holding "<crc32 hex>  <bytes>  <name>".
void write_file_checked(const std::string& path, const std::string& content);

// Reads a file written by write_file_checked. kt::Error naming the path when
// the file or its checksum is missing, or when they disagree (truncated,
// corrupted, or edited by hand).
std::string read_file_checked(const std::string& path);

// CRC-32 (zlib's) of a byte string.
uint32_t crc32_of(const std::string& bytes);

// Removes "<name>.tmp.<pid>" files a killed process left in `dir` (not
// recursive). Only call it when no other process writes into `dir`.
int remove_stale_temporaries(const std::string& dir);

}  // namespace kt
