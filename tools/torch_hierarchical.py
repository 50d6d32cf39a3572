# SPDX-License-Identifier: MIT
"""PyTorch twin of hseq::models::Hierarchical (HRED / HAED, full end-to-end training mode) with
exactly hseq's parameter names and layouts, written from the equations in docs/hred_haed.md and
the policy headers' comments (include/hseq/hier/*.hpp). Used by tools/gen_hierarchical_fixture.py
to write the parity fixtures; see that script for how to regenerate them.

    x = E[ids]                         [B, T, d]
    e = Encoder(x)                     [B, N, d]   N = T / K, one vector per K-byte segment
    s = Backbone(e)                    [B, N, d]   causal over segments
    c = [start; s_0; ...; s_{N-2}]     [B, N, d]
    y = Decoder(c, x)                  [B, T, d]   row iK + r reads c_i and bytes iK .. iK + r
    logits = LN_f(y) E^T               [B, T, V]   loss: mean CE over targets != -1

Policies (the config's "encoder" / "backbone" / "decoder" / "segment" names, as hseq writes them):
  encoder  "mlp"          e_i = ln(fc2(gelu(fc1([x_iK; ...; x_iK+K-1]))))        (fc1: [hidden, K d])
           "rnn"          rnn: one GRU/LSTM layer per segment from zeros, e_i = last state
  backbone "rnn"          <l>.: `layers` stacked GRU/LSTM layers over e from zeros
           "transformer"  pos_emb.weight [context / K, d], blocks.<l>., ln_f.: s = ln_f(blocks(e + P))
  decoder  "rnn"          <l>.init. (Linear d -> d), <l>.rnn.: per segment, layer l starts from
                          init_l(c_i) (LSTM cell state 0); layer 0 reads u_r = [x_iK+r; c_i] (x first)
           "transformer"  pos_emb.weight [K + 1, d], blocks.<l>.: causal blocks over
                          [c_i; x_iK; ...; x_iK+K-1] + P per segment, y = outputs 1..K (no final LN)
  segment  "fixed<K>"     K bytes per segment

Recurrent cells use PyTorch's nn.GRU / nn.LSTM equations, gate orders (GRU r, z, n; LSTM i, f, g,
o) and parameter layouts, under hseq's names weight_ih [G H, in], weight_hh [G H, H], bias_ih,
bias_hh. They are written out by hand here (`Cell`); `set_reference(model, True)` switches every
cell to torch.nn.GRU / nn.LSTM (via torch.func.functional_call on the same tensors) and every
attention to F.scaled_dot_product_attention, so the generator can check the hand-written pieces
against PyTorch's own modules before it writes a fixture (`reference_deviation`).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from torch_lm import Block

GATES = {"gru": 3, "lstm": 4}


class Cell(nn.Module):
    """One GRU or LSTM layer over a batch-first sequence: y [B, T, H], (h_T, c_T) from x [B, T, in]
    and h0 [B, H] (None: zeros; an LSTM's cell state always starts at zero here, as in every hseq
    policy)."""

    def __init__(self, kind, inp, hidden):
        super().__init__()
        if kind not in GATES:
            raise ValueError(f"unknown recurrent cell {kind!r}")
        g = GATES[kind]
        self.kind, self.inp, self.hidden, self.native = kind, inp, hidden, False
        self.weight_ih = nn.Parameter(torch.empty(g * hidden, inp))
        self.weight_hh = nn.Parameter(torch.empty(g * hidden, hidden))
        self.bias_ih = nn.Parameter(torch.empty(g * hidden))
        self.bias_hh = nn.Parameter(torch.empty(g * hidden))

    def forward(self, x, h0=None):
        b = x.shape[0]
        if h0 is None:
            h0 = x.new_zeros(b, self.hidden)
        c0 = x.new_zeros(b, self.hidden)
        return self._native(x, h0, c0) if self.native else self._by_hand(x, h0, c0)

    def _by_hand(self, x, h, c):
        gi = x @ self.weight_ih.t() + self.bias_ih  # every step's input projection at once
        ys = []
        for t in range(x.shape[1]):
            gh = h @ self.weight_hh.t() + self.bias_hh
            if self.kind == "gru":
                ir, iz, i_n = gi[:, t].chunk(3, -1)
                hr, hz, h_n = gh.chunk(3, -1)
                r = torch.sigmoid(ir + hr)
                z = torch.sigmoid(iz + hz)
                n = torch.tanh(i_n + r * h_n)  # the reset gate scales the hidden projection incl. its bias
                h = (1 - z) * n + z * h
            else:
                i, f, g, o = (gi[:, t] + gh).chunk(4, -1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
            ys.append(h)
        return torch.stack(ys, 1), (h, c)

    def _native(self, x, h0, c0):
        ref = (nn.GRU if self.kind == "gru" else nn.LSTM)(self.inp, self.hidden, batch_first=True)
        ref = ref.to(dtype=x.dtype, device=x.device)
        params = {"weight_ih_l0": self.weight_ih, "weight_hh_l0": self.weight_hh,
                  "bias_ih_l0": self.bias_ih, "bias_hh_l0": self.bias_hh}
        state = h0.unsqueeze(0) if self.kind == "gru" else (h0.unsqueeze(0), c0.unsqueeze(0))
        y, st = functional_call(ref, params, (x, state))
        if self.kind == "gru":
            return y, (st[0], c0)
        return y, (st[0][0], st[1][0])


def hidden_of(c):
    return c.get("mlp_hidden", 0) or 4 * c["dim"]


class MlpEncoder(nn.Module):
    def __init__(self, c, k):
        super().__init__()
        d = c["dim"]
        self.k = k
        self.fc1 = nn.Linear(k * d, hidden_of(c))
        self.fc2 = nn.Linear(hidden_of(c), d)
        self.ln = nn.LayerNorm(d, eps=c["eps"])

    def forward(self, x):
        b, t, d = x.shape
        z = x.reshape(b, t // self.k, self.k * d)  # byte r of a segment is columns [r d, (r + 1) d)
        return self.ln(self.fc2(F.gelu(self.fc1(z), approximate="tanh")))


class RnnEncoder(nn.Module):
    def __init__(self, c, k):
        super().__init__()
        self.k = k
        self.rnn = Cell(c["cell"], c["dim"], c["dim"])

    def forward(self, x):
        b, t, d = x.shape
        _, (h, _) = self.rnn(x.reshape(b * (t // self.k), self.k, d))  # every segment from zeros
        return h.reshape(b, t // self.k, d)


class RnnBackbone(nn.Module):
    def __init__(self, c, k):
        super().__init__()
        for l in range(c["layers"]):
            self.add_module(str(l), Cell(c["cell"], c["dim"], c["dim"]))

    def forward(self, e):
        for cell in self.children():
            e, _ = cell(e)
        return e


class TransformerBackbone(nn.Module):
    def __init__(self, c, k):
        super().__init__()
        d = c["dim"]
        self.pos_emb = nn.Embedding(c["context"] // k, d)
        self.blocks = nn.ModuleList([Block(d, c["heads"], hidden_of(c), c["eps"], False) for _ in range(c["layers"])])
        self.ln_f = nn.LayerNorm(d, eps=c["eps"])

    def forward(self, e):
        h = e + self.pos_emb.weight[:e.shape[1]]
        for blk in self.blocks:
            h = blk(h)
        return self.ln_f(h)


class RnnDecoderLayer(nn.Module):
    def __init__(self, c, inp):
        super().__init__()
        self.init = nn.Linear(c["dim"], c["dim"])
        self.rnn = Cell(c["cell"], inp, c["dim"])


class RnnDecoder(nn.Module):
    def __init__(self, c, k):
        super().__init__()
        d = c["dim"]
        self.k = k
        for l in range(c["decoder_layers"]):
            self.add_module(str(l), RnnDecoderLayer(c, 2 * d if l == 0 else d))

    def forward(self, cond, x):
        b, t, d = x.shape
        rows = b * (t // self.k)
        c = cond.reshape(rows, d)
        # Each segment is its own sequence; the condition joins every step's input.
        u = torch.cat([x.reshape(rows, self.k, d), c.unsqueeze(1).expand(rows, self.k, d)], -1)
        for layer in self.children():
            u, _ = layer.rnn(u, layer.init(c))
        return u.reshape(b, t, d)


class TransformerDecoder(nn.Module):
    def __init__(self, c, k):
        super().__init__()
        d = c["dim"]
        self.k = k
        self.pos_emb = nn.Embedding(k + 1, d)
        self.blocks = nn.ModuleList([Block(d, c["heads"], hidden_of(c), c["eps"], False)
                                     for _ in range(c["decoder_layers"])])

    def forward(self, cond, x):
        b, t, d = x.shape
        rows = b * (t // self.k)
        z = torch.cat([cond.reshape(rows, 1, d), x.reshape(rows, self.k, d)], 1) + self.pos_emb.weight
        for blk in self.blocks:
            z = blk(z)
        return z[:, 1:].reshape(b, t, d)  # the condition's own output row is not used


ENCODERS = {"mlp": MlpEncoder, "rnn": RnnEncoder}
BACKBONES = {"rnn": RnnBackbone, "transformer": TransformerBackbone}
DECODERS = {"rnn": RnnDecoder, "transformer": TransformerDecoder}


def segment_size(c):
    name = c["segment"]
    if not name.startswith("fixed") or not name[5:].isdigit():
        raise ValueError(f"unknown segmenter {name!r} (only fixed<K>)")
    return int(name[5:])


class Hierarchical(nn.Module):
    """`c` is hseq's config JSON (Hierarchical::config_json): vocab, dim, heads, layers,
    decoder_layers, mlp_hidden, cell, context, eps, init_std, segment, encoder, backbone, decoder.
    Registration order follows hseq's visit_params order (tok_emb, encoder, backbone, start,
    decoder, ln_f); the names are what matter."""

    def __init__(self, c):
        super().__init__()
        self.k = segment_size(c)
        if c["context"] % self.k:
            raise ValueError("context must be a multiple of the segment size")
        d = c["dim"]
        self.tok_emb = nn.Embedding(c["vocab"], d)
        self.encoder = ENCODERS[c["encoder"]](c, self.k)
        self.backbone = BACKBONES[c["backbone"]](c, self.k)
        self.start = nn.Parameter(torch.zeros(d))
        self.decoder = DECODERS[c["decoder"]](c, self.k)
        self.ln_f = nn.LayerNorm(d, eps=c["eps"])

    def forward(self, ids, targets=None):
        b, t = ids.shape
        if t % self.k:
            raise ValueError(f"sequence length {t} is not a multiple of the segment size {self.k}")
        x = self.tok_emb(ids)
        e = self.encoder(x)
        s = self.backbone(e)
        c = torch.cat([self.start.expand(b, 1, -1), s[:, :-1]], 1)  # shift by one segment
        y = self.decoder(c, x)
        logits = self.ln_f(y) @ self.tok_emb.weight.t()
        if targets is None:
            return logits, None
        return logits, F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-1)

    @staticmethod
    def decays(name, p):
        """hseq's AdamW decay flags: matrices decay (Linear weights, the cells' weight_ih and
        weight_hh), embedding and position tables do not; nor do vectors (biases, LayerNorm, start)."""
        return p.dim() == 2 and not name.endswith("emb.weight")

    def param_groups(self, weight_decay):
        named = list(self.named_parameters())
        return [{"params": [p for n, p in named if self.decays(n, p)], "weight_decay": weight_decay},
                {"params": [p for n, p in named if not self.decays(n, p)], "weight_decay": 0.0}]


def set_reference(model, on):
    """Every attention through F.scaled_dot_product_attention and every cell through
    torch.nn.GRU / nn.LSTM (on), or both hand-written (off); the parameters are the same tensors."""
    for m in model.modules():
        if hasattr(m, "sdpa"):
            m.sdpa = on
        if isinstance(m, Cell):
            m.native = on


def reference_deviation(model, ids, targets):
    """Forward and backward once hand-written and once through PyTorch's own modules
    (set_reference), model in float64; returns the largest differences of the logits, the loss and
    the gradients, each relative to the largest magnitude of the hand-written result. Leaves the
    model hand-written with no gradients."""
    runs = []
    for on in (False, True):
        set_reference(model, on)
        model.zero_grad(set_to_none=True)
        logits, loss = model(ids, targets)
        loss.backward()
        runs.append((logits.detach().clone(), loss.detach().clone(),
                     {n: p.grad.detach().clone() for n, p in model.named_parameters()}))
    set_reference(model, False)
    model.zero_grad(set_to_none=True)
    (l0, s0, g0), (l1, s1, g1) = runs
    if g0.keys() != g1.keys():
        raise AssertionError("the reference run reached other parameters")
    g_scale = max(g.abs().max().item() for g in g0.values())
    return {"logits": ((l1 - l0).abs().max() / l0.abs().max()).item(),
            "loss": ((s1 - s0).abs() / s0.abs()).item(),
            "grads": max((g1[n] - g0[n]).abs().max().item() for n in g0) / g_scale}


def cell_deviation(kind, inp, hidden, seed=0, b=3, t=5):
    """The hand-written Cell against a torch.nn.GRU / nn.LSTM holding copies of its weights (no
    functional_call: a plain module, so the check does not depend on how the twin's reference mode
    is wired), float64, from a non-zero initial state: largest relative difference of the outputs,
    the final state and the gradients of parameters, input and initial state."""
    g = torch.Generator().manual_seed(seed)
    cell = Cell(kind, inp, hidden).double()
    ref = (nn.GRU if kind == "gru" else nn.LSTM)(inp, hidden, batch_first=True).double()
    with torch.no_grad():
        for p in cell.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.5)
        for n, p in cell.named_parameters():
            getattr(ref, n + "_l0").copy_(p)
    x = torch.randn(b, t, inp, generator=g, dtype=torch.float64)
    h0 = torch.randn(b, hidden, generator=g, dtype=torch.float64)
    w = torch.randn(b, t, hidden, generator=g, dtype=torch.float64)  # a loss that weights every output
    x1, h1 = x.clone().requires_grad_(), h0.clone().requires_grad_()
    y1, (hT1, _) = cell(x1, h1)
    ((y1 * w).sum() + hT1.square().sum()).backward()
    x2, h2 = x.clone().requires_grad_(), h0.clone().requires_grad_()
    state = h2.unsqueeze(0) if kind == "gru" else (h2.unsqueeze(0), torch.zeros(1, b, hidden, dtype=torch.float64))
    y2, st = ref(x2, state)
    hT2 = (st if kind == "gru" else st[0])[0]
    ((y2 * w).sum() + hT2.square().sum()).backward()

    def rel(a, b_):
        return ((a - b_).abs().max() / b_.abs().max()).item()

    devs = {"y": rel(y1, y2), "h_T": rel(hT1, hT2), "dx": rel(x1.grad, x2.grad), "dh0": rel(h1.grad, h2.grad)}
    for n, p in cell.named_parameters():
        devs["d" + n] = rel(p.grad, getattr(ref, n + "_l0").grad)
    return devs
