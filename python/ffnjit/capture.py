"""ffnjit.capture_inputs: record each FFN's inputs for `ffnjit profile` / `ffnjit tune --inputs`.

The file is the one `ffnjit demo-checkpoint` writes and model/profiler.cpp reads: a
safetensors file with one tensor `layers.N.input` [rows, d_model] (bf16) per FFN layer N.
"""
from __future__ import annotations

import ctypes
import json
import os
import struct
from collections.abc import Mapping

import torch

from .discovery import find_ffns


def _rows(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """x as [rows, d_model]; rows whose attention mask is 0 (padding) are dropped."""
    rows = x.reshape(-1, x.shape[-1])
    if mask is not None and mask.numel() == rows.shape[0]:
        rows = rows[mask.reshape(-1).to(rows.device) != 0]
    return rows


def capture_inputs(model: torch.nn.Module, batches, path: str | os.PathLike, *, max_rows: int | None = None) -> dict:
    """Runs `model` on each batch (a tensor of input ids, or a dict of keyword arguments
    such as a tokenizer's output) under torch.no_grad() and writes what each FFN layer saw
    to `path`. Padding positions (attention_mask == 0) are left out; `max_rows` caps the
    rows kept per layer. Returns {layer index: rows}. The model itself is unchanged (the
    hooks are removed, also on error)."""
    ffns = find_ffns(model)
    seen: dict[int, list[torch.Tensor]] = {f.index: [] for f in ffns}
    counts = {f.index: 0 for f in ffns}
    current_mask: list[torch.Tensor | None] = [None]

    def hook_for(index):
        def hook(_module, args, kwargs):
            x = args[0] if args else next(iter(kwargs.values()))
            if max_rows is not None and counts[index] >= max_rows:
                return
            r = _rows(x.detach(), current_mask[0])
            if max_rows is not None:
                r = r[: max_rows - counts[index]]
            seen[index].append(r.to(torch.bfloat16).cpu())
            counts[index] += r.shape[0]
        return hook

    handles = [f.input_module.register_forward_pre_hook(hook_for(f.index), with_kwargs=True) for f in ffns]
    try:
        if isinstance(batches, (torch.Tensor, Mapping)):
            batches = [batches]
        with torch.no_grad():
            for batch in batches:
                if isinstance(batch, Mapping):
                    mask = batch.get("attention_mask")
                    current_mask[0] = mask if isinstance(mask, torch.Tensor) else None
                    model(**batch)
                else:
                    current_mask[0] = None
                    model(batch)
    finally:
        for h in handles:
            h.remove()
    tensors = {f"layers.{i}.input": torch.cat(v) if v else None for i, v in seen.items()}
    empty = [n for n, t in tensors.items() if t is None or t.shape[0] == 0]
    if empty:
        raise ValueError(f"no FFN inputs were captured for {', '.join(empty)}: pass at least one non-empty batch "
                         "that runs through every layer")
    write_safetensors(path, tensors, {"source": "ffnjit.capture_inputs",
                                      "format": "captured FFN inputs: layers.N.input [tokens, d_model]"})
    return counts


_CHUNK = 1 << 26
_DTYPES = {torch.bfloat16: "BF16", torch.float16: "F16", torch.float32: "F32"}


def write_safetensors(path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> None:
    """A safetensors file (the format: 8-byte little-endian header size, a JSON header
    padded with spaces to 8 bytes, the tensors' bytes in header order), written to
    `path` + ".tmp" and renamed, so a reader never sees half a file."""
    header: dict = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    order = sorted(tensors, key=_natural)
    offset = 0
    for name in order:
        t = tensors[name]
        if t.dtype not in _DTYPES:
            raise TypeError(f"{name}: dtype {t.dtype} is not one of {list(_DTYPES)}")
        n = t.numel() * t.element_size()
        header[name] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + n]}
        offset += n
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    path = os.fspath(path)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name in order:
            t = tensors[name].detach().to("cpu").contiguous()
            n = t.numel() * t.element_size()
            for start in range(0, n, _CHUNK):  # the bytes of a CPU tensor, without numpy
                f.write(ctypes.string_at(t.data_ptr() + start, min(_CHUNK, n - start)))
    os.replace(tmp, path)


def _natural(name: str):
    parts = name.split(".")
    return [(0, int(p)) if p.isdigit() else (1, p) for p in parts]
