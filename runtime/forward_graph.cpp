// Capture-and-replay of repeated forwards (see forward_graph.hpp).
#include "runtime/forward_graph.hpp"

#include "runtime/driver.hpp"

namespace ffnjit {

ForwardGraph::~ForwardGraph() {
  if (!exec_) return;
  if (auto api = drv::api()) (*api)->cuGraphExecDestroy(exec_);
}

Status ForwardGraph::run(const Key& key, CUstream stream, CUstream capture_stream, std::mutex& capture_mu,
                         const Enqueue& enqueue) {
  auto api = drv::api();
  FFNJIT_TRY(api);
  const drv::Api* cu = *api;
  // Another thread's forward on this layer holding the cache: launch directly rather
  // than wait.
  std::unique_lock<std::mutex> lock(mu_, std::try_to_lock);
  if (!lock.owns_lock()) return enqueue(stream);
  // New arguments launch directly (no driver query on this path: eager callers whose
  // pointers change every call pay only their launches). The graph of the old ones is
  // only marked stale: destroying it here could fall inside a caller's stream capture,
  // where freeing is an unsafe call that invalidates the capture (seen under
  // torch.cuda.graph: the next cuBLASLt call then failed).
  if (!(key == last_) || disabled_) {
    last_ = key, stale_ = true;
    return enqueue(stream);
  }
  // The caller's own capture records our kernels.
  CUstreamCaptureStatus capturing = CU_STREAM_CAPTURE_STATUS_NONE;
  FFNJIT_CU(cuStreamIsCapturing(stream, &capturing));
  if (capturing != CU_STREAM_CAPTURE_STATUS_NONE) return enqueue(stream);
  if (exec_ && !stale_) {
    FFNJIT_CU(cuGraphLaunch(exec_, stream));
    return {};
  }
  if (exec_) cu->cuGraphExecDestroy(exec_), exec_ = nullptr;
  stale_ = false;
  // Second call in a row with these arguments: capture on the private stream. Any
  // failure turns graphs off for this owner and the call launches directly.
  CUgraph graph = nullptr;
  bool captured = false;
  {
    std::lock_guard<std::mutex> cl(capture_mu);
    if (cu->cuStreamBeginCapture(capture_stream, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL) == CUDA_SUCCESS) {
      const bool enqueued = bool(enqueue(capture_stream));
      captured = cu->cuStreamEndCapture(capture_stream, &graph) == CUDA_SUCCESS && enqueued && graph;
    }
  }
  if (captured && cu->cuGraphInstantiate(&exec_, graph, 0) != CUDA_SUCCESS) exec_ = nullptr;
  if (graph) cu->cuGraphDestroy(graph);
  if (!exec_) {
    disabled_ = true;
    return enqueue(stream);
  }
  FFNJIT_CU(cuGraphLaunch(exec_, stream));
  return {};
}

}  // namespace ffnjit
