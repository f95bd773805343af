// `ffnjit doctor`: toolkit, NVRTC and driver versions, GPUs, cache location.
#include <cuda.h>
#include <sys/stat.h>

#include <cstdio>

#include "cache/location.hpp"
#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "codegen/compile.hpp"
#include "codegen/version.hpp"
#include "ffnjit/ffnjit.h"
#include "runtime/driver.hpp"

namespace ffnjit::cli {

int report_error(const std::string& command, const std::string& message, int exit_code) {
  std::fprintf(stderr, "ffnjit %s: error: %s\n", command.c_str(), message.c_str());
  return exit_code;
}

int cmd_doctor(const Argv& argv) {
  Args args("doctor", "Reports the CUDA toolkit, NVRTC and driver versions, the GPUs found, and the cache.");
  args.option("cache", "PATH", "cache database (overrides FFNJIT_CACHE)");
  if (auto s = args.parse(argv); !s) return report_error("doctor", s.message(), 2);
  if (args.help_requested()) return std::printf("%s", args.help().c_str()), 0;

  std::printf("ffnjit:        %s (generator %s)\n", FFNJIT_VERSION_STRING, kGeneratorVersion);
  std::printf("CUDA headers:  %d.%d\n", CUDA_VERSION / 1000, (CUDA_VERSION % 1000) / 10);
  std::printf("NVRTC:         %s\n", nvrtc_version().c_str());
  auto api = drv::api();
  if (!api) {
    std::printf("driver:        %s\nGPUs:          none\n", api.error().message.c_str());
  } else {
    const drv::Api* cu = *api;
    int version = 0, count = 0;
    cu->cuDriverGetVersion(&version);
    cu->cuDeviceGetCount(&count);
    std::printf("driver:        supports CUDA %d.%d\nGPUs:          %d\n", version / 1000, (version % 1000) / 10,
                count);
    for (int i = 0; i < count; ++i) {
      CUdevice dev;
      char name[256] = {0};
      int major = 0, minor = 0, sms = 0;
      size_t mem = 0;
      cu->cuDeviceGet(&dev, i);
      cu->cuDeviceGetName(name, sizeof(name), dev);
      cu->cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev);
      cu->cuDeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev);
      cu->cuDeviceGetAttribute(&sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev);
      cu->cuDeviceTotalMem(&mem, dev);
      std::printf("  [%d] %s, sm_%d%d, %d SMs, %.1f GiB\n", i, name, major, minor, sms, double(mem) / (1 << 30));
    }
  }
  const auto cache = cache::resolve_cache_path(args.has("cache") ? args.get("cache").c_str() : nullptr);
  if (!cache) return std::printf("cache:         %s\n", cache.error().message.c_str()), 0;
  struct stat st;
  std::printf("cache:         %s (%s)\n", cache->c_str(), stat(cache->c_str(), &st) == 0 ? "exists" : "not created yet");
  return 0;
}

}  // namespace ffnjit::cli
