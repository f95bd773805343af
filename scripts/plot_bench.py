#!/usr/bin/env python3
"""Plots `ffnjit bench --csv` output: speedup (dense time / ffnjit time) against
tokens, one line per sparsity level k, log-scaled tokens, the 1.0 line marked.

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
    lines = defaultdict(list)  # (k, heavy) -> [(tokens, ratio)]
    shape = None
    with open(args.csv_path, newline="") as f:
        for row in csv.DictReader(f):
            key = (int(row["k"]), row.get("heavy", "0") == "1")
            lines[key].append((int(row["tokens"]), float(row["ratio"])))
            shape = f'd_model {row["d_model"]}, d_ff {row["d_ff"]}, {"gated" if row["gated"] == "1" else "non-gated"}'
    if not lines:
        print(f"plot_bench.py: {args.csv_path} has no rows", file=sys.stderr)
        return 1
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for (k, heavy), pts in sorted(lines.items()):
        pts.sort()
        ax.plot([t for t, _ in pts], [r for _, r in pts], marker="o",
                label=f"k = {k}" + (" (heavy-tailed)" if heavy else ""))
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
