"""Interop with the official safetensors package: files it writes are read bit-identically
by ffnjit, files ffnjit writes load in it, and ffnjit's profiles match docs/profile.schema.json.

bf16 goes through the official writer via ml_dtypes: safetensors.numpy.save_file passes
the array's dtype name ("bfloat16") to the Rust serializer, which knows it. For reading
bf16 back, safetensors.numpy has no bf16 type, so the official Rust parser
(safetensors.deserialize) returns the raw bytes, which are compared bitwise.
"""
import hashlib
import json
import os
import subprocess
import sys

import ml_dtypes
import numpy as np
import safetensors
from safetensors.numpy import save_file

tool, ffnjit, src, tmp = sys.argv[1:5]
passed = failed = 0
CODES = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(ml_dtypes.bfloat16): "BF16",
         np.dtype(np.uint8): "U8"}


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL:", what)


def sha(b):
    return hashlib.sha256(bytes(b)).hexdigest()


def to_bf16(a):
    return np.asarray(a, dtype=np.float32).astype(ml_dtypes.bfloat16)


def dump(path):
    out = subprocess.run([tool, "dump", path], capture_output=True, text=True)
    check(out.returncode == 0, f"ffnjit reads {path}: {out.stderr.strip()}")
    return json.loads(out.stdout) if out.returncode == 0 else {"tensors": {}, "metadata": {}}


def compare(path, tensors, metadata):
    d = dump(path)
    check(set(d["tensors"]) == set(tensors), f"{path}: tensor names {sorted(d['tensors'])}")
    for name, arr in tensors.items():
        t = d["tensors"].get(name)
        if t is None:
            continue
        check(t["dtype"] == CODES[arr.dtype], f"{path}:{name} dtype {t['dtype']}")
        check(t["shape"] == list(arr.shape), f"{path}:{name} shape {t['shape']}")
        check(t["sha256"] == sha(arr.tobytes()), f"{path}:{name} bytes are not bit-identical")
        check(t["bf16_sha256"] == sha(to_bf16(arr).tobytes()), f"{path}:{name} bf16 conversion differs from ml_dtypes")
    for k, v in metadata.items():
        check(d["metadata"].get(k) == v, f"{path}: metadata {k}={d['metadata'].get(k)!r}, want {v!r}")


# ---- A: the official writer -> ffnjit ----
rng = np.random.default_rng(0)
f32 = rng.standard_normal((7, 13)).astype(np.float32)
f32[0, :5] = [np.inf, -np.inf, np.nan, 1e-45, -0.0]
f16 = rng.standard_normal((5, 9)).astype(np.float16)
f16[0, :4] = [np.inf, np.nan, np.float16(6e-8), -0.0]
bf16 = rng.standard_normal((3, 4, 8)).astype(ml_dtypes.bfloat16)
big = rng.standard_normal((256, 128)).astype(ml_dtypes.bfloat16)
py = {"w.f32": f32, "w.f16": f16, "w.bf16": bf16, "w.big": big}
meta = {"format": "np", "note": "h\u00e9llo \u2713"}
single = os.path.join(tmp, "py_single.safetensors")
save_file(py, single, metadata=meta)
compare(single, py, meta)

shard_dir = os.path.join(tmp, "py_sharded")
os.makedirs(shard_dir)
shards = {"model-00001-of-00002.safetensors": ["w.f32", "w.bf16"],
          "model-00002-of-00002.safetensors": ["w.f16", "w.big"]}
weight_map = {}
for fname, names in shards.items():
    save_file({n: py[n] for n in names}, os.path.join(shard_dir, fname), metadata={"format": "np"})
    weight_map.update({n: fname for n in names})
with open(os.path.join(shard_dir, "model.safetensors.index.json"), "w") as f:  # as transformers writes it
    json.dump({"metadata": {"total_size": sum(a.nbytes for a in py.values())}, "weight_map": weight_map}, f)
compare(shard_dir, py, {"total_size": str(sum(a.nbytes for a in py.values()))})
check(dump(shard_dir).get("sharded") is True, "sharded index recognized")

# ---- B: ffnjit's writer -> the official reader ----
subprocess.run([tool, "write", tmp], check=True)
n = 96
want = {"a.f32": (np.arange(n, dtype=np.float32) * np.float32(0.37) - np.float32(5)).reshape(8, 12),
        "c.f16": (np.arange(n, dtype=np.uint16) + np.uint16(0x3C00)).view(np.float16),
        "d.u8": np.arange(n, dtype=np.uint8).reshape(4, 24),
        "e.empty": np.zeros((0, 3), np.float32)}
want_bf16 = to_bf16(want["a.f32"]).reshape(2, 3, 16)  # ffnjit's RNE must equal ml_dtypes'
fmeta = {"writer": "ffnjit", "note": "caf\u00e9"}
path = os.path.join(tmp, "ffnjit_single.safetensors")
with safetensors.safe_open(path, framework="numpy") as f:
    check(f.metadata() == fmeta, f"metadata read by safetensors: {f.metadata()}")
    check(sorted(f.keys()) == ["a.f32", "b.bf16", "c.f16", "d.u8", "e.empty"], f"keys {sorted(f.keys())}")
    for name, arr in want.items():
        got = f.get_tensor(name)
        check(got.dtype == arr.dtype and got.shape == arr.shape and got.tobytes() == arr.tobytes(),
              f"safetensors.numpy reads {name} of ffnjit's file")
with open(path, "rb") as fh:
    raw = dict(safetensors.deserialize(fh.read()))
check(raw["b.bf16"]["dtype"] in ("BF16", "bfloat16") and list(raw["b.bf16"]["shape"]) == [2, 3, 16]
      and bytes(raw["b.bf16"]["data"]) == want_bf16.tobytes(), "official parser reads ffnjit's bf16 bit-identically")
sdir = os.path.join(tmp, "ffnjit_sharded")
with open(os.path.join(sdir, "model.safetensors.index.json")) as fh:
    index = json.load(fh)
seen = {}
for fname in sorted(set(index["weight_map"].values())):
    with open(os.path.join(sdir, fname), "rb") as fh:
        for name, t in safetensors.deserialize(fh.read()):
            seen[name] = bytes(t["data"])
            check(index["weight_map"].get(name) == fname, f"index maps {name} to {fname}")
check(sorted(seen) == sorted(index["weight_map"]), "every indexed tensor is in its shard")
check(seen.get("b.bf16") == want_bf16.tobytes() and seen.get("a.f32") == want["a.f32"].tobytes(), "sharded bytes")
check(index["metadata"]["total_size"] == sum(len(b) for b in seen.values()), "index total_size")

# The demo checkpoint (ffnjit demo-checkpoint) loads in the official package too.
demo = os.path.join(tmp, "demo")
subprocess.run([ffnjit, "demo-checkpoint", demo, "--layers", "2", "--d-model", "64", "--d-ff", "128",
                "--tokens", "64"], check=True, capture_output=True)
with safetensors.safe_open(os.path.join(demo, "model.safetensors"), framework="numpy") as f:
    keys = set(f.keys())
with open(os.path.join(demo, "model.safetensors"), "rb") as fh:
    dm = dict(safetensors.deserialize(fh.read()))
check("model.layers.1.mlp.gate_proj.weight" in keys and list(dm["model.layers.1.mlp.gate_proj.weight"]["shape"]) == [128, 64],
      "demo checkpoint loads in safetensors")
with open(os.path.join(demo, "inputs.safetensors"), "rb") as fh:
    di = dict(safetensors.deserialize(fh.read()))
check(list(di["layers.0.input"]["shape"]) == [64, 64], "demo inputs load in safetensors")

# ---- C: profiles match the published JSON schema ----
try:
    import jsonschema
except ImportError:
    jsonschema = None
check(jsonschema is not None, "jsonschema is installed in the venv")
if jsonschema is not None:
    prof = os.path.join(tmp, "profile.json")
    subprocess.run([ffnjit, "profile", demo, "--inputs", os.path.join(demo, "inputs.safetensors"), "-o", prof],
                   check=True, capture_output=True)
    with open(os.path.join(src, "docs", "profile.schema.json")) as fh:
        schema = json.load(fh)
    with open(prof) as fh:
        doc = json.load(fh)
    jsonschema.Draft202012Validator.check_schema(schema)
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(doc))
    check(not errors, f"profile matches docs/profile.schema.json: {errors[:1]}")
    for mutate in (lambda d: d.update(format="x"), lambda d: d.update(version=2), lambda d: d["layers"][0].pop("tilings"),
                   lambda d: d["layers"][0]["tilings"][0].update(tile_n=0), lambda d: d.update(extra=1)):
        bad = json.loads(json.dumps(doc))
        mutate(bad)
        check(list(jsonschema.Draft202012Validator(schema).iter_errors(bad)), "schema rejects a broken profile")

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
