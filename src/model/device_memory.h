// Memory figures of a torch device; the CPU's own are in util/memory.h.
// CUDA figures come from the CUDA runtime and c10_cuda's caching allocator,
// so only a build against a CUDA libtorch (KT_HAVE_C10_CUDA) has them;
// elsewhere every function answers "unknown".
#pragma once
#include <c10/core/Device.h>

#include <cstdint>

namespace kt {

// Bytes new tensors on `dev` may still take: the device's free memory
// (cudaMemGetInfo) plus what the caching allocator keeps reserved but
// unused, which it hands out again before asking the driver.
// KNOWTRACE_MEMORY_BUDGET replaces the reading, as on the CPU. -1 on the CPU
// and where it cannot be read.
int64_t device_free_bytes(c10::Device dev);

// Whether this build reads the figures below on `dev` (CUDA with c10_cuda).
bool device_stats_available(c10::Device dev);
// Peak bytes the caching allocator has handed out since the last reset; -1
// where not available.
int64_t device_peak_bytes(c10::Device dev);
void reset_device_peak(c10::Device dev);

}  // namespace kt
