# SPDX-License-Identifier: MIT
"""PyTorch twin of hseq::models::SeqAutoencoder (the attention-based sequence-length reduction
autoencoder, docs/autoencoder.md) with exactly hseq's parameter names and layouts, written from
the equations in the file comments of include/hseq/models/seq_autoencoder.hpp and
include/hseq/hier/length_resampler.hpp. Used by tools/gen_autoencoder_fixture.py to write the
parity fixtures; see that script for how to regenerate them.

    x0 = E[ids] + P_enc[0:n]                               [B, n, d]
    h  = Enc(x0)          enc_layers pre-LN blocks, no mask
    z_0 = LN_e(h);  z_s = Reduce_s(z_{s-1}), s = 1..S      [B, n_s, d]       latent z_S [B, m = n_S, d]
    u_S = z_S;      u_{s-1} = Expand_s(u_s), s = S..1      [B, n_{s-1}, d]
    y  = Dec(u_0 + P_dec[0:n])  dec_layers pre-LN blocks, no mask
    logits = LN_f(y) W_out^T    (W_out = E when tied)      [B, n, V]
    loss = mean cross-entropy over targets != -1 (the targets are the ids: reconstruction)

with the step lengths n_0 = n, n_s = ceil(n_{s-1} / R) (n / R^s when R^S divides n).
Reduce_s / Expand_s ("reduce.<s>." / "expand.<s>."; both built for the full-rate window N_s of
step s, N_0 = window, N_s = ceil(N_{s-1} / R), so step s maps N_s -> ceil(N_s / R) and back) are
one unmasked multi-head cross-attention each, queries from the query source, keys and values from
the module's input x:

    z = Query(x)                                          [B, n_out, d]
    y = z + Attn(z, x)          (the residual only with config "residual", hseq's default)

Query sources (config "queries", hseq's Query::kName):
    "bank"  query.bank [ceil(N_s / R), d] (reduce) or [N_s, d] (expand): z[b] = bank[0 : n_out]
            for every b
    "mix"   query.mix  [ceil(N_s / R), N_s] (reduce) or [N_s, ceil(N_s / R)] (expand):
            z[b] = mix @ x[b] (the length is fixed: n == window)
    "pool"  no parameter: z[b, i] = mean of x[b, j] over the valid j of group i,
            i R <= j < min(i R + R, n) (reduce), z[b, t] = x[b, t // R] (expand)

Lengths R does not divide (hier/length_resampler.hpp, "Lengths"): the reducer of a length n gives
m = ceil(n / R) rows; the partial last group has r = n - (m - 1) R valid rows and its pooled query
is their mean (weight 1 / r, not 1 / R); the keys are the n real rows (no padding key, no mask);
the expander is told its output length n (ceil(n / R) must be its input's length) and computes the
n real rows only (the repeated rows past n are cut; a bank's first n rows; a mix is [n, m]). When
R divides every length, nothing is padded or cut: the lengths are n / R^s and every pooled query a
mean of R rows, computed exactly as before partial groups were supported.

Layouts as in every hseq twin (tools/torch_lm.py): Linear weights [out, in] (y = x W^T + b);
attention q = Linear(d, d), kv = Linear(d, 2d) whose output columns [0, d) are the keys and
[d, 2d) the values, head h owning columns [h dh, (h + 1) dh) of q, k and v, out = Linear(d, d),
scores scaled by 1 / sqrt(dh); the MLP is fc2(gelu_tanh(fc1(x))) with hidden mlp_hidden or 4 d;
LayerNorm eps from the config. `set_reference(model, True)` switches every attention to
F.scaled_dot_product_attention and the pooled queries to F.avg_pool1d (ceil_mode for a partial
group) / repeat_interleave, so the generator can check the hand-written pieces against PyTorch's own
before it writes a fixture (`reference_deviation`).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from torch_lm import Mlp


class Attention(nn.Module):
    """hseq's MultiHeadAttention with mask none: every query sees every key. xkv None:
    self-attention. The hand-written path keeps the last probabilities [B, H, Tq, Tk] in `probs`
    (no gradient) for the generator's check that the attention is far from uniform."""

    def __init__(self, d, h, sdpa=False):
        super().__init__()
        self.h, self.sdpa, self.probs = h, sdpa, None
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.out = nn.Linear(d, d)

    def forward(self, xq, xkv=None):
        if xkv is None:
            xkv = xq
        b, tq, d = xq.shape
        tk = xkv.shape[1]
        dh = d // self.h
        q = self.q(xq).view(b, tq, self.h, dh).transpose(1, 2)
        k, v = self.kv(xkv).split(d, dim=-1)
        k = k.reshape(b, tk, self.h, dh).transpose(1, 2)
        v = v.reshape(b, tk, self.h, dh).transpose(1, 2)
        if self.sdpa:
            y = F.scaled_dot_product_attention(q, k, v)
        else:
            att = ((q @ k.transpose(-1, -2)) / math.sqrt(dh)).softmax(-1)
            self.probs = att.detach()
            y = att @ v
        return self.out(y.transpose(1, 2).reshape(b, tq, d))


class Block(nn.Module):
    """The pre-LN block of nn/transformer_block.hpp with mask none (bidirectional)."""

    def __init__(self, d, h, hidden, eps, sdpa=False):
        super().__init__()
        self.ln1 = nn.LayerNorm(d, eps=eps)
        self.attn = Attention(d, h, sdpa)
        self.ln2 = nn.LayerNorm(d, eps=eps)
        self.mlp = Mlp(d, hidden)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class QueryBank(nn.Module):
    def __init__(self, rows, d):
        super().__init__()
        self.bank = nn.Parameter(torch.empty(rows, d))

    def forward(self, x, n_out):
        if n_out > self.bank.shape[0]:
            raise ValueError(f"{n_out} queries asked of a bank of {self.bank.shape[0]}")
        return self.bank[:n_out].unsqueeze(0).expand(x.shape[0], -1, -1)


class LengthMix(nn.Module):
    def __init__(self, n_out, n_in):
        super().__init__()
        self.mix = nn.Parameter(torch.empty(n_out, n_in))

    def forward(self, x, n_out):
        if tuple(self.mix.shape) != (n_out, x.shape[1]):
            raise ValueError(f"the mix {tuple(self.mix.shape)} does not map {x.shape[1]} rows to {n_out}")
        return torch.einsum("oi,bid->bod", self.mix, x)


def ceil_div(n, r):
    return -(-n // r)


class PooledQueries(nn.Module):
    """Reduce: the mean of each group of R rows, a partial last group (r = n - (m - 1) R valid rows)
    averaged over its r rows; expand: every input row repeated R times, the rows past n_out cut."""

    def __init__(self, r, reduce):
        super().__init__()
        self.r, self.reduce, self.reference = r, reduce, False

    def forward(self, x, n_out):
        b, n_in, d = x.shape
        if self.reduce:
            if n_out != ceil_div(n_in, self.r):
                raise ValueError(f"{n_in} rows pool to {ceil_div(n_in, self.r)}, not {n_out}")
            if n_in % self.r == 0:
                if self.reference:
                    return F.avg_pool1d(x.transpose(1, 2), self.r).transpose(1, 2)
                return x.reshape(b, n_out, self.r, d).mean(2)
            if self.reference:
                # ceil_mode adds the partial window; with padding 0 its divisor is the count of
                # valid rows (count_include_pad only counts explicit padding; the generator checks
                # that both settings and an explicit mean agree).
                return F.avg_pool1d(x.transpose(1, 2), self.r, ceil_mode=True,
                                    count_include_pad=False).transpose(1, 2)
            # Zero rows past n, group sums, then each group's sum over its count of valid rows.
            padded = F.pad(x, (0, 0, 0, n_out * self.r - n_in))
            counts = torch.full((n_out, 1), float(self.r), dtype=x.dtype, device=x.device)
            counts[-1] = n_in - (n_out - 1) * self.r
            return padded.reshape(b, n_out, self.r, d).sum(2) / counts
        if ceil_div(n_out, self.r) != n_in:
            raise ValueError(f"{n_in} rows do not expand to {n_out} (ceil({n_out} / {self.r}) != {n_in})")
        if self.reference:
            y = x.repeat_interleave(self.r, dim=1)
            return y if n_out == n_in * self.r else y[:, :n_out]
        return x[:, torch.arange(n_out, device=x.device) // self.r]


class Resampler(nn.Module):
    """hier::LengthResampler: reduce maps x [B, n, d] to [B, ceil(n / R), d], expand [B, m, d] to
    [B, n, d] for the n it is given (ceil(n / R) = m; m R by default); `window` is the full-rate
    length N this step is built for."""

    def __init__(self, c, window, reduce):
        super().__init__()
        r, d = int(c["reduce"]), c["dim"]
        self.r, self.reduce, self.residual = r, reduce, c.get("residual", True)
        n_in, n_out = (window, ceil_div(window, r)) if reduce else (ceil_div(window, r), window)
        kind = c["queries"]
        if kind == "bank":
            self.query = QueryBank(n_out, d)
        elif kind == "mix":
            self.query = LengthMix(n_out, n_in)
        elif kind == "pool":
            self.query = PooledQueries(r, reduce)
        else:
            raise ValueError(f"unknown query source {kind!r} (bank, mix or pool)")
        self.attn = Attention(d, c["heads"])

    def forward(self, x, n_out=None):
        n_in = x.shape[1]
        if self.reduce:
            if n_out is not None and n_out != ceil_div(n_in, self.r):
                raise ValueError(f"a reducer maps {n_in} rows to {ceil_div(n_in, self.r)}, not {n_out}")
            n_out = ceil_div(n_in, self.r)
        else:
            n_out = n_in * self.r if n_out is None else n_out
            if ceil_div(n_out, self.r) != n_in:
                raise ValueError(f"an expander of {n_in} rows gives n with ceil(n / {self.r}) = {n_in}, not {n_out}")
        z = self.query(x, n_out)
        y = self.attn(z, x)
        return z + y if self.residual else y


class SeqAutoencoder(nn.Module):
    """`c` is hseq's config JSON (SeqAutoencoder::config_json): vocab, dim, heads, enc_layers,
    dec_layers, window, steps, mlp_hidden, residual, tied, eps, init_std, and the compile-time
    "reduce" (R, a string) and "queries" ("bank", "mix" or "pool")."""

    def __init__(self, c, sdpa=False):
        super().__init__()
        d, r, steps, window = c["dim"], int(c["reduce"]), c["steps"], c["window"]
        if r < 2 or steps < 1 or window < 1:
            raise ValueError(f"R = {r} must be >= 2, steps = {steps} >= 1 and window = {window} >= 1")
        hidden = c.get("mlp_hidden", 0) or 4 * d
        eps = c.get("eps", 1e-5)
        self.r, self.steps, self.window, self.queries = r, steps, window, c["queries"]
        self.tied = c.get("tied", True)
        self.tok_emb = nn.Embedding(c["vocab"], d)
        self.pos_enc = nn.Embedding(window, d)
        self.enc = nn.ModuleList([Block(d, c["heads"], hidden, eps, sdpa) for _ in range(c["enc_layers"])])
        self.ln_e = nn.LayerNorm(d, eps=eps)
        windows = self.step_lengths(window)  # N_s = ceil(N_{s-1} / R), N_0 = window
        self.reduce = nn.ModuleList([Resampler(c, windows[s], True) for s in range(steps)])
        self.expand = nn.ModuleList([Resampler(c, windows[s], False) for s in range(steps)])
        self.pos_dec = nn.Embedding(window, d)
        self.dec = nn.ModuleList([Block(d, c["heads"], hidden, eps, sdpa) for _ in range(c["dec_layers"])])
        self.ln_f = nn.LayerNorm(d, eps=eps)
        if not self.tied:
            self.head = nn.Linear(d, c["vocab"], bias=False)
        if sdpa:
            set_reference(self, True)

    def init_like_hseq(self, std=0.02):
        """hseq's initialisation: N(0, std) weights, embeddings, position tables, query banks and
        mixes; the blocks' residual output projections N(0, std / sqrt(2 (enc + dec layers)));
        zero biases, unit LayerNorm gains."""
        out_std = std / math.sqrt(2 * max(len(self.enc) + len(self.dec), 1))
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("bias"):
                    p.zero_()
                elif p.dim() == 1:
                    p.fill_(1.0)
                elif name.split(".")[0] in ("enc", "dec") and name.endswith(("attn.out.weight", "mlp.fc2.weight")):
                    p.normal_(0, out_std)
                else:
                    p.normal_(0, std)

    def step_lengths(self, n):
        """[n_0 = n, n_1, ..., n_S], n_s = ceil(n_{s-1} / R)."""
        out = [n]
        for _ in range(self.steps):
            out.append(ceil_div(out[-1], self.r))
        return out

    def latent_length(self, n):
        """hseq's SeqAutoencoder::latent_length: n_S."""
        return self.step_lengths(n)[-1]

    def check_length(self, n):
        if not 1 <= n <= self.window:
            raise ValueError(f"length {n} must be in [1, window {self.window}]")
        if self.queries == "mix" and n != self.window:
            raise ValueError(f"length {n} differs from the window {self.window} that the mix is fixed to")

    def encode(self, ids):
        """The latent z_S [B, latent_length(n), d] of ids [B, n]."""
        n = ids.shape[1]
        self.check_length(n)
        x = self.tok_emb(ids) + self.pos_enc.weight[:n]
        for blk in self.enc:
            x = blk(x)
        z = self.ln_e(x)
        for red in self.reduce:
            z = red(z)
        return z

    def decode(self, latent, n=None):
        """Logits [B, n, V] from a latent [B, m, d], latent_length(n) = m (n = m R^S by default)."""
        if n is None:
            n = latent.shape[1] * self.r ** self.steps
        self.check_length(n)
        lengths = self.step_lengths(n)
        if lengths[-1] != latent.shape[1]:
            raise ValueError(f"a latent of {latent.shape[1]} rows is not one of a length {n} ({lengths[-1]} rows)")
        u = latent
        for s in reversed(range(self.steps)):
            u = self.expand[s](u, lengths[s])
        y = u + self.pos_dec.weight[:u.shape[1]]
        for blk in self.dec:
            y = blk(y)
        w_out = self.tok_emb.weight if self.tied else self.head.weight
        return self.ln_f(y) @ w_out.t()

    def forward(self, ids, targets=None):
        """(logits, loss, latent); loss None without targets."""
        latent = self.encode(ids)
        logits = self.decode(latent, ids.shape[1])
        if targets is None:
            return logits, None, latent
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-1)
        return logits, loss, latent


def set_reference(model, on):
    """Every attention through F.scaled_dot_product_attention and every pooled query source through
    F.avg_pool1d (ceil_mode for a partial group) / repeat_interleave (on), or both hand-written (off);
    the parameters are the same."""
    for m in model.modules():
        if isinstance(m, Attention):
            m.sdpa = on
        if isinstance(m, PooledQueries):
            m.reference = on


def reference_deviation(model, ids, targets):
    """Forward and backward once hand-written and once through PyTorch's own pieces
    (set_reference), model in float64; returns the largest differences of the logits, the latent,
    the loss and the gradients, each relative to the largest magnitude of the hand-written result.
    Leaves the model hand-written with no gradients."""
    runs = []
    for on in (False, True):
        set_reference(model, on)
        model.zero_grad(set_to_none=True)
        logits, loss, latent = model(ids, targets)
        loss.backward()
        runs.append((logits.detach().clone(), latent.detach().clone(), loss.detach().clone(),
                     {n: p.grad.detach().clone() for n, p in model.named_parameters()}))
    set_reference(model, False)
    model.zero_grad(set_to_none=True)
    (l0, z0, s0, g0), (l1, z1, s1, g1) = runs
    if g0.keys() != g1.keys():
        raise AssertionError("the reference run reached other parameters")
    g_scale = max(g.abs().max().item() for g in g0.values())
    return {"logits": ((l1 - l0).abs().max() / l0.abs().max()).item(),
            "latent": ((z1 - z0).abs().max() / z0.abs().max()).item(),
            "loss": ((s1 - s0).abs() / s0.abs()).item(),
            "grads": max((g1[n] - g0[n]).abs().max().item() for n in g0) / g_scale}
