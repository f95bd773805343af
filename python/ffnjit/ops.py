"""torch.ops.ffnjit.ffn(x, layer) -> out: the sparse FFN of a registered layer.

A torch.library custom op over the C API (no PyTorch C++ ABI involved): it allocates
`out` and the workspace through PyTorch's caching allocator and enqueues on
torch.cuda.current_stream(), so it runs eagerly, inside torch.cuda.graphs capture, and,
through its fake (meta) implementation, inside torch.compile(fullgraph=True).
`layer` is a Layer's op_id (runtime.Layer), a plain int that torch.compile bakes in.
"""
from __future__ import annotations

import torch

from . import runtime

_ALIGN = 256  # workspace alignment ffnjit_ffn_forward requires


def ffn_impl(x: torch.Tensor, layer: int) -> torch.Tensor:
    """The op's CUDA implementation (what the dispatcher calls; bench/bench_python_op.py
    times it directly to tell PyTorch's dispatch cost from ffnjit's)."""
    L = runtime.lookup(layer)
    if x.dtype != torch.bfloat16:
        raise TypeError(f"ffnjit.ffn: x is {x.dtype}; ffnjit serves bf16 (load the model with torch_dtype=torch.bfloat16)")
    if x.dim() < 1 or x.shape[-1] != L.d_model:
        raise ValueError(f"ffnjit.ffn: x has shape {tuple(x.shape)}; its last dimension must be d_model={L.d_model}")
    if x.device.index != L.device:
        raise ValueError(f"ffnjit.ffn: x is on {x.device}, layer {L.layer_id or layer} on cuda:{L.device}")
    if not x.is_contiguous() or x.data_ptr() % 16:
        x = x.contiguous() if x.data_ptr() % 16 == 0 else x.clone(memory_format=torch.contiguous_format)
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    tokens = x.numel() // L.d_model
    if tokens == 0:
        return out
    ws_bytes = L.workspace_size(tokens)
    ws_ptr = 0
    if ws_bytes:
        ws = torch.empty(ws_bytes + _ALIGN, dtype=torch.uint8, device=x.device)
        ws_ptr = (ws.data_ptr() + _ALIGN - 1) & ~(_ALIGN - 1)
    L.forward(x.data_ptr(), out.data_ptr(), tokens, ws_ptr, ws_bytes, torch.cuda.current_stream(x.device).cuda_stream)
    return out


ffn = torch.library.custom_op("ffnjit::ffn", mutates_args=(), device_types="cuda")(ffn_impl)


@ffn.register_fake
def _ffn_fake(x: torch.Tensor, layer: int) -> torch.Tensor:
    # Same shape and dtype as x, contiguous, like the real op; no layer needed (meta tensors
    # and torch.compile tracing run this without a GPU).
    torch._check(x.dim() >= 1, lambda: "ffnjit.ffn: x must have at least one dimension")
    return torch.empty(x.shape, dtype=x.dtype, device=x.device)
