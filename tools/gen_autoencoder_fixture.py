#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the SeqAutoencoder PyTorch parity fixtures from the twin in tools/torch_autoencoder.py,
all in float64:

  autoencoder_parity.safetensors      R = 2, two steps, query bank; window 16 > n = 8, so only the
                                       first n_out rows of every bank and the first n rows of both
                                       position tables are used (the rest get zero gradient)
  autoencoder_parity_mix.safetensors  R = 2, two steps, length mix (the length is the window, 8)
  autoencoder_parity_padded.safetensors
                                       R = 2, two steps, pooled queries, window = n = 7, which R
                                       does not divide: 7 -> 4 -> 2, so the first reducer's last
                                       group has one valid row (its pooled query is that row, not
                                       half of it) and the first expander cuts its eighth row
  autoencoder_parity_padded_bank.safetensors
                                       R = 2, two steps, query bank, window = n = 7: the banks are
                                       sized with ceil ([4, d] and [7, d] at step 0, [2, d] and
                                       [4, d] at step 1), every row used

Each holds the config (metadata "config": exactly hseq's SeqAutoencoder::config_json, keys sorted,
compact, with "reduce" and "queries", so the C++ side refuses a fixture of another model type),
seeded random parameters (param.<name>: N(0, 0.3^2) everywhere, biases and mixes too, LayerNorm
gains 1 + N(0, 0.1^2), so no gradient hides behind the library's zeros and ones; query banks
N(0, 1), the scale of the unit-RMS LayerNorm rows that the other sources' queries are made of: at
0.3 the bank's queries are so short that the first reducer's attention stays within a few percent
of uniform), ids [B, n] and targets = ids with one position -1 (int32),
logits [B, n, V], the latent [B, m, d] (m = n_S, n_s = ceil(n_{s-1} / R); hseq's latent_length(n)),
the loss (metadata, repr of the float64; "batch" and "seq_len" give B and n) and every parameter
gradient (grad.<name>).

Before writing, the twin is checked against PyTorch's own pieces in float64 within 1e-12
relative (every attention through F.scaled_dot_product_attention, pooled queries through
F.avg_pool1d, with ceil_mode for a partial group, and repeat_interleave: logits, latent, loss and
all gradients); for a length R does not divide, the pooled queries of the reducers (partial last
group: the mean of its valid rows) and the expanders (rows past n cut) are also checked on their
own against an explicit loop over the rows, values and gradients, and F.avg_pool1d's partial window
is checked to divide by the valid rows (with count_include_pad either way: padding 0 is not
counted); every parameter must have a gradient, and
every attention must be neither near uniform nor saturated (its largest probability at least
15% of the way from uniform 1 / Tk to one-hot, and at most 0.99), so the softmax's Jacobian
weighs in the gradients; the seeds are ones that pass. The C++ test
(test/models/test_seq_autoencoder.cpp, in double) holds hseq to 1e-10 relative.

Regenerate (Python only; the C++ test needs none):

    pip install torch safetensors numpy
    python3 tools/gen_autoencoder_fixture.py
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_autoencoder import Attention, PooledQueries, SeqAutoencoder, ceil_div, reference_deviation  # noqa: E402

B = 2
REF_TOL = 1e-12
IGNORED = (0, 3)  # target set to -1
PEAK_MIN, PEAK_MAX = 0.15, 0.99  # bounds of every attention's largest probability (see write)

# hseq's Config fields (all of them: nlohmann's intrusive macro requires every key) and the
# compile-time choices. dim 8 keeps the float64 files small.
BASE = dict(vocab=32, dim=8, heads=2, enc_layers=1, dec_layers=1, window=16, steps=2, mlp_hidden=0,
            residual=True, tied=True, eps=1e-5, init_std=0.02, reduce="2")

# (file, config changes, length n, seed)
FIXTURES = [
    ("autoencoder_parity.safetensors", dict(queries="bank"), 8, 33),
    ("autoencoder_parity_mix.safetensors", dict(queries="mix", window=8), 8, 32),
    ("autoencoder_parity_padded.safetensors", dict(queries="pool", window=7), 7, 13),
    ("autoencoder_parity_padded_bank.safetensors", dict(queries="bank", window=7), 7, 1),
]


def hseq_json(cfg):
    """nlohmann::json::dump of the config: keys sorted, no spaces (1e-05 and 0.02 print alike)."""
    return json.dumps(cfg, sort_keys=True, separators=(",", ":"))


def randomise(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 and name.endswith("weight"):  # the only vectors called weight are LayerNorm gains
                p.copy_(1 + 0.1 * torch.randn_like(p))
            elif name.endswith(".query.bank"):  # stands for a query input: unit scale, as LN_e's rows
                p.copy_(torch.randn_like(p))
            else:
                p.copy_(0.3 * torch.randn_like(p))


def peak_probabilities(model):
    """The largest attention probability of each attention in the last forward, against uniform 1 / Tk."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, Attention) and m.probs is not None:
            out[name] = (m.probs.max().item(), 1.0 / m.probs.shape[-1])
    return out


def check_pooled_partial(r, n, d=3, seed=0):
    """PooledQueries for a length n that r does not divide against an explicit loop over the rows:
    the reducer's group i is the mean of rows i r .. min(i r + r, n) - 1 (the partial last group over
    its valid rows only), the expander's row t is x[t // r] for t < n; values and the gradient of a
    random linear function of the output, hand-written and reference paths, within 1e-14 relative.
    Also that F.avg_pool1d's ceil-mode window divides by the valid rows whatever count_include_pad."""
    assert n % r, (n, r)
    m = ceil_div(n, r)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, n, d, dtype=torch.float64, generator=g)
    w_red = torch.randn(B, m, d, dtype=torch.float64, generator=g)
    w_exp = torch.randn(B, n, d, dtype=torch.float64, generator=g)
    y_red = torch.stack([x[:, i * r:min(i * r + r, n)].sum(1) / (min(i * r + r, n) - i * r) for i in range(m)], 1)
    gx_red = torch.stack([w_red[:, j // r] / (min(j // r * r + r, n) - j // r * r) for j in range(n)], 1)
    xm = x[:, :m]
    y_exp = torch.stack([xm[:, t // r] for t in range(n)], 1)
    gx_exp = torch.stack([w_exp[:, [t for t in range(n) if t // r == i]].sum(1) for i in range(m)], 1)
    for cip in (False, True):
        pooled = F.avg_pool1d(x.transpose(1, 2), r, ceil_mode=True, count_include_pad=cip).transpose(1, 2)
        assert (pooled - y_red).abs().max() <= 1e-14 * y_red.abs().max(), f"avg_pool1d count_include_pad={cip}"
    cases = ((True, x, y_red, w_red, gx_red, m), (False, xm, y_exp, w_exp, gx_exp, n))
    for reduce, inp, want, w, want_g, n_out in cases:
        for ref in (False, True):
            q = PooledQueries(r, reduce)
            q.reference = ref
            xi = inp.clone().requires_grad_(True)
            y = q(xi, n_out)
            (y * w).sum().backward()
            what = f"PooledQueries(reduce={reduce}, reference={ref}) at n = {n}, R = {r}"
            assert y.shape == want.shape, (what, y.shape, want.shape)
            assert (y - want).abs().max() <= 1e-14 * want.abs().max(), what
            assert (xi.grad - want_g).abs().max() <= 1e-14 * want_g.abs().max(), what + " (gradient)"


def write(file, changes, t, seed):
    cfg = dict(BASE, **changes)
    torch.manual_seed(seed)
    model = SeqAutoencoder(cfg).double()
    randomise(model)
    r = int(cfg["reduce"])
    lengths = model.step_lengths(t)
    for n in lengths[:-1]:
        if n % r:
            check_pooled_partial(r, n)
    ids = torch.randint(0, cfg["vocab"], (B, t))
    targets = ids.clone()  # an autoencoder reconstructs its input
    targets[IGNORED] = -1

    dev = reference_deviation(model, ids, targets)
    assert max(dev.values()) <= REF_TOL, f"{file}: the twin differs from PyTorch's own pieces: {dev}"

    logits, loss, latent = model(ids, targets)
    loss.backward()
    peaks = peak_probabilities(model)
    assert len(peaks) == cfg["enc_layers"] + cfg["dec_layers"] + 2 * cfg["steps"], peaks
    for name, (peak, uniform) in peaks.items():
        # Measured from uniform towards one-hot, not as a multiple of uniform: over 2 keys (the
        # last expander's latent rows) twice uniform is one-hot, which only a saturated softmax
        # (no gradient through the scores) reaches.
        assert peak >= uniform + PEAK_MIN * (1 - uniform), \
            f"{file}: attention {name} is nearly uniform (peak {peak}, uniform {uniform})"
        assert peak <= PEAK_MAX, f"{file}: attention {name} is saturated (peak {peak})"
    assert latent.shape == (B, lengths[-1], cfg["dim"]) and logits.shape == (B, t, cfg["vocab"])
    out = {"ids": ids.numpy().astype(np.int32), "targets": targets.numpy().astype(np.int32),
           "logits": logits.detach().numpy().copy(), "latent": latent.detach().numpy().copy()}
    named = list(model.named_parameters())
    for name, p in named:
        assert p.grad is not None and p.grad.abs().max() > 0, f"{file}: {name} has no gradient"
        out["param." + name] = p.detach().numpy().copy()
        out["grad." + name] = p.grad.numpy().copy()

    meta = {"config": hseq_json(cfg), "batch": str(B), "seq_len": str(t), "loss": repr(loss.item()),
            "reference_check": json.dumps(dev),
            "generator": "tools/gen_autoencoder_fixture.py, torch " + torch.__version__}
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fixtures", file)
    for v in out.values():  # safetensors wants contiguous arrays of a fixed dtype
        assert v.flags["C_CONTIGUOUS"] and v.dtype in (np.int32, np.float64)
    save_file(out, path, metadata=meta)
    print(f"wrote {os.path.normpath(path)} ({os.path.getsize(path)} bytes): lengths {lengths}, "
          f"{len(named)} parameters, "
          f"loss {loss.item():.6f}; reference check {dev}; peak attention probabilities "
          f"{ {n: round(p, 3) for n, (p, _) in peaks.items()} }")


def main():
    for file, changes, t, seed in FIXTURES:
        write(file, changes, t, seed)


if __name__ == "__main__":
    main()
