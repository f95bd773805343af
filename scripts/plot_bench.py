#!/usr/bin/env python3
"""Plots `ffnjit bench --csv` output: speedup (dense time / ffnjit time) against
tokens, one line per sparsity level k (synthetic) or per checkpoint layer and row kind
(`--checkpoint`, plus the whole model), log-scaled tokens, the 1.0 line marked.

usage: plot_bench.py BENCH_CSV OUT_PNG [--title TEXT]
needs matplotlib (pip install matplotlib)
"""
import argparse
import csv
import sys
from collections import defaultdict


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv_path")
    ap.add_argument("png_path")
    ap.add_argument("--title", default=None)
    args = ap.parse_args()
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot_bench.py: matplotlib is missing; pip install matplotlib", file=sys.stderr)
        return 2
    lines = defaultdict(list)  # label -> [(tokens, ratio)]
    model = defaultdict(lambda: [0.0, 0.0])  # (rows, tokens) -> [dense_us, ffnjit_us] summed over layers
    shape = None
    with open(args.csv_path, newline="") as f:
        for row in csv.DictReader(f):
            layer = int(row.get("layer", "-1"))
            kind = row.get("rows") or ("heavy" if row.get("heavy", "0") == "1" else "uniform")
            label = f"layer {layer} ({kind})" if layer >= 0 else f"k = {row['k']} ({kind})"
            lines[label].append((int(row["tokens"]), float(row["ratio"])))
            if layer >= 0:
                m = model[(kind, int(row["tokens"]))]
                m[0] += float(row["dense_us"])
                m[1] += float(row["ffnjit_us"])
            shape = f'd_model {row["d_model"]}, d_ff {row["d_ff"]}, {"gated" if row["gated"] == "1" else "non-gated"}'
    for (kind, tokens), (d, t) in model.items():
        if t > 0:
            lines[f"whole model ({kind})"].append((tokens, d / t))
    if not lines:
        print(f"plot_bench.py: {args.csv_path} has no rows", file=sys.stderr)
        return 1
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for label, pts in sorted(lines.items()):
        pts.sort()
        ax.plot([t for t, _ in pts], [r for _, r in pts], marker="o", linewidth=2.5 if "whole" in label else 1.2,
                label=label)
    ax.axhline(1.0, color="gray", linestyle="--", linewidth=1)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("tokens")
    ax.set_ylabel("speedup over dense (dense us / ffnjit us)")
    ax.set_title(args.title or f"ffnjit bench: {shape}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.png_path)
    print(f"wrote {args.png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
