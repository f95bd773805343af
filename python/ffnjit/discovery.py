"""Finding the FFNs of a transformers model, by module name, as the CLI finds them by
tensor name (model/checkpoint.cpp): `<prefix>layers.N.mlp` with gate/up/down projections
(Llama, Mistral, Qwen2) or `<prefix>layers.N` with fc1/fc2 (OPT); N is the layer index of
the checkpoint's tensor names and of the layer ids."""
from __future__ import annotations

import re
from dataclasses import dataclass

from torch import nn

from .modules import ffn_kind

_GATED = re.compile(r"^(.*?)layers\.(\d+)\.mlp$")
_OPT = re.compile(r"^(.*?)layers\.(\d+)$")


@dataclass
class Ffn:
    index: int
    name: str            # the module's name in the model ("model.layers.3.mlp", "model.decoder.layers.3")
    module: nn.Module    # the MLP (gated) or the decoder layer holding fc1/fc2 (OPT)
    kind: str            # "gated" or "opt"

    @property
    def input_module(self) -> nn.Module:
        """The module whose first input is the FFN's input."""
        return self.module if self.kind == "gated" else self.module.fc1

    @property
    def d_ff(self) -> int:
        m = self.module.up_proj if self.kind == "gated" else self.module.fc1
        return int(m.weight.shape[0])


def find_ffns(model: nn.Module) -> list[Ffn]:
    """The model's FFN layers, by index. ValueError (the CLI's wording) when there are none
    or they are under two naming schemes or prefixes."""
    found: dict[int, Ffn] = {}
    scheme = prefix = None
    for name, module in model.named_modules():
        kind = ffn_kind(module)
        if kind is None:
            continue
        m = (_GATED if kind == "gated" else _OPT).match(name)
        if not m:
            continue
        naming = "llama" if kind == "gated" else "opt"
        if scheme is not None and scheme != naming:
            raise ValueError(f"model mixes FFN naming schemes ('{scheme}' and '{naming}' at '{name}'); ffnjit "
                             "handles one decoder stack per checkpoint")
        if prefix is not None and prefix != m.group(1):
            raise ValueError(f"FFN modules under two prefixes ('{prefix}' and '{m.group(1)}'); ffnjit handles one "
                             "decoder stack per checkpoint")
        scheme, prefix = naming, m.group(1)
        idx = int(m.group(2))
        found[idx] = Ffn(idx, name, module, kind)
    if not found:
        raise ValueError("found no FFN modules: expected modules named like model.layers.0.mlp with gate_proj, up_proj, "
                         "down_proj and act_fn (Llama/Mistral/Qwen) or model.decoder.layers.0 with fc1, fc2 and "
                         "activation_fn (OPT)")
    missing = [i for i in range(max(found) + 1) if i not in found]
    if missing:
        raise ValueError(f"FFN of layer {missing[0]} is missing (found {len(found)} layers, up to {max(found)})")
    return [found[i] for i in sorted(found)]
