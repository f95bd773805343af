"""Helpers of the package's CPU tests: where things are, and tiny checkpoints written
without PyTorch (config.json + a bf16 safetensors file)."""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import tempfile
import unittest

SOURCE_DIR = os.environ.get("FFNJIT_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))


def have_torch() -> bool:
    try:
        import torch  # noqa: F401
        return True
    except ImportError:
        return False


def have_transformers() -> bool:
    try:
        import transformers  # noqa: F401
        return True
    except ImportError:
        return False


needs_torch = unittest.skipUnless(have_torch(), "torch is not installed in this environment")
needs_transformers = unittest.skipUnless(have_torch() and have_transformers(),
                                         "torch and transformers are not installed in this environment")


def cli(*args, check=False, env=None):
    """Runs the wheel's ffnjit command (python -m ffnjit) and returns the CompletedProcess."""
    p = subprocess.run([sys.executable, "-m", "ffnjit", *map(str, args)], capture_output=True, text=True, env=env)
    if check and p.returncode != 0:
        raise AssertionError(f"ffnjit {' '.join(map(str, args))} failed ({p.returncode}): {p.stderr}")
    return p


def cli_error(*args) -> str:
    """The message of a failing CLI command: its one stderr line after 'ffnjit <cmd>: error: '."""
    p = cli(*args)
    assert p.returncode != 0, f"ffnjit {args} unexpectedly succeeded: {p.stdout}"
    line = p.stderr.strip().splitlines()[-1]
    marker = ": error: "
    assert marker in line, line
    return line.split(marker, 1)[1]


def write_safetensors(path, tensors):
    """tensors: name -> (dtype, shape); all bytes zero (the values do not matter here)."""
    sizes = {"BF16": 2, "F32": 4}
    header, offset = {}, 0
    for name, (dtype, shape) in tensors.items():
        n = sizes[dtype]
        for s in shape:
            n *= s
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)) + blob + b"\0" * offset)


def tiny_checkpoint(directory, *, naming="llama", config_extra=None, layers=2, d_model=64, d_ff=128):
    """A checkpoint ffnjit's discovery reads: config.json + model.safetensors."""
    os.makedirs(directory, exist_ok=True)
    config = {"hidden_size": d_model, "num_hidden_layers": layers}
    tensors = {}
    for i in range(layers):
        if naming == "llama":
            config.setdefault("model_type", "llama")
            for role, shape in (("gate_proj", (d_ff, d_model)), ("up_proj", (d_ff, d_model)),
                                ("down_proj", (d_model, d_ff))):
                tensors[f"model.layers.{i}.mlp.{role}.weight"] = ("BF16", shape)
        else:
            config.setdefault("model_type", "opt")
            tensors[f"model.decoder.layers.{i}.fc1.weight"] = ("BF16", (d_ff, d_model))
            tensors[f"model.decoder.layers.{i}.fc1.bias"] = ("BF16", (d_ff,))
            tensors[f"model.decoder.layers.{i}.fc2.weight"] = ("BF16", (d_model, d_ff))
            tensors[f"model.decoder.layers.{i}.fc2.bias"] = ("BF16", (d_model,))
    config.update(config_extra or {})
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f)
    write_safetensors(os.path.join(directory, "model.safetensors"), tensors)
    return config


class TempDirTest(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="ffnjit-pytest-")
        self.tmp = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()
