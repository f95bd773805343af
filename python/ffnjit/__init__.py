"""ffnjit: JIT-compiled sparse FFN kernels for ReLU-family LLMs, for PyTorch.

    import ffnjit
    ffnjit.capture_inputs(model, batches, "inputs.safetensors")   # then: ffnjit profile, ffnjit tune
    report = ffnjit.patch(model)                                    # every FFN served by tuned kernels

`import ffnjit` needs neither PyTorch nor the native library; both load on first use.
With PyTorch present, importing ffnjit registers torch.ops.ffnjit.ffn.
"""
from __future__ import annotations

from ._lib import FfnjitError, LibraryNotFound, library_path
from .activation import UnsupportedModelError
from .identity import checkpoint_fingerprint, layer_id, parse_layer_id
from .runtime import BUCKETS, Context, Layer, context

try:
    from importlib.metadata import version as _dist_version
    __version__ = _dist_version("ffnjit")
except Exception:  # noqa: BLE001 - running from a source tree
    __version__ = "0+unknown"

try:
    import torch as _torch  # noqa: F401  (first, so that its CUDA libraries are the ones libffnjit.so binds to)
except ImportError:
    _torch = None

if _torch is not None:
    from . import ops  # noqa: F401  (registers torch.ops.ffnjit.ffn)
    from .capture import capture_inputs
    from .discovery import find_ffns
    from .modules import SparseFFN
    from .patching import LayerReport, PatchReport, patch


def library_version() -> str:
    """The loaded libffnjit.so's version (ffnjit_version()); equals __version__ for a wheel."""
    from . import _lib
    return _lib.version()


def __getattr__(name):
    if name in ("patch", "capture_inputs", "SparseFFN", "PatchReport", "LayerReport", "find_ffns", "ops"):
        raise ImportError(f"ffnjit.{name} needs PyTorch, which is not installed: pip install torch")
    raise AttributeError(f"module 'ffnjit' has no attribute {name!r}")
