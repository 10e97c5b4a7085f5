#include "model/device_memory.h"

#if defined(KT_HAVE_C10_CUDA)
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#endif

#include "util/memory.h"

namespace kt {

#if defined(KT_HAVE_C10_CUDA)
namespace {
int cuda_index(c10::Device dev) { return dev.has_index() ? dev.index() : 0; }
}  // namespace
#endif

int64_t device_free_bytes(c10::Device dev) {
  if (!dev.is_cuda()) return -1;
  if (const int64_t forced = memory_budget_override(); forced > 0) return forced;
#if defined(KT_HAVE_C10_CUDA)
  const int idx = cuda_index(dev);
  try {
    c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(idx));
    size_t free = 0, total = 0;
    if (cudaMemGetInfo(&free, &total) != cudaSuccess) {
      (void)cudaGetLastError();  // leave no sticky error for torch's next call
      return -1;
    }
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(idx);
    const int64_t cached = stats.reserved_bytes[0].current - stats.allocated_bytes[0].current;  // [0] = aggregate
    return static_cast<int64_t>(free) + (cached > 0 ? cached : 0);
  } catch (const c10::Error&) {  // no usable device: "unknown", and the caller says so
    return -1;
  }
#else
  return -1;
#endif
}

bool device_stats_available(c10::Device dev) {
#if defined(KT_HAVE_C10_CUDA)
  return dev.is_cuda();
#else
  (void)dev;
  return false;
#endif
}

int64_t device_peak_bytes(c10::Device dev) {
#if defined(KT_HAVE_C10_CUDA)
  if (dev.is_cuda()) return c10::cuda::CUDACachingAllocator::getDeviceStats(cuda_index(dev)).allocated_bytes[0].peak;
#else
  (void)dev;
#endif
  return -1;
}

void reset_device_peak(c10::Device dev) {
#if defined(KT_HAVE_C10_CUDA)
  if (dev.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(cuda_index(dev));
#else
  (void)dev;
#endif
}

}  // namespace kt
