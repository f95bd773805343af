"""Which FFN activation a model uses, decided from its config exactly as the CLI's
checkpoint discovery does (model/checkpoint.cpp discover()), so that `ffnjit.patch`
refuses what `ffnjit tune` refuses, with the same message.

The sparse kernels skip neurons whose activation is exactly zero, which is exact for the
ReLU family only: relu, relu2 (squared ReLU) and FATReLU (z if z > threshold, else 0).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from . import _lib

RELU_FAMILY = {"relu": _lib.ACTIVATION_RELU, "relu2": _lib.ACTIVATION_RELU2, "fatrelu": _lib.ACTIVATION_FATRELU}
# Where a FATReLU model keeps its threshold (ProSparse-style configs).
THRESHOLD_KEYS = ("hidden_act_param", "fatrelu_threshold")  # as model/checkpoint.cpp reads them


class UnsupportedModelError(ValueError):
    """The model's FFN cannot be served by ffnjit exactly; the message names the fix."""


@dataclass(frozen=True)
class Activation:
    name: str          # relu, relu2 or fatrelu
    code: int          # ffnjit_activation
    threshold: float   # FATReLU only, else 0
    config_key: str    # the config.json key it came from
    notes: tuple = ()


def _first_of(config: Mapping[str, Any], keys):
    for k in keys:
        if k in config and config[k] is not None:
            return config[k]
    return None


def from_config(config: Mapping[str, Any], naming: str, gated: bool) -> Activation:
    """The activation of a config.json dict (or PretrainedConfig.to_dict()); `naming` is
    the tensor naming family ("llama", "opt", "gpt2"). Raises UnsupportedModelError."""
    model_type = config.get("model_type") if isinstance(config.get("model_type"), str) else ""
    act_v = _first_of(config, ("hidden_act", "activation_function", "hidden_activation"))
    act = act_v if isinstance(act_v, str) else ""
    if act_v is not None:
        # As discover(): the key is the first one the config *contains*, null or not.
        key = ("hidden_act" if "hidden_act" in config else
               "activation_function" if "activation_function" in config else "hidden_activation")
    else:
        key = "hidden_act"
    notes = []
    if model_type == "llama_sparse_relu":
        if act != "relu":
            notes.append(f"model_type llama_sparse_relu (SparseLM): the FFN gate is ReLU although {key} says '{act}'")
        act = "relu"
    elif not act:
        act = "silu" if gated else ("relu" if naming == "opt" else "gelu")  # the families' defaults
    if act not in RELU_FAMILY:
        who = f"model_type '{model_type}'" if model_type else "this model"
        raise UnsupportedModelError(
            f"{who} uses {key} '{act}', not ReLU: the sparsity kernels skip neurons whose "
            f"{'gate' if gated else 'activation'} is zero, which is exact only when a ReLU makes inactive neurons "
            f"exactly 0 (ffnjit serves relu, relu2 and fatrelu); with '{act}' every neuron contributes. Use a ReLU-fied checkpoint (e.g. a SparseLM model, "
            "model_type llama_sparse_relu) or run this model with a dense library")
    threshold = 0.0
    if act == "fatrelu":
        t = _first_of(config, THRESHOLD_KEYS)
        if not isinstance(t, (int, float)) or isinstance(t, bool) or not t >= 0:
            raise UnsupportedModelError(
                f"{key} is 'fatrelu' but the config has no non-negative threshold ({' or '.join(THRESHOLD_KEYS)}); "
                "add the threshold the model was trained with")
        threshold = float(t)
    return Activation(act, RELU_FAMILY[act], threshold, key, tuple(notes))


def of_module(act_fn) -> tuple[str, float] | None:
    """(name, threshold) of an activation module (nn.ReLU, transformers' ReLUSquaredActivation,
    a FATReLU with a `threshold`), or None when it is not of the ReLU family."""
    cls = type(act_fn).__name__
    if cls in ("ReLU",):
        return "relu", 0.0
    if cls in ("ReLUSquaredActivation", "ReLU2", "SquaredReLU"):
        return "relu2", 0.0
    if "fatrelu" in cls.lower():
        t = getattr(act_fn, "threshold", None)
        if isinstance(t, (int, float)) and t >= 0:
            return "fatrelu", float(t)
    return None
