#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the HRED / HAED PyTorch parity fixtures test/fixtures/hierarchical_<variant>.safetensors
from the twin in tools/torch_hierarchical.py (full end-to-end training mode), all in float64:

  hierarchical_hred_gru.safetensors          rnn / rnn / rnn, GRU cells, 2 backbone + 2 decoder layers
  hierarchical_hred_lstm.safetensors         rnn / rnn / rnn, LSTM cells, 1 backbone + 2 decoder layers
  hierarchical_haed_rnn.safetensors          mlp / transformer / rnn (GRU), context > T
  hierarchical_haed_transformer.safetensors  mlp / transformer / transformer, mlp_hidden 12
  hierarchical_mixed_lstm.safetensors        rnn / transformer / transformer, LSTM encoder

Each holds the config (metadata "config": hseq's Hierarchical::config_json, policy names
included, so the C++ side refuses a fixture of another model type), seeded random parameters
(param.<name>: every tensor random, biases and LayerNorms too, so no gradient hides behind the
library's zeros and ones), ids and targets [B, T] (int32; three targets are -1, ignored), logits
[B, T, V], the loss (metadata, repr of the float64), every parameter gradient (grad.<name>), the
names of the parameters AdamW decays (metadata "decay"), and the losses after each of 5 AdamW
steps on the same batch (metadata "adamw", "adamw_losses"; the hyper-parameters of the other
parity fixtures; decay on matrices except embedding / position tables, as hseq's Param::decay).

Everything is float64 end to end, parameters included (unlike the fp32 TransformerLm / Hourglass
fixtures), so the C++ test (test/models/test_hierarchical_parity.cpp, in double) can hold hseq to
1e-10 relative: any wrong term shows as a much larger error.

Before writing, the twin's hand-written pieces are checked against PyTorch's own modules in
float64 within 1e-12 relative: each GRU / LSTM cell against torch.nn.GRU / nn.LSTM with copied
weights (outputs, final state and all gradients, from a non-zero initial state), and each whole
model with every cell run through torch.nn.GRU / nn.LSTM and every attention through
F.scaled_dot_product_attention (logits, loss and all gradients). The script stops if either differs.

Regenerate (Python only; the C++ test needs none):

    pip install torch safetensors numpy
    python3 tools/gen_hierarchical_fixture.py
"""
import json
import os
import sys

import numpy as np
import torch
from safetensors.numpy import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_hierarchical import Hierarchical, cell_deviation, reference_deviation  # noqa: E402

B, T = 2, 16
ADAMW = dict(lr=3e-3, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1, steps=5)
REF_TOL = 1e-12
IGNORED = [(0, 3), (1, 0), (1, 15)]  # targets set to -1: a middle, the first and the last position

# hseq's Config fields (all of them: nlohmann's intrusive macro requires every key) and the policies.
BASE = dict(vocab=32, dim=8, heads=2, layers=1, decoder_layers=1, mlp_hidden=0, cell="gru", context=16,
            eps=1e-5, init_std=0.02, segment="fixed4")

# (variant, config changes, seed). dim 8 against K 4 makes the MLP encoder's [K d] flatten and the
# RNN decoder's [x; c] input (2d) differ from every other width, so a wrong layout shows.
FIXTURES = [
    ("hred_gru", dict(encoder="rnn", backbone="rnn", decoder="rnn", cell="gru", layers=2, decoder_layers=2), 11),
    ("hred_lstm", dict(encoder="rnn", backbone="rnn", decoder="rnn", cell="lstm", layers=1, decoder_layers=2), 12),
    # context 24: 6 backbone positions for 4 segments, so only the first N rows of the table may be used.
    ("haed_rnn", dict(encoder="mlp", backbone="transformer", decoder="rnn", cell="gru", layers=2, decoder_layers=1,
                      context=24), 13),
    ("haed_transformer", dict(encoder="mlp", backbone="transformer", decoder="transformer", layers=1,
                              decoder_layers=2, mlp_hidden=12), 14),
    ("mixed_lstm", dict(encoder="rnn", backbone="transformer", decoder="transformer", cell="lstm", layers=1,
                        decoder_layers=1), 15),
]


def check_cells():
    for kind in ("gru", "lstm"):
        for inp, hidden, seed in ((8, 8, 1), (16, 8, 2), (5, 3, 3)):
            dev = cell_deviation(kind, inp, hidden, seed)
            assert max(dev.values()) <= REF_TOL, f"hand-written {kind} cell differs from torch.nn: {dev}"
    print("cells: hand-written GRU / LSTM match torch.nn.GRU / nn.LSTM within", REF_TOL)


def randomise(model):
    """Random values everywhere; LayerNorm gains around 1 (so the normalised paths keep their scale)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 and name.endswith("weight"):  # the only vectors called weight are LayerNorm gains
                p.copy_(1 + 0.2 * torch.randn_like(p))
            else:
                p.copy_(0.4 * torch.randn_like(p))


def write(variant, changes, seed):
    cfg = dict(BASE, **changes)
    torch.manual_seed(seed)
    model = Hierarchical(cfg).double()
    randomise(model)
    ids = torch.randint(0, cfg["vocab"], (B, T))
    targets = torch.randint(0, cfg["vocab"], (B, T))
    for b, t in IGNORED:
        targets[b, t] = -1

    dev = reference_deviation(model, ids, targets)
    assert max(dev.values()) <= REF_TOL, f"{variant}: the twin differs from PyTorch's own modules: {dev}"

    logits, loss = model(ids, targets)
    loss.backward()
    out = {"ids": ids.numpy().astype(np.int32), "targets": targets.numpy().astype(np.int32),
           "logits": logits.detach().numpy().copy()}
    named = list(model.named_parameters())
    for name, p in named:
        assert p.grad is not None and p.grad.abs().max() > 0, f"{variant}: {name} has no gradient"
        out["param." + name] = p.detach().numpy().copy()
        out["grad." + name] = p.grad.numpy().copy()

    opt = torch.optim.AdamW(model.param_groups(ADAMW["weight_decay"]), lr=ADAMW["lr"],
                            betas=(ADAMW["beta1"], ADAMW["beta2"]), eps=ADAMW["eps"])
    losses = []
    for _ in range(ADAMW["steps"]):
        opt.step()
        opt.zero_grad()
        _, l = model(ids, targets)
        l.backward()
        losses.append(l.item())

    decay = [n for n, p in named if Hierarchical.decays(n, p)]
    meta = {"config": json.dumps(cfg), "batch": str(B), "seq_len": str(T), "loss": repr(loss.item()),
            "adamw": json.dumps(ADAMW), "adamw_losses": json.dumps(losses), "decay": json.dumps(decay),
            "reference_check": json.dumps(dev),
            "generator": "tools/gen_hierarchical_fixture.py, torch " + torch.__version__}
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fixtures",
                        f"hierarchical_{variant}.safetensors")
    for v in out.values():  # safetensors wants contiguous arrays of a fixed dtype
        assert v.flags["C_CONTIGUOUS"] and v.dtype in (np.int32, np.float64)
    save_file(out, path, metadata=meta)
    print(f"wrote {os.path.normpath(path)} ({os.path.getsize(path)} bytes): {len(named)} parameters, "
          f"loss {loss.item():.6f}, AdamW losses {[round(x, 6) for x in losses]}; reference check {dev}")


def main():
    check_cells()
    for variant, changes, seed in FIXTURES:
        write(variant, changes, seed)


if __name__ == "__main__":
    main()
