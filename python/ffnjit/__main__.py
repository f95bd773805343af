"""`python -m ffnjit ...` (and the `ffnjit` console script): the ffnjit command-line tool
shipped in the wheel, started with the CUDA libraries it needs on LD_LIBRARY_PATH (the
same search as the package's own: PyTorch's nvidia-* wheels, then the CUDA toolkit)."""
from __future__ import annotations

import os
import sys

from . import _lib


def binary() -> str:
    env = os.environ.get("FFNJIT_CLI")
    path = env or os.path.join(_lib.PACKAGE_DIR, "bin", "ffnjit")
    if not os.path.isfile(path):
        raise SystemExit(f"ffnjit: the command-line tool is not at {path}: install ffnjit from its wheel "
                         "(pip install ./python) or set FFNJIT_CLI to a built ffnjit")
    return path


def environment(base: dict | None = None) -> dict:
    """`base` (default os.environ) with LD_LIBRARY_PATH led by the CUDA library directories."""
    env = dict(os.environ if base is None else base)
    need = ("libnvrtc.so", "libcublasLt.so")
    dirs = []
    for d in _lib.cuda_library_dirs():
        names = os.listdir(d)
        if any(n.startswith(p) for n in names for p in need):
            dirs.append(d)
    # Absolute directories only, and no empty field: an empty LD_LIBRARY_PATH entry would
    # make the loader search the working directory.
    old = [p for p in env.get("LD_LIBRARY_PATH", "").split(":") if p and os.path.isabs(p)]
    paths = list(dict.fromkeys(dirs + old))
    if paths:
        env["LD_LIBRARY_PATH"] = ":".join(paths)
    else:
        env.pop("LD_LIBRARY_PATH", None)
    return env


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    path = binary()
    os.execve(path, [path] + list(argv), environment())


if __name__ == "__main__":
    main()
