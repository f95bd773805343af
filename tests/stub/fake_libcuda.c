/* A stand-in libcuda.so.1 for the C API's host-side tests on machines without a GPU:
 * every entry point runtime/driver_functions.inc loads, with "device memory" in host
 * memory, kernel launches that do nothing and graphs that record nothing. Outputs are
 * meaningless; what the tests check is the C API's own behaviour (validation, messages,
 * statuses, no exception across the ABI). FAKE_CUDA_CC=100 makes the device compute
 * capability 10.0. Loaded only by tests that put its folder on LD_LIBRARY_PATH. */
#include <cuda.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Allocations, so that pointer queries can tell device memory from host memory. */
#define MAX_ALLOCS 4096
static struct {
  uintptr_t base;
  size_t size;
} allocs[MAX_ALLOCS];
static int dummy_object;

static int find_alloc(uintptr_t p) {
  for (int i = 0; i < MAX_ALLOCS; ++i)
    if (allocs[i].base && p >= allocs[i].base && p < allocs[i].base + allocs[i].size) return i;
  return -1;
}

CUresult cuInit(unsigned int flags) { (void)flags; return CUDA_SUCCESS; }
CUresult cuDriverGetVersion(int* v) { *v = 13000; return CUDA_SUCCESS; }
CUresult cuGetErrorName(CUresult r, const char** s) {
  *s = r == CUDA_SUCCESS ? "CUDA_SUCCESS" : r == CUDA_ERROR_OUT_OF_MEMORY ? "CUDA_ERROR_OUT_OF_MEMORY"
                                                                          : "CUDA_ERROR_FAKE";
  return CUDA_SUCCESS;
}
CUresult cuDeviceGetCount(int* n) { *n = 1; return CUDA_SUCCESS; }
CUresult cuDeviceGet(CUdevice* d, int ordinal) { *d = ordinal; return ordinal == 0 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_DEVICE; }
CUresult cuDeviceGetName(char* name, int len, CUdevice d) { (void)d; strncpy(name, "ffnjit fake GPU", (size_t)len); return CUDA_SUCCESS; }
CUresult cuDeviceGetAttribute(int* v, CUdevice_attribute a, CUdevice d) {
  (void)d;
  const char* cc = getenv("FAKE_CUDA_CC");
  const int c = cc ? atoi(cc) : 90;
  switch (a) {
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: *v = c / 10; break;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: *v = c % 10; break;
    case CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: *v = 132; break;
    case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN: *v = 232448; break;
    case CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE: *v = 50 << 20; break;
    default: *v = 1; break;
  }
  return CUDA_SUCCESS;
}
CUresult cuDeviceTotalMem(size_t* bytes, CUdevice d) { (void)d; *bytes = (size_t)80 << 30; return CUDA_SUCCESS; }
CUresult cuDevicePrimaryCtxRetain(CUcontext* c, CUdevice d) { (void)d; *c = (CUcontext)&dummy_object; return CUDA_SUCCESS; }
CUresult cuDevicePrimaryCtxRelease(CUdevice d) { (void)d; return CUDA_SUCCESS; }
static CUcontext current_ctx;
CUresult cuCtxSetCurrent(CUcontext c) { current_ctx = c; return CUDA_SUCCESS; }
CUresult cuCtxGetCurrent(CUcontext* c) { *c = current_ctx; return CUDA_SUCCESS; }
CUresult cuCtxGetDevice(CUdevice* d) { *d = 0; return CUDA_SUCCESS; }
CUresult cuCtxSynchronize(void) { return CUDA_SUCCESS; }
CUresult cuModuleLoadData(CUmodule* m, const void* image) { (void)image; *m = (CUmodule)&dummy_object; return CUDA_SUCCESS; }
CUresult cuModuleUnload(CUmodule m) { (void)m; return CUDA_SUCCESS; }
CUresult cuModuleGetFunction(CUfunction* f, CUmodule m, const char* name) { (void)m; (void)name; *f = (CUfunction)&dummy_object; return CUDA_SUCCESS; }
CUresult cuFuncSetAttribute(CUfunction f, CUfunction_attribute a, int v) { (void)f; (void)a; (void)v; return CUDA_SUCCESS; }
CUresult cuFuncGetAttribute(int* v, CUfunction_attribute a, CUfunction f) { (void)a; (void)f; *v = 0; return CUDA_SUCCESS; }
CUresult cuLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                        unsigned smem, CUstream s, void** params, void** extra) {
  (void)f, (void)gx, (void)gy, (void)gz, (void)bx, (void)by, (void)bz, (void)smem, (void)s, (void)params, (void)extra;
  return CUDA_SUCCESS;
}
CUresult cuLaunchKernelEx(const CUlaunchConfig* c, CUfunction f, void** params, void** extra) {
  (void)c, (void)f, (void)params, (void)extra;
  return CUDA_SUCCESS;
}
CUresult cuMemAlloc(CUdeviceptr* p, size_t bytes) {
  void* m = aligned_alloc(256, (bytes + 255) / 256 * 256);
  if (!m) return CUDA_ERROR_OUT_OF_MEMORY;
  for (int i = 0; i < MAX_ALLOCS; ++i)
    if (!allocs[i].base) {
      allocs[i].base = (uintptr_t)m, allocs[i].size = bytes;
      *p = (CUdeviceptr)m;
      return CUDA_SUCCESS;
    }
  free(m);
  return CUDA_ERROR_OUT_OF_MEMORY;
}
CUresult cuMemFree(CUdeviceptr p) {
  const int i = find_alloc((uintptr_t)p);
  if (i < 0) return CUDA_ERROR_INVALID_VALUE;
  free((void*)allocs[i].base);
  allocs[i].base = 0;
  return CUDA_SUCCESS;
}
CUresult cuMemcpyHtoD(CUdeviceptr d, const void* h, size_t n) { memcpy((void*)d, h, n); return CUDA_SUCCESS; }
CUresult cuMemcpy(CUdeviceptr d, CUdeviceptr s, size_t n) { memcpy((void*)d, (const void*)s, n); return CUDA_SUCCESS; }
CUresult cuMemcpyDtoH(void* h, CUdeviceptr d, size_t n) {
  const int i = find_alloc((uintptr_t)d);
  if (i < 0 || (uintptr_t)d + n > allocs[i].base + allocs[i].size) return CUDA_ERROR_INVALID_VALUE;
  memcpy(h, (const void*)d, n);
  return CUDA_SUCCESS;
}
CUresult cuMemcpyDtoDAsync(CUdeviceptr d, CUdeviceptr s, size_t n, CUstream st) { (void)st; memcpy((void*)d, (const void*)s, n); return CUDA_SUCCESS; }
CUresult cuMemsetD8(CUdeviceptr d, unsigned char v, size_t n) { memset((void*)d, v, n); return CUDA_SUCCESS; }
CUresult cuMemsetD32Async(CUdeviceptr d, unsigned int v, size_t n, CUstream s) {
  (void)s;
  for (size_t i = 0; i < n; ++i) ((unsigned*)d)[i] = v;
  return CUDA_SUCCESS;
}
CUresult cuMemsetD8Async(CUdeviceptr d, unsigned char v, size_t n, CUstream s) { (void)s; memset((void*)d, v, n); return CUDA_SUCCESS; }
CUresult cuMemGetInfo(size_t* free_b, size_t* total) { *free_b = (size_t)70 << 30, *total = (size_t)80 << 30; return CUDA_SUCCESS; }
CUresult cuPointerGetAttribute(void* data, CUpointer_attribute a, CUdeviceptr p) {
  const int i = find_alloc((uintptr_t)p);
  if (i < 0) return CUDA_ERROR_INVALID_VALUE;
  switch (a) {
    case CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL: *(int*)data = 0; return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_RANGE_START_ADDR: *(CUdeviceptr*)data = (CUdeviceptr)allocs[i].base; return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_RANGE_SIZE: *(size_t*)data = allocs[i].size; return CUDA_SUCCESS;
    default: return CUDA_ERROR_INVALID_VALUE;
  }
}
CUresult cuStreamCreate(CUstream* s, unsigned int flags) { (void)flags; *s = (CUstream)&dummy_object; return CUDA_SUCCESS; }
CUresult cuStreamDestroy(CUstream s) { (void)s; return CUDA_SUCCESS; }
CUresult cuStreamSynchronize(CUstream s) { (void)s; return CUDA_SUCCESS; }
static int capturing;
CUresult cuStreamBeginCapture(CUstream s, CUstreamCaptureMode m) { (void)s, (void)m; capturing = 1; return CUDA_SUCCESS; }
CUresult cuStreamEndCapture(CUstream s, CUgraph* g) { (void)s; capturing = 0; *g = (CUgraph)&dummy_object; return CUDA_SUCCESS; }
CUresult cuStreamIsCapturing(CUstream s, CUstreamCaptureStatus* st) {
  (void)s;
  *st = capturing ? CU_STREAM_CAPTURE_STATUS_ACTIVE : CU_STREAM_CAPTURE_STATUS_NONE;
  return CUDA_SUCCESS;
}
CUresult cuGraphInstantiate(CUgraphExec* e, CUgraph g, unsigned long long flags) { (void)g, (void)flags; *e = (CUgraphExec)&dummy_object; return CUDA_SUCCESS; }
CUresult cuGraphLaunch(CUgraphExec e, CUstream s) { (void)e, (void)s; return CUDA_SUCCESS; }
CUresult cuGraphDestroy(CUgraph g) { (void)g; return CUDA_SUCCESS; }
CUresult cuGraphExecDestroy(CUgraphExec e) { (void)e; return CUDA_SUCCESS; }
CUresult cuEventCreate(CUevent* e, unsigned int flags) { (void)flags; *e = (CUevent)&dummy_object; return CUDA_SUCCESS; }
CUresult cuEventDestroy(CUevent e) { (void)e; return CUDA_SUCCESS; }
CUresult cuEventRecord(CUevent e, CUstream s) { (void)e, (void)s; return CUDA_SUCCESS; }
CUresult cuEventSynchronize(CUevent e) { (void)e; return CUDA_SUCCESS; }
CUresult cuEventElapsedTime(float* ms, CUevent a, CUevent b) { (void)a, (void)b; *ms = 1.0f; return CUDA_SUCCESS; }
/* No conditional graph nodes: the dense switch's probe finds them unsupported. */
CUresult cuGraphCreate(CUgraph* g, unsigned int flags) { (void)flags; *g = (CUgraph)&dummy_object; return CUDA_SUCCESS; }
CUresult cuGraphAddNode(CUgraphNode* n, CUgraph g, const CUgraphNode* d, const CUgraphEdgeData* e, size_t nd,
                        CUgraphNodeParams* p) {
  (void)n, (void)g, (void)d, (void)e, (void)nd, (void)p;
  return CUDA_ERROR_NOT_SUPPORTED;
}
CUresult cuGraphConditionalHandleCreate(CUgraphConditionalHandle* h, CUgraph g, CUcontext c, unsigned v, unsigned f) {
  (void)h, (void)g, (void)c, (void)v, (void)f;
  return CUDA_ERROR_NOT_SUPPORTED;
}
CUresult cuStreamGetCaptureInfo(CUstream s, CUstreamCaptureStatus* st, cuuint64_t* id, CUgraph* g,
                                const CUgraphNode** d, const CUgraphEdgeData** e, size_t* n) {
  (void)s, (void)id, (void)g, (void)d, (void)e, (void)n;
  *st = capturing ? CU_STREAM_CAPTURE_STATUS_ACTIVE : CU_STREAM_CAPTURE_STATUS_NONE;
  return CUDA_ERROR_NOT_SUPPORTED;
}
CUresult cuStreamBeginCaptureToGraph(CUstream s, CUgraph g, const CUgraphNode* d, const CUgraphEdgeData* e, size_t n,
                                     CUstreamCaptureMode m) {
  (void)s, (void)g, (void)d, (void)e, (void)n, (void)m;
  return CUDA_ERROR_NOT_SUPPORTED;
}
CUresult cuStreamUpdateCaptureDependencies(CUstream s, CUgraphNode* d, const CUgraphEdgeData* e, size_t n,
                                           unsigned int flags) {
  (void)s, (void)d, (void)e, (void)n, (void)flags;
  return CUDA_ERROR_NOT_SUPPORTED;
}
