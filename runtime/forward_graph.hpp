// Repeated forwards as one graph launch. A kernel launch costs ~4 us of host time on
// our H100 machines and a forward enqueues two to five; once the same call (tokens,
// pointers) arrives twice in a row, it is captured into a CUDA graph and later
// repeats replay it with one cuGraphLaunch (~2-3 us). Calls into a stream the caller
// is capturing, and calls whose arguments keep changing, launch directly.
#pragma once

#include <cuda.h>

#include <mutex>

#include "support/status.hpp"

namespace ffnjit {

class ForwardGraph {
 public:
  // Everything a forward's launches bake in, besides what the owner keeps fixed.
  struct Key {
    long long tokens = 0;
    CUdeviceptr x = 0, out = 0, workspace = 0;
    bool operator==(const Key&) const = default;
  };
  // A non-owning reference to the caller's `Status(CUstream)` callable: the hot path
  // allocates nothing (a std::function of a capturing lambda would).
  class Enqueue {
   public:
    template <class F>
    Enqueue(F& f) : obj_(&f), call_([](void* o, CUstream s) { return (*static_cast<F*>(o))(s); }) {}
    Status operator()(CUstream s) const { return call_(obj_, s); }

   private:
    void* obj_;
    Status (*call_)(void*, CUstream);
  };

  ForwardGraph() = default;
  ForwardGraph(const ForwardGraph&) = delete;
  ForwardGraph& operator=(const ForwardGraph&) = delete;
  ~ForwardGraph();

  // Enqueues the forward on `stream`, directly or by replaying the cached graph.
  // Capturing uses `capture_stream` (private to the caller's context, guarded by
  // `capture_mu`). The context must be current. Thread-safe.
  Status run(const Key& key, CUstream stream, CUstream capture_stream, std::mutex& capture_mu,
             const Enqueue& enqueue);

 private:
  std::mutex mu_;
  Key last_;                    // the previous call's arguments
  CUgraphExec exec_ = nullptr;  // the graph of last_, or of older arguments while stale_
  bool stale_ = false;          // exec_ is of older arguments: rebuilt outside any capture
  bool disabled_ = false;       // a capture failed: always launch directly
};

}  // namespace ffnjit
