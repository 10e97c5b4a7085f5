// Process memory figures for reports (`knowtrace bench`, `knowtrace run`).
// No torch: device memory is reported by the callers that have it.
#pragma once
#include <cstdint>
#include <string>

namespace kt {

// Peak resident set size of this process so far, in bytes (getrusage
// ru_maxrss); -1 where the platform does not report it.
int64_t peak_rss_bytes();

// Current resident set size in bytes (/proc/self/statm); -1 when unknown.
int64_t current_rss_bytes();

// Memory this process may still use, in bytes: the smaller of the
// system's MemAvailable and the room left under the memory limit of its
// cgroup and of every cgroup above it (v2 memory.max, v1 limit_in_bytes;
// /proc/self/cgroup names them). KNOWTRACE_MEMORY_BUDGET (bytes) replaces
// the measurement (tests, or a user sharing the machine). -1 when unknown.
int64_t available_memory_bytes();

// KNOWTRACE_MEMORY_BUDGET as bytes, or -1 when it is unset or empty; a value
// that is not a positive integer is a kt::Error naming it.
int64_t memory_budget_override();

// Keeps the memory a trace frees in the process's heap (glibc: no mmap for
// large blocks, no trimming, one arena for every thread), once per
// process: a sweep frees and allocates tensors of tens to hundreds of MB
// every layer, and memory handed back to the kernel comes back as page
// faults and zeroed pages (a fifth of the CPU time of a SmolLM2 trace
// before). The heap stays at
// its peak until the process ends. KNOWTRACE_MALLOC_TUNE=0 leaves malloc
// as it is.
void keep_freed_memory();

// "1.23 GiB", "456.0 MiB", "789 KiB", "n/a" for a negative value.
std::string format_bytes(int64_t bytes);

}  // namespace kt
