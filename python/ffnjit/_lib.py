"""ctypes binding of libffnjit.so's C API (include/ffnjit/ffnjit.h).

The package never builds against PyTorch: it calls the stable C ABI, so one wheel serves
any PyTorch 2.x. The library is found next to this file (ffnjit/lib/libffnjit.so.*, put
there by the wheel) or at $FFNJIT_LIBRARY (a development build). Its CUDA dependencies
(libnvrtc, libcublasLt) are whatever the process already loaded (PyTorch loads its own
from the nvidia-* wheels), else found in those wheels, else in the CUDA toolkit
(/usr/local/cuda, $CUDA_HOME), and preloaded with RTLD_GLOBAL so that the dynamic
loader resolves libffnjit.so's NEEDED entries by soname.
"""
from __future__ import annotations

import ctypes
import glob
import os
import re
import sys
import threading

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))

# ffnjit_status
STATUS_NAMES = {
    0: "FFNJIT_STATUS_OK",
    1: "FFNJIT_STATUS_INVALID_ARGUMENT",
    2: "FFNJIT_STATUS_UNSUPPORTED",
    3: "FFNJIT_STATUS_NOT_FOUND",
    4: "FFNJIT_STATUS_IO_ERROR",
    5: "FFNJIT_STATUS_COMPILE_ERROR",
    6: "FFNJIT_STATUS_DRIVER_ERROR",
    7: "FFNJIT_STATUS_INTERNAL_ERROR",
}
OK, INVALID_ARGUMENT, UNSUPPORTED, NOT_FOUND = 0, 1, 2, 3
# ffnjit_miss_policy, ffnjit_dtype, ffnjit_activation
COMPILE_ON_MISS, CACHE_ONLY = 0, 1
BF16 = 0
ACTIVATION_RELU, ACTIVATION_RELU2, ACTIVATION_FATRELU = 0, 1, 2
LAYER_ID_MAX = 255  # FFNJIT_LAYER_ID_MAX


class FfnjitError(RuntimeError):
    """A failed C API call: `status` (an int), `status_name` and the library's message."""

    def __init__(self, call: str, status: int, message: str):
        self.call, self.status, self.message = call, status, message
        self.status_name = STATUS_NAMES.get(status, f"status {status}")
        super().__init__(f"{call} failed: {self.status_name}: {message}")


class LibraryNotFound(ImportError):
    pass


class ContextOptions(ctypes.Structure):
    _fields_ = [("device", ctypes.c_int), ("cache_path", ctypes.c_char_p), ("miss_policy", ctypes.c_int),
                ("count_sparsity", ctypes.c_int)]


class ContextStats(ctypes.Structure):
    _fields_ = [("kernels_compiled", ctypes.c_int64), ("kernels_from_cache", ctypes.c_int64),
                ("tuned_buckets", ctypes.c_int64), ("default_buckets", ctypes.c_int64),
                ("shape_buckets", ctypes.c_int64)]


class LayerDesc(ctypes.Structure):
    _fields_ = [("d_model", ctypes.c_int), ("d_ff", ctypes.c_int), ("gated", ctypes.c_int), ("dtype", ctypes.c_int),
                ("gate_proj", ctypes.c_void_p), ("up_proj", ctypes.c_void_p), ("down_proj", ctypes.c_void_p),
                ("layer_id", ctypes.c_char_p), ("tile_n", ctypes.c_int), ("capacity", ctypes.c_int),
                ("gate_bias", ctypes.c_void_p), ("up_bias", ctypes.c_void_p), ("down_bias", ctypes.c_void_p),
                ("activation", ctypes.c_int), ("activation_threshold", ctypes.c_float)]


class LayerStats(ctypes.Structure):
    _fields_ = [("overflow_tiles", ctypes.c_int64)]


_P = ctypes.c_void_p
_PROTOTYPES = {
    "ffnjit_version": (ctypes.c_int, []),
    "ffnjit_last_error": (ctypes.c_char_p, []),
    "ffnjit_status_name": (ctypes.c_char_p, [ctypes.c_int]),
    "ffnjit_checkpoint_fingerprint": (ctypes.c_int, [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t]),
    "ffnjit_context_options_init": (None, [ctypes.POINTER(ContextOptions)]),
    "ffnjit_context_create": (ctypes.c_int, [ctypes.POINTER(ContextOptions), ctypes.POINTER(_P)]),
    "ffnjit_context_get_stats": (ctypes.c_int, [_P, ctypes.POINTER(ContextStats)]),
    "ffnjit_context_destroy": (None, [_P]),
    "ffnjit_layer_register": (ctypes.c_int, [_P, ctypes.POINTER(LayerDesc), ctypes.POINTER(_P)]),
    "ffnjit_layer_get_stats": (ctypes.c_int, [_P, ctypes.POINTER(LayerStats)]),
    "ffnjit_layer_destroy": (None, [_P]),
    "ffnjit_layer_workspace_size": (ctypes.c_int, [_P, ctypes.c_int64, ctypes.POINTER(ctypes.c_size_t)]),
    "ffnjit_ffn_forward": (ctypes.c_int, [_P, _P, _P, ctypes.c_int64, _P, ctypes.c_size_t, _P]),
    "ffnjit_export_profile": (ctypes.c_int, [ctypes.POINTER(_P), ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p]),
}

_lock = threading.Lock()
_lib = None
_preloaded: list[str] = []  # CUDA libraries this module loaded itself (paths), for diagnostics


def library_path() -> str:
    """Where libffnjit.so is taken from: $FFNJIT_LIBRARY, else the copy inside the package."""
    env = os.environ.get("FFNJIT_LIBRARY")
    if env:
        if not os.path.isfile(env):
            raise LibraryNotFound(f"FFNJIT_LIBRARY={env} is not a file; point it at a libffnjit.so or unset it")
        return os.path.abspath(env)
    found = sorted(glob.glob(os.path.join(PACKAGE_DIR, "lib", "libffnjit.so*")))
    if not found:
        raise LibraryNotFound(
            f"libffnjit.so is not in {os.path.join(PACKAGE_DIR, 'lib')}: this ffnjit was not installed from its wheel "
            "(pip install ./python in the ffnjit repository); for a development build set "
            "FFNJIT_LIBRARY=/path/to/build/runtime/libffnjit.so")
    return found[0]


def cuda_library_dirs() -> list[str]:
    """Directories that may hold the CUDA libraries libffnjit.so needs, in order: the
    nvidia-* wheels of this Python (PyTorch's), then the CUDA toolkit."""
    dirs = []
    for base in sys.path:
        nv = os.path.join(base or ".", "nvidia")
        if os.path.isabs(nv) and os.path.isdir(nv):
            dirs += sorted(glob.glob(os.path.join(nv, "cu*", "lib")))  # CUDA 13 wheels: nvidia/cu13/lib
            dirs += sorted(glob.glob(os.path.join(nv, "*", "lib")))    # CUDA 12 wheels: nvidia/cuda_nvrtc/lib, ...
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root:
            dirs += [os.path.join(root, d) for d in ("lib64", "lib", "targets/x86_64-linux/lib")]
    seen, out = set(), []
    for d in dirs:
        d = os.path.abspath(d)  # never a relative directory: that would be the working directory's
        if d not in seen and os.path.isdir(d):
            seen.add(d)
            out.append(d)
    return out


def find_cuda_library(soname: str) -> str | None:
    for d in cuda_library_dirs():
        p = os.path.join(d, soname)
        if os.path.isfile(p):
            return p
    return None


_MISSING = re.compile(r"(lib[\w.+-]+\.so(?:\.\d+)*): cannot open shared object file")


def _load() -> ctypes.CDLL:
    path = library_path()
    tried = []
    for _ in range(8):  # one missing library at a time (libnvrtc, libcublasLt, ...)
        try:
            lib = ctypes.CDLL(path, mode=ctypes.RTLD_LOCAL)
            break
        except OSError as e:
            m = _MISSING.search(str(e))
            if not m or m.group(1) in tried:
                raise LibraryNotFound(
                    f"cannot load {path}: {e}. libffnjit.so needs the CUDA 13 NVRTC and cuBLASLt libraries: install "
                    "the CUDA toolkit in /usr/local/cuda (or set CUDA_HOME) or the nvidia-cuda-nvrtc and nvidia-cublas "
                    f"wheels; searched {cuda_library_dirs()}") from None
            soname = m.group(1)
            tried.append(soname)
            candidate = find_cuda_library(soname)
            if candidate is None:
                continue  # the next attempt reports it
            ctypes.CDLL(candidate, mode=ctypes.RTLD_GLOBAL)
            _preloaded.append(candidate)
    else:
        raise LibraryNotFound(f"cannot load {path}: too many missing libraries ({tried})")
    for name, (restype, argtypes) in _PROTOTYPES.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib


def lib() -> ctypes.CDLL:
    """The loaded library (loaded on first use, so `import ffnjit` works without it)."""
    global _lib
    if _lib is None:
        with _lock:
            if _lib is None:
                _lib = _load()
    return _lib


def last_error() -> str:
    return (lib().ffnjit_last_error() or b"").decode("utf-8", "replace")


def check(call: str, status: int) -> None:
    if status != OK:
        raise FfnjitError(call, status, last_error())


def version() -> str:
    """The library's version "MAJOR.MINOR.PATCH" (ffnjit_version())."""
    v = lib().ffnjit_version()
    return f"{v // 10000}.{v // 100 % 100}.{v % 100}"
