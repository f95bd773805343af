"""Contexts and layers: Python owners of the C API's handles.

Lifetime (docs/python.md): one Context per (device, cache, miss policy), shared by every
model on that device and freed when its last layer is; a Layer holds its Context, so the
C rule "layers before their context" holds by construction. A Layer is freed with the
SparseFFN module that owns it (or by close()). Nothing is global beyond a weak table of
live contexts and the table of live layers that torch.ops.ffnjit.ffn resolves its int
argument against (ids are never reused, so a freed layer is an error, not another layer).
"""
from __future__ import annotations

import ctypes
import itertools
import os
import threading
import weakref

from . import _lib

# The runtime's batch buckets (runtime/buckets.cpp, docs/identity.md): name, first token count.
BUCKETS = (("1", 1), ("2-4", 2), ("5-16", 5), ("17-64", 17), ("65-256", 65), ("257-1024", 257),
           ("1025-4096", 1025), ("4097+", 4097))

_contexts: "weakref.WeakValueDictionary[tuple, Context]" = weakref.WeakValueDictionary()
_contexts_lock = threading.Lock()


class Context:
    """An ffnjit_context: one CUDA device, one kernel cache, one miss policy."""

    def __init__(self, device: int = 0, cache: str | os.PathLike | None = None, cache_only: bool = False,
                 count_sparsity: bool = False):
        lib = _lib.lib()
        opts = _lib.ContextOptions()
        lib.ffnjit_context_options_init(ctypes.byref(opts))
        opts.device = int(device)
        self._cache_bytes = os.fsencode(os.fspath(cache)) if cache is not None else None
        opts.cache_path = self._cache_bytes
        opts.miss_policy = _lib.CACHE_ONLY if cache_only else _lib.COMPILE_ON_MISS
        opts.count_sparsity = int(bool(count_sparsity))
        handle = ctypes.c_void_p()
        _lib.check("ffnjit_context_create", lib.ffnjit_context_create(ctypes.byref(opts), ctypes.byref(handle)))
        self._h = handle
        self._destroy = lib.ffnjit_context_destroy
        self.device, self.cache, self.cache_only = int(device), cache, bool(cache_only)

    @property
    def handle(self) -> ctypes.c_void_p:
        if self._h is None:
            raise RuntimeError("this ffnjit Context was closed")
        return self._h

    def stats(self) -> dict:
        s = _lib.ContextStats()
        _lib.check("ffnjit_context_get_stats", _lib.lib().ffnjit_context_get_stats(self.handle, ctypes.byref(s)))
        return {name: getattr(s, name) for name, _ in _lib.ContextStats._fields_}

    def close(self) -> None:
        h, self._h = getattr(self, "_h", None), None
        if h is not None:
            self._destroy(h)  # with layers alive the C side only marks it; the last layer frees it

    __del__ = close


def context(device: int, cache: str | os.PathLike | None = None, cache_only: bool = False) -> Context:
    """The shared Context for (device, cache, policy): created on first use, freed with the
    last layer (or other holder) of it."""
    key = (int(device), os.path.abspath(os.fspath(cache)) if cache is not None else None, bool(cache_only))
    with _contexts_lock:
        ctx = _contexts.get(key)
        if ctx is None:
            ctx = Context(device, cache, cache_only)
            _contexts[key] = ctx
        return ctx


# Weak: a layer lives as long as its owner (a SparseFFN module) holds it.
_layers: "weakref.WeakValueDictionary[int, Layer]" = weakref.WeakValueDictionary()
_layers_lock = threading.Lock()
_next_id = itertools.count(1)


class Layer:
    """An ffnjit_layer: the weights are copied into ffnjit's own device memory at
    registration, so the caller's tensors may be freed afterwards."""

    def __init__(self, ctx: Context, *, d_model: int, d_ff: int, gated: bool, gate_proj: int, up_proj: int,
                 down_proj: int, layer_id: str = "", gate_bias: int = 0, up_bias: int = 0, down_bias: int = 0,
                 activation: int = _lib.ACTIVATION_RELU, threshold: float = 0.0, tile_n: int = 0, capacity: int = 0):
        d = _lib.LayerDesc()
        d.d_model, d.d_ff, d.gated, d.dtype = int(d_model), int(d_ff), int(bool(gated)), _lib.BF16
        d.gate_proj, d.up_proj, d.down_proj = gate_proj or None, up_proj or None, down_proj or None
        self._id_bytes = layer_id.encode() if layer_id else None
        d.layer_id = self._id_bytes
        d.tile_n, d.capacity = int(tile_n), int(capacity)
        d.gate_bias, d.up_bias, d.down_bias = gate_bias or None, up_bias or None, down_bias or None
        d.activation, d.activation_threshold = int(activation), float(threshold)
        lib = _lib.lib()
        handle = ctypes.c_void_p()
        _lib.check("ffnjit_layer_register", lib.ffnjit_layer_register(ctx.handle, ctypes.byref(d), ctypes.byref(handle)))
        self._h = handle
        self._lib = lib
        self.context = ctx  # keeps the context alive while this layer is
        self.device = ctx.device
        self.d_model, self.d_ff, self.gated, self.layer_id = int(d_model), int(d_ff), bool(gated), layer_id
        self._ws: dict[int, int] = {}
        self._ws_size = lib.ffnjit_layer_workspace_size
        self._forward = lib.ffnjit_ffn_forward
        with _layers_lock:
            self.op_id = next(_next_id)
            _layers[self.op_id] = self

    def workspace_size(self, tokens: int) -> int:
        """Bytes of workspace a forward of `tokens` tokens needs. The first query of a batch
        bucket resolves its kernels (cache lookup, maybe a compile); later ones are a dict hit."""
        n = self._ws.get(tokens)
        if n is None:
            out = ctypes.c_size_t()
            _lib.check("ffnjit_layer_workspace_size", self._ws_size(self._live(), tokens, ctypes.byref(out)))
            n = out.value
            if len(self._ws) > 4096:  # token counts vary without bound under dynamic shapes
                self._ws.clear()
            self._ws[tokens] = n
        return n

    def forward(self, x: int, out: int, tokens: int, workspace: int, workspace_bytes: int, stream: int) -> None:
        s = self._forward(self._live(), x, out, tokens, workspace or None, workspace_bytes, stream or None)
        if s != _lib.OK:
            raise _lib.FfnjitError("ffnjit_ffn_forward", s, _lib.last_error())

    def overflow_tiles(self) -> int:
        st = _lib.LayerStats()
        _lib.check("ffnjit_layer_get_stats", self._lib.ffnjit_layer_get_stats(self._live(), ctypes.byref(st)))
        return st.overflow_tiles

    def _live(self):
        if self._h is None:
            raise RuntimeError(f"ffnjit layer {self.layer_id or self.op_id} was closed")
        return self._h

    def close(self) -> None:
        h, self._h = getattr(self, "_h", None), None
        if h is None:
            return
        try:
            with _layers_lock:
                _layers.pop(self.op_id, None)
        except (TypeError, AttributeError):  # interpreter shutdown: module globals are gone
            pass
        self._lib.ffnjit_layer_destroy(h)

    __del__ = close


def lookup(op_id: int) -> Layer:
    """The live layer behind torch.ops.ffnjit.ffn's int argument."""
    layer = _layers.get(op_id)
    if layer is None:
        raise RuntimeError(f"ffnjit layer {op_id} does not exist or was freed (its SparseFFN module was deleted or "
                           "closed); patch the model again")
    return layer
