#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the TransformerLm parity fixtures test/fixtures/transformer_lm_*.safetensors: tiny
TransformerLms built in PyTorch with the exact structure, parameter names and layouts of
hseq::models::TransformerLm, their inputs, logits, loss, every parameter gradient, and the losses
of 5 AdamW steps on the same batch. One fixture per variant of the output head and positions:

  transformer_lm_parity.safetensors              tied head, learned positions (hseq's defaults)
  transformer_lm_untied_sinusoidal.safetensors   untied head (head.weight), sinusoidal positions
  transformer_lm_none.safetensors                tied head, no position encoding

Before writing, every model's hand-written attention is checked against PyTorch's own
F.scaled_dot_product_attention (float64, logits, loss and all gradients within 1e-12 relative), so
the twin's attention is not merely the same formula as hseq's, right or wrong.

The C++ test (test/models/test_transformer_lm_parity.cpp) loads these files, copies the parameters
into an hseq model, and compares. Python is needed only to regenerate the fixtures:

    pip install torch safetensors numpy
    python3 tools/gen_lm_fixture.py

Layout conventions shared with hseq (the classic parity traps, written down):
  * Linear weights are [out, in] (PyTorch's), y = x W^T + b.
  * Attention: q = Linear(d, d); kv = Linear(d, 2d) whose output columns [0, d) are the keys and
    [d, 2d) the values; head h owns columns [h*dh, (h+1)*dh) of q, k and v; out = Linear(d, d).
  * GELU is the tanh approximation; LayerNorm eps 1e-5.
  * tied: logits = LN_f(h) E^T with the token embedding E; untied: a bias-free Linear head.weight
    [vocab, d]. position learned: table pos_emb.weight [context, d]; sinusoidal: hseq's sinusoids
    (ops/position.hpp, no parameter); none: nothing added.
  * AdamW weight decay applies to Linear weights only (not to embeddings, LayerNorm, biases).
"""
import json
import os

import sys

import numpy as np
import torch
from safetensors.numpy import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_lm import TransformerLm, sdpa_deviation  # noqa: E402

CFG = dict(vocab=32, dim=16, heads=2, layers=2, context=12, mlp_hidden=0, position="learned", tied=True,
           eps=1e-5, init_std=0.02)
B, T = 2, 12
ADAMW = dict(lr=3e-3, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1, steps=5)
SDPA_TOL = 1e-12

# (file, config changes, seed). One layer for the variants keeps those files small; a context
# longer than T checks that only the first T sinusoids / table rows are used.
FIXTURES = [
    ("transformer_lm_parity.safetensors", {}, 1234),
    ("transformer_lm_untied_sinusoidal.safetensors", dict(layers=1, context=16, position="sinusoidal", tied=False), 4321),
    ("transformer_lm_none.safetensors", dict(layers=1, context=16, position="none"), 5678),
]


def write(file, changes, seed):
    cfg = dict(CFG, **changes)
    torch.manual_seed(seed)
    model = TransformerLm(cfg)
    # Non-trivial values everywhere (biases and LayerNorm parameters too), so no gradient hides.
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    # Reference values are computed in float64 from the float32-rounded parameters, so that the
    # fixture measures hseq's fp32 error only (PyTorch's own fp32 rounding would add as much again).
    model = model.double()
    ids = torch.randint(0, cfg["vocab"], (B, T))
    targets = torch.randint(0, cfg["vocab"], (B, T))
    targets[0, 3] = -1  # one ignored position

    dev = sdpa_deviation(model, ids, targets)
    assert max(dev.values()) <= SDPA_TOL, f"{file}: hand-written attention differs from F.scaled_dot_product_attention: {dev}"

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

    meta = {"config": json.dumps(cfg), "batch": str(B), "seq_len": str(T), "loss": repr(loss.item()),
            "adamw": json.dumps(ADAMW), "adamw_losses": json.dumps(losses),
            "generator": "tools/gen_lm_fixture.py, torch " + torch.__version__}
    path = os.path.join(os.path.dirname(__file__), "..", "test", "fixtures", file)
    save_file(out, path, metadata=meta)
    print(f"wrote {os.path.normpath(path)}: {sum(1 for _ in model.parameters())} parameters, loss {loss.item():.6f}, "
          f"AdamW losses {losses}; SDPA check {dev}")


def main():
    for file, changes, seed in FIXTURES:
        write(file, changes, seed)


if __name__ == "__main__":
    main()
