// A CUDA device as ffnjit uses it: primary context, properties, RAII memory.
#include "runtime/device.hpp"

namespace ffnjit {

Expected<Device> Device::open(int ordinal) {
  auto api = drv::api();
  FFNJIT_TRY(api);
  const drv::Api* cu = *api;
  int count = 0;
  FFNJIT_CU(cuDeviceGetCount(&count));
  if (ordinal < 0 || ordinal >= count)
    return user_error("device " + std::to_string(ordinal) + " does not exist; this machine has " +
                      std::to_string(count) + " GPU(s), numbered from 0");
  Device d;
  d.cu_ = cu;
  FFNJIT_CU(cuDeviceGet(&d.dev_, ordinal));
  FFNJIT_CU(cuDevicePrimaryCtxRetain(&d.ctx_, d.dev_));
  DeviceInfo& i = d.info_;
  i.ordinal = ordinal;
  char name[256] = {0};
  FFNJIT_CU(cuDeviceGetName(name, sizeof(name), d.dev_));
  i.name = name;
  FFNJIT_CU(cuDeviceGetAttribute(&i.cc_major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, d.dev_));
  FFNJIT_CU(cuDeviceGetAttribute(&i.cc_minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, d.dev_));
  FFNJIT_CU(cuDeviceGetAttribute(&i.sm_count, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, d.dev_));
  FFNJIT_CU(cuDeviceGetAttribute(&i.max_smem_optin, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, d.dev_));
  FFNJIT_CU(cuDeviceTotalMem(&i.total_mem, d.dev_));
  FFNJIT_CU(cuDriverGetVersion(&i.driver_version));
  const int cc = i.cc_major * 10 + i.cc_minor;
  if (cc >= 90 && cc < 100) i.arch = "sm_90a";
  else if (cc == 89) i.arch = "sm_89";
  else if (cc >= 80 && cc < 90) i.arch = "sm_80";  // sm_86/87 run sm_80 cubins
  else if (cc >= 100)
    return unsupported(i.name + " is sm_" + std::to_string(cc) +
                       "; this ffnjit compiles cubins for sm_80, sm_89 and sm_90a only, which cannot load on "
                       "compute capability 10 or later: use a dense library on this GPU");
  else
    return unsupported(i.name + " is sm_" + std::to_string(cc) + "; ffnjit needs sm_80 or later (bf16 tensor cores)");
  FFNJIT_TRY(d.make_current());
  return d;
}

Device::Device(Device&& o) noexcept : cu_(o.cu_), dev_(o.dev_), ctx_(o.ctx_), info_(std::move(o.info_)) {
  o.ctx_ = nullptr;
}

Device::~Device() {
  if (ctx_) cu_->cuDevicePrimaryCtxRelease(dev_);
}

Status Device::make_current() const {
  const drv::Api* cu = cu_;
  FFNJIT_CU(cuCtxSetCurrent(ctx_));
  return {};
}

Expected<DeviceBuffer> DeviceBuffer::alloc(size_t bytes) {
  auto api = drv::api();
  FFNJIT_TRY(api);
  const drv::Api* cu = *api;
  DeviceBuffer b;
  if (bytes == 0) return b;
  CUresult r = cu->cuMemAlloc(&b.ptr_, bytes);
  if (r == CUDA_ERROR_OUT_OF_MEMORY)
    return Error{ErrorKind::kDriver, "out of device memory allocating " + std::to_string(bytes) +
                                         " bytes; use fewer tokens per call or free memory"};
  if (r != CUDA_SUCCESS) return drv::driver_error("cuMemAlloc", r);
  b.size_ = bytes;
  return b;
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    this->~DeviceBuffer();
    ptr_ = o.ptr_, size_ = o.size_;
    o.ptr_ = 0, o.size_ = 0;
  }
  return *this;
}

DeviceBuffer::~DeviceBuffer() {
  if (ptr_) {
    if (auto api = drv::api(); api) (*api)->cuMemFree(ptr_);
    ptr_ = 0;
  }
}

Status DeviceBuffer::upload(const void* src, size_t bytes, size_t offset) const {
  if (offset + bytes > size_) return internal_error("upload past the end of a device buffer");
  auto api = drv::api();
  FFNJIT_TRY(api);
  const drv::Api* cu = *api;
  // cuMemcpy infers host or device from the pointer (unified addressing), so an
  // engine's device weights are copied without a host round trip.
  if (bytes) FFNJIT_CU(cuMemcpy(ptr_ + offset, CUdeviceptr(src), bytes));
  return {};
}

Status DeviceBuffer::download(void* host, size_t bytes, size_t offset) const {
  if (offset + bytes > size_) return internal_error("download past the end of a device buffer");
  auto api = drv::api();
  FFNJIT_TRY(api);
  const drv::Api* cu = *api;
  if (bytes) FFNJIT_CU(cuMemcpyDtoH(host, ptr_ + offset, bytes));
  return {};
}

Status DeviceBuffer::fill_bytes(unsigned char value) const {
  auto api = drv::api();
  FFNJIT_TRY(api);
  const drv::Api* cu = *api;
  if (size_) FFNJIT_CU(cuMemsetD8(ptr_, value, size_));
  // cuMemsetD8 runs on the legacy stream, which does not order against non-blocking
  // streams: wait, so later work on any stream sees the fill.
  FFNJIT_CU(cuCtxSynchronize());
  return {};
}

}  // namespace ffnjit
