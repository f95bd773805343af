// Which device a pointer's memory lives on, remembered per allocation. A forward whose
// x and out change on every call (eager PyTorch: new activations from the caching
// allocator's segments) then asks the driver once per allocation rather than twice per
// call (cuPointerGetAttribute costs about a microsecond).
#pragma once

#include <cuda.h>

#include <array>
#include <mutex>

#include "runtime/driver.hpp"

namespace ffnjit {

class PointerRanges {
 public:
  // The device ordinal of the memory at p, or -1 when p is not CUDA device memory. A
  // remembered allocation answers without a driver call; the memory of a freed
  // allocation that the driver hands to another device within the same range is not
  // noticed (the check catches host and foreign pointers, it is no allocator audit).
  // Thread-safe.
  int device_of(const drv::Api* cu, CUdeviceptr p);

 private:
  struct Range {
    CUdeviceptr begin = 0, end = 0;  // [begin, end): one allocation, or one pointer
    int device = -1;
  };
  static constexpr size_t kRanges = 16;  // the segments an engine's activations come from
  std::mutex mu_;
  std::array<Range, kRanges> ranges_{};
  size_t next_ = 0;  // round-robin replacement
};

}  // namespace ffnjit
