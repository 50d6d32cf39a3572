#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Reconstruction accuracy against training time for the length-reduction autoencoder sweep
(bench/autoencoder_sweep.sh, docs/performance.md): one panel per data set and window, one line
per reduction (colour) and query source (line style), from the val_accuracy column of every
<data>_w<window>_r<reduction>_<queries>.csv (held-out windows, evaluated during training; the
seconds column is training time only). The left figure is the accuracy, the right one the error
rate 1 - accuracy on a log scale (the 1/2 runs differ only there).

    python3 tools/plot_autoencoder_curves.py bench/results/autoencoder
    (writes bench/results/autoencoder/accuracy_vs_time.png; needs matplotlib)
"""
import csv
import math
import os
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

NAME = re.compile(r"^(?P<data>[a-z]+)_w(?P<window>\d+)_r(?P<reduce>\d+)_(?P<queries>[a-z]+)\.csv$")
COLOURS = {"2": "tab:blue", "4": "tab:orange", "8": "tab:red"}
STYLES = {"pool": "-", "bank": "--", "mix": ":"}


def read_curve(path):
    """(seconds, accuracy) of the rows with a validation."""
    out = []
    with open(path, newline="") as f:
        rows = csv.DictReader(f)
        if "val_accuracy" not in (rows.fieldnames or []):
            return out
        for row in rows:
            acc = float(row["val_accuracy"])
            if not math.isnan(acc):
                out.append((float(row["seconds"]), acc))
    return out


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else "bench/results/autoencoder"
    runs = {}
    for name in sorted(os.listdir(folder)):
        m = NAME.match(name)
        if not m:
            continue
        curve = read_curve(os.path.join(folder, name))
        if curve:
            runs[(m["data"], int(m["window"]), m["reduce"], m["queries"])] = curve
    if not runs:
        sys.exit(f"no <data>_w<window>_r<reduction>_<queries>.csv with a val_accuracy column in {folder}")
    panels = sorted({(d, w) for d, w, _, _ in runs})
    fig, axes = plt.subplots(len(panels), 2, figsize=(11, 3.2 * len(panels)), squeeze=False)
    for row, (data, window) in enumerate(panels):
        acc_ax, err_ax = axes[row]
        for (d, w, r, q), curve in sorted(runs.items()):
            if (d, w) != (data, window):
                continue
            t = [p[0] for p in curve]
            a = [p[1] for p in curve]
            style = dict(color=COLOURS.get(r, "k"), linestyle=STYLES.get(q, "-."), label=f"1/{r} {q}")
            acc_ax.plot(t, a, **style)
            err_ax.plot(t, [max(1 - v, 1e-5) for v in a], **style)
        acc_ax.set_title(f"{data}, window {window}: token accuracy (held out)")
        acc_ax.set_ylim(0, 1.01)
        err_ax.set_title(f"{data}, window {window}: 1 - accuracy")
        err_ax.set_yscale("log")
        for ax in (acc_ax, err_ax):
            ax.set_xlabel("training seconds (2 cores)")
            ax.grid(True, alpha=0.3)
        acc_ax.legend(fontsize=7, ncol=3, loc="lower right")
    fig.tight_layout()
    path = os.path.join(folder, "accuracy_vs_time.png")
    fig.savefig(path, dpi=110)
    print(f"wrote {path} ({len(runs)} runs)")


if __name__ == "__main__":
    main()
