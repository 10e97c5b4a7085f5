// Fault injection for the crash-safety tests: the process kills itself with
// SIGKILL at a named point, as a power cut or the OOM killer would.
//
//   KNOWTRACE_CRASH_AT=<point>:<n>   die at the n-th time <point> is reached
//
// Points: filter (after a batch of verdicts), trace (after a fact is stored),
// write (half-way through writing a file), aggregate (between summary files),
// plot (after a figure). Unset (always, outside tests): a no-op.
#pragma once

namespace kt {

void crash_point(const char* point);

}  // namespace kt
