// The CUDA Driver API, loaded at run time with dlopen so every binary starts on a
// machine without an NVIDIA driver. One process-wide table of entry points.
#pragma once

#include <cuda.h>

#include <string>

#include "support/status.hpp"

namespace ffnjit::drv {

struct Api {
#define FFNJIT_DRIVER_FN(name) decltype(&::name) name = nullptr;
#include "runtime/driver_functions.inc"
#undef FFNJIT_DRIVER_FN
};

// Loads libcuda.so.1 and calls cuInit(0) once; later calls return the same result.
// Fails with kUnsupported ("no driver") on machines without the driver.
Expected<const Api*> api();

// "CUDA_ERROR_OUT_OF_MEMORY" style name for a CUresult (works without a driver too).
std::string result_name(CUresult r);

// An Error of kind kDriver naming the call and the CUresult.
Error driver_error(const char* call, CUresult r);

}  // namespace ffnjit::drv

// Evaluate a driver call through the loaded table; return its error from the
// enclosing function on failure. Needs a `const drv::Api* cu` in scope.
#define FFNJIT_CU(call)                                                               \
  do {                                                                                \
    CUresult ffnjit_cu_r_ = cu->call;                                                 \
    if (ffnjit_cu_r_ != CUDA_SUCCESS) return ::ffnjit::drv::driver_error(#call, ffnjit_cu_r_); \
  } while (0)
