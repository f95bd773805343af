// Device ordinals of pointers, remembered per allocation (see pointer_ranges.hpp).
#include "runtime/pointer_ranges.hpp"

namespace ffnjit {

int PointerRanges::device_of(const drv::Api* cu, CUdeviceptr p) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const Range& r : ranges_)
      if (p >= r.begin && p < r.end) return r.device;
  }
  int ordinal = -1;
  if (cu->cuPointerGetAttribute(&ordinal, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, p) != CUDA_SUCCESS)
    return -1;
  // The allocation around p; where the driver cannot say, p alone.
  CUdeviceptr begin = p;
  size_t size = 1;
  if (cu->cuPointerGetAttribute(&begin, CU_POINTER_ATTRIBUTE_RANGE_START_ADDR, p) != CUDA_SUCCESS ||
      cu->cuPointerGetAttribute(&size, CU_POINTER_ATTRIBUTE_RANGE_SIZE, p) != CUDA_SUCCESS ||
      begin > p || p - begin >= size)
    begin = p, size = 1;
  std::lock_guard<std::mutex> lock(mu_);
  ranges_[next_] = {begin, begin + size, ordinal};
  next_ = (next_ + 1) % kRanges;
  return ordinal;
}

}  // namespace ffnjit
