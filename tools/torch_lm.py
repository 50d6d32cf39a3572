# SPDX-License-Identifier: MIT
"""PyTorch twin of hseq::models::TransformerLm (same structure, parameter names and layouts), used
by the parity fixture generator and the peer benchmark. See tools/gen_lm_fixture.py for the layout
conventions."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class Attention(nn.Module):
    def __init__(self, d, h, sdpa):
        super().__init__()
        self.h, self.sdpa = h, sdpa
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.out = nn.Linear(d, d)

    def forward(self, x):
        b, t, d = x.shape
        dh = d // self.h
        q = self.q(x).view(b, t, self.h, dh).transpose(1, 2)
        k, v = self.kv(x).split(d, dim=-1)
        k = k.reshape(b, t, self.h, dh).transpose(1, 2)
        v = v.reshape(b, t, self.h, dh).transpose(1, 2)
        if self.sdpa:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = (q @ k.transpose(-1, -2)) / math.sqrt(dh)
            mask = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
            y = att.masked_fill(~mask, float("-inf")).softmax(-1) @ v
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class Mlp(nn.Module):
    def __init__(self, d, hidden):
        super().__init__()
        self.fc1 = nn.Linear(d, hidden)
        self.fc2 = nn.Linear(hidden, d)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, d, h, hidden, eps, sdpa):
        super().__init__()
        self.ln1 = nn.LayerNorm(d, eps=eps)
        self.attn = Attention(d, h, sdpa)
        self.ln2 = nn.LayerNorm(d, eps=eps)
        self.mlp = Mlp(d, hidden)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


def sinusoidal_table(t, d, dtype=torch.float64, device=None):
    """hseq's sinusoids (ops/position.hpp): PE(p, j) = sin(p w_j) for even j, cos(p w_j) for odd
    j, with w_j = exp(-ln(10000) (j - j mod 2) / d); computed in float64 as hseq does, then cast."""
    p = torch.arange(t, dtype=torch.float64, device=device).unsqueeze(1)
    j = torch.arange(d, device=device)
    freq = torch.exp(-math.log(10000.0) * (j - j % 2).to(torch.float64) / d)
    a = p * freq
    return torch.where(j % 2 == 1, torch.cos(a), torch.sin(a)).to(dtype)


def set_sdpa(model, on):
    """Switches every attention of a twin between the explicit softmax and
    F.scaled_dot_product_attention (same weights), for the generators' cross-check."""
    for m in model.modules():
        if hasattr(m, "sdpa"):
            m.sdpa = on


class TransformerLm(nn.Module):
    """c["position"]: "learned" (table pos_emb.weight [context, d]), "sinusoidal" (no parameter) or
    "none"; c["tied"]: logits use tok_emb.weight, otherwise a bias-free head.weight [vocab, d]
    (hseq's nn::Linear layout [out, in]). Both default to hseq's defaults (learned, tied)."""

    def __init__(self, c, sdpa=False):
        super().__init__()
        d = c["dim"]
        hidden = c.get("mlp_hidden", 0) or 4 * d
        self.position = c.get("position", "learned")
        self.tied = c.get("tied", True)
        if self.position not in ("learned", "sinusoidal", "none"):
            raise ValueError(f"unknown position encoding {self.position!r}")
        self.tok_emb = nn.Embedding(c["vocab"], d)
        if self.position == "learned":
            self.pos_emb = nn.Embedding(c["context"], d)
        self.blocks = nn.ModuleList([Block(d, c["heads"], hidden, c.get("eps", 1e-5), sdpa) for _ in range(c["layers"])])
        self.ln_f = nn.LayerNorm(d, eps=c.get("eps", 1e-5))
        if not self.tied:
            self.head = nn.Linear(d, c["vocab"], bias=False)

    def init_like_hseq(self, std=0.02):
        """hseq's initialisation: N(0, std) weights and embeddings, residual output projections
        N(0, std / sqrt(2 layers)), zero biases, unit LayerNorm gains."""
        out_std = std / math.sqrt(2 * len(self.blocks))
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("bias"):
                    p.zero_()
                elif ".ln" in name or name.startswith("ln_f"):
                    p.fill_(1.0)
                elif name.endswith("attn.out.weight") or name.endswith("mlp.fc2.weight"):
                    p.normal_(0, out_std)
                else:
                    p.normal_(0, std)

    def forward(self, ids, targets=None):
        t = ids.shape[1]
        x = self.tok_emb(ids)
        if self.position == "learned":
            x = x + self.pos_emb.weight[:t]
        elif self.position == "sinusoidal":
            x = x + sinusoidal_table(t, x.shape[-1], x.dtype, x.device)
        for blk in self.blocks:
            x = blk(x)
        w_out = self.tok_emb.weight if self.tied else self.head.weight
        logits = self.ln_f(x) @ w_out.t()
        if targets is None:
            return logits, None
        return logits, F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-1)

    def param_groups(self, weight_decay):
        """AdamW groups as hseq decays them: Linear weights only."""
        def decays(n, p):
            return n.endswith("weight") and p.dim() == 2 and "emb" not in n
        named = list(self.named_parameters())
        return [{"params": [p for n, p in named if decays(n, p)], "weight_decay": weight_decay},
                {"params": [p for n, p in named if not decays(n, p)], "weight_decay": 0.0}]


def sdpa_deviation(model, ids, targets):
    """Runs `model(ids, targets)` forward and backward once with the hand-written attention and once
    with F.scaled_dot_product_attention (same weights, model in float64), and returns the largest
    differences (logits, loss, gradients), each relative to the largest magnitude of the
    hand-written result. Leaves the model in hand-written mode with no gradients."""
    runs = []
    for on in (False, True):
        set_sdpa(model, on)
        model.zero_grad(set_to_none=True)
        logits, loss = model(ids, targets)
        loss.backward()
        runs.append((logits.detach().clone(), loss.detach().clone(),
                     {n: p.grad.detach().clone() for n, p in model.named_parameters()}))
    set_sdpa(model, False)
    model.zero_grad(set_to_none=True)
    (l0, s0, g0), (l1, s1, g1) = runs
    g_scale = max(g.abs().max().item() for g in g0.values())
    return {"logits": ((l1 - l0).abs().max() / l0.abs().max()).item(),
            "loss": ((s1 - s0).abs() / s0.abs()).item(),
            "grads": max((g1[n] - g0[n]).abs().max().item() for n in g0) / g_scale}
