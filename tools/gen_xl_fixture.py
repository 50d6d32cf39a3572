#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the Transformer-XL and Compressive Transformer parity fixtures
test/fixtures/{transformer_xl,compressive}_parity.safetensors: tiny models built in PyTorch
(tools/torch_xl.py) with the structure, parameter names, layouts and memory bookkeeping of
hseq::models::TransformerXl and hseq::models::CompressiveTransformer, a stream of S segments of
[B, T] ids and targets, every segment's logits and loss (and, for the Compressive Transformer, its
cross-entropy and compression terms), and every parameter's gradient summed over the S segments,
each segment's memories carried to the next (detached) as hseq's trainer does:

  transformer_xl_parity.safetensors   mem_len 8 > T = 6, clamp_len 5: the memory fills, slides
                                       and distances past 5 share one encoding
  compressive_parity.safetensors      conv compression at rate 2, the attention-reconstruction
                                       loss, mem_len 6, cmem_len 3: rows are evicted, compressed
                                       and the compressed memory slides within the stream

Before writing, the twin's relative attention is checked against an explicit loop over queries
and keys (float64, 1e-12 relative), so the direct indexing of distances is not merely the same
formula as hseq's, right or wrong.

    pip install torch safetensors numpy
    python3 tools/gen_xl_fixture.py
"""
import json
import math
import os
import sys

import numpy as np
import torch
from safetensors.numpy import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_lm import sinusoidal_table  # noqa: E402
from torch_xl import CompressiveTransformer, TransformerXl  # noqa: E402

B = 2
BASE = dict(vocab=32, dim=16, heads=2, layers=2, mlp_hidden=0, tied=True, eps=1e-5, init_std=0.02)
XL = dict(BASE, context=6, mem_len=8, clamp_len=5)
CT = dict(BASE, context=4, mem_len=6, cmem_len=3, clamp_len=0, loss="attn", loss_weight=0.5)
LOOP_TOL = 1e-12


def loop_attention(att, x, mem):
    """RelativeAttention by explicit loops (the file comment of include/hseq/nn/relative_attention.hpp)."""
    b, t, d = x.shape
    m = mem.shape[1]
    h, dh = att.h, d // att.h
    hcat = torch.cat([mem, x], 1)
    q = att.q(x)
    kv = att.kv(hcat)
    l = m + t
    dr = min(l, att.clamp + 1) if att.clamp > 0 else l
    rk = att.r(sinusoidal_table(dr, d, x.dtype))
    out = torch.zeros(b, t, d, dtype=x.dtype)
    for bb in range(b):
        for i in range(t):
            for hh in range(h):
                sl = slice(hh * dh, (hh + 1) * dh)
                qi = q[bb, i, sl]
                scores = []
                for j in range(m + i + 1):
                    delta = min(m + i - j, dr - 1)
                    s = (qi + att.u[hh]) @ kv[bb, j, sl] + (qi + att.v[hh]) @ rk[delta, sl]
                    scores.append(s / math.sqrt(dh))
                p = torch.stack(scores).softmax(0)
                out[bb, i, sl] = sum(p[j] * kv[bb, j, d + hh * dh: d + (hh + 1) * dh] for j in range(m + i + 1))
    return att.out(out)


def randomize(model, seed):
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    return model.double()


def self_check(model):
    att = model.blocks[0].attn
    x, mem = torch.randn(B, 5, BASE["dim"], dtype=torch.float64), torch.randn(B, 7, BASE["dim"], dtype=torch.float64)
    with torch.no_grad():
        a, b = att(x, mem), loop_attention(att, x, mem)
    dev = ((a - b).abs().max() / b.abs().max()).item()
    assert dev <= LOOP_TOL, f"the twin's relative attention differs from the loop: {dev}"
    return dev


def write(file, model, cfg, segments, t, compressive):
    torch.manual_seed(99)
    ids = torch.randint(0, cfg["vocab"], (segments, B, t))
    targets = torch.randint(0, cfg["vocab"], (segments, B, t))
    targets[1, 0, 2] = -1  # an ignored position
    d, layers = cfg["dim"], cfg["layers"]
    empty = torch.zeros(B, 0, d, dtype=torch.float64)
    state = [(empty, empty, empty) for _ in range(layers)] if compressive else [empty for _ in range(layers)]
    model.zero_grad(set_to_none=True)
    logits_all, losses, ces, comps = [], [], [], []
    for s in range(segments):
        if compressive:
            logits, loss, ce, comp, state = model(ids[s], targets[s], state)
            ces.append(ce.item())
            comps.append(comp.item())
        else:
            logits, loss, state = model(ids[s], targets[s], state)
        loss.backward()  # gradients add up over the segments
        logits_all.append(logits.detach())
        losses.append(loss.item())
    out = {"ids": ids.numpy().astype(np.int32), "targets": targets.numpy().astype(np.int32),
           "logits": torch.stack(logits_all).numpy().astype(np.float32)}
    for name, p in model.named_parameters():
        out["param." + name] = p.detach().numpy().astype(np.float32).copy()
        out["grad." + name] = p.grad.numpy().astype(np.float32).copy()
    # hseq's config JSON names the compile-time compression as "compress" and "rate" (a string).
    hseq_cfg = dict(cfg, rate=str(cfg["rate"])) if compressive else cfg
    meta = {"config": json.dumps(hseq_cfg), "batch": str(B), "seq_len": str(t), "segments": str(segments),
            "losses": json.dumps(losses), "generator": "tools/gen_xl_fixture.py, torch " + torch.__version__}
    if compressive:
        meta.update({"ce": json.dumps(ces), "compress": json.dumps(comps), "compress_fn": cfg["compress"],
                     "rate": str(cfg["rate"])})
    path = os.path.join(os.path.dirname(__file__), "..", "test", "fixtures", file)
    save_file(out, path, metadata=meta)
    print(f"wrote {os.path.normpath(path)}: {sum(1 for _ in model.parameters())} parameters, losses {losses}"
          + (f", compression terms {comps}" if compressive else ""))


def main():
    xl = randomize(TransformerXl(XL), 2024)
    print("loop check:", self_check(xl))
    write("transformer_xl_parity.safetensors", xl, XL, segments=4, t=6, compressive=False)
    ct_cfg = dict(CT, compress="conv", rate=2)
    ct = randomize(CompressiveTransformer(ct_cfg), 2025)
    print("loop check:", self_check(ct))
    write("compressive_parity.safetensors", ct, ct_cfg, segments=5, t=4, compressive=True)


if __name__ == "__main__":
    main()
