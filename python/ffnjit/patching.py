"""ffnjit.patch: swap every ReLU-family FFN of a transformers model for a SparseFFN."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
from torch import nn

from . import _lib, activation, identity, runtime
from .discovery import find_ffns
from .modules import SparseFFN


@dataclass
class LayerReport:
    index: int
    name: str
    layer_id: str
    d_model: int
    d_ff: int
    gated: bool
    buckets: dict = field(default_factory=dict)  # bucket ("1", "2-4", ..., "4097+") -> "tuned" | "shape" | "default"


@dataclass
class PatchReport:
    """What ffnjit.patch did: the layers it swapped and, per layer and batch bucket, where
    the kernels came from: "tuned" (a record `ffnjit tune` wrote for this layer id),
    "shape" (a record for the layer's shape) or "default" (untuned default kernels)."""
    layers: list = field(default_factory=list)
    fingerprint: str | None = None
    checkpoint: str | None = None
    activation: str = ""
    tp_size: int = 1
    tp_rank: int = 0
    notes: list = field(default_factory=list)

    def counts(self) -> dict:
        c = {"tuned": 0, "shape": 0, "default": 0}
        for L in self.layers:
            for src in L.buckets.values():
                c[src] = c.get(src, 0) + 1
        return c

    @property
    def all_tuned(self) -> bool:
        return bool(self.layers) and all(L.buckets and all(s == "tuned" for s in L.buckets.values())
                                         for L in self.layers)

    def __str__(self) -> str:
        c = self.counts()
        head = (f"ffnjit.patch: {len(self.layers)} FFN layers patched ({self.activation}"
                + (f", tensor-parallel rank {self.tp_rank} of {self.tp_size}" if self.tp_size > 1 else "")
                + (f", checkpoint {self.fingerprint[:12]}" if self.fingerprint else ", no checkpoint: shape records only")
                + f"); buckets: {c['tuned']} tuned, {c['shape']} shape, {c['default']} default")
        lines = [head]
        names = [b for b, _ in runtime.BUCKETS]
        if self.layers and self.layers[0].buckets:
            lines.append(f"{'layer':>5} {'d_model':>7} {'d_ff':>6}  " + " ".join(f"{b:>9}" for b in names))
            for L in self.layers:
                lines.append(f"{L.index:>5} {L.d_model:>7} {L.d_ff:>6}  " +
                             " ".join(f"{L.buckets.get(b, '-'):>9}" for b in names))
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _config_dict(model) -> dict:
    cfg = getattr(model, "config", None)
    if cfg is None:
        return {}
    if hasattr(cfg, "to_dict"):
        return cfg.to_dict()
    return dict(cfg) if isinstance(cfg, dict) else {}


def checkpoint_dir(model, checkpoint) -> str | None:
    """The local checkpoint directory of `model` (the one `ffnjit tune` ran on)."""
    if checkpoint is False:
        return None
    if checkpoint is not None:
        path = os.fspath(checkpoint)
        if not os.path.isdir(path):
            raise FileNotFoundError(f"checkpoint={path!r} is not a directory; pass the directory holding config.json "
                                    "and the *.safetensors files that `ffnjit tune` ran on")
        return path
    name = getattr(getattr(model, "config", None), "_name_or_path", "") or ""
    if name and os.path.isdir(name):
        return name
    if name:
        try:  # a hub id whose snapshot is in the local cache (never downloads)
            from huggingface_hub import snapshot_download
            path = snapshot_download(name, local_files_only=True)
            if os.path.isdir(path):
                return path
        except Exception:  # noqa: BLE001 - any failure means "not found locally"
            pass
    raise FileNotFoundError(
        f"cannot find this model's checkpoint directory (config._name_or_path={name!r} is not a local directory): pass "
        "checkpoint='/path/to/dir' (the directory `ffnjit tune` ran on), or checkpoint=False to serve records tuned "
        "for the layers' shapes only")


def tensor_parallel_of(ffn, tensor_parallel, full_d_ff: int | None):
    """(size, rank, group) for one FFN: the `tensor_parallel` argument ((size, rank) or a
    size with the rank from torch.distributed), else the DTensor mesh the weights are
    sharded over, else torch.distributed when the local d_ff is the config's divided by
    the world size, else (1, 0, None)."""
    dist = torch.distributed
    w = (ffn.module.up_proj if ffn.kind == "gated" else ffn.module.fc1).weight
    group = None
    if tensor_parallel is not None:
        if isinstance(tensor_parallel, int):
            if not (dist.is_available() and dist.is_initialized()):
                raise ValueError("tensor_parallel=N without a rank needs torch.distributed initialized; "
                                 "pass tensor_parallel=(size, rank)")
            size, rank = tensor_parallel, dist.get_rank() % tensor_parallel
        else:
            size, rank = (int(v) for v in tensor_parallel)
    elif hasattr(w, "device_mesh") and hasattr(w, "to_local"):
        mesh = w.device_mesh
        size, rank, group = mesh.size(), mesh.get_local_rank(), mesh.get_group()
    elif dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1 and full_d_ff and \
            w.shape[0] * dist.get_world_size() == full_d_ff:
        size, rank = dist.get_world_size(), dist.get_rank()
        group = dist.group.WORLD
    else:
        return 1, 0, None
    local = int(w.to_local().shape[0]) if hasattr(w, "to_local") else int(w.shape[0])
    if full_d_ff and size > 1 and local * size != full_d_ff:
        raise ValueError(f"{ffn.name}: the weights hold d_ff={local} rows, which is not the config's d_ff={full_d_ff} "
                         f"split over {size} ranks; pass tensor_parallel=(size, rank) matching the sharding")
    return size, rank, group


def patch(model: nn.Module, cache=None, checkpoint=None, *, tensor_parallel=None, tp_group=None,
          cache_only: bool = False, resolve: bool = True) -> PatchReport:
    """Replaces every FFN of `model` (a transformers model in bf16 on CUDA) by a
    SparseFFN serving the kernels `ffnjit tune` stored in `cache` (None: $FFNJIT_CACHE,
    else the default cache, as the CLI), and returns a PatchReport.

    - Refuses (UnsupportedModelError, the CLI's message) models whose activation is not
      relu, relu2 or FATReLU; nothing is changed then.
    - Layer ids: the fingerprint of `checkpoint` (default: the directory
      config._name_or_path names) and each FFN's layer index; checkpoint=False serves
      shape records only. With tensor parallelism (`tensor_parallel=(size, rank)`, a
      DTensor-sharded model, or torch.distributed with d_ff / world rows per rank) the
      ids carry ":tp<size>.<rank>" and the output is all-reduced over `tp_group` (or the
      weights' mesh); without a group, the caller reduces.
    - resolve=True resolves every batch bucket of every layer now (loading kernels, or
      compiling defaults on a miss unless cache_only), so that the first forward, a CUDA
      graph capture or torch.compile meets no compilation, and the report can say where
      each bucket's kernels came from.
    """
    config = _config_dict(model)
    ffns = find_ffns(model)
    gated = ffns[0].kind == "gated"
    naming = "llama" if gated else "opt"
    try:
        ckpt, missing = checkpoint_dir(model, checkpoint), None
    except FileNotFoundError as e:
        ckpt, missing = None, e
    fingerprint = None
    if ckpt:
        try:  # the checkpoint's discovery: what `ffnjit tune` refuses is refused here, with its message
            fingerprint = identity.checkpoint_fingerprint(ckpt)
        except _lib.FfnjitError as e:
            if e.status == _lib.UNSUPPORTED:
                raise activation.UnsupportedModelError(e.message) from None
            raise
    # The same rules on the in-memory config (the only check for a model without a checkpoint).
    act = activation.from_config(config, naming, gated) if config else None
    if missing is not None:
        raise missing
    full_d_ff = config.get("intermediate_size") or config.get("ffn_dim")
    report = PatchReport(fingerprint=fingerprint, checkpoint=ckpt)
    if act is not None:
        report.notes += list(act.notes)
    plans = []
    for f in ffns:
        size, rank, group = tensor_parallel_of(f, tensor_parallel, full_d_ff)
        act_fn = f.module.act_fn if gated else f.module.activation_fn
        found = activation.of_module(act_fn)
        name, thr = (act.name, act.threshold) if act is not None else (found or (None, None))
        if act is not None and found is not None and found[0] != act.name:
            raise activation.UnsupportedModelError(
                f"{f.name}: config.json says {act.config_key} '{act.name}' but the module's activation is "
                f"{type(act_fn).__name__} ('{found[0]}'); fix the config or the model code")
        lid = identity.layer_id(fingerprint, f.index, size, rank) if fingerprint else ""
        plans.append((f, lid, name, thr, size, rank, tp_group if tp_group is not None else group))
    # Register everything before swapping anything: a failure leaves the model as it was.
    built = []
    for f, lid, name, thr, size, rank, group in plans:
        m = SparseFFN.from_module(f.module, layer_id=lid, cache=cache, cache_only=cache_only, activation_name=name,
                                  threshold=thr, tp_size=size, tp_rank=rank, tp_group=group)
        lr = LayerReport(f.index, f.name, lid, m.d_model, m.d_ff, m.gated)
        if resolve:
            lr.buckets = _resolve_buckets(m.layer)
        built.append((f, m, lr))
        report.tp_size, report.tp_rank = size, rank
        report.activation = m.activation_name
    for f, m, lr in built:
        _swap(model, f, m)
        report.layers.append(lr)
    return report


def _resolve_buckets(layer: runtime.Layer) -> dict:
    """Resolves each runtime bucket of `layer` (a workspace query does) and tells where its
    kernels came from by which counter of the context moved. Exact while no other thread
    resolves buckets on the same context; a per-layer C query would make it unconditional."""
    ctx = layer.context
    out = {}
    for name, tokens in runtime.BUCKETS:
        before = ctx.stats()
        layer.workspace_size(tokens)
        after = ctx.stats()
        moved = [src for src, key in (("tuned", "tuned_buckets"), ("shape", "shape_buckets"),
                                      ("default", "default_buckets")) if after[key] > before[key]]
        out[name] = moved[0] if len(moved) == 1 else "unknown"
    return out


def _swap(model: nn.Module, f, sparse: SparseFFN) -> None:
    if f.kind == "gated":
        parent_name, _, attr = f.name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, sparse)
    else:  # OPT: fc1 computes the whole FFN; the layer's activation and fc2 pass it through
        f.module.fc1 = sparse
        f.module.activation_fn = nn.Identity()
        f.module.fc2 = nn.Identity()
