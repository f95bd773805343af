"""GPU test of the Python package on Hugging Face models (issue 17's "done when").

For tiny random Llama, Mistral, Qwen2 (hidden_act relu), Llama with mlp_bias and OPT
(non-zero biases), each built and saved by transformers itself:
capture_inputs -> `ffnjit profile` -> `ffnjit tune` -> ffnjit.patch, then against the
unpatched model: logits within relative error 2e-2, greedy generate of 32 tokens
identical (or differing only after a logit tie), eagerly, under torch.compile (each
SparseFFN with fullgraph=True, and the whole model) and under CUDA graph replay; the
patch report says every bucket was tuned. Plus tensor-parallel shards (two ranks
simulated on one GPU) when `ffnjit tune --tensor-parallel` exists.

    python3 tests/gpu/test_python_hf.py [--wheel-dir build/dist] [--families llama,opt] [--work DIR]

Needs torch with CUDA, transformers, safetensors and ffnjit (importable, or installed
here from --wheel-dir into a temporary directory). Prints [SKIP] <reason> and exits 0
without a GPU; ends with 'N passed, N failed, N skipped'.
"""
from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "python", "tests"))  # hf_models: the same tiny models as the CPU tests

FAMILIES = {  # name -> (hf_models family, extra config)
    "llama": ("llama", {}),
    "mistral": ("mistral", {}),
    "qwen2": ("qwen2", {}),
    "llama_bias": ("llama", {"mlp_bias": True}),
    "opt": ("opt", {}),
}
SIZES = dict(layers=2, d_model=256, d_ff=1024, vocab=512)
TOL = 2e-2

results = {"passed": 0, "failed": 0, "skipped": 0}


def record(ok: bool | None, what: str, detail: str = "") -> None:
    key = "skipped" if ok is None else "passed" if ok else "failed"
    results[key] += 1
    tag = {"passed": "ok  ", "failed": "FAIL", "skipped": "skip"}[key]
    print(f"{tag} {what}{': ' + detail if detail else ''}", flush=True)


def skip_all(reason: str) -> None:
    print(f"[SKIP] {reason}")
    sys.exit(0)


def import_ffnjit(wheel_dir: str | None):
    try:
        import ffnjit
        return ffnjit
    except ImportError:
        pass
    wheels = sorted(glob.glob(os.path.join(wheel_dir or "", "ffnjit-*.whl")), key=os.path.getmtime)
    if not wheels:
        skip_all(f"ffnjit is not importable and no wheel is in {wheel_dir!r} (scripts/test.sh builds build/dist)")
    target = tempfile.mkdtemp(prefix="ffnjit-site-")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--target", target, wheels[-1]], check=True)
    sys.path.insert(0, target)
    os.environ["PYTHONPATH"] = target + (":" + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")
    import ffnjit
    return ffnjit


def rel_err(a, b) -> float:
    a, b = a.float(), b.float()
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def ffnjit_cli(*args, log):
    t0 = time.time()
    p = subprocess.run([sys.executable, "-m", "ffnjit", *map(str, args)], capture_output=True, text=True)
    with open(log, "a") as f:
        f.write(f"$ ffnjit {' '.join(map(str, args))}  ({time.time() - t0:.1f} s, rc={p.returncode})\n{p.stdout}{p.stderr}\n")
    if p.returncode != 0:
        raise RuntimeError(f"ffnjit {args[0]} failed ({p.returncode}): {p.stderr.strip()[-2000:]}")
    return p.stdout


def greedy_equal(torch, ref_model, ids, got_tokens, want_tokens) -> tuple[bool, str]:
    """Identical, or the first difference is at a step where the reference's top two logits
    tie within bf16 tolerance (then the rest may differ)."""
    if torch.equal(got_tokens, want_tokens):
        return True, "identical"
    n = ids.shape[1]
    diff = (got_tokens[0, n:] != want_tokens[0, n:]).nonzero()
    step = int(diff[0])
    with torch.no_grad():
        logits = ref_model(want_tokens[:, : n + step]).logits[0, -1].float()
    top = logits.topk(2).values
    gap = (top[0] - top[1]).item()
    scale = logits.abs().max().item()
    tie = gap <= TOL * max(scale, 1e-6)
    return tie, f"first difference at new token {step}, reference top-2 logit gap {gap:.4g} (scale {scale:.3g})"


def run_family(name, ffnjit, torch, tf, hf_models, work, cache, log):
    family, extra = FAMILIES[name]
    ckpt = os.path.join(work, name)
    src = hf_models.model(family, seed=list(FAMILIES).index(name), **SIZES, **extra)
    src.save_pretrained(ckpt)
    del src

    def load():
        return tf.AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch.bfloat16).cuda().eval()

    ref, model = load(), load()
    g = torch.Generator().manual_seed(7)
    batches = [{"input_ids": torch.randint(3, SIZES["vocab"], (4, 96), generator=g).cuda(),
                "attention_mask": torch.ones(4, 96, dtype=torch.long).cuda()} for _ in range(4)]
    inputs = os.path.join(ckpt, "inputs.safetensors")
    counts = ffnjit.capture_inputs(model, batches, inputs)
    record(set(counts.values()) == {4 * 4 * 96}, f"{name}: capture_inputs", f"{counts}")
    profile = os.path.join(ckpt, "profile.json")
    ffnjit_cli("profile", ckpt, "--inputs", inputs, "-o", profile, log=log)
    t0 = time.time()
    ffnjit_cli("tune", ckpt, "--inputs", inputs, "--profile", profile, "--cache", cache, log=log)
    record(True, f"{name}: ffnjit profile + tune", f"tune {time.time() - t0:.0f} s")

    report = ffnjit.patch(model, cache=cache)
    print(report, flush=True)
    record(report.all_tuned and len(report.layers) == SIZES["layers"], f"{name}: patch report: every bucket tuned",
           str(report.counts()))
    sparse_modules = _mlps(model)
    record(len(sparse_modules) == SIZES["layers"], f"{name}: every FFN is a SparseFFN",
           ", ".join(n for n, _ in sparse_modules))

    # Eager logits, several batch buckets.
    for shape in [(1, 1), (1, 7), (3, 21), (2, 300)]:
        ids = torch.randint(3, SIZES["vocab"], shape, generator=g).cuda()
        with torch.no_grad():
            e = rel_err(model(ids).logits, ref(ids).logits)
        record(e <= TOL, f"{name}: eager logits {shape}", f"rel err {e:.2e}")

    # Greedy generation.
    ids = torch.randint(3, SIZES["vocab"], (1, 12), generator=g).cuda()
    with torch.no_grad():
        want = ref.generate(ids, max_new_tokens=32, do_sample=False, min_new_tokens=32)
        got = model.generate(ids, max_new_tokens=32, do_sample=False, min_new_tokens=32)
    ok, why = greedy_equal(torch, ref, ids, got, want)
    record(ok, f"{name}: greedy generate 32 tokens", why)

    # torch.compile: each SparseFFN with fullgraph=True, then the whole model.
    x = torch.randn(5, 9, SIZES["d_model"], device="cuda", dtype=torch.bfloat16)
    sparse = sparse_modules[0][1]
    torch._dynamo.reset()
    compiled_ffn = torch.compile(sparse, fullgraph=True)
    with torch.no_grad():
        e = rel_err(compiled_ffn(x), sparse(x))
    record(e == 0.0, f"{name}: torch.compile(SparseFFN, fullgraph=True) == eager", f"rel err {e:.2e}")
    ids = torch.randint(3, SIZES["vocab"], (2, 33), generator=g).cuda()
    for fullgraph in (True, False):
        try:
            torch._dynamo.reset()
            cm = torch.compile(model, fullgraph=fullgraph)
            with torch.no_grad():
                e = rel_err(cm(ids, use_cache=False).logits, ref(ids, use_cache=False).logits)
            record(e <= TOL, f"{name}: torch.compile(model, fullgraph={fullgraph}) logits", f"rel err {e:.2e}")
            break
        except Exception as ex:  # noqa: BLE001 - a transformers graph break is not ffnjit's; try without fullgraph
            if not fullgraph:
                raise
            print(f"note: {name}: torch.compile(model, fullgraph=True) failed ({type(ex).__name__}: "
                  f"{str(ex).splitlines()[0][:200]}); retrying with fullgraph=False", flush=True)
    torch._dynamo.reset()

    # CUDA graph replay of the whole forward (warm-up on a side stream, capture, replay on new ids).
    static = torch.randint(3, SIZES["vocab"], (2, 40), generator=g).cuda()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s), torch.no_grad():
        for _ in range(2):
            model(static, use_cache=False)
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.no_grad(), torch.cuda.graph(graph):
        static_out = model(static, use_cache=False).logits
    for trial in range(2):
        new = torch.randint(3, SIZES["vocab"], static.shape, generator=g).cuda()
        static.copy_(new)
        graph.replay()
        torch.cuda.synchronize()
        with torch.no_grad():
            e = rel_err(static_out, ref(new, use_cache=False).logits)
        record(e <= TOL, f"{name}: CUDA graph replay {trial} logits", f"rel err {e:.2e}")
    del graph

    overflow = sum(m.layer.overflow_tiles() for m in model.modules() if type(m).__name__ == "SparseFFN")
    print(f"note: {name}: TwELL overflow tiles (computed exactly): {overflow}", flush=True)
    return ckpt, inputs, profile


def run_tensor_parallel(ffnjit, torch, tf, work, cache, log, ckpt, inputs, profile):
    """Two ranks simulated on one GPU: each registers its shard (d_ff / 2 rows) under the
    ":tp2.<rank>" id; the shards' outputs sum to the full FFN's, and after
    `ffnjit tune --tensor-parallel 2` every shard bucket is tuned."""
    help_text = ffnjit_cli("tune", "--help", log=log)
    if "--tensor-parallel" not in help_text:
        record(None, "tensor parallel", "`ffnjit tune --tensor-parallel` does not exist yet")
        return
    ffnjit_cli("tune", ckpt, "--inputs", inputs, "--profile", profile, "--cache", cache, "--tensor-parallel", "2",
               log=log)
    from safetensors.torch import load_file
    captured = load_file(inputs)
    full = tf.AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch.bfloat16).cuda().eval()
    for rank in range(2):
        shard = tf.AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch.bfloat16).cuda().eval()
        for f in ffnjit.find_ffns(shard):
            m = f.module
            half = m.up_proj.out_features // 2
            rows = slice(rank * half, (rank + 1) * half)
            for lin in (m.gate_proj, m.up_proj):
                lin.weight = torch.nn.Parameter(lin.weight[rows].contiguous())
                lin.out_features = half
            m.down_proj.weight = torch.nn.Parameter(m.down_proj.weight[:, rows].contiguous())
            m.down_proj.in_features = half
        report = ffnjit.patch(shard, cache=cache, tensor_parallel=(2, rank))
        record(report.all_tuned and all(L.layer_id.endswith(f":tp2.{rank}") for L in report.layers),
               f"tensor parallel rank {rank}: shard ids tuned", str(report.counts()))
        if rank == 0:
            shards0 = shard
        else:
            for f_full, (n0, m0), (n1, m1) in zip(ffnjit.find_ffns(full), _mlps(shards0), _mlps(shard)):
                x = captured[f"layers.{f_full.index}.input"][:257].cuda()
                with torch.no_grad():
                    want = f_full.module(x)
                    got = m0(x) + m1(x)
                e = rel_err(got, want)
                record(e <= TOL, f"tensor parallel layer {f_full.index}: rank 0 + rank 1 == full FFN", f"rel err {e:.2e}")


def _mlps(model):
    return [(n, m) for n, m in model.named_modules() if type(m).__name__ == "SparseFFN"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--wheel-dir", default=os.path.join(ROOT, "build", "dist"))
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--work", default=None, help="keep checkpoints, cache and logs here")
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        skip_all("torch is not installed")
    if not torch.cuda.is_available():
        skip_all("no GPU: torch.cuda.is_available() is False")
    try:
        import safetensors  # noqa: F401
        import transformers as tf
    except ImportError as e:
        skip_all(f"{e.name} is not installed")
    ffnjit = import_ffnjit(args.wheel_dir)
    import hf_models

    work = args.work or tempfile.mkdtemp(prefix="ffnjit-hf-")
    os.makedirs(work, exist_ok=True)
    cache, log = os.path.join(work, "cache.db"), os.path.join(work, "cli.log")
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, transformers {tf.__version__}, "
          f"ffnjit {ffnjit.__version__} (library {ffnjit.library_version()}), work dir {work}", flush=True)
    first = None
    for name in args.families.split(","):
        t0 = time.time()
        try:
            out = run_family(name, ffnjit, torch, tf, hf_models, work, cache, log)
            if first is None and FAMILIES[name][0] == "llama" and not FAMILIES[name][1]:
                first = out
        except Exception:  # noqa: BLE001 - report and go on with the next family
            record(False, f"{name}: unexpected error", traceback.format_exc(limit=6).strip().splitlines()[-1])
            traceback.print_exc()
        print(f"note: {name}: {time.time() - t0:.0f} s", flush=True)
    if first is not None:
        try:
            run_tensor_parallel(ffnjit, torch, tf, work, cache, log, *first)
        except Exception:  # noqa: BLE001
            record(False, "tensor parallel: unexpected error", traceback.format_exc(limit=6).strip().splitlines()[-1])
            traceback.print_exc()
    print(f"CLI log: {log}")
    print(f"{results['passed']} passed, {results['failed']} failed, {results['skipped']} skipped")
    sys.exit(1 if results["failed"] else 0)


if __name__ == "__main__":
    main()
