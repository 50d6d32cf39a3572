# SPDX-License-Identifier: MIT
"""PyTorch twin of hseq::models::Hourglass (same structure, parameter names and layouts); see
include/hseq/models/hourglass.hpp and include/hseq/hier/*.hpp for the equations. Used to write the
parity fixtures (tools/gen_hourglass_fixture.py)."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from torch_lm import Block, Mlp


class CrossAttention(nn.Module):
    """hseq's MultiHeadAttention with queries and keys from different sequences and a boolean
    mask [Tq, Tk] (True = visible). sdpa=True computes the same with
    F.scaled_dot_product_attention(attn_mask=mask) instead of materialising the scores (GPU peer
    benchmark); the default keeps the explicit softmax the fixtures were written with."""

    def __init__(self, d, h, sdpa=False):
        super().__init__()
        self.h, self.sdpa = h, sdpa
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.out = nn.Linear(d, d)

    def forward(self, xq, xkv, mask):
        b, tq, d = xq.shape
        tk = xkv.shape[1]
        dh = d // self.h
        q = self.q(xq).view(b, tq, self.h, dh).transpose(1, 2)
        k, v = self.kv(xkv).split(d, dim=-1)
        k = k.reshape(b, tk, self.h, dh).transpose(1, 2)
        v = v.reshape(b, tk, self.h, dh).transpose(1, 2)
        if self.sdpa:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            att = (q @ k.transpose(-1, -2)) / math.sqrt(dh)
            att = att.masked_fill(~mask, float("-inf")).softmax(-1)
            y = att @ v
        return self.out(y.transpose(1, 2).reshape(b, tq, d))


def avg_pool(x, k):
    b, l, d = x.shape
    return x.view(b, l // k, k, d).mean(2)


class AvgPoolShorten(nn.Module):
    def __init__(self, d, k, h, hidden, eps, sdpa=False):
        super().__init__()
        self.k = k

    def forward(self, x):
        return avg_pool(x, self.k)


class LinearPoolShorten(nn.Module):
    def __init__(self, d, k, h, hidden, eps, sdpa=False):
        super().__init__()
        self.k = k
        self.proj = nn.Linear(k * d, d)

    def forward(self, x):
        b, l, d = x.shape
        return self.proj(x.reshape(b, l // self.k, self.k * d))


class AttentionPoolShorten(nn.Module):
    def __init__(self, d, k, h, hidden, eps, sdpa=False):
        super().__init__()
        self.k = k
        self.ln_in = nn.LayerNorm(d, eps=eps)
        self.ln_q = nn.LayerNorm(d, eps=eps)
        self.attn = CrossAttention(d, h, sdpa)
        self.ln_ff = nn.LayerNorm(d, eps=eps)
        self.mlp = Mlp(d, hidden)

    def forward(self, x):
        l = x.shape[1]
        h = self.ln_in(x)
        q = self.ln_q(avg_pool(h, self.k))
        i = torch.arange(l // self.k, device=x.device).unsqueeze(1)
        j = torch.arange(l, device=x.device).unsqueeze(0)
        q1 = q + self.attn(q, h, j <= i * self.k + self.k - 1)
        return q1 + self.mlp(self.ln_ff(q1))


class RepeatUpsample(nn.Module):
    def __init__(self, d, k, h, hidden, eps, sdpa=False):
        super().__init__()
        self.k = k

    def forward(self, y, res):
        return y.repeat_interleave(self.k, dim=1)


class LinearUpsample(nn.Module):
    def __init__(self, d, k, h, hidden, eps, sdpa=False):
        super().__init__()
        self.k = k
        self.proj = nn.Linear(d, k * d)

    def forward(self, y, res):
        b, ls, d = y.shape
        return self.proj(y).reshape(b, ls * self.k, d)


class AttentionUpsample(nn.Module):
    def __init__(self, d, k, h, hidden, eps, sdpa=False):
        super().__init__()
        self.k = k
        self.ln_s = nn.LayerNorm(d, eps=eps)
        self.ln_u = nn.LayerNorm(d, eps=eps)
        self.attn = CrossAttention(d, h, sdpa)
        self.ln_ff = nn.LayerNorm(d, eps=eps)
        self.mlp = Mlp(d, hidden)

    def forward(self, y, res):
        s = self.ln_s(y)
        q = self.ln_u(s.repeat_interleave(self.k, dim=1)) + res
        p = torch.arange(res.shape[1], device=res.device).unsqueeze(1)
        j = torch.arange(y.shape[1], device=res.device).unsqueeze(0)
        q1 = q + self.attn(q, s, j * self.k <= p)
        return q1 + self.mlp(self.ln_ff(q1))


SHORTEN = {"avg": AvgPoolShorten, "linear": LinearPoolShorten, "attention": AttentionPoolShorten}
UPSAMPLE = {"repeat": RepeatUpsample, "linear": LinearUpsample, "attention": AttentionUpsample}


def parse_hierarchy(text):
    """(pre, post, [(layers, per-level factor), ...]) from the authors' cumulative N@F notation."""
    items = [tuple(int(v) for v in t.split("@")) for t in text.split()]
    pre = post = 0
    if items[0][1] == 1:
        pre, post = items[0][0], items[-1][0]
        items = items[1:-1]
    m = len(items) // 2
    levels, prev = [], 1
    for n, f in items[:m + 1]:
        levels.append((n, f // prev))
        prev = f
    return pre, post, levels


class Level(nn.Module):
    def __init__(self, c, layers, k, innermost, shorten, upsample, sdpa=False):
        super().__init__()
        d, h, eps = c["dim"], c["heads"], c.get("eps", 1e-5)
        hidden = c.get("mlp_hidden", 0) or 4 * d
        self.k = k
        self.shorten = SHORTEN[shorten](d, k, h, hidden, eps, sdpa)
        self.pre = nn.ModuleList([Block(d, h, hidden, eps, sdpa) for _ in range(layers)])
        self.post = nn.ModuleList([] if innermost else [Block(d, h, hidden, eps, sdpa) for _ in range(layers)])
        self.upsample = UPSAMPLE[upsample](d, k, h, hidden, eps, sdpa)
        self.ln_up = nn.LayerNorm(d, eps=eps)
        if c.get("closing_norm", False):  # trax closes every stack with a LayerNorm
            self.ln_pre = nn.LayerNorm(d, eps=eps)
            if not innermost:
                self.ln_post = nn.LayerNorm(d, eps=eps)


class Hourglass(nn.Module):
    """sdpa=True: every attention (causal blocks and the resampling cross-attention) through
    F.scaled_dot_product_attention, for the GPU peer benchmark; the default (explicit softmax) is
    what the parity fixtures use. c["closing_norm"] (absent: False, hseq's version-1 models): a
    LayerNorm closes the pre stack and every level's stacks, as in trax; c["tied"] (absent: True):
    logits use tok_emb.weight, otherwise a bias-free head.weight [vocab, d]."""

    def __init__(self, c, sdpa=False):
        super().__init__()
        d, h, eps = c["dim"], c["heads"], c.get("eps", 1e-5)
        hidden = c.get("mlp_hidden", 0) or 4 * d
        pre, post, levels = parse_hierarchy(c["hierarchy"])
        self.total = math.prod(k for _, k in levels)
        self.tok_emb = nn.Embedding(c["vocab"], d)
        self.pos_emb = nn.Embedding(c["context"], d)
        self.pre = nn.ModuleList([Block(d, h, hidden, eps, sdpa) for _ in range(pre)])
        self.closing = c.get("closing_norm", False)
        self.tied = c.get("tied", True)
        if self.closing:
            self.ln_pre = nn.LayerNorm(d, eps=eps)
        self.levels = nn.ModuleList([Level(c, n, k, i + 1 == len(levels), c["shorten"], c["upsample"], sdpa)
                                     for i, (n, k) in enumerate(levels)])
        self.post = nn.ModuleList([Block(d, h, hidden, eps, sdpa) for _ in range(post)])
        self.ln_f = nn.LayerNorm(d, eps=eps)
        if not self.tied:
            self.head = nn.Linear(d, c["vocab"], bias=False)

    def valley(self, i, x):
        lv = self.levels[i]
        k = lv.k
        shifted = F.pad(x, (0, 0, k - 1, 0))[:, :x.shape[1]]
        s = lv.shorten(shifted)
        for blk in lv.pre:
            s = blk(s)
        if self.closing:
            s = lv.ln_pre(s)
        if i + 1 < len(self.levels):
            s = self.valley(i + 1, s)
            for blk in lv.post:
                s = blk(s)
            if self.closing:
                s = lv.ln_post(s)
        return x + lv.ln_up(lv.upsample(s, x))

    def forward(self, ids, targets):
        b, t = ids.shape
        tp = (t + self.total - 1) // self.total * self.total
        ids_p = F.pad(ids, (0, tp - t), value=0)
        x = self.tok_emb(ids_p) + self.pos_emb.weight[:tp]
        for blk in self.pre:
            x = blk(x)
        if self.closing:
            x = self.ln_pre(x)
        x = self.valley(0, x)
        for blk in self.post:
            x = blk(x)
        w_out = self.tok_emb.weight if self.tied else self.head.weight
        logits = (self.ln_f(x) @ w_out.t())[:, :t]
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-1)
        return logits, loss
