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


class TransformerLm(nn.Module):
    def __init__(self, c, sdpa=False):
        super().__init__()
        d = c["dim"]
        hidden = c.get("mlp_hidden", 0) or 4 * d
        self.tok_emb = nn.Embedding(c["vocab"], d)
        self.pos_emb = nn.Embedding(c["context"], d)
        self.blocks = nn.ModuleList([Block(d, c["heads"], hidden, c.get("eps", 1e-5), sdpa) for _ in range(c["layers"])])
        self.ln_f = nn.LayerNorm(d, eps=c.get("eps", 1e-5))

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
        x = self.tok_emb(ids) + self.pos_emb.weight[:t]
        for blk in self.blocks:
            x = blk(x)
        logits = self.ln_f(x) @ self.tok_emb.weight.t()
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
