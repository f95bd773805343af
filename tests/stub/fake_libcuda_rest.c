/* Entry points other libraries look up in the stand-in libcuda.so.1 (NVRTC's and
 * cuBLASLt's runtimes probe the driver they find): all report CUDA_ERROR_NOT_SUPPORTED
 * (801). Defined without cuda.h so the names are the plain ones those libraries ask for;
 * on x86-64 a callee that ignores its arguments may be called with any. */
#define FAKE(name) \
  int name(void) { return 801; }
FAKE(cuCtxGetLimit)
FAKE(cuCtxPopCurrent)
FAKE(cuCtxPushCurrent)
FAKE(cuDevicePrimaryCtxReset)
FAKE(cuGetErrorString)
FAKE(cuGetExportTable)
FAKE(cuGetProcAddress)
FAKE(cuGetProcAddress_v2)
FAKE(cuLinkAddData_v2)
FAKE(cuLinkAddFile_v2)
FAKE(cuLinkComplete)
FAKE(cuLinkCreate_v2)
FAKE(cuLinkDestroy)
FAKE(cuModuleGetGlobal_v2)
FAKE(cuModuleLoadDataEx)
FAKE(cuModuleLoadFatBinary)
FAKE(cuOccupancyMaxActiveBlocksPerMultiprocessor)
FAKE(cuTensorMapEncodeTiled)
