#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""PyTorch eager peer of build/bench/hseq_bench_cuda's training section: the same models
(tools/torch_lm.py, tools/torch_hourglass.py mirror hseq's modules and parameter layout), the same
configurations (d 512, 8 heads, T 2048, vocabulary 256; TransformerLm with 8 layers; Hourglass
"2@1 4@4 2@1" with AvgPool/Repeat and AttentionPool/AttentionUp), batch 16 and 8, in three
precisions:

  fp32  torch.backends.cuda.matmul.allow_tf32 = False (and cuDNN's), matmul precision "highest"
  tf32  allow_tf32 = True, matmul precision "high"
  bf16  torch.autocast(bfloat16) around forward + loss; fp32 master weights, gradients, AdamW

Every attention goes through F.scaled_dot_product_attention (is_causal=True in the Transformer
blocks; a boolean attn_mask in the Hourglass resampling cross-attention), PyTorch's best eager
path; which SDPA backend PyTorch picks for each configuration is reported (sdpa_backend_*).
One training step = zero_grad(set_to_none) + forward + cross-entropy + backward + AdamW
(fused=True on CUDA), no gradient clipping (hseq_bench_cuda clips neither). Timed with
torch.cuda.Event around each step after warm-up steps; median step time -> tokens/s.
Model FLOPs per token use the same formula as hseq_bench_cuda (6 N_eff + attention term: the
models' flops(T), include/hseq/models/flops.hpp; see model_flops below), MFU against the H100 SXM datasheet dense peaks and against a torch.matmul
8192^3 ceiling measured here (section "ceiling").

One JSON object per line on stdout.

    python3 bench/peer_pytorch_gpu.py                    # the full run (about 2 minutes on an H100)
    python3 bench/peer_pytorch_gpu.py --device cpu --quick   # smoke run of every code path
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from torch_hourglass import Hourglass  # noqa: E402
from torch_lm import TransformerLm  # noqa: E402

DATASHEET_TFLOPS = {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4}
DATASHEET_NAME = "H100 SXM dense (fp32 67, tf32 494.7, bf16 989.4 TFLOP/s)"
MODELS = {
    "lm": ("transformer_lm", None, None),
    "hg_avg": ("hourglass_avgpool_repeat", "avg", "repeat"),
    "hg_attn": ("hourglass_attnpool_attnup", "attention", "attention"),
}
HIERARCHY = "2@1 4@4 2@1"

T0 = time.perf_counter()


def emit(obj):
    obj["t_s"] = round(time.perf_counter() - T0, 2)
    print(json.dumps(obj), flush=True)


def r(x, nd=4):
    return round(x, nd) if isinstance(x, float) and math.isfinite(x) else x


# ---------------------------------------------------------------------------------------------
# Precision settings
# ---------------------------------------------------------------------------------------------

def set_precision(prec):
    tf32 = prec == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.set_float32_matmul_precision("high" if tf32 else "highest")


def autocast_ctx(prec, device):
    if prec == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return torch.autocast(device_type=device.type, enabled=False)


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------

def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(fn, device, reps, max_seconds, min_reps=3):
    """Per-call times in ms: CUDA events on the GPU, perf_counter on the CPU."""
    ms = []
    total = 0.0
    for _ in range(reps):
        if device.type == "cuda":
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            e0.record()
            fn()
            e1.record()
            e1.synchronize()
            m = e0.elapsed_time(e1)
        else:
            t = time.perf_counter()
            fn()
            m = (time.perf_counter() - t) * 1e3
        ms.append(m)
        total += m / 1e3
        if len(ms) >= min_reps and total > max_seconds:
            break
    return ms


# ---------------------------------------------------------------------------------------------
# SDPA backend in use
# ---------------------------------------------------------------------------------------------

def sdpa_backend(q, k, v, mask, causal):
    """Name of the backend F.scaled_dot_product_attention dispatches to for these inputs."""
    try:
        from torch.nn.attention import SDPBackend
        names = {int(b.value): n for n, b in SDPBackend.__members__.items()}
    except Exception:  # older torch
        names = {0: "MATH", 1: "FLASH_ATTENTION", 2: "EFFICIENT_ATTENTION", 3: "CUDNN_ATTENTION"}
    try:
        choice = torch._fused_sdp_choice(q, k, v, mask, 0.0, causal)
        return names.get(int(choice), str(int(choice)))
    except Exception as e:  # private API: report instead of failing
        return "unknown (%s)" % type(e).__name__


def sdpa_backends(cfg, batch, prec, device, cross):
    """Backends of the causal self-attention and (for the Hourglass) the masked cross-attention,
    for the dtype the attention sees (bf16 under autocast) and tensors that require grad."""
    dtype = torch.bfloat16 if prec == "bf16" else torch.float32
    h, d, t = cfg["heads"], cfg["dim"], cfg["context"]
    dh = d // h
    out = {}
    try:
        q = torch.randn(batch, h, t, dh, device=device, dtype=dtype, requires_grad=True)
        out["sdpa_backend_self"] = sdpa_backend(q, q, q, None, True)
        if cross:
            k = 4
            qs = torch.randn(batch, h, t // k, dh, device=device, dtype=dtype, requires_grad=True)
            i = torch.arange(t // k, device=device).unsqueeze(1)
            j = torch.arange(t, device=device).unsqueeze(0)
            out["sdpa_backend_pool"] = sdpa_backend(qs, q, q, j <= i * k + k - 1, False)
        del q
    except Exception as e:
        out["sdpa_backend_error"] = repr(e)
    return out


# ---------------------------------------------------------------------------------------------
# Model FLOPs (the same formula as bench/cuda/bench_cuda.cu)
# ---------------------------------------------------------------------------------------------

def parse_levels(text):
    """[(layers, per-level factor)] and (pre, post) of the N@F notation (same as torch_hourglass)."""
    from torch_hourglass import parse_hierarchy
    return parse_hierarchy(text)


def model_flops(model, kind, cfg):
    """Model FLOPs per token: 6 N_eff + attention term.

    N_eff: non-embedding parameters (token and position embeddings excluded), each weighted by the
    fraction of full-rate positions its layer processes (1 in the LM). Attention term: 12 d Tq Tk / T
    per attention layer and token (forward + backward of QK^T and PV), i.e. 12 L d T for the LM:
    PaLM's 6N + 12 L d T ("palm", attention not causal-halved); "causal" halves the attention term.
    The tied output projection (6 d V per token) is not counted."""
    d, t = cfg["dim"], cfg["context"]
    n_total = n_nonemb = n_eff = 0.0
    if kind == "lm":
        rate = [1.0]
    else:
        pre, post, levels = parse_levels(HIERARCHY)
        rate = [1.0]
        for _, k in levels:
            rate.append(rate[-1] * k)
    for name, p in model.named_parameters():
        n = float(p.numel())
        n_total += n
        if name.startswith("tok_emb.") or name.startswith("pos_emb."):
            continue
        n_nonemb += n
        frac = 1.0
        if name.startswith("levels."):
            parts = name.split(".", 2)
            i, rest = int(parts[1]), parts[2]
            inner, outer = 1.0 / rate[i + 1], 1.0 / rate[i]
            if rest.startswith("pre.") or rest.startswith("post."):
                frac = inner
            elif rest.startswith("shorten."):
                frac = outer if rest.startswith(("shorten.attn.kv.", "shorten.ln_in.")) else inner
            elif rest.startswith("upsample."):
                frac = inner if rest.startswith(("upsample.attn.kv.", "upsample.ln_s.")) else outer
            else:
                frac = outer  # ln_up
        n_eff += n * frac
    if kind == "lm":
        attn = 12.0 * cfg["layers"] * d * t
    else:
        pre, post, levels = parse_levels(HIERARCHY)
        attn = 12.0 * d * t * (pre + post)
        attn_pool = cfg["shorten"] == "attention"
        attn_up = cfg["upsample"] == "attention"
        for i, (layers, _) in enumerate(levels):
            blocks = layers * (2 if i + 1 < len(levels) else 1)
            attn += blocks * 12.0 * d * t / (rate[i + 1] ** 2)
            cross = 12.0 * d * t / (rate[i] * rate[i + 1])
            attn += cross * (int(attn_pool) + int(attn_up))
    return {"params_total": n_total, "params_nonembedding": n_nonemb, "params_effective": n_eff,
            "flops_per_token_palm": 6.0 * n_eff + attn, "flops_per_token_causal": 6.0 * n_eff + 0.5 * attn,
            "head_flops_per_token_not_counted": 6.0 * d * cfg["vocab"]}


# ---------------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------------

def matmul_ceiling(args, device, prec):
    n = 512 if args.quick else 8192
    base = {"section": "ceiling", "name": "torch.matmul", "precision": prec, "m": n, "n": n, "k": n}
    try:
        set_precision(prec)
        dtype = torch.bfloat16 if prec == "bf16" else torch.float32
        g = torch.Generator(device=device).manual_seed(1)
        a = (torch.rand(n, n, device=device, generator=g) * 2 - 1).to(dtype)
        b = (torch.rand(n, n, device=device, generator=g) * 2 - 1).to(dtype)
        for _ in range(2):
            torch.matmul(a, b)
        sync(device)
        ms = time_steps(lambda: torch.matmul(a, b), device, args.reps, 1.5)
        med = statistics.median(ms)
        tf = 2.0 * n ** 3 / (med * 1e-3) / 1e12
        base.update({"median_ms": r(med), "min_ms": r(min(ms)), "reps": len(ms), "tflops": r(tf, 3),
                     "datasheet_tflops": DATASHEET_TFLOPS[prec],
                     "fraction_of_datasheet": r(tf / DATASHEET_TFLOPS[prec]),
                     "note": "bf16 row: bf16 operands and output (what autocast runs)"})
        del a, b
        emit(base)
        return tf
    except Exception as e:
        base["error"] = repr(e)
        emit(base)
        return 0.0


def build_model(key, cfg_base, sdpa, device):
    kind_name, shorten, upsample = MODELS[key]
    if key == "lm":
        cfg = dict(cfg_base)
        model = TransformerLm(cfg, sdpa=sdpa)
        model.init_like_hseq()
    else:
        cfg = dict(cfg_base, hierarchy=HIERARCHY, shorten=shorten, upsample=upsample)
        cfg.pop("layers", None)
        model = Hourglass(cfg, sdpa=sdpa)
        init_like_hseq(model)
    return kind_name, cfg, model.to(device)


def init_like_hseq(model, std=0.02):
    """hseq's initialisation rules for any of the twins (TransformerLm has its own method): N(0, std)
    weights and embeddings, residual output projections N(0, std / sqrt(2 layers)), zero biases,
    unit LayerNorm gains. Throughput does not depend on it; it keeps the first loss near ln 256."""
    layers = sum(1 for n, _ in model.named_parameters() if n.endswith("mlp.fc2.weight"))
    out_std = std / math.sqrt(2 * max(1, layers))
    norms = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.LayerNorm)}
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif id(p) in norms:
                p.fill_(1.0)
            elif name.endswith("attn.out.weight") or name.endswith("mlp.fc2.weight"):
                p.normal_(0, out_std)
            else:
                p.normal_(0, std)


def train_case(args, device, key, cfg_base, batch, prec, ceilings):
    kind_name = MODELS[key][0]
    base = {"section": "train", "model": kind_name, "batch": batch, "t": cfg_base["context"], "d": cfg_base["dim"],
            "heads": cfg_base["heads"], "precision": prec, "sdpa": not args.no_sdpa}
    if key == "lm":
        base["layers"] = cfg_base["layers"]
    else:
        base["hierarchy"] = HIERARCHY
    if time.perf_counter() - T0 > args.budget:
        base["skipped"] = "over the --budget"
        emit(base)
        return
    model = opt = None
    try:
        set_precision("fp32" if prec == "bf16" else prec)
        base.update({"allow_tf32": torch.backends.cuda.matmul.allow_tf32,
                     "float32_matmul_precision": torch.get_float32_matmul_precision(),
                     "autocast": "bfloat16" if prec == "bf16" else None})
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        torch.manual_seed(0)
        _, cfg, model = build_model(key, cfg_base, not args.no_sdpa, device)
        fused = device.type == "cuda"
        try:
            opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01, fused=fused)
        except (TypeError, RuntimeError):
            fused = False
            opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
        g = torch.Generator(device=device).manual_seed(3)
        t = cfg["context"]
        x = torch.randint(0, cfg["vocab"], (batch, t), device=device, generator=g)
        y = torch.randint(0, cfg["vocab"], (batch, t), device=device, generator=g)
        losses = []

        def step():
            opt.zero_grad(set_to_none=True)
            with autocast_ctx(prec, device):
                _, loss = model(x, y)
            loss.backward()
            opt.step()
            losses.append(loss.detach())

        w0 = time.perf_counter()
        step()
        sync(device)
        first_s = time.perf_counter() - w0
        warm = 2 if first_s < 1.0 else (1 if first_s < 3.0 else 0)
        for _ in range(warm):
            step()
        sync(device)
        ms = time_steps(step, device, 3 if args.quick else 20, 0.5 if args.quick else 2.0,
                        min_reps=2 if first_s > 5.0 else 3)
        med = statistics.median(ms)
        tokens = batch * t
        tps = tokens / (med * 1e-3)
        fl = model_flops(model, key, cfg)
        sheet = DATASHEET_TFLOPS[prec]
        meas = ceilings.get(prec, 0.0)
        ach_palm = tps * fl["flops_per_token_palm"] / 1e12
        ach_causal = tps * fl["flops_per_token_causal"] / 1e12
        base.update({"tokens_per_s": r(tps, 3), "step_ms_median": r(med, 3), "step_ms_min": r(min(ms), 3),
                     "reps": len(ms), "first_step_s": r(first_s, 3), "loss_first": r(float(losses[0]), 4),
                     "loss_last": r(float(losses[-1]), 4), "adamw_fused": fused})
        base.update(fl)
        base.update({"achieved_tflops_palm": r(ach_palm, 3), "achieved_tflops_causal": r(ach_causal, 3),
                     "datasheet_tflops": sheet, "mfu_palm_vs_datasheet": r(ach_palm / sheet),
                     "mfu_causal_vs_datasheet": r(ach_causal / sheet)})
        if meas > 0:
            base.update({"measured_matmul_tflops": r(meas, 3), "mfu_palm_vs_measured": r(ach_palm / meas),
                         "mfu_causal_vs_measured": r(ach_causal / meas)})
        if device.type == "cuda":
            base["gpu_mem_peak_gib"] = r(torch.cuda.max_memory_allocated(device) / 2 ** 30, 3)
        if not args.no_sdpa:
            base.update(sdpa_backends(cfg, batch, prec, device, cross=(key == "hg_attn")))
        emit(base)
    except Exception as e:  # OOM or anything else: report and go on with the next configuration
        base["error"] = repr(e)[:2000]
        emit(base)
    finally:
        del model, opt
        if device.type == "cuda":
            torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu (smoke runs)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: d 64, 2 heads, T 128, batch 2")
    ap.add_argument("--batches", default=None, help="comma-separated batch sizes (default 16,8; --quick 2)")
    ap.add_argument("--models", default="lm,hg_avg,hg_attn", help="lm, hg_avg, hg_attn")
    ap.add_argument("--precisions", default=None, help="fp32, tf32, bf16 (default all; on cpu: fp32,bf16)")
    ap.add_argument("--reps", type=int, default=10, help="timed matmul repetitions of the ceiling section")
    ap.add_argument("--budget", type=float, default=120.0, help="seconds; past it no new configuration starts")
    ap.add_argument("--no-sdpa", action="store_true", help="explicit softmax attention (materialises T x T)")
    ap.add_argument("--no-ceiling", action="store_true", help="skip the torch.matmul ceiling section")
    args = ap.parse_args()

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        emit({"section": "skip", "reason": "torch.cuda.is_available() is False"})
        return 77
    batches = [int(b) for b in (args.batches or ("2" if args.quick else "16,8")).split(",") if b]
    precs = (args.precisions or ("fp32,tf32,bf16" if device.type == "cuda" else "fp32,bf16")).split(",")
    models = [m for m in args.models.split(",") if m]
    for m in models:
        if m not in MODELS:
            ap.error("unknown model %r (known: %s)" % (m, ", ".join(MODELS)))
    for p in precs:
        if p not in DATASHEET_TFLOPS:
            ap.error("unknown precision %r (known: fp32, tf32, bf16)" % p)
    if args.quick:
        cfg_base = dict(vocab=256, dim=64, heads=2, layers=8, context=128)
    else:
        cfg_base = dict(vocab=256, dim=512, heads=8, layers=8, context=2048)

    info = {"section": "device", "torch": torch.__version__, "device": str(device), "quick": args.quick,
            "batches": batches, "precisions": precs, "models": models, "datasheet": DATASHEET_NAME,
            "budget_s": args.budget}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update({"name": p.name, "sms": p.multi_processor_count, "memory_gib": r(p.total_memory / 2 ** 30, 3),
                     "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()})
        for flag in ("flash", "mem_efficient", "math", "cudnn"):
            fn = getattr(torch.backends.cuda, flag + "_sdp_enabled", None)
            if fn is not None:
                info["sdp_%s_enabled" % flag] = bool(fn())
    else:
        info["threads"] = torch.get_num_threads()
    emit(info)
    emit({"section": "train_info",
          "flops_formula": " ".join(model_flops.__doc__.split()),
          "step": "zero_grad(set_to_none) + forward + cross-entropy (under autocast for bf16) + backward + "
                  "AdamW (fused on CUDA); no clipping; random byte ids/targets",
          "timing": "torch.cuda.Event around each step after warm-up; median"})

    ceilings = {}
    if not args.no_ceiling:
        for p in precs:
            ceilings[p] = matmul_ceiling(args, device, p)
    for b in batches:
        for p in precs:
            for m in models:
                train_case(args, device, m, cfg_base, b, p, ceilings)
    emit({"section": "done", "elapsed_s": r(time.perf_counter() - T0, 2)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
