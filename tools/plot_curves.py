#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Plots validation bits per character against training wall-clock time from CSV logs written by
hseq-train --csv (and bench/peer_pytorch_lm.py, which writes the same columns).

    python3 tools/plot_curves.py --out docs/img/curve.png hseq=bench/results/x/hseq.csv pytorch=bench/results/x/pytorch.csv
"""
import argparse
import csv

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read(path):
    xs, ys = [], []
    with open(path) as f:
        for row in csv.DictReader(f):
            v = row.get("val_bpc", "")
            if v not in ("", "nan"):
                xs.append(float(row["seconds"]))
                ys.append(float(v))
    return xs, ys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--title", default="validation bpc vs training time")
    ap.add_argument("runs", nargs="+", help="label=path.csv")
    args = ap.parse_args()
    plt.figure(figsize=(7, 4.5))
    for spec in args.runs:
        label, path = spec.split("=", 1)
        xs, ys = read(path)
        plt.plot(xs, ys, marker="o", markersize=3, label=f"{label} (final {ys[-1]:.3f})")
    plt.xlabel("training time (s, validation excluded)")
    plt.ylabel("validation bits per character")
    plt.title(args.title)
    plt.grid(alpha=0.3)
    plt.legend()
    plt.tight_layout()
    plt.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
