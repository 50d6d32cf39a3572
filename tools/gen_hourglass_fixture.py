#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the Hourglass PyTorch parity fixtures test/fixtures/hourglass_<shorten>_<upsample>.safetensors
(inputs, logits, loss, every parameter and gradient, and the losses of 5 AdamW steps) for the
attention + attention, average + repeat and linear + linear policies (and attention + attention with
the closing LayerNorms and an untied head: hourglass_closing_untied), with two nested levels and a
sequence length that is not a multiple of the total factor (so padding is exercised); and
select + repeat over two nested data-dependent levels (hourglass_rules_select_repeat: spacelike
segments of at most 5 bytes, then pairs of them, over two rows of text), the segment mean on them
(hourglass_rules_avg_repeat), and two nested learned routers (hourglass_rules_router: H-Net's
cosine router, its straight-through confidence and ratio loss; hourglass_rules_router_ema: the same
with EMA de-chunking; hourglass_rules_mlp: Dynamic Token Pooling's MLP predictor outside a router,
with EMA de-chunking; hourglass_rules_select_linear: AU-Net's position-indexed unpooling over the
spacelike levels; hourglass_rules_attention: attention pooling over each segment's bytes and
cross-attention unpooling to the closed segments on the same levels). The width
(8) differs from the factors (2), so a [k d] projection read in the wrong layout shows.

Before writing, every model's hand-written attention (causal blocks and resampling
cross-attention) is checked against PyTorch's F.scaled_dot_product_attention (float64, logits,
loss and all gradients within 1e-12 relative).

    pip install torch safetensors numpy
    python3 tools/gen_hourglass_fixture.py [FIXTURE.safetensors ...]   (default: all)
"""
import json
import os
import sys

import numpy as np
import torch
from safetensors.numpy import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_hourglass import Hourglass  # noqa: E402
from torch_lm import sdpa_deviation  # noqa: E402

B, T = 2, 14
ADAMW = dict(lr=3e-3, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1, steps=5)
SDPA_TOL = 1e-12
MIN_MARGIN = 1e-3
ROUTER_SEED = 7
ROUTER_EMA_SEED = 9
MLP_SEED = 11


def decays(name, p):
    return name.endswith("weight") and p.dim() == 2 and "emb" not in name


def centre_mlp(model, ids):
    """Level 0's MLP predictor with weights of N(0, 0.3^2) decides alike almost everywhere (its biases
    dominate the logit): widen its weights 3x, zero fc1's bias, and set fc2's bias (fp32-rounded)
    so that the threshold lies midway between the two middle logits of the rows' positions t >= 1,
    so about half of them emit. Consumes no random numbers."""
    r = model.levels[0].router
    with torch.no_grad():
        r.fc1.weight.mul_(3.0)
        r.fc2.weight.mul_(3.0)
        r.fc1.bias.zero_()
        r.fc2.bias.zero_()
        x = model.tok_emb(ids) + model.pos_emb.weight[:ids.shape[1]]
        for blk in model.pre:
            x = blk(x)
        if model.closing:
            x = model.ln_pre(x)
        z = r.fc2(torch.nn.functional.gelu(r.fc1(x), approximate="tanh")).squeeze(-1)[:, 1:].flatten().sort().values
        k = z.numel() // 2
        r.fc2.bias.fill_(float(np.float32(-(z[k - 1] + z[k]).item() / 2)))


def write(shorten, upsample, seed, file_name=None, text=None, **extra):
    cfg = dict(vocab=32, dim=8, heads=2, context=16, mlp_hidden=0, eps=1e-5, init_std=0.02,
               hierarchy="1@1 1@2 1@4 1@2 1@1")
    cfg.update(extra)
    cfg.update(shorten=shorten, upsample=upsample)
    torch.manual_seed(seed)
    model = Hourglass(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    # Reference values are computed in float64 from the float32-rounded parameters, so that the
    # fixture measures hseq's fp32 error only (PyTorch's own fp32 rounding would add as much again).
    model = model.double()
    if text:  # rows of bytes (the rule levels read them)
        ids = torch.tensor([[ord(ch) for ch in row] for row in text])
        targets = torch.roll(ids, -1, dims=1)
    else:
        ids = torch.randint(0, cfg["vocab"], (B, T))
        targets = torch.randint(0, cfg["vocab"], (B, T))
    targets[1, 5] = -1
    if model.levels[0].rule and model.levels[0].rule[0] == "mlp":
        centre_mlp(model, ids)
    dev = sdpa_deviation(model, ids, targets)
    assert max(dev.values()) <= SDPA_TOL, f"{shorten}/{upsample}: hand-written attention differs from F.scaled_dot_product_attention: {dev}"
    logits, loss = model(ids, targets)
    margins = [model.margin]
    loss.backward()
    out = {"ids": ids.numpy().astype(np.int32), "targets": targets.numpy().astype(np.int32),
           "logits": logits.detach().numpy().astype(np.float32)}
    for name, p in model.named_parameters():
        out["param." + name] = p.detach().numpy().astype(np.float32).copy()
        out["grad." + name] = p.grad.numpy().astype(np.float32).copy()
    named = list(model.named_parameters())
    opt = torch.optim.AdamW([{"params": [p for n, p in named if decays(n, p)], "weight_decay": ADAMW["weight_decay"]},
                             {"params": [p for n, p in named if not decays(n, p)], "weight_decay": 0.0}],
                            lr=ADAMW["lr"], betas=(ADAMW["beta1"], ADAMW["beta2"]), eps=ADAMW["eps"])
    losses = []
    for _ in range(ADAMW["steps"]):
        opt.step()
        opt.zero_grad()
        _, l = model(ids, targets)
        margins.append(model.margin)
        l.backward()
        losses.append(l.item())
    # A router's decisions p_t > 1/2 must not sit within fp32 rounding of 1/2, or hseq's fp32 run
    # may decide otherwise (the reference is float64): the smallest margin of all six forwards.
    assert min(margins) > MIN_MARGIN, f"{file_name}: a router decision within {min(margins):.2e} of 1/2; pick another seed"
    meta = {"config": json.dumps(cfg), "batch": str(ids.shape[0]), "seq_len": str(ids.shape[1]), "loss": repr(loss.item()),
            "adamw": json.dumps(ADAMW), "adamw_losses": json.dumps(losses),
            "generator": "tools/gen_hourglass_fixture.py, torch " + torch.__version__}
    path = os.path.join(os.path.dirname(__file__), "..", "test", "fixtures", file_name or f"hourglass_{shorten}_{upsample}.safetensors")
    save_file(out, path, metadata=meta)
    print(f"wrote {os.path.normpath(path)}: {len(named)} parameters, loss {loss.item():.6f}; SDPA check {dev}")


JOBS = []  # (file name, write's arguments): every fixture this script writes


def job(shorten, upsample, seed, file_name=None, **kw):
    JOBS.append((file_name or f"hourglass_{shorten}_{upsample}.safetensors", (shorten, upsample, seed, file_name), kw))


job("attention", "attention", 1)
job("avg", "repeat", 2)
job("linear", "linear", 3)
# Closing norms (trax) and an untied head: the keys config_json writes for them.
job("attention", "attention", 4, "hourglass_closing_untied.safetensors", tied=False, closing_norm=True)
# Levels segmented by the data (issue 19): spacelike boundaries with a longest segment, and
# pairs of those inside; select pooling, repeat upsampling, closing norms. The rows close their
# segments at different positions, and the second has a forced (/5) boundary.
RULE_TEXT = ["In the beginning God created", "And the earth was withoutfor"]
job("select", "repeat", 5, "hourglass_rules_select_repeat.safetensors", text=RULE_TEXT, vocab=128, context=32,
    hierarchy="1@1 1@space/5 1@fixed:2 1@space/5 1@1", closing_norm=True)
# The segment mean (avg pooling over rule levels) on the same two nested levels.
job("avg", "repeat", 6, "hourglass_rules_avg_repeat.safetensors", text=RULE_TEXT, vocab=128, context=32,
    hierarchy="1@1 1@space/5 1@fixed:2 1@space/5 1@1", closing_norm=True)
# H-Net's cosine router on two nested levels (the inner one routes the outer one's segments),
# with the straight-through confidence and the ratio loss (weight 0.5, so that it matters).
job("select", "repeat", ROUTER_SEED, "hourglass_rules_router.safetensors", text=RULE_TEXT, vocab=128, context=32,
    hierarchy="1@1 1@router:3 1@router:2 1@router:3 1@1", closing_norm=True, ratio_weight=0.5)
# The same routers with H-Net's EMA de-chunking of their segment outputs.
job("select", "repeat", ROUTER_EMA_SEED, "hourglass_rules_router_ema.safetensors", text=RULE_TEXT, vocab=128,
    context=32, hierarchy="1@1 1@router:3 1@router:2 1@router:3 1@1", closing_norm=True, ratio_weight=0.5,
    dechunk="ema")
# Dynamic Token Pooling's MLP predictor on the outer level, H-Net's router inside, EMA de-chunking.
job("select", "repeat", MLP_SEED, "hourglass_rules_mlp.safetensors", text=RULE_TEXT, vocab=128, context=32,
    hierarchy="1@1 1@mlp:3 1@router:2 1@mlp:3 1@1", closing_norm=True, ratio_weight=0.5, dechunk="ema")
# AU-Net's position-indexed unpooling (linear upsampling over segments): one matrix per offset, 5 (the
# /5) at the spacelike levels, 2 at the fixed:2 level (segments are at most 5 long here, so no
# offset wraps; test/hier/test_linear_upsample.cpp wraps them).
job("select", "linear", 12, "hourglass_rules_select_linear.safetensors", text=RULE_TEXT, vocab=128, context=32,
    hierarchy="1@1 1@space/5 1@fixed:2 1@space/5 1@1", closing_norm=True)
# Attention pooling over each segment's bytes and cross-attention unpooling to the closed segments
# (the programs' default policies) on the same nested spacelike levels.
job("attention", "attention", 13, "hourglass_rules_attention.safetensors", text=RULE_TEXT, vocab=128, context=32,
    hierarchy="1@1 1@space/5 1@fixed:2 1@space/5 1@1", closing_norm=True)

if __name__ == "__main__":
    # Arguments: the fixtures to write (default: all). Rewriting an existing fixture changes a few
    # gradients that are zero in exact arithmetic in their last bits (PyTorch's run-to-run
    # rounding), so write only the ones whose model changed.
    wanted = set(sys.argv[1:])
    unknown = wanted - {name for name, _, _ in JOBS}
    assert not unknown, f"unknown fixtures {sorted(unknown)}; known: {[name for name, _, _ in JOBS]}"
    for name, args, kw in JOBS:
        if not wanted or name in wanted:
            write(*args, **kw)
