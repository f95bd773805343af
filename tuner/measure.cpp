// GPU timing through CUDA graphs and events.
#include "tuner/measure.hpp"

#include <algorithm>
#include <vector>

namespace ffnjit {
namespace {

// Destroys driver objects on every exit path.
struct GraphGuard {
  const drv::Api* cu;
  CUgraph graph = nullptr;
  CUgraphExec exec = nullptr;
  CUevent start = nullptr, stop = nullptr;
  ~GraphGuard() {
    if (exec) cu->cuGraphExecDestroy(exec);
    if (graph) cu->cuGraphDestroy(graph);
    if (start) cu->cuEventDestroy(start);
    if (stop) cu->cuEventDestroy(stop);
  }
};

}  // namespace

namespace {

Expected<Timing> measure_once(const Device& dev, CUstream stream, const std::function<Status(CUstream)>& enqueue,
                              const MeasureOptions& opts);

}  // namespace

Expected<Timing> measure_graph(const Device& dev, CUstream stream, const std::function<Status(CUstream)>& enqueue,
                               const MeasureOptions& opts) {
  if (!opts.flush_l2) return measure_once(dev, stream, enqueue, opts);
  const drv::Api* cu = dev.api();
  int l2 = 0;
  CUdevice d;
  FFNJIT_CU(cuCtxGetDevice(&d));
  FFNJIT_CU(cuDeviceGetAttribute(&l2, CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE, d));
  const size_t words = size_t(std::max(l2, 1 << 20)) * 2 / 4;
  auto flush_buf = DeviceBuffer::alloc(words * 4);
  FFNJIT_TRY(flush_buf);
  const CUdeviceptr fb = flush_buf->ptr();
  auto flush = [&](CUstream s) -> Status {
    const drv::Api* c = dev.api();
    CUresult r = c->cuMemsetD32Async(fb, 0x5a5a5a5a, words, s);
    if (r != CUDA_SUCCESS) return drv::driver_error("cuMemsetD32Async", r);
    return {};
  };
  auto with = measure_once(dev, stream, [&](CUstream s) -> Status {
    FFNJIT_TRY(flush(s));
    return enqueue(s);
  }, opts);
  FFNJIT_TRY(with);
  auto alone = measure_once(dev, stream, flush, opts);
  FFNJIT_TRY(alone);
  Timing t = *with;
  t.median_us = std::max(0.0, with->median_us - alone->median_us);
  t.min_us = std::max(0.0, with->min_us - alone->median_us);
  t.max_us = std::max(0.0, with->max_us - alone->median_us);
  t.spread = t.median_us > 0 ? with->spread * with->median_us / t.median_us : 0;
  return t;
}

namespace {

Expected<Timing> measure_once(const Device& dev, CUstream stream, const std::function<Status(CUstream)>& enqueue,
                              const MeasureOptions& opts) {
  const drv::Api* cu = dev.api();
  FFNJIT_TRY(dev.make_current());
  // Run once outside capture so host-side setup (plans, module loads) happens first.
  FFNJIT_TRY(enqueue(stream));
  FFNJIT_CU(cuStreamSynchronize(stream));

  GraphGuard g{cu};
  FFNJIT_CU(cuStreamBeginCapture(stream, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL));
  Status captured = enqueue(stream);
  CUresult end = cu->cuStreamEndCapture(stream, &g.graph);
  FFNJIT_TRY(captured);
  if (end != CUDA_SUCCESS) return drv::driver_error("cuStreamEndCapture", end);
  FFNJIT_CU(cuGraphInstantiate(&g.exec, g.graph, 0));
  FFNJIT_CU(cuEventCreate(&g.start, CU_EVENT_DEFAULT));
  FFNJIT_CU(cuEventCreate(&g.stop, CU_EVENT_DEFAULT));

  for (int i = 0; i < opts.warmup; ++i) FFNJIT_CU(cuGraphLaunch(g.exec, stream));
  // Size each sample from one timed replay.
  FFNJIT_CU(cuEventRecord(g.start, stream));
  FFNJIT_CU(cuGraphLaunch(g.exec, stream));
  FFNJIT_CU(cuEventRecord(g.stop, stream));
  FFNJIT_CU(cuEventSynchronize(g.stop));
  float ms = 0;
  FFNJIT_CU(cuEventElapsedTime(&ms, g.start, g.stop));
  const int reps = std::clamp(int(opts.min_sample_us / std::max(1.0, ms * 1000.0)), 1, 1000);

  std::vector<double> us;
  for (int s = 0; s < opts.samples; ++s) {
    FFNJIT_CU(cuEventRecord(g.start, stream));
    for (int r = 0; r < reps; ++r) FFNJIT_CU(cuGraphLaunch(g.exec, stream));
    FFNJIT_CU(cuEventRecord(g.stop, stream));
    FFNJIT_CU(cuEventSynchronize(g.stop));
    FFNJIT_CU(cuEventElapsedTime(&ms, g.start, g.stop));
    us.push_back(ms * 1000.0 / reps);
  }
  std::sort(us.begin(), us.end());
  Timing t;
  t.samples = int(us.size());
  t.median_us = us[us.size() / 2];
  t.min_us = us.front();
  t.max_us = us.back();
  t.spread = (us[us.size() * 9 / 10] - us[us.size() / 10]) / t.median_us;
  return t;
}

}  // namespace

}  // namespace ffnjit
