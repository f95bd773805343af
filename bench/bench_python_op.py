"""Host time of torch.ops.ffnjit.ffn when the pointers change from call to call (eager
PyTorch: new activations, the caching allocator's blocks), split into what the driver
costs and what ffnjit adds. GPU only; the GPU work is tiny and the stream is drained
between batches, so enqueueing never waits on a full queue.

Per row (all medians of 980 calls in batches of 20, as bench/bench_host_overhead.cpp):
  launch    one cuLaunchKernel of an empty kernel through ctypes, minus the ctypes cost of
            the same call refused at once (NULL function): the driver's launch cost
  ctypes    ffnjit_ffn_forward with 0 tokens (returns after the handle check): what
            calling the C API from Python costs by itself
  fwd       ffnjit_ffn_forward through ctypes, x and out alternating among 8 buffers each
            (no graph replay, validation cache missed), minus `ctypes`
  kernels   launches one forward enqueues (counted from a CUDA graph capture of it)
  own       fwd - kernels x launch: an upper bound on ffnjit's own host share (the forward's
            launches are PDL, cluster and cuBLASLt launches, dearer than an empty one;
            bench/bench_host_overhead.cpp times their exact replay, the matched floor)
  repeat    the same call repeated (same pointers: one cached graph launch), minus `ctypes`
  op        torch.ops.ffnjit.ffn(x_i, layer) eagerly (allocates out and the workspace)
  direct    the op's implementation called directly (ffnjit.ops.ffn_impl: no dispatcher)
  py        op - fwd - ctypes: PyTorch's dispatch, the allocations and ffnjit's Python

    python3 bench/bench_python_op.py [--tokens 1,64,2048] [--d-model 2048 --d-ff 5632] [--cache PATH]

Needs torch with CUDA and ffnjit (the wheel, or FFNJIT_LIBRARY for a build tree).
"""
from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import sys
import time


def time_host(call, sync, batches=50, per_batch=20):
    us = []
    for b in range(batches):
        for _ in range(per_batch):
            t0 = time.perf_counter_ns()
            call()
            t1 = time.perf_counter_ns()
            if b:
                us.append((t1 - t0) / 1e3)
        sync()
    return statistics.median(us)


class Driver:
    """The pieces of the driver API the benchmark needs, from the libcuda.so.1 PyTorch loaded."""

    def __init__(self):
        self.cu = ctypes.CDLL("libcuda.so.1", mode=os.RTLD_NOLOAD | ctypes.RTLD_GLOBAL)
        P = ctypes.c_void_p
        self.cu.cuLaunchKernel.argtypes = [P, ctypes.c_uint, ctypes.c_uint, ctypes.c_uint, ctypes.c_uint,
                                           ctypes.c_uint, ctypes.c_uint, ctypes.c_uint, P, P, P]
        self.cu.cuStreamBeginCapture_v2.argtypes = [P, ctypes.c_int]
        self.cu.cuStreamEndCapture.argtypes = [P, ctypes.POINTER(P)]
        self.cu.cuGraphGetNodes.argtypes = [P, P, ctypes.POINTER(ctypes.c_size_t)]
        self.cu.cuGraphNodeGetType.argtypes = [P, ctypes.POINTER(ctypes.c_int)]
        self.cu.cuGraphDestroy.argtypes = [P]

    def empty_kernel(self):
        """An empty kernel compiled with NVRTC and loaded like ffnjit's kernels."""
        import ffnjit._lib as L
        nvrtc_path = L.find_cuda_library("libnvrtc.so.13") or "libnvrtc.so.13"
        nv = ctypes.CDLL(nvrtc_path)
        prog = ctypes.c_void_p()
        src = b'extern "C" __global__ void ffnjit_bench_empty() {}'
        assert nv.nvrtcCreateProgram(ctypes.byref(prog), src, b"empty.cu", 0, None, None) == 0
        opts = (ctypes.c_char_p * 1)(b"-arch=compute_80")
        assert nv.nvrtcCompileProgram(prog, 1, opts) == 0, "nvrtc failed on the empty kernel"
        n = ctypes.c_size_t()
        nv.nvrtcGetPTXSize(prog, ctypes.byref(n))
        ptx = ctypes.create_string_buffer(n.value)
        nv.nvrtcGetPTX(prog, ptx)
        mod, fn = ctypes.c_void_p(), ctypes.c_void_p()
        assert self.cu.cuModuleLoadData(ctypes.byref(mod), ptx) == 0
        assert self.cu.cuModuleGetFunction(ctypes.byref(fn), mod, b"ffnjit_bench_empty") == 0
        return fn

    def count_kernels(self, stream, enqueue):
        """(kernel nodes, other nodes) of one `enqueue()` captured from `stream`."""
        assert self.cu.cuStreamBeginCapture_v2(stream, 2) == 0  # CU_STREAM_CAPTURE_MODE_RELAXED
        enqueue()
        graph = ctypes.c_void_p()
        assert self.cu.cuStreamEndCapture(stream, ctypes.byref(graph)) == 0
        n = ctypes.c_size_t()
        self.cu.cuGraphGetNodes(graph, None, ctypes.byref(n))
        nodes = (ctypes.c_void_p * n.value)()
        self.cu.cuGraphGetNodes(graph, nodes, ctypes.byref(n))
        kernels = 0
        for node in nodes:
            t = ctypes.c_int()
            self.cu.cuGraphNodeGetType(node, ctypes.byref(t))
            kernels += t.value == 0  # CU_GRAPH_NODE_TYPE_KERNEL
        self.cu.cuGraphDestroy(graph)
        return kernels, n.value - kernels


def sparse_layer(torch, d_model, d_ff, active=0.01):
    """Random bf16 weights where ~`active` of the neurons fire (x[:, 0] = 1 carries a bias)."""
    s = d_model ** -0.5
    wg = torch.randn(d_ff, d_model, device="cuda") * s
    wu = torch.randn(d_ff, d_model, device="cuda") * s
    wd = torch.randn(d_model, d_ff, device="cuda") * d_ff ** -0.5
    wg[:, 0] = -torch.distributions.Normal(0, 1).icdf(torch.tensor(1 - active)).item()
    return [w.to(torch.bfloat16).contiguous() for w in (wg, wu, wd)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", default="1,64,2048")
    ap.add_argument("--d-model", type=int, default=2048)
    ap.add_argument("--d-ff", type=int, default=5632)
    ap.add_argument("--cache", default=None, help="kernel cache (default: $FFNJIT_CACHE or the default cache)")
    args = ap.parse_args()
    import torch
    if not torch.cuda.is_available():
        print("[SKIP] no GPU: torch.cuda.is_available() is False")
        return 0
    import ffnjit
    from ffnjit import _lib, runtime

    torch.zeros(1, device="cuda")  # the primary context is current from here on
    drv = Driver()
    lib = _lib.lib()
    # A stream of our own: the legacy default stream cannot be captured to count kernels.
    stream = torch.cuda.Stream()
    torch.cuda.set_stream(stream)
    sp = ctypes.c_void_p(stream.cuda_stream)
    sync = torch.cuda.synchronize
    fn = drv.empty_kernel()
    empty_launch = lambda: drv.cu.cuLaunchKernel(fn, 1, 1, 1, 32, 1, 1, 0, sp, None, None)  # noqa: E731
    null_launch = lambda: drv.cu.cuLaunchKernel(None, 1, 1, 1, 32, 1, 1, 0, sp, None, None)  # noqa: E731
    launch_us = time_host(empty_launch, sync) - time_host(null_launch, sync)

    wg, wu, wd = sparse_layer(torch, args.d_model, args.d_ff)
    ctx = runtime.context(torch.cuda.current_device(), args.cache)
    layer = runtime.Layer(ctx, d_model=args.d_model, d_ff=args.d_ff, gated=True, gate_proj=wg.data_ptr(),
                          up_proj=wu.data_ptr(), down_proj=wd.data_ptr())
    h = layer._h
    fwd = lib.ffnjit_ffn_forward
    ctypes_us = time_host(lambda: fwd(h, None, None, 0, None, 0, sp), sync)
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, ffnjit {ffnjit.__version__}, "
          f"layer {args.d_model}x{args.d_ff} gated, ~1% active")
    print(f"driver launch of an empty kernel: {launch_us:.2f} us; ctypes call of the C API: {ctypes_us:.2f} us")
    print(f"{'tokens':>6} {'kernels':>7} {'fwd_us':>7} {'own_us':>7} {'repeat_us':>9} {'op_us':>6} {'direct_us':>9} "
          f"{'py_us':>6}")
    worst = 0.0
    for tokens in [int(t) for t in args.tokens.split(",")]:
        xs = [torch.randn(tokens, args.d_model, device="cuda").to(torch.bfloat16) for _ in range(8)]
        outs = [torch.empty_like(x) for x in xs]
        nbytes = layer.workspace_size(tokens)  # resolves the bucket (may compile once)
        ws = torch.empty(nbytes + 256, dtype=torch.uint8, device="cuda")
        wp = (ws.data_ptr() + 255) & ~255
        xp, op = [x.data_ptr() for x in xs], [o.data_ptr() for o in outs]
        i = [0]

        def changing():
            k = i[0] = (i[0] + 1) % 8
            s = fwd(h, xp[k], op[(k + 3) % 8], tokens, wp, nbytes, sp)
            assert s == 0, _lib.last_error()

        def repeated():
            s = fwd(h, xp[0], op[0], tokens, wp, nbytes, sp)
            assert s == 0, _lib.last_error()

        changing(), repeated(), repeated()  # warm: first call per bucket, graph capture of the repeat
        sync()
        kernels, _other = drv.count_kernels(sp, changing)
        fwd_us = time_host(changing, sync) - ctypes_us
        repeat_us = time_host(repeated, sync) - ctypes_us
        own_us = fwd_us - kernels * launch_us
        j = [0]

        def eager_op():
            k = j[0] = (j[0] + 1) % 8
            torch.ops.ffnjit.ffn(xs[k], layer.op_id)

        def direct():
            k = j[0] = (j[0] + 1) % 8
            ffnjit.ops.ffn_impl(xs[k], layer.op_id)

        eager_op(), direct()
        op_us = time_host(eager_op, sync)
        direct_us = time_host(direct, sync)
        py_us = op_us - fwd_us - ctypes_us
        worst = max(worst, own_us)
        print(f"{tokens:>6} {kernels:>7} {fwd_us:>7.2f} {own_us:>7.2f} {repeat_us:>9.2f} {op_us:>6.2f} {direct_us:>9.2f} "
              f"{py_us:>6.2f}")
    print(f"ffnjit's own host share with changing pointers: at most {worst:.2f} us per call over empty-kernel "
          f"launches (an upper bound; bench_host_overhead's replay floor gives the share over the exact launches)")
    layer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
