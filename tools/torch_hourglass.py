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


class SelectShorten(nn.Module):
    """Select pooling on a numeric level: the last row of each shifted window (x[j k])."""

    def __init__(self, d, k, h, hidden, eps, sdpa=False):
        super().__init__()
        self.k = k

    def forward(self, x):
        return x[:, self.k - 1::self.k]


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


SHORTEN = {"avg": AvgPoolShorten, "linear": LinearPoolShorten, "attention": AttentionPoolShorten,
           "select": SelectShorten}


# Data-dependent segmentation rules (hseq's hier::ByteRule), written from their definitions:
#   fixed:K  positions 0, K, 2K, ...
#   space    a spacelike byte (not [0-9A-Za-z], not a UTF-8 continuation byte 0x80-0xBF) whose
#            predecessor is not spacelike (SpaceByte)
#   word:N   the whitespace byte after every N-th word (a whitespace byte whose predecessor is not
#            whitespace; AU-Net's (\S+?\s){N})
#   router:N the positions whose boundary probability p_t > 1/2 (H-Net's cosine router; the
#            probabilities come from the level's hidden states, see Level.route)
#   mlp:N    the same threshold over Dynamic Token Pooling's predictor p_t = σ(MLP(x_t))
# Position 0 always emits; "/M" also emits where a segment would grow past M positions.
def parse_rule(text):
    body, _, maxlen = text.partition("/")
    name, _, arg = body.partition(":")
    n = (float(arg) if name in ("router", "mlp") else int(arg)) if arg else 1
    return (name, n, int(maxlen) if maxlen else 0)


def spacelike(b):
    return 0 <= b <= 255 and not (chr(b).isascii() and chr(b).isalnum()) and not 0x80 <= b <= 0xBF


def whitespace(b):
    return b in (9, 10, 11, 12, 13, 32)


def rule_emits(rule, tokens, scores=None):
    kind, n, maxlen = rule
    emits, prev, words, since = [], True, 0, 0
    for t, x in enumerate(tokens):
        if kind in ("router", "mlp"):
            e = scores[t] > 0.5
        elif kind == "fixed":
            e = t % n == 0
        elif kind == "space":
            e = spacelike(x) and not prev
            prev = spacelike(x)
        elif kind == "word":
            e = False
            if whitespace(x) and not prev:
                words += 1
                e = words == n
            prev = whitespace(x)
        else:
            raise ValueError(f"unknown rule {kind}")
        if t == 0 or (maxlen and since >= maxlen):
            e = True
        if e:
            emits.append(t)
            since, words = 1, 0
        else:
            since += 1
    return emits
UPSAMPLE = {"repeat": RepeatUpsample, "linear": LinearUpsample, "attention": AttentionUpsample}


def parse_hierarchy(text):
    """(pre, post, [(layers, per-level factor or rule), ...]) from the authors' cumulative N@F
    notation; an item N@RULE ("2@space") is a level segmented by that rule (a parse_rule tuple)."""
    def item(t):
        n, f = t.split("@")
        return int(n), (int(f) if f.isdigit() else f)
    items = [item(t) for t in text.split()]
    pre = post = 0
    if items[0][1] == 1:
        pre, post = items[0][0], items[-1][0]
        items = items[1:-1]
    m = len(items) // 2
    levels, prev = [], 1
    for n, f in items[:m + 1]:
        if isinstance(f, str):
            levels.append((n, parse_rule(f)))
            continue
        levels.append((n, f // prev))
        prev = f
    return pre, post, levels


class Level(nn.Module):
    def __init__(self, c, layers, k, innermost, shorten, upsample, sdpa=False):
        super().__init__()
        d, h, eps = c["dim"], c["heads"], c.get("eps", 1e-5)
        hidden = c.get("mlp_hidden", 0) or 4 * d
        self.rule = k if isinstance(k, tuple) else None  # a rule level: pooled by select, mean or attention
        if self.rule:
            assert shorten in ("select", "avg", "attention") and upsample in ("repeat", "linear", "attention"), \
                "rule levels take select, avg or attention / repeat, linear or attention"
            k = self.rule[1] if self.rule[0] == "fixed" else 1
            # Linear upsampling over segments (AU-Net's position-indexed unpooling): one matrix per
            # offset into a segment, modulo K = the fixed factor, the rule's /MAXLEN, or 16.
            k_up = k if self.rule[0] == "fixed" else (self.rule[2] or 16)
            if self.rule[0] == "router":  # [A_q; A_k]: W_q = I + A_q, W_k = I + A_k (hseq's parametrisation)
                self.router = nn.Module()
                self.router.qk = nn.Linear(d, 2 * d, bias=False)
            elif self.rule[0] == "mlp":  # DTP's boundary predictor: d -> d -> 1
                self.router = nn.Module()
                self.router.fc1 = nn.Linear(d, d)
                self.router.fc2 = nn.Linear(d, 1)
        self.k = k
        self.shorten = SHORTEN[shorten](d, k, h, hidden, eps, sdpa)
        self.pre = nn.ModuleList([Block(d, h, hidden, eps, sdpa) for _ in range(layers)])
        self.post = nn.ModuleList([] if innermost else [Block(d, h, hidden, eps, sdpa) for _ in range(layers)])
        self.upsample = UPSAMPLE[upsample](d, k_up if self.rule else k, h, hidden, eps, sdpa)
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
        self.total = math.prod(k for _, k in levels if not isinstance(k, tuple))
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
        self.ratio_weight = c.get("ratio_weight", 0.03)  # α of the router levels' ratio loss
        self.dechunk = c.get("dechunk", "none")  # "ema": router levels smooth their segment outputs (H-Net)
        if not self.tied:
            self.head = nn.Linear(d, c["vocab"], bias=False)

    @staticmethod
    def route(lv, x, row_len):
        """H-Net's cosine router over a level's input x [B, L, d]: per row, p_0 = 1 and
        p_t = clamp((1 - cos(q_{t-1}, k_t)) / 2, 0, 1) with [q, k] = x [I, I] + x A^T; or DTP's
        predictor p_t = sigmoid(fc2(gelu(fc1(x_t)))) (tanh GELU, as hseq's), p_0 = 1."""
        d = x.shape[-1]
        if lv.rule[0] == "mlp":
            p = torch.sigmoid(lv.router.fc2(F.gelu(lv.router.fc1(x), approximate="tanh"))).squeeze(-1)
            return [torch.cat([torch.ones(1, dtype=x.dtype), p[r, 1:n]]) for r, n in enumerate(row_len)]
        qk = x.repeat(1, 1, 2) + lv.router.qk(x)
        q, k = qk[..., :d], qk[..., d:]
        out = []
        for r, n in enumerate(row_len):
            a, b = q[r, :n - 1], k[r, 1:n]
            eps = 1e-12
            cos = (a * b).sum(-1) / (a.norm(dim=-1).clamp_min(eps) * b.norm(dim=-1).clamp_min(eps))
            p = ((1 - cos) / 2).clamp(0, 1)
            out.append(torch.cat([torch.ones(1, dtype=x.dtype), p]))
        return out

    def valley(self, i, x, tokens=None, row_len=None):
        lv = self.levels[i]
        k = lv.k
        if lv.rule:  # segments close at the rule's emits e_j; position t reads J(t) = max{j : e_j <= t}
            b, length, _ = x.shape
            row_len = row_len or [length] * b
            learned = lv.rule[0] in ("router", "mlp")
            probs = self.route(lv, x, row_len) if learned else None
            emits = [rule_emits(lv.rule, tokens[r][:row_len[r]], probs[r].tolist() if probs else None) for r in range(b)]
            if probs:  # the STE's confidence, the ratio loss and the decisions' margins
                real = sum(row_len)
                f = sum(len(e) for e in emits) / real
                g = sum(p.sum() for p in probs) / real
                n = lv.rule[1]
                self.ratio = self.ratio + n / (n - 1) * ((n - 1) * f * g + (1 - f) * (1 - g))
                conf = torch.zeros(b, length, dtype=x.dtype)
                for r, e in enumerate(emits):
                    emit = torch.zeros(row_len[r], dtype=torch.bool)
                    emit[e] = True
                    conf[r, :row_len[r]] = torch.where(emit, probs[r], 1 - probs[r])
                    self.margin = min([self.margin] + [abs(v - 0.5) for v in probs[r][1:].tolist()])
                ste = 1 + (conf - conf.detach())
            c = max(len(e) for e in emits)
            pool = torch.tensor([[e[j] if j < len(e) else max(row_len[r] - 1, 0) for j in range(c)]
                                 for r, e in enumerate(emits)])
            seg = []
            for r, e in enumerate(emits):
                js = [sum(1 for p in e if p <= t) - 1 for t in range(row_len[r])]
                seg.append(js + [max(len(e) - 1, 0)] * (length - row_len[r]))
            rows = torch.arange(b).unsqueeze(1)
            w = torch.zeros(b, c, length, dtype=x.dtype)  # the segment mean over (e_{j-1}, e_j]; padding 0
            for r, e in enumerate(emits):
                prev = -1
                for j, p in enumerate(e):
                    w[r, j, prev + 1:p + 1] = 1.0 / (p - prev)
                    prev = p
            if isinstance(lv.shorten, AvgPoolShorten):
                s = w @ x                                                         # mean     [B, C, d]
            elif isinstance(lv.shorten, AttentionPoolShorten):
                # attention over each segment's bytes (e_{j-1}, e_j], queried by the LN of their mean;
                # a segment ending where the previous one did (padding) sees its end alone
                sh = lv.shorten
                visible = torch.zeros(b, c, length, dtype=torch.bool)
                for r in range(b):
                    prev = -1
                    for j, p in enumerate(pool[r].tolist()):
                        if p > prev:
                            visible[r, j, prev + 1:p + 1] = True
                        else:
                            visible[r, j, p] = True
                        prev = p
                hx = sh.ln_in(x)
                q = sh.ln_q(w @ hx)
                q1 = q + sh.attn(q, hx, visible.unsqueeze(1))
                s = q1 + sh.mlp(sh.ln_ff(q1))                                     # pooled   [B, C, d]
            else:
                s = x[rows, pool]                                                 # select   [B, C, d]
            inner_tokens = [[tokens[r][p] for p in pool[r].tolist()] for r in range(b)]
            inner_len = [len(e) for e in emits]
        else:
            shifted = F.pad(x, (0, 0, k - 1, 0))[:, :x.shape[1]]
            s = lv.shorten(shifted)
            inner_tokens = inner_len = None
        for blk in lv.pre:
            s = blk(s)
        if self.closing:
            s = lv.ln_pre(s)
        if i + 1 < len(self.levels):
            s = self.valley(i + 1, s, inner_tokens, inner_len)
            for blk in lv.post:
                s = blk(s)
            if self.closing:
                s = lv.ln_post(s)
        if lv.rule and lv.rule[0] in ("router", "mlp") and self.dechunk == "ema":
            # H-Net's de-chunking: z~_j = P_j z_j + (1 - P_j) z~_{j-1}, P_j = p at segment j's emit
            # (padding segments: P = 1), written as the recurrence (hseq builds the unrolled matrix).
            rows_out = []
            for r, e in enumerate(emits):
                prev, out = torch.zeros_like(s[r, 0]), []
                for j in range(s.shape[1]):
                    pj = probs[r][e[j]] if j < len(e) else torch.ones((), dtype=s.dtype)
                    prev = pj * s[r, j] + (1 - pj) * prev
                    out.append(prev)
                rows_out.append(torch.stack(out))
            s = torch.stack(rows_out)                                             # z~       [B, C, d]
        if lv.rule and isinstance(lv.upsample, LinearUpsample):
            # position (r, t) reads slice (t - e_J) mod K of segment J's projection  [B, L, d]
            kk, d = lv.upsample.k, s.shape[-1]
            proj = lv.upsample.proj(s).reshape(b, s.shape[1], kk, d)
            off = [[(t - emits[r][j]) % kk for t, j in enumerate(seg[r])] for r in range(b)]
            up = lv.ln_up(proj[rows, torch.tensor(seg), torch.tensor(off)])
            return x + (ste.unsqueeze(-1) * up if lv.rule[0] in ("router", "mlp") else up)
        if lv.rule and isinstance(lv.upsample, AttentionUpsample):
            # position (r, t) cross-attends to the segments j <= J(t), queried by LN(s_J(t)) + x_t
            u = lv.upsample
            sn = u.ln_s(s)
            q = u.ln_u(sn[rows, torch.tensor(seg)]) + x
            visible = torch.arange(s.shape[1]).view(1, 1, -1) <= torch.tensor(seg).unsqueeze(-1)  # [B, L, C]
            q1 = q + u.attn(q, sn, visible.unsqueeze(1))
            up = lv.ln_up(q1 + u.mlp(u.ln_ff(q1)))
            return x + (ste.unsqueeze(-1) * up if lv.rule[0] in ("router", "mlp") else up)
        if lv.rule:
            up = lv.ln_up(s[rows, torch.tensor(seg)])                             # repeat   [B, L, d]
            return x + (ste.unsqueeze(-1) * up if lv.rule[0] in ("router", "mlp") else up)
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
        self.ratio, self.margin = 0.0, 1.0  # router levels: the sum of their ratio losses; min |p_t - 1/2|
        x = self.valley(0, x, ids_p.tolist())
        for blk in self.post:
            x = blk(x)
        w_out = self.tok_emb.weight if self.tied else self.head.weight
        logits = (self.ln_f(x) @ w_out.t())[:, :t]
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-1)
        return logits, loss + self.ratio_weight * self.ratio
