#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes test/fixtures/transformer_lm_parity.safetensors: a tiny TransformerLm built in PyTorch
with the exact structure, parameter names and layouts of hseq::models::TransformerLm, its inputs,
logits, loss, every parameter gradient, and the losses of 5 AdamW steps on the same batch.

The C++ test (test/models/test_transformer_lm_parity.cpp) loads this file, copies the parameters
into an hseq model, and compares. Python is needed only to regenerate the fixture:

    pip install torch safetensors numpy
    python3 tools/gen_lm_fixture.py

Layout conventions shared with hseq (the classic parity traps, written down):
  * Linear weights are [out, in] (PyTorch's), y = x W^T + b.
  * Attention: q = Linear(d, d); kv = Linear(d, 2d) whose output columns [0, d) are the keys and
    [d, 2d) the values; head h owns columns [h*dh, (h+1)*dh) of q, k and v; out = Linear(d, d).
  * GELU is the tanh approximation; LayerNorm eps 1e-5; the output projection is tied to the
    token embedding; positions are a learned table.
  * AdamW weight decay applies to Linear weights only (not to embeddings, LayerNorm, biases).
"""
import json
import os

import sys

import numpy as np
import torch
from safetensors.numpy import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_lm import TransformerLm  # noqa: E402

CFG = dict(vocab=32, dim=16, heads=2, layers=2, context=12, mlp_hidden=0, position="learned", tied=True,
           eps=1e-5, init_std=0.02)
B, T = 2, 12
ADAMW = dict(lr=3e-3, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1, steps=5)


def main():
    torch.manual_seed(1234)
    model = TransformerLm(CFG)
    # Non-trivial values everywhere (biases and LayerNorm parameters too), so no gradient hides.
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    # Reference values are computed in float64 from the float32-rounded parameters, so that the
    # fixture measures hseq's fp32 error only (PyTorch's own fp32 rounding would add as much again).
    model = model.double()
    ids = torch.randint(0, CFG["vocab"], (B, T))
    targets = torch.randint(0, CFG["vocab"], (B, T))
    targets[0, 3] = -1  # one ignored position

    logits, loss = model(ids, targets)
    loss.backward()
    out = {"ids": ids.numpy().astype(np.int32), "targets": targets.numpy().astype(np.int32),
           "logits": logits.detach().numpy().astype(np.float32)}
    for name, p in model.named_parameters():
        out["param." + name] = p.detach().numpy().astype(np.float32).copy()
        out["grad." + name] = p.grad.numpy().astype(np.float32).copy()

    opt = torch.optim.AdamW(model.param_groups(ADAMW["weight_decay"]), lr=ADAMW["lr"],
                            betas=(ADAMW["beta1"], ADAMW["beta2"]), eps=ADAMW["eps"])
    losses = []
    for _ in range(ADAMW["steps"]):
        opt.step()
        opt.zero_grad()
        _, l = model(ids, targets)
        l.backward()
        losses.append(l.item())

    meta = {"config": json.dumps(CFG), "batch": str(B), "seq_len": str(T), "loss": repr(loss.item()),
            "adamw": json.dumps(ADAMW), "adamw_losses": json.dumps(losses),
            "generator": "tools/gen_lm_fixture.py, torch " + torch.__version__}
    path = os.path.join(os.path.dirname(__file__), "..", "test", "fixtures", "transformer_lm_parity.safetensors")
    save_file(out, path, metadata=meta)
    print(f"wrote {os.path.normpath(path)}: loss {float(loss):.6f}, AdamW losses {losses}")


if __name__ == "__main__":
    main()
