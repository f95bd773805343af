"""Layer ids: how a served layer finds the records `ffnjit tune` wrote (docs/identity.md).

    <fingerprint>:<index>                  one FFN layer of a checkpoint
    <fingerprint>:<index>:tp<size>.<rank>  one tensor-parallel shard of it

The grammar is the runtime's (runtime/identity.cpp); ids that break it are refused by
ffnjit_layer_register, so they are refused here first, with the same wording.
"""
from __future__ import annotations

import os
import re

from . import _lib

MAX_TENSOR_PARALLEL = 64  # runtime/identity.hpp kMaxTensorParallel
MAX_LAYER_INDEX = 1 << 20
_GRAMMAR = "; a layer_id is <64-hex fingerprint>:<layer index> or <fingerprint>:<index>:tp<size>.<rank>"
_FINGERPRINT = re.compile(r"[0-9a-f]{64}")
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,9}")


def is_fingerprint(s: str) -> bool:
    return isinstance(s, str) and _FINGERPRINT.fullmatch(s) is not None


def checkpoint_fingerprint(checkpoint_dir: str | os.PathLike) -> str:
    """The checkpoint's 64-hex fingerprint, as `ffnjit tune` and `ffnjit profile` print it
    (ffnjit_checkpoint_fingerprint). Raises FfnjitError with the CLI's message when the
    directory is not a checkpoint ffnjit serves (e.g. a non-ReLU activation)."""
    out = _lib.ctypes.create_string_buffer(65)
    path = os.fsencode(os.fspath(checkpoint_dir))
    _lib.check("ffnjit_checkpoint_fingerprint", _lib.lib().ffnjit_checkpoint_fingerprint(path, out, 65))
    return out.value.decode("ascii")


def layer_id(fingerprint: str, index: int, tp_size: int = 1, tp_rank: int = 0) -> str:
    """The id of FFN layer `index` (rank `tp_rank` of `tp_size` shards when tp_size > 1)."""
    if not is_fingerprint(fingerprint):
        raise ValueError(f"fingerprint {fingerprint!r} is not 64 lower-case hex digits; "
                         "ffnjit.checkpoint_fingerprint(dir) computes it")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index <= MAX_LAYER_INDEX:
        raise ValueError(f"layer index {index!r} must be an integer in 0..{MAX_LAYER_INDEX}")
    if not isinstance(tp_size, int) or not 1 <= tp_size <= MAX_TENSOR_PARALLEL:
        raise ValueError(f"tensor-parallel size {tp_size!r} must be 1..{MAX_TENSOR_PARALLEL}")
    if not isinstance(tp_rank, int) or not 0 <= tp_rank < tp_size:
        raise ValueError(f"tensor-parallel rank {tp_rank!r} must be 0..{tp_size - 1}")
    s = f"{fingerprint}:{index}"
    if tp_size > 1:
        s += f":tp{tp_size}.{tp_rank}"
    return s


def parse_layer_id(s: str) -> tuple[str, int, int, int]:
    """(fingerprint, index, tp_size, tp_rank) of an id; ValueError naming what is wrong."""
    if len(s.encode()) > _lib.LAYER_ID_MAX:
        raise ValueError(f"layer_id is {len(s.encode())} bytes, more than {_lib.LAYER_ID_MAX}{_GRAMMAR}")
    if len(s) < 66 or s[64] != ":" or not is_fingerprint(s[:64]):
        raise ValueError("layer_id does not start with a 64-digit lower-case hex fingerprint and ':'" + _GRAMMAR +
                         " (ffnjit_checkpoint_fingerprint computes the fingerprint)")
    rest = s[65:]
    m = _DECIMAL.match(rest)
    if not m or int(m.group()) > MAX_LAYER_INDEX or (rest[m.end():m.end() + 1].isdigit()):
        raise ValueError("layer_id's layer index is not a decimal number without leading zeros" + _GRAMMAR)
    index, rest = int(m.group()), rest[m.end():]
    if not rest:
        return s[:64], index, 1, 0
    if not rest.startswith(":tp"):
        raise ValueError("layer_id has trailing text after the layer index" + _GRAMMAR)
    rest = rest[3:]
    m = _DECIMAL.match(rest)
    if not m or not 2 <= int(m.group()) <= MAX_TENSOR_PARALLEL or rest[m.end():m.end() + 1] != ".":
        raise ValueError(f"layer_id's tensor-parallel size must be 2..{MAX_TENSOR_PARALLEL}" + _GRAMMAR)
    size, rest = int(m.group()), rest[m.end() + 1:]
    m = _DECIMAL.fullmatch(rest)
    if not m or int(rest) >= size:
        raise ValueError(f"layer_id's tensor-parallel rank must be 0..{size - 1}" + _GRAMMAR)
    return s[:64], index, size, int(rest)
