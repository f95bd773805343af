"""ffnjit.SparseFFN: an nn.Module that computes a Hugging Face FFN through ffnjit."""
from __future__ import annotations

import torch
from torch import nn

from . import activation, runtime
from . import ops as _ops  # noqa: F401  (registers torch.ops.ffnjit.ffn)


def _local(t: torch.Tensor | None) -> torch.Tensor | None:
    """The local shard of a (possibly DTensor) parameter, as a contiguous bf16 tensor."""
    if t is None:
        return None
    t = t.detach()
    if hasattr(t, "to_local"):  # torch.distributed.tensor.DTensor (transformers' tensor parallelism)
        t = t.to_local()
    return t.contiguous()


def _linear_parts(lin: nn.Module, what: str):
    w = getattr(lin, "weight", None)
    if not isinstance(w, torch.Tensor) or w.dim() != 2:
        raise TypeError(f"{what} must be an nn.Linear (a 2-D weight); got {type(lin).__name__}")
    b = getattr(lin, "bias", None)
    return _local(w), _local(b) if isinstance(b, torch.Tensor) else None


class SparseFFN(nn.Module):
    """The FFN y = down(act(gate(x)) * up(x)) (gated: Llama, Mistral, Qwen2) or
    y = fc2(act(fc1(x))) (OPT), with biases, served by ffnjit's kernels.

    Build it with SparseFFN.from_module(mlp) from a Hugging Face MLP module (LlamaMLP,
    MistralMLP, Qwen2MLP: gate_proj, up_proj, down_proj, act_fn) or an OPT decoder layer
    (fc1, fc2, activation_fn). The weights are copied into ffnjit's own device memory at
    registration; the module holds the layer handle and frees it when it is freed.
    Inference only (no autograd); `x` is bf16 on the layer's device, any leading shape.

    Tensor parallelism: a shard (d_ff / tp_size rows of gate/up, the matching columns of
    down) registers as layer "<fingerprint>:<index>:tp<size>.<rank>"; its output is the
    shard's partial sum, all-reduced over `tp_group` when one is given; the down bias is
    added by rank 0 only, so the reduced sum holds it once.
    """

    def __init__(self, layer: runtime.Layer, *, tp_size: int = 1, tp_rank: int = 0, tp_group=None):
        super().__init__()
        self.layer = layer
        self.handle = layer.op_id  # the int torch.ops.ffnjit.ffn takes (torch.compile bakes it in)
        self.d_model, self.d_ff, self.gated, self.layer_id = layer.d_model, layer.d_ff, layer.gated, layer.layer_id
        self.tp_size, self.tp_rank, self.tp_group = tp_size, tp_rank, tp_group

    @classmethod
    def from_module(cls, module: nn.Module, *, layer_id: str = "", cache=None, cache_only: bool = False,
                    activation_name: str | None = None, threshold: float | None = None, tile_n: int = 0,
                    capacity: int = 0, tp_size: int = 1, tp_rank: int = 0, tp_group=None) -> "SparseFFN":
        """Registers `module`'s weights with ffnjit (on the weights' CUDA device, in the
        shared Context for that device and `cache`). The activation is read from the
        module (act_fn / activation_fn) unless `activation_name` ("relu", "relu2",
        "fatrelu" with `threshold`) is given; anything else is refused."""
        kind = ffn_kind(module)
        if kind == "gated":
            wg, bg = _linear_parts(module.gate_proj, "gate_proj")
            wu, bu = _linear_parts(module.up_proj, "up_proj")
            wd, bd = _linear_parts(module.down_proj, "down_proj")
            act_fn, act_attr = module.act_fn, "act_fn"
        elif kind == "opt":
            wg = bg = None
            wu, bu = _linear_parts(module.fc1, "fc1")
            wd, bd = _linear_parts(module.fc2, "fc2")
            act_fn, act_attr = module.activation_fn, "activation_fn"
        else:
            raise TypeError(f"{type(module).__name__} is not an FFN ffnjit knows: expected gate_proj, up_proj, "
                            "down_proj and act_fn (Llama, Mistral, Qwen2) or fc1, fc2 and activation_fn (OPT)")
        if activation_name is None:
            found = activation.of_module(act_fn)
            if found is None:
                raise activation.UnsupportedModelError(
                    f"{type(module).__name__}.{act_attr} is {type(act_fn).__name__}, not of the ReLU family (relu, "
                    "relu2, FATReLU): the sparsity kernels skip neurons whose activation is zero, which is exact only "
                    "when inactive neurons are exactly 0. Use a ReLU-fied checkpoint or run this model densely")
            activation_name, found_threshold = found
            threshold = found_threshold if threshold is None else threshold
        if activation_name not in activation.RELU_FAMILY:
            raise activation.UnsupportedModelError(
                f"activation '{activation_name}' is not one of {sorted(activation.RELU_FAMILY)}")
        threshold = float(threshold or 0.0)
        d_ff, d_model = wu.shape
        for name, t, shape in (("gate_proj.weight", wg, (d_ff, d_model)), ("down_proj.weight", wd, (d_model, d_ff)),
                               ("gate bias", bg, (d_ff,)), ("up bias", bu, (d_ff,)), ("down bias", bd, (d_model,))):
            if t is not None and tuple(t.shape) != shape:
                raise ValueError(f"{type(module).__name__}: {name} has shape {tuple(t.shape)}, expected {shape} "
                                 f"(d_ff={d_ff}, d_model={d_model} from the up projection)")
        tensors = [t for t in (wg, wu, wd, bg, bu, bd) if t is not None]
        if any(not t.is_cuda for t in tensors) or len({t.device for t in tensors}) != 1:
            raise ValueError(f"{type(module).__name__}: the weights must be on one CUDA device (move the model with "
                             ".to('cuda') before patching); found {sorted({str(t.device) for t in tensors})}")
        if any(t.dtype != torch.bfloat16 for t in tensors):
            raise TypeError(f"{type(module).__name__}: ffnjit serves bf16 weights; found "
                            f"{sorted({str(t.dtype) for t in tensors})} (load with torch_dtype=torch.bfloat16)")
        if tp_size > 1 and tp_rank != 0:
            bd = None  # rank 0 adds the down bias, once
        device = wu.device.index
        # Registration reads the weights outside PyTorch's streams: let the work that
        # produced them (e.g. the .contiguous() copies above) finish first.
        torch.cuda.synchronize(device)
        ctx = runtime.context(device, cache, cache_only)
        layer = runtime.Layer(ctx, d_model=d_model, d_ff=d_ff, gated=wg is not None,
                              gate_proj=wg.data_ptr() if wg is not None else 0, up_proj=wu.data_ptr(),
                              down_proj=wd.data_ptr(), layer_id=layer_id,
                              gate_bias=bg.data_ptr() if bg is not None else 0,
                              up_bias=bu.data_ptr() if bu is not None else 0,
                              down_bias=bd.data_ptr() if bd is not None else 0,
                              activation=activation.RELU_FAMILY[activation_name], threshold=threshold,
                              tile_n=tile_n, capacity=capacity)
        m = cls(layer, tp_size=tp_size, tp_rank=tp_rank, tp_group=tp_group)
        m.activation_name, m.threshold = activation_name, threshold
        m.has_bias = any(b is not None for b in (bg, bu, bd))
        return m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.ops.ffnjit.ffn(x, self.handle)
        if self.tp_group is not None:
            torch.distributed.all_reduce(y, group=self.tp_group)
        return y

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, d_ff={self.d_ff}, gated={self.gated}, activation={self.activation_name}"
                + (f", layer_id={self.layer_id[:12]}...{self.layer_id[64:]}" if self.layer_id else "")
                + (f", tp={self.tp_rank}/{self.tp_size}" if self.tp_size > 1 else ""))


def ffn_kind(module: nn.Module) -> str | None:
    """"gated" for Llama-style MLPs, "opt" for OPT decoder layers (fc1/fc2), else None."""
    if all(hasattr(module, a) for a in ("gate_proj", "up_proj", "down_proj", "act_fn")):
        return "gated"
    if all(hasattr(module, a) for a in ("fc1", "fc2", "activation_fn")):
        return "opt"
    return None
