// The CUDA Driver API, loaded at run time with dlopen.
#include "runtime/driver.hpp"

#include <dlfcn.h>

#include <mutex>

namespace ffnjit::drv {
namespace {

// Resolves a cuda.h name that may be a macro for a versioned symbol (cuMemAlloc -> cuMemAlloc_v2).
#define FFNJIT_STR2(x) #x
#define FFNJIT_STR(x) FFNJIT_STR2(x)

struct Loaded {
  Api api;
  Status status;
};

Loaded load() {
  Loaded l;
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    l.status = unsupported("no driver: libcuda.so.1 could not be loaded (" + std::string(dlerror()) +
                           "); install the NVIDIA driver or run on a machine with a GPU");
    return l;
  }
#define FFNJIT_DRIVER_FN(name)                                                             \
  l.api.name = reinterpret_cast<decltype(l.api.name)>(dlsym(lib, FFNJIT_STR(name)));        \
  if (!l.api.name) {                                                                        \
    l.status = unsupported(std::string("the NVIDIA driver lacks ") + FFNJIT_STR(name) +     \
                           "; update the driver to one that supports CUDA 12 or later");    \
    return l;                                                                               \
  }
#include "runtime/driver_functions.inc"
#undef FFNJIT_DRIVER_FN
  CUresult r = l.api.cuInit(0);
  if (r != CUDA_SUCCESS) {
    l.status = r == CUDA_ERROR_NO_DEVICE ? unsupported("the NVIDIA driver found no GPU (CUDA_ERROR_NO_DEVICE)")
                                         : driver_error("cuInit", r);
  }
  return l;
}

}  // namespace

Expected<const Api*> api() {
  static const Loaded loaded = load();  // thread-safe one-time init
  if (!loaded.status) return loaded.status.error();
  return &loaded.api;
}

std::string result_name(CUresult r) {
  if (auto a = api(); a) {
    const char* name = nullptr;
    if ((*a)->cuGetErrorName(r, &name) == CUDA_SUCCESS && name) return name;
  }
  return "CUresult " + std::to_string(int(r));
}

Error driver_error(const char* call, CUresult r) {
  return Error{ErrorKind::kDriver, std::string(call) + " failed with " + result_name(r)};
}

}  // namespace ffnjit::drv
