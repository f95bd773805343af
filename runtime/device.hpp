// A CUDA device as ffnjit uses it: the primary context, its properties, and RAII
// device memory and streams. Everything goes through the dlopen'ed driver table.
#pragma once

#include <cuda.h>

#include <string>

#include "runtime/driver.hpp"
#include "support/status.hpp"

namespace ffnjit {

struct DeviceInfo {
  int ordinal = 0;
  std::string name;
  int cc_major = 0, cc_minor = 0;
  int sm_count = 0;
  int max_smem_optin = 0;
  size_t total_mem = 0;
  std::string arch;  // the real target ffnjit compiles for: sm_80, sm_89 or sm_90a
  int driver_version = 0;
};

// Holds a reference on the device's primary context (shared with the CUDA runtime,
// cuBLAS and PyTorch) and makes it current on the calling thread.
class Device {
 public:
  static Expected<Device> open(int ordinal);
  Device(Device&&) noexcept;
  Device& operator=(Device&&) = delete;
  Device(const Device&) = delete;
  ~Device();

  Status make_current() const;
  const DeviceInfo& info() const { return info_; }
  CUcontext context() const { return ctx_; }
  const drv::Api* api() const { return cu_; }

 private:
  Device() = default;
  const drv::Api* cu_ = nullptr;
  CUdevice dev_ = 0;
  CUcontext ctx_ = nullptr;
  DeviceInfo info_;
};

// Owned device allocation.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  static Expected<DeviceBuffer> alloc(size_t bytes);
  DeviceBuffer(DeviceBuffer&& o) noexcept { *this = std::move(o); }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  ~DeviceBuffer();
  CUdeviceptr ptr() const { return ptr_; }
  size_t size() const { return size_; }
  template <class T>
  T* as() const {
    return reinterpret_cast<T*>(ptr_);
  }
  // Copies `bytes` from host or device memory (unified addressing infers which).
  Status upload(const void* src, size_t bytes, size_t offset = 0) const;
  Status download(void* host, size_t bytes, size_t offset = 0) const;
  Status fill_bytes(unsigned char value) const;  // memset, complete on return

 private:
  CUdeviceptr ptr_ = 0;
  size_t size_ = 0;
};

}  // namespace ffnjit
