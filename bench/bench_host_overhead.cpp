// Host time per ffnjit_ffn_forward call with a warm cache (kernels resolved), next to
// its floor: what its launches cost by themselves, timed the same way (an empty kernel
// through cuLaunchKernel, through cuLaunchKernelEx with the programmatic dependent
// launch attribute, and one cuBLASLt GEMM of the gate's shape). Each forward's launches
// come from capturing one call into a CUDA graph. Repeated calls with the same arguments replay
// ffnjit's cached graph (one cuGraphLaunch, runtime/forward_graph.hpp); the "args change" rows
// defeat that cache, so there forward ~= kernels x floor + ffnjit's own overhead. The GPU work is
// tiny, and the queue is drained between batches so enqueueing never blocks on a full launch queue.
#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "codegen/compile.hpp"
#include "codegen/source.hpp"
#include "ffnjit/ffnjit.h"
#include "model/synthetic.hpp"
#include "runtime/device.hpp"
#include "runtime/lt_gemm.hpp"
#include "templates/ffnjit/params.h"

using namespace ffnjit;

namespace {

struct Timing {
  double median = 0, p90 = 0;
};

// Host time of one `call()`: 50 batches of 20 calls, the stream drained after each
// batch, the first batch dropped as warm-up (980 samples). `call` returns false on
// failure (and has printed why).
template <class F>
bool time_host(const drv::Api* cu, CUstream stream, F&& call, Timing* t) {
  std::vector<double> us;
  for (int batch = 0; batch < 50; ++batch) {
    for (int i = 0; i < 20; ++i) {
      auto t0 = std::chrono::steady_clock::now();
      const bool ok = call();
      auto t1 = std::chrono::steady_clock::now();
      if (!ok) return false;
      if (batch > 0) us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    }
    cu->cuStreamSynchronize(stream);
  }
  std::sort(us.begin(), us.end());
  t->median = us[us.size() / 2], t->p90 = us[us.size() * 9 / 10];
  return true;
}

// Nodes of a captured graph: ffnjit's kernels launched plainly and with programmatic
// dependent launch (an incoming programmatic edge: cuLaunchKernelEx with the PDL
// attribute, ~1 us more host time), cuBLASLt's kernels, and everything else (memsets,
// copies, child graphs). Graph queries are not in the runtime's driver table; they come
// from the libcuda.so.1 it already loaded. kernels = -1: could not be counted.
struct NodeCount {
  int kernels = -1, pdl = 0, lt = 0, other = -1;
  int cluster = 0;  // of the pdl ones: compiled with cluster dimensions
};

// What a captured forward asks of the driver, to issue again by itself: ffnjit's kernel
// launches exactly as captured (function, grid, block, shared memory, the parameter
// block, PDL) and its memsets. cuBLASLt's kernels are not replayed: their floor is the
// time of one cuBLASLt call (the library's own host work included). complete = false:
// the graph held a node that cannot be replayed (e.g. a conditional node).
struct Replay {
  struct Launch {
    CUfunction func = nullptr;
    unsigned grid[3] = {1, 1, 1}, block[3] = {1, 1, 1}, smem = 0;
    void** params = nullptr;  // owned by the graph's node
    bool pdl = false;
  };
  std::vector<Launch> launches;
  std::vector<CUDA_MEMSET_NODE_PARAMS> memsets;
  bool complete = false;
};

NodeCount count_nodes(CUgraph graph, Replay* replay) {
  NodeCount n;
  *replay = Replay{};
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
  if (!lib) return n;
  auto get_nodes = reinterpret_cast<decltype(&::cuGraphGetNodes)>(dlsym(lib, "cuGraphGetNodes"));
  auto node_type =
      reinterpret_cast<decltype(&::cuGraphNodeGetType)>(dlsym(lib, "cuGraphNodeGetType"));
  auto get_edges =
      reinterpret_cast<decltype(&::cuGraphGetEdges_v2)>(dlsym(lib, "cuGraphGetEdges_v2"));
  auto kernel_params = reinterpret_cast<decltype(&::cuGraphKernelNodeGetParams_v2)>(
      dlsym(lib, "cuGraphKernelNodeGetParams_v2"));
  auto func_name = reinterpret_cast<decltype(&::cuFuncGetName)>(dlsym(lib, "cuFuncGetName"));
  auto kernel_name = reinterpret_cast<decltype(&::cuKernelGetName)>(dlsym(lib, "cuKernelGetName"));
  auto func_attr =
      reinterpret_cast<decltype(&::cuFuncGetAttribute)>(dlsym(lib, "cuFuncGetAttribute"));
  auto memset_params = reinterpret_cast<decltype(&::cuGraphMemsetNodeGetParams)>(
      dlsym(lib, "cuGraphMemsetNodeGetParams"));
  size_t count = 0, n_edges = 0;
  if (get_nodes && node_type && get_nodes(graph, nullptr, &count) == CUDA_SUCCESS) {
    std::vector<CUgraphNode> nodes(count);
    std::vector<CUgraphNode> from, to;
    std::vector<CUgraphEdgeData> edges;
    if (get_edges && get_edges(graph, nullptr, nullptr, nullptr, &n_edges) == CUDA_SUCCESS) {
      from.resize(n_edges), to.resize(n_edges), edges.resize(n_edges);
      if (get_edges(graph, from.data(), to.data(), edges.data(), &n_edges) != CUDA_SUCCESS)
        n_edges = 0;
    }
    if (get_nodes(graph, nodes.data(), &count) == CUDA_SUCCESS) {
      n.kernels = n.other = 0;
      replay->complete = true;
      for (size_t i = 0; i < count; ++i) {
        CUgraphNodeType type;
        if (node_type(nodes[i], &type) != CUDA_SUCCESS) return dlclose(lib), NodeCount{};
        if (type != CU_GRAPH_NODE_TYPE_KERNEL) {
          ++n.other;
          CUDA_MEMSET_NODE_PARAMS mp{};
          if (type == CU_GRAPH_NODE_TYPE_MEMSET && memset_params &&
              memset_params(nodes[i], &mp) == CUDA_SUCCESS)
            replay->memsets.push_back(mp);
          else
            replay->complete = false;
          continue;
        }
        ++n.kernels;
        // ffnjit's kernels are named ffnjit_*; the rest are cuBLASLt's.
        const char* name = nullptr;
        CUDA_KERNEL_NODE_PARAMS kp{};
        if (kernel_params && kernel_params(nodes[i], &kp) == CUDA_SUCCESS) {
          if (kp.func && func_name) func_name(&name, kp.func);
          if (!name && kp.kern && kernel_name) kernel_name(&name, kp.kern);
        }
        if (!name || std::string(name).rfind("ffnjit_", 0) != 0) {
          ++n.lt;
          continue;
        }
        Replay::Launch launch{kp.func,
                              {kp.gridDimX, kp.gridDimY, kp.gridDimZ},
                              {kp.blockDimX, kp.blockDimY, kp.blockDimZ},
                              kp.sharedMemBytes,
                              kp.kernelParams};
        if (!kp.func || kp.extra) replay->complete = false;
        for (size_t e = 0; e < n_edges && !launch.pdl; ++e)
          launch.pdl =
              to[e] == nodes[i] && edges[e].type == CU_GRAPH_DEPENDENCY_TYPE_PROGRAMMATIC;
        replay->launches.push_back(launch);
        if (!launch.pdl) continue;
        ++n.pdl;
        int height = 0;
        if (kp.func && func_attr &&
            func_attr(&height, CU_FUNC_ATTRIBUTE_REQUIRED_CLUSTER_HEIGHT, kp.func) ==
                CUDA_SUCCESS &&
            height > 1)
          ++n.cluster;
      }
    }
  }
  dlclose(lib);
  return n;
}

// The floors one forward's launches cost on the host, measured like the forward: bare
// (an empty kernel without parameters) and matched (an empty kernel taking a parameter
// block of UpDownParams' size, and for cluster kernels one compiled with their cluster
// shape and launched over it): what the driver spends on a launch of that shape.
struct Floors {
  double plain = 0, pdl = 0, pdl_cluster = 0,
         lt = 0;  // us; lt: one cuBLASLt GEMM of the gate's shape
  double of(const NodeCount& n) const {
    return (n.kernels - n.pdl - n.lt) * plain + (n.pdl - n.cluster) * pdl +
           n.cluster * pdl_cluster + n.lt * lt;
  }
};

// Issues the replay's memsets and launches on `stream` once (the order of the capture).
bool issue(const drv::Api* cu, const Replay& r, CUstream stream) {
  for (const CUDA_MEMSET_NODE_PARAMS& m : r.memsets) {
    // ffnjit issues 1-D memsets of 32-bit or 8-bit words only.
    CUresult res = CUDA_ERROR_NOT_SUPPORTED;
    if (m.height <= 1 && m.elementSize == 4)
      res = cu->cuMemsetD32Async(m.dst, m.value, m.width, stream);
    if (m.height <= 1 && m.elementSize == 1)
      res = cu->cuMemsetD8Async(m.dst, (unsigned char)m.value, m.width, stream);
    if (res != CUDA_SUCCESS)
      return std::fprintf(stderr, "replay memset: %s\n", drv::result_name(res).c_str()), false;
  }
  for (const Replay::Launch& l : r.launches) {
    CUlaunchAttribute attr{};
    attr.id = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
    attr.value.programmaticStreamSerializationAllowed = 1;
    CUresult res;
    if (l.pdl) {
      CUlaunchConfig cfg{};
      cfg.gridDimX = l.grid[0], cfg.gridDimY = l.grid[1], cfg.gridDimZ = l.grid[2];
      cfg.blockDimX = l.block[0], cfg.blockDimY = l.block[1], cfg.blockDimZ = l.block[2];
      cfg.sharedMemBytes = l.smem, cfg.hStream = stream, cfg.attrs = &attr, cfg.numAttrs = 1;
      res = cu->cuLaunchKernelEx(&cfg, l.func, l.params, nullptr);
    } else {
      res = cu->cuLaunchKernel(l.func, l.grid[0], l.grid[1], l.grid[2], l.block[0], l.block[1],
                               l.block[2], l.smem, stream, l.params, nullptr);
    }
    if (res != CUDA_SUCCESS)
      return std::fprintf(stderr, "replay launch: %s\n", drv::result_name(res).c_str()), false;
  }
  return true;
}

void print_header() {
  std::printf("%-16s %7s %4s %4s %4s %5s %9s %9s %9s %8s %9s %8s %9s %8s\n", "call", "kernels",
              "pdl", "clu", "lt", "other", "median_us", "p90_us", "floor_us", "rest_us", "matched",
              "rest_m", "replay", "rest_r");
}

// rest = median - the floors of what the call launched: ffnjit's own host share, against
// the bare floors, the matched ones, and the replay of its exact launches (`replay` < 0:
// not measured for this row).
void print_row(const std::string& what, NodeCount n, Timing t, const Floors& bare,
               const Floors& matched, double replay = -1) {
  char cols[5][16] = {"?", "?", "?", "?", "?"}, fl[6][16] = {"?", "?", "?", "?", "-", "-"};
  if (n.kernels >= 0) {
    std::snprintf(cols[0], 16, "%d", n.kernels), std::snprintf(cols[1], 16, "%d", n.pdl);
    std::snprintf(cols[2], 16, "%d", n.cluster), std::snprintf(cols[3], 16, "%d", n.lt);
    std::snprintf(cols[4], 16, "%d", n.other);
    std::snprintf(fl[0], 16, "%.2f", bare.of(n)),
        std::snprintf(fl[1], 16, "%.2f", t.median - bare.of(n));
    std::snprintf(fl[2], 16, "%.2f", matched.of(n)),
        std::snprintf(fl[3], 16, "%.2f", t.median - matched.of(n));
  }
  if (replay >= 0)
    std::snprintf(fl[4], 16, "%.2f", replay), std::snprintf(fl[5], 16, "%.2f", t.median - replay);
  std::printf("%-16s %7s %4s %4s %4s %5s %9.2f %9.2f %9s %8s %9s %8s %9s %8s\n", what.c_str(),
              cols[0], cols[1], cols[2], cols[3], cols[4], t.median, t.p90, fl[0], fl[1], fl[2],
              fl[3], fl[4], fl[5]);
}

}  // namespace

int main() {
  auto dev = Device::open(0);
  if (!dev) return std::fprintf(stderr, "%s\n", dev.error().message.c_str()), 1;
  const drv::Api* cu = dev->api();
  if (Status s = dev->make_current(); !s)
    return std::fprintf(stderr, "%s\n", s.error().message.c_str()), 1;
  CUstream stream;
  cu->cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING);

  // The floors: empty kernels, compiled with NVRTC and loaded as the runtime loads its
  // kernels. ffnjit_empty takes nothing; ffnjit_empty_p takes a parameter block of
  // UpDownParams' size; ffnjit_empty_c as well, compiled for a cluster of 8 along y like
  // the decode up_down (sm_90 and later).
  auto arch = parse_arch(dev->info().arch);
  if (!arch) return std::fprintf(stderr, "%s\n", arch.error().message.c_str()), 1;
  constexpr size_t kParamBytes = sizeof(UpDownParams);
  const bool clusters = *arch == Arch::kSm90a;
  // The kernel `name` with attributes `attrs` and parameters `params`, after the Block type.
  std::vector<CUmodule> modules;
  auto load = [&](const char* name, const std::string& attrs, const char* params, CUfunction* out) {
    Source src;
    src.spec.arch = *arch;
    src.kernel_name = name;
    src.text = "struct Block { unsigned char b[" + std::to_string(kParamBytes) + "]; };\n" +
               "extern \"C\" __global__ void " + attrs + name + params + " {}\n";
    auto compiled = compile(src);
    if (!compiled) return std::fprintf(stderr, "%s\n", compiled.error().message.c_str()), false;
    CUmodule module = nullptr;
    if (cu->cuModuleLoadData(&module, compiled->cubin.data()) != CUDA_SUCCESS ||
        cu->cuModuleGetFunction(out, module, compiled->lowered_name.c_str()) != CUDA_SUCCESS)
      return std::fprintf(stderr, "could not load %s\n", name), false;
    modules.push_back(module);
    return true;
  };
  CUfunction fn = nullptr, fn_p = nullptr, fn_c = nullptr;
  if (!load("ffnjit_empty", "", "()", &fn) || !load("ffnjit_empty_p", "", "(Block)", &fn_p) ||
      !load("ffnjit_empty_c", clusters ? "__cluster_dims__(1, 8, 1) " : "", "(Block)", &fn_c))
    return 1;
  unsigned char block[kParamBytes] = {};
  void* block_args[] = {block};
  auto launch = [&](CUfunction f, void** args, unsigned grid_y, bool pdl) {
    CUlaunchAttribute attr{};
    attr.id = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
    attr.value.programmaticStreamSerializationAllowed = 1;
    CUlaunchConfig cfg{};
    cfg.gridDimX = cfg.gridDimZ = 1, cfg.gridDimY = grid_y;
    cfg.blockDimX = 32, cfg.blockDimY = cfg.blockDimZ = 1;
    cfg.hStream = stream;
    cfg.attrs = &attr, cfg.numAttrs = 1;
    CUresult r = pdl ? cu->cuLaunchKernelEx(&cfg, f, args, nullptr)
                     : cu->cuLaunchKernel(f, 1, grid_y, 1, 32, 1, 1, 0, stream, args, nullptr);
    if (r != CUDA_SUCCESS) std::fprintf(stderr, "launch: %s\n", drv::result_name(r).c_str());
    return r == CUDA_SUCCESS;
  };
  Timing floor, floor_pdl, floor_p, floor_p_pdl, floor_c_pdl;
  if (!time_host(
          cu, stream, [&] { return launch(fn, nullptr, 1, false); }, &floor) ||
      !time_host(
          cu, stream, [&] { return launch(fn, nullptr, 1, true); }, &floor_pdl) ||
      !time_host(
          cu, stream, [&] { return launch(fn_p, block_args, 1, false); }, &floor_p) ||
      !time_host(
          cu, stream, [&] { return launch(fn_p, block_args, 1, true); }, &floor_p_pdl) ||
      !time_host(
          cu, stream, [&] { return launch(fn_c, block_args, clusters ? 8 : 1, true); },
          &floor_c_pdl))
    return 1;

  const int dm = 2048, dff = 5632;
  auto layer = synth::make_layer(dm, dff, true, 29.0 / dff, 3);
  const size_t bytes = size_t(dm) * dff * 2;
  auto wg = *DeviceBuffer::alloc(bytes), wu = *DeviceBuffer::alloc(bytes), wd = *DeviceBuffer::alloc(bytes);
  (void)wg.upload(layer.wg.data(), bytes), (void)wu.upload(layer.wu.data(), bytes), (void)wd.upload(layer.wd.data(), bytes);
  ffnjit_context* ctx = nullptr;
  if (ffnjit_context_create(nullptr, &ctx) != FFNJIT_STATUS_OK) return std::fprintf(stderr, "%s\n", ffnjit_last_error()), 1;
  ffnjit_layer_desc d{};
  d.d_model = dm, d.d_ff = dff, d.gated = 1,
  d.dtype = FFNJIT_BF16;  // no layer_id: served by shape records or defaults
  d.gate_proj = reinterpret_cast<void*>(wg.ptr()), d.up_proj = reinterpret_cast<void*>(wu.ptr());
  d.down_proj = reinterpret_cast<void*>(wd.ptr());
  ffnjit_layer* l = nullptr;
  if (ffnjit_layer_register(ctx, &d, &l) != FFNJIT_STATUS_OK) return std::fprintf(stderr, "%s\n", ffnjit_last_error()), 1;

  auto lt = LtGemms::create();
  if (!lt) return std::fprintf(stderr, "%s\n", lt.error().message.c_str()), 1;
  auto lt_ws = *DeviceBuffer::alloc(LtGemms::kWorkspace);

  std::printf("host us per call (980 calls, batches of 20, stream drained between batches); %s\n",
              dev->info().name.c_str());
  std::printf(
      "floor_us / matched: the calls' launches at the bare / matched floors (plain, PDL, PDL "
      "cluster, cuBLASLt); replay: its exact memsets and launches issued by themselves (cuBLASLt's "
      "at one cuBLASLt call each); rest: ffnjit's own\n");
  print_header();
  Floors bare{floor.median, floor_pdl.median, floor_pdl.median, 0};
  Floors matched{floor_p.median, floor_p_pdl.median, floor_c_pdl.median, 0};
  print_row("empty kernel", {1, 0, 0, 0}, floor, bare, matched);
  print_row("empty pdl", {1, 1, 0, 0}, floor_pdl, bare, matched);
  print_row("params", {1, 0, 0, 0}, floor_p, bare, matched);
  print_row("params pdl", {1, 1, 0, 0}, floor_p_pdl, bare, matched);
  print_row("params pdl clu", {1, 1, 0, 0, 1}, floor_c_pdl, bare, matched);
  for (int m : {1, 64, 2048}) {
    // x and out: 8 slots each in one allocation, as a caching allocator's segment hands
    // out activations; x(i) and out(i) are slot i.
    constexpr int kSlots = 8;
    const size_t row_bytes = size_t(m) * dm * 2;
    auto xs = *DeviceBuffer::alloc(row_bytes * kSlots),
         outs = *DeviceBuffer::alloc(row_bytes * kSlots);
    auto x = [&](int i) { return reinterpret_cast<void*>(xs.ptr() + size_t(i) * row_bytes); };
    auto out = [&](int i) { return reinterpret_cast<void*>(outs.ptr() + size_t(i) * row_bytes); };
    size_t ws_bytes = 0;
    ffnjit_layer_workspace_size(l, m, &ws_bytes);
    auto ws = *DeviceBuffer::alloc(ws_bytes);
    auto forward_at = [&](int i) {
      ffnjit_status s = ffnjit_ffn_forward(l, x(i), out(i), m, reinterpret_cast<void*>(ws.ptr()),
                                           ws_bytes, stream);
      if (s != FFNJIT_STATUS_OK) std::fprintf(stderr, "%s\n", ffnjit_last_error());
      return s == FFNJIT_STATUS_OK;
    };
    // The host cost of one cuBLASLt GEMM of the gate's shape (its plan cached), the
    // floor of a GEMM-gate forward's cuBLASLt node.
    auto z = *DeviceBuffer::alloc(size_t(m) * dff * 2);
    auto gemm = [&] {
      Status s = (*lt)->run(m, dff, dm, false, 0, CUdeviceptr(x(0)), wg.ptr(), z.ptr(), lt_ws.ptr(),
                            stream);
      if (!s) std::fprintf(stderr, "%s\n", s.error().message.c_str());
      return bool(s);
    };
    Timing tl;
    if (!time_host(cu, stream, gemm, &tl)) return 1;
    bare.lt = matched.lt = tl.median;
    print_row("cublaslt m=" + std::to_string(m), {1, 0, 1, 0}, tl, bare, matched);
    // What one forward enqueues, counted from a graph capture of it. A capture would get
    // the device-side dense switch (conditional nodes) where a direct call does not:
    // FFNJIT_NO_SWITCH keeps it out, so the graph holds the direct path's launches.
    NodeCount n;
    Replay replay;
    CUgraph graph = nullptr;
    setenv("FFNJIT_NO_SWITCH", "1", 1);
    if (cu->cuStreamBeginCapture(stream, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL) == CUDA_SUCCESS) {
      const bool ok = forward_at(0);
      if (cu->cuStreamEndCapture(stream, &graph) == CUDA_SUCCESS && graph) {
        if (ok) n = count_nodes(graph, &replay);
      }
      if (!ok) return 1;
    }
    unsetenv("FFNJIT_NO_SWITCH");
    // The replay floor: the same memsets and launches issued by themselves, plus one
    // cuBLASLt call per cuBLASLt kernel.
    double replay_us = -1;
    if (replay.complete) {
      Timing tr;
      if (!time_host(
              cu, stream, [&] { return issue(cu, replay, stream); }, &tr))
        return 1;
      replay_us = tr.median + n.lt * tl.median;
    }
    Timing t;
    if (!time_host(
            cu, stream, [&] { return forward_at(0); }, &t))
      return 1;
    print_row("forward m=" + std::to_string(m), n, t, bare, matched);
    if (replay_us < 0)
      std::printf("  (the capture held nodes the replay cannot issue: no replay floor)\n");
    // x and out change on every call (eager PyTorch): no call repeats its predecessor's
    // arguments, so every one launches its kernels directly.
    int slot = 0;
    Timing td;
    if (!time_host(
            cu, stream, [&] { return forward_at(slot = (slot + 1) % kSlots); }, &td))
      return 1;
    print_row("  args change", n, td, bare, matched, replay_us);
    // For comparison: replaying the captured forward as one graph launch.
    CUgraphExec exec = nullptr;
    if (graph && cu->cuGraphInstantiate(&exec, graph, 0) == CUDA_SUCCESS) {
      Timing tg;
      if (time_host(cu, stream, [&] { return cu->cuGraphLaunch(exec, stream) == CUDA_SUCCESS; }, &tg))
        print_row("graph m=" + std::to_string(m), {0, 0, 0, 1}, tg, bare, matched);
      cu->cuGraphExecDestroy(exec);
    }
    if (graph) cu->cuGraphDestroy(graph);
  }
  ffnjit_layer_destroy(l);
  ffnjit_context_destroy(ctx);
  for (CUmodule mod : modules) cu->cuModuleUnload(mod);
  cu->cuStreamDestroy(stream);
  return 0;
}
