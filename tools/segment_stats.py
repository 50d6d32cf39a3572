#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Segment statistics of hseq's data-dependent segmentation rules over a corpus (issue 19), the
threshold of an entropy rule for a target mean segment length, and a plot of the boundaries on a
sample text. The rules are tools/torch_hourglass.py's twins of hier::ByteRule (checked against hseq
by the parity fixture); the entropies come from an hseq-train transformer checkpoint loaded into
tools/torch_lm.py's twin (same parameter names).

    python3 tools/segment_stats.py --corpus build/kjv.txt --rules space word fixed:4
    python3 tools/segment_stats.py --corpus build/kjv.txt --lm lm.safetensors --target 5.4
    python3 tools/segment_stats.py --corpus build/kjv.txt --rules space word fixed:4 \\
        --lm lm.safetensors --entropy 1.9 --plot docs/img_segment_boundaries.png

Statistics are over --bytes bytes (default 200000) from the start of the training split (the first
90 % of the file, as hseq's TextDataset splits it), in windows of --window bytes (each row starts
its rules afresh, as a training window does): bytes per segment (mean) and its coefficient of
variation, and how well boundaries agree with word ends (precision/recall of emits against
whitespace bytes that follow a non-whitespace one).
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_hourglass import parse_rule, rule_emits, whitespace  # noqa: E402


def windows(data, window, limit):
    n = min(len(data), limit)
    return [list(data[i:i + window]) for i in range(0, n - window + 1, window)]


def lm_entropies(path, rows):
    """H_t (nats) of the checkpoint's next-byte prediction from x_{<=t}, per row, in float64."""
    import torch
    from safetensors import safe_open
    from torch_lm import TransformerLm
    with safe_open(path, "pt") as f:
        meta = f.metadata()
        if meta.get("hseq.model_kind") != "transformer_lm":
            sys.exit(f"{path}: a '{meta.get('hseq.model_kind')}' checkpoint, not transformer_lm")
        cfg = json.loads(meta["hseq.model_config"])
        model = TransformerLm(cfg).double()
        state = {n: f.get_tensor(n).double() for n in model.state_dict()}
    model.load_state_dict(state)
    out = []
    with torch.no_grad():
        for i in range(0, len(rows), 16):
            ids = torch.tensor(rows[i:i + 16])
            logits, _ = model(ids)
            logp = logits.log_softmax(-1)
            out.extend((-(logp.exp() * logp).sum(-1)).numpy())
    return out


def emits_of(rule, row, scores=None):
    kind, n, maxlen = rule
    if kind in ("entropy", "entropy_rise"):  # hier::ByteRule's entropy kinds
        emits, prev, since = [], 0.0, 0
        for t, h in enumerate(scores):
            e = h > n if kind == "entropy" else h - prev > n
            prev = h
            if t == 0 or (maxlen and since >= maxlen):
                e = True
            if e:
                emits.append(t)
                since = 1
            else:
                since += 1
        return emits
    return rule_emits(rule, row)


def parse(text):
    body, _, maxlen = text.partition("/")
    name, _, arg = body.partition(":")
    if name in ("entropy", "entropy_rise"):
        return (name, float(arg), int(maxlen) if maxlen else 0)
    return parse_rule(text)


def stats(rows, emits):
    lengths, tp, fp, fn = [], 0, 0, 0
    for row, e in zip(rows, emits):
        lengths.extend(np.diff(e + [len(row) - 1]) if len(e) > 1 else [len(row)])
        ends = {t for t in range(1, len(row)) if whitespace(row[t]) and not whitespace(row[t - 1])}
        es = set(e) - {0}
        tp += len(es & ends)
        fp += len(es - ends)
        fn += len(ends - es)
    total = sum(len(r) for r in rows)
    segs = sum(len(e) for e in emits)
    lengths = np.array(lengths, dtype=float)
    return dict(bytes_per_segment=total / segs, cv=float(lengths.std() / lengths.mean()),
                precision=tp / max(tp + fp, 1), recall=tp / max(tp + fn, 1))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--rules", nargs="*", default=[])
    ap.add_argument("--lm", help="hseq-train transformer checkpoint (entropy rules)")
    ap.add_argument("--target", type=float, nargs="*", default=[],
                    help="mean bytes per segment to calibrate entropy thresholds for")
    ap.add_argument("--entropy", type=float, nargs="*", default=[], help="entropy thresholds to report")
    ap.add_argument("--bytes", type=int, default=200000)
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--plot", help="PNG of the boundaries of every rule on a sample text")
    ap.add_argument("--sample", type=int, default=160, help="bytes of the plotted sample")
    a = ap.parse_args()
    data = open(a.corpus, "rb").read()
    data = data[:int(len(data) * 0.9)]
    rows = windows(data, a.window, a.bytes)
    rules = {r: parse(r) for r in a.rules}
    scores = None
    if a.lm:
        scores = lm_entropies(a.lm, rows)
        flat = np.concatenate(scores)
        for target in a.target:
            # A global threshold that emits at a fraction 1/target of the positions (position 0
            # always emits, so the quantile is taken over the others).
            theta = float(np.quantile(flat, 1.0 - 1.0 / target))
            print(f"entropy threshold for {target} bytes per segment: {theta!r}")
            rules[f"entropy:{theta:.4f}"] = ("entropy", theta, 0)
        for theta in a.entropy:
            rules[f"entropy:{theta}"] = ("entropy", theta, 0)
    print(f"corpus {a.corpus}: {len(rows)} windows of {a.window} bytes from the training split")
    print(f"{'rule':<24} {'bytes/segment':>14} {'cv':>6} {'precision':>10} {'recall':>8}")
    for name, rule in rules.items():
        emits = [emits_of(rule, r, s) for r, s in zip(rows, scores if scores is not None else [None] * len(rows))]
        s = stats(rows, emits)
        print(f"{name:<24} {s['bytes_per_segment']:>14.3f} {s['cv']:>6.2f} {s['precision']:>10.3f} {s['recall']:>8.3f}")
    if a.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        row = rows[3][:a.sample]
        sc = scores[3][:a.sample] if scores is not None else None
        names = list(rules)
        fig, ax = plt.subplots(figsize=(16, 0.9 * len(names) + 1.2))
        for k, name in enumerate(names):
            e = set(emits_of(rules[name], row, sc))
            y = len(names) - k
            for t, b in enumerate(row):
                ch = "␣" if b == 32 and t in e else chr(b) if 32 <= b < 127 else "·"
                ax.text(t, y, ch, ha="center", va="center", family="monospace", fontsize=7,
                        color="crimson" if t in e else "black", weight="bold" if t in e else "normal")
                if t in e:
                    ax.axvline(t + 0.5, ymin=(y - 0.45) / (len(names) + 1), ymax=(y + 0.45) / (len(names) + 1),
                               color="crimson", lw=0.8)
            ax.text(-2, y, name, ha="right", va="center", fontsize=8)
        ax.set_xlim(-30, len(row) + 1)
        ax.set_ylim(0.3, len(names) + 0.7)
        ax.axis("off")
        ax.set_title("segment boundaries (red: the byte that closes a segment)", fontsize=9)
        fig.savefig(a.plot, dpi=130, bbox_inches="tight")
        print(f"wrote {a.plot}")


if __name__ == "__main__":
    main()
