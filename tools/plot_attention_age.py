#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Draws the attention-by-age CSV of bench/hseq_attention_by_age (bench/compressive_claims.sh age):
the average attention weight per key of each age bucket, oldest left (compressed memory, memory,
the segment itself), one bar per bucket for the layers' mean and a dot per layer.

    python3 tools/plot_attention_age.py bench/results/compressive_claims/age/age.csv --out age.png
"""
import argparse
import csv

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"compressed": "#c0504d", "memory": "#4f81bd", "segment": "#9bbb59"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("--out", required=True)
    ap.add_argument("--title", default="Compressive Transformer: attention by age")
    a = ap.parse_args()
    rows = list(csv.DictReader(open(a.csv)))
    order = []  # (region, bucket) oldest first, as the CSV lists them
    for r in rows:
        key = (r["region"], int(r["bucket"]))
        if key not in order:
            order.append(key)
    mean = {(r["region"], int(r["bucket"])): r for r in rows if r["layer"] == "all"}
    layers = sorted({r["layer"] for r in rows if r["layer"] != "all"}, key=int)
    fig, ax = plt.subplots(figsize=(8, 4))
    xs = range(len(order))
    ax.bar(xs, [float(mean[k]["attention"]) for k in order], color=[COLORS[k[0]] for k in order],
           label=None)
    for layer in layers:
        per = {(r["region"], int(r["bucket"])): float(r["attention"]) for r in rows if r["layer"] == layer}
        ax.plot(xs, [per[k] for k in order], "o", ms=3, color="black", alpha=0.35 + 0.5 * int(layer) / max(1, len(layers) - 1))
    labels = []
    for k in order:
        m = mean[k]
        labels.append("segment" if k[0] == "segment" else f"{k[0][:4]}\n{m['first_age']}-{m['last_age']}")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_xlabel("key age in bytes before the segment (oldest left); bars: layers' mean, dots: each layer")
    ax.set_ylabel("mean attention weight per key")
    ax.set_title(a.title)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in COLORS.values()]
    ax.legend(handles, ["compressed memory", "memory", "segment"], fontsize=8)
    fig.tight_layout()
    fig.savefig(a.out, dpi=120)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
