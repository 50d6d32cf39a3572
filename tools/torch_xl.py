# SPDX-License-Identifier: MIT
"""PyTorch twins of hseq::models::TransformerXl and hseq::models::CompressiveTransformer (same
structure, parameter names, layouts and memory bookkeeping), written from docs/compressive.md and
the headers' equations, for the parity fixtures (tools/gen_xl_fixture.py).

Conventions shared with hseq (see also tools/gen_lm_fixture.py):
  * Linear weights are [out, in]; the key/value projection kv = Linear(d, 2d) has the keys in
    columns [0, d) and the values in [d, 2d); head h owns columns [h dh, (h + 1) dh).
  * Relative attention: R[delta] = hseq's interleaved sinusoid (sin at 2k, cos at 2k + 1) for the
    distances delta = 0 .. Dr - 1 (Dr = L, or clamp_len + 1 when clamping), Rk = R Wr^T (r: no bias),
    score(i, j) = ((q_i + u) . k_j + (q_i + v) . Rk[min(M + i - j, clamp)]) / sqrt(dh), causal over
    [memory; segment] (key j visible to query i iff j <= M + i).
  * Pre-LN blocks; LN1 normalises the memory with the segment; memories are layer inputs, detached.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from torch_lm import Mlp, sinusoidal_table


class RelativeAttention(nn.Module):
    def __init__(self, d, h, clamp_len):
        super().__init__()
        self.h, self.clamp = h, clamp_len
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.out = nn.Linear(d, d)
        self.r = nn.Linear(d, d, bias=False)
        self.u = nn.Parameter(torch.zeros(h, d // h))
        self.v = nn.Parameter(torch.zeros(h, d // h))

    def forward(self, x, mem):
        """x [B, T, d] (already LN1), mem [B, M, d] (already LN1, may have M = 0)."""
        b, t, d = x.shape
        m = mem.shape[1]
        l, dh = m + t, d // self.h
        q = self.q(x).view(b, t, self.h, dh)  # [B, T, H, dh]
        k, v = self.kv(torch.cat([mem, x], 1)).split(d, dim=-1)
        k = k.view(b, l, self.h, dh)
        v = v.view(b, l, self.h, dh)
        dr = min(l, self.clamp + 1) if self.clamp > 0 else l
        rk = self.r(sinusoidal_table(dr, d, x.dtype, x.device)).view(dr, self.h, dh)  # [Dr, H, dh]
        # Distances by direct indexing: delta[i, j] = M + i - j, clamped into [0, Dr).
        i = torch.arange(t, device=x.device).unsqueeze(1)
        j = torch.arange(l, device=x.device).unsqueeze(0)
        delta = (m + i - j).clamp(min=0, max=dr - 1)
        content = torch.einsum("bihe,bjhe->bhij", q + self.u, k)
        pos_all = torch.einsum("bihe,rhe->bhir", q + self.v, rk)  # [B, H, T, Dr]
        position = torch.gather(pos_all, 3, delta.expand(b, self.h, t, l))
        score = (content + position) / math.sqrt(dh)
        visible = j <= m + i
        p = score.masked_fill(~visible, float("-inf")).softmax(-1)
        y = torch.einsum("bhij,bjhe->bihe", p, v).reshape(b, t, d)
        return self.out(y)

    def content(self, hq, hk):
        """Content attention with the parameters held fixed (attention reconstruction): queries
        hq [B, T, d] and keys/values hk [B, n, d] (both already LN1), every key visible, output before
        the output projection."""
        b, t, d = hq.shape
        n, dh = hk.shape[1], d // self.h
        q = F.linear(hq, self.q.weight.detach(), self.q.bias.detach()).view(b, t, self.h, dh)
        k, v = F.linear(hk, self.kv.weight.detach(), self.kv.bias.detach()).split(d, dim=-1)
        k = k.view(b, n, self.h, dh)
        v = v.view(b, n, self.h, dh)
        p = (torch.einsum("bihe,bjhe->bhij", q, k) / math.sqrt(dh)).softmax(-1)
        return torch.einsum("bhij,bjhe->bihe", p, v).reshape(b, t, d)


class RelativeBlock(nn.Module):
    def __init__(self, d, h, hidden, eps, clamp_len):
        super().__init__()
        self.ln1 = nn.LayerNorm(d, eps=eps)
        self.attn = RelativeAttention(d, h, clamp_len)
        self.ln2 = nn.LayerNorm(d, eps=eps)
        self.mlp = Mlp(d, hidden)

    def forward(self, x, mem):
        h1 = self.ln1(x)
        x1 = x + self.attn(h1, self.ln1(mem))
        return x1 + self.mlp(self.ln2(x1)), h1

    def ln1_fixed(self, x):
        return F.layer_norm(x, x.shape[-1:], self.ln1.weight.detach(), self.ln1.bias.detach(), self.ln1.eps)


class TransformerXl(nn.Module):
    """c: vocab, dim, heads, layers, mem_len, clamp_len, mlp_hidden, tied, eps. Memories: a list of
    [B, M, d] layer inputs (detached), updated by forward."""

    def __init__(self, c):
        super().__init__()
        d = c["dim"]
        hidden = c.get("mlp_hidden", 0) or 4 * d
        self.c = c
        self.tok_emb = nn.Embedding(c["vocab"], d)
        self.blocks = nn.ModuleList(
            [RelativeBlock(d, c["heads"], hidden, c.get("eps", 1e-5), c.get("clamp_len", 0)) for _ in range(c["layers"])])
        self.ln_f = nn.LayerNorm(d, eps=c.get("eps", 1e-5))
        if not c.get("tied", True):
            self.head = nn.Linear(d, c["vocab"], bias=False)

    def logits(self, x):
        w = self.tok_emb.weight if self.c.get("tied", True) else self.head.weight
        return self.ln_f(x) @ w.t()

    def forward(self, ids, targets, mems):
        x = self.tok_emb(ids)
        new = []
        for blk, mem in zip(self.blocks, mems):
            new.append(torch.cat([mem, x.detach()], 1)[:, -self.c["mem_len"]:] if self.c["mem_len"] > 0 else mem)
            x, _ = blk(x, mem)
        logits = self.logits(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-1)
        return logits, loss, new


class CompressiveTransformer(TransformerXl):
    """Adds per layer a compressed memory and pending rows; c["compress"] is "conv" (Linear(c d ->
    d) of each group of rate rows, parameters compress.<l>.proj.) and c["loss"] "bptt" or "attn".
    State per layer: (cmem, mem, pend), all detached."""

    def __init__(self, c):
        super().__init__(c)
        assert c["compress"] == "conv" and c["loss"] in ("bptt", "attn")
        d, rate = c["dim"], c["rate"]
        self.compress = nn.ModuleList([nn.ModuleDict({"proj": nn.Linear(rate * d, d)}) for _ in range(c["layers"])])

    def forward(self, ids, targets, state):
        c, rate, d = self.c, self.c["rate"], self.c["dim"]
        x = self.tok_emb(ids)
        b, t = ids.shape
        new, aux = [], []
        for l, (blk, (cmem, mem, pend)) in enumerate(zip(self.blocks, state)):
            pc = pend.shape[1] // rate * rate
            old = pend[:, :pc]
            cm = self.compress[l]["proj"](old.reshape(b, pc // rate, rate * d))
            cm_attn = cm if c["loss"] == "bptt" else cm.detach()  # ae / attn: the LM loss does not reach f
            inp = x
            x, h1 = blk(inp, torch.cat([cmem, cm_attn, mem], 1))
            if c["loss"] == "attn" and pc > 0:
                hq = h1.detach()
                a_old = blk.attn.content(hq, blk.ln1_fixed(old))
                a_cm = blk.attn.content(hq, blk.ln1_fixed(cm))
                aux.append(((a_cm - a_old) ** 2).mean())
            rows = torch.cat([mem, inp.detach()], 1)
            keep = min(c["mem_len"], rows.shape[1])
            e = rows.shape[1] - keep
            new.append((torch.cat([cmem, cm.detach()], 1)[:, max(0, cmem.shape[1] + cm.shape[1] - c["cmem_len"]):],
                        rows[:, e:], torch.cat([pend[:, pc:], rows[:, :e]], 1)))
        logits = self.logits(x)
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-1)
        compress = torch.stack(aux).mean() if aux else torch.zeros((), dtype=ce.dtype)
        return logits, ce + c["loss_weight"] * compress, ce, compress, new
