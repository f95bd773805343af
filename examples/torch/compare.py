"""Builds the ffnjit PyTorch operator and compares it with the eager PyTorch FFN,
eagerly and replayed under a CUDA graph. Exit code 0 when every check passes.

usage: python3 compare.py <ffnjit include dir> <dir holding libffnjit.so>
"""
import os
import sys

import torch
from torch.utils.cpp_extension import load

include_dir, lib_dir = sys.argv[1], sys.argv[2]
here = os.path.dirname(os.path.abspath(__file__))
ext = load(name="ffnjit_torch", sources=[os.path.join(here, "ffnjit_torch.cpp")], extra_include_paths=[include_dir],
           extra_ldflags=[f"-L{lib_dir}", "-lffnjit", f"-Wl,-rpath,{lib_dir}"], with_cuda=True, verbose=False)

torch.manual_seed(0)
dev = "cuda"


def sparse_layer(d_model, d_ff, gated, active):
    """Random weights where ~`active` of the neurons fire: x[:, 0] = 1 and a bias column."""
    s = d_model ** -0.5
    wg = torch.randn(d_ff, d_model, device=dev) * s
    wu = torch.randn(d_ff, d_model, device=dev) * s
    wd = torch.randn(d_model, d_ff, device=dev) * d_ff ** -0.5
    bias = torch.distributions.Normal(0, 1).icdf(torch.tensor(1 - active)).item()
    (wg if gated else wu)[:, 0] = -bias
    bf = lambda t: t.to(torch.bfloat16).contiguous()
    return (bf(wg) if gated else None), bf(wu), bf(wd)


def inputs(tokens, d_model):
    x = torch.randn(tokens, d_model, device=dev)
    x[:, 0] = 1
    return x.to(torch.bfloat16)


def eager(x, wg, wu, wd):
    if wg is None:
        return torch.relu(x @ wu.T) @ wd.T
    return (torch.relu(x @ wg.T) * (x @ wu.T)) @ wd.T


def rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


failures = 0
for d_model, d_ff, gated in [(2048, 5632, True), (768, 3072, False)]:
    wg, wu, wd = sparse_layer(d_model, d_ff, gated, 0.01)
    layer = ext.register_layer(wg, wu, wd)
    for tokens in [1, 3, 64, 257, 2048]:
        x = inputs(tokens, d_model)
        want = eager(x, wg, wu, wd)
        got = torch.ops.ffnjit.ffn(x, layer)
        torch.cuda.synchronize()
        e = rel(got, want)
        ok = e <= 2e-2
        failures += not ok
        print(f"eager   {d_model}x{d_ff} {'gated' if gated else 'non-gated'} tokens={tokens:5d} rel={e:.2e} "
              f"{'ok' if ok else 'FAIL'}")

        # CUDA graph: warm up on a side stream (first call per bucket may compile), capture, replay.
        static_x = x.clone()
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            torch.ops.ffnjit.ffn(static_x, layer)
        torch.cuda.current_stream().wait_stream(s)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_y = torch.ops.ffnjit.ffn(static_x, layer)
        new_x = inputs(tokens, d_model)
        static_x.copy_(new_x)
        graph.replay()
        torch.cuda.synchronize()
        e = rel(static_y, eager(new_x, wg, wu, wd))
        ok = e <= 2e-2
        failures += not ok
        print(f"graph   {d_model}x{d_ff} {'gated' if gated else 'non-gated'} tokens={tokens:5d} rel={e:.2e} "
              f"{'ok' if ok else 'FAIL'}")

checks = 2 * 2 * 5
print(f"{checks - failures} passed, {failures} failed")
sys.exit(1 if failures else 0)
