#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Side-by-side peer benchmark: hseq's TransformerLm (through hseq-train) against the same model in
PyTorch (scaled_dot_product_attention), same configuration, same data, same thread count.

Three modes:
  throughput  trains each for --steps steps (after --warmup-steps untimed ones) and prints tokens/s
              of both and their ratio, measured in this one run.
  variants    the same for every variant of --variants, each in its own process, one after the
              other in this one run: hseq-fp32, hseq-bf16 (hseq-train --precision bf16),
              torch-eager (fp32), torch-compile (torch.compile, fp32), torch-bf16 (eager under
              torch.autocast("cpu", bfloat16)). Prints tokens/s, the ratio to the first variant, and
              the peak resident memory of each process (VmHWM). Equal parameter counts: the same
              model on both sides.
  curve       trains each for --time-budget seconds with the same schedule (warm-up, then cosine over
              the budget), evaluating validation bpc on the same windows every --eval-every steps;
              writes <out>/hseq.csv, <out>/pytorch.csv and prints the final bpc of both.

Both sides: byte-level vocabulary 256, learned positions, tied output, pre-LN blocks, GELU (tanh),
AdamW (betas 0.9/0.95, eps 1e-8, weight decay 0.1 on Linear weights only), clip 1.0, hseq's
initialisation, random crops of seq_len + 1 bytes from the first 90% of the file, validation on
evenly spread windows of the last 10%.

    pip install torch
    python3 bench/peer_pytorch_lm.py throughput --hseq-train build/examples/hseq-train \\
        --data ../shared/data/tinyshakespeare.txt --threads 2
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 bench/peer_pytorch_lm.py variants \\
        --hseq-train build/examples/hseq-train --data ../shared/data/tinyshakespeare.txt --threads 2
"""
import argparse
import csv
import math
import os
import re
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from torch_lm import TransformerLm  # noqa: E402


def load_splits(path, val_fraction=0.1):
    data = open(path, "rb").read()
    n_train = int((1.0 - val_fraction) * len(data))
    return data[:n_train], data[n_train:]


def eval_windows(val, t, count):
    total = 0
    while total * t + t + 1 <= len(val):
        total += 1
    count = total if count == 0 else min(count, total)
    idx = [i * total // count for i in range(count)]
    return [(val[i * t:i * t + t], val[i * t + 1:i * t + t + 1]) for i in idx]


def to_tensor(chunks):
    return torch.tensor([list(c) for c in chunks], dtype=torch.long)


class Schedule:
    def __init__(self, lr, warmup, steps, budget, min_ratio=0.1):
        self.lr, self.warmup, self.steps, self.budget, self.min_ratio = lr, warmup, steps, budget, min_ratio

    def __call__(self, step, elapsed):
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        if self.steps > 0:
            p = min(1.0, (step - self.warmup) / max(1, self.steps - self.warmup))
        else:
            p = min(1.0, elapsed / self.budget)
        floor = self.lr * self.min_ratio
        return floor + 0.5 * (self.lr - floor) * (1 + math.cos(math.pi * p))


def run_pytorch(args, train, val, steps, budget, log_path=None, variant="torch-eager"):
    torch.manual_seed(args.seed)
    cfg = dict(vocab=256, dim=args.dim, heads=args.heads, layers=args.layers, context=args.seq_len)
    model = TransformerLm(cfg, sdpa=True)
    model.init_like_hseq()
    opt = torch.optim.AdamW(model.param_groups(0.1), lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    # torch-compile: the same module compiled (inductor); its compilation falls in the untimed
    # warm-up steps. torch-bf16: autocast to bfloat16 around the forward (master weights fp32).
    fwd = torch.compile(model) if variant == "torch-compile" else model
    autocast = variant == "torch-bf16"
    sched = Schedule(args.lr, args.warmup, steps, budget)
    windows = eval_windows(val, args.seq_len, args.eval_windows)
    g = torch.Generator().manual_seed(args.seed)
    t = args.seq_len

    def evaluate():
        model.eval()
        nll, n = 0.0, 0
        with torch.no_grad():
            for i in range(0, len(windows), args.batch):
                chunk = windows[i:i + args.batch]
                x, y = to_tensor([c[0] for c in chunk]), to_tensor([c[1] for c in chunk])
                _, loss = model(x, y)
                nll += loss.item() * y.numel()
                n += y.numel()
        model.train()
        return nll / n / math.log(2)

    writer = None
    if log_path:
        f = open(log_path, "w", newline="")
        writer = csv.writer(f)
        writer.writerow(["step", "loss", "bpc", "val_bpc", "seconds", "tokens"])
    elapsed, step, tokens = 0.0, 0, 0
    timed_tokens, timed_seconds = 0, 0.0
    while (steps > 0 and step < steps) or (steps == 0 and elapsed < budget):
        t0 = time.perf_counter()
        starts = torch.randint(0, len(train) - t - 1, (args.batch,), generator=g).tolist()
        x = to_tensor([train[s:s + t] for s in starts])
        y = to_tensor([train[s + 1:s + t + 1] for s in starts])
        if autocast:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                _, loss = fwd(x, y)
        else:
            _, loss = fwd(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        for group in opt.param_groups:
            group["lr"] = sched(step, elapsed)
        opt.step()
        dt = time.perf_counter() - t0
        elapsed += dt
        step += 1
        tokens += args.batch * t
        if step > args.warmup_steps:
            timed_tokens += args.batch * t
            timed_seconds += dt
        val_bpc = ""
        if writer and args.eval_every > 0 and step % args.eval_every == 0:
            val_bpc = evaluate()
        if writer:
            writer.writerow([step, loss.item(), loss.item() / math.log(2), val_bpc, elapsed, tokens])
    final = evaluate() if writer else float("nan")
    if writer:
        writer.writerow([step, "", "", final, elapsed, tokens])
        f.close()
    return timed_tokens / max(timed_seconds, 1e-9), final, step


def run_hseq(args, steps, budget, csv_path=None, precision="fp32"):
    cmd = [args.hseq_train, "--precision", precision, "--data", args.data, "--dim", str(args.dim), "--heads", str(args.heads),
           "--layers", str(args.layers), "--context", str(args.seq_len), "--batch", str(args.batch),
           "--lr", str(args.lr), "--warmup", str(args.warmup), "--seed", str(args.seed),
           "--eval-windows", str(args.eval_windows), "--sample-bytes", "0", "--threads", str(args.threads)]
    if steps > 0:
        cmd += ["--steps", str(steps), "--eval-every", "0"]
    else:
        cmd += ["--steps", "0", "--time-budget", str(budget), "--eval-every", str(args.eval_every)]
    if csv_path:
        cmd += ["--csv", csv_path]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    tps = float(re.search(r"throughput: ([0-9.e+]+) tokens/s", out).group(1))
    bpc = float(re.search(r"validation bpc: ([0-9.e+-]+)", out).group(1))
    return tps, bpc, out


def peak_rss_mib():
    """This process's peak resident memory (VmHWM) in MiB."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def run_variant(args, variant):
    """tokens/s and peak resident MiB of one variant, in a process of its own."""
    if variant.startswith("hseq-"):
        tps, _, out = run_hseq(args, args.steps, 0, precision=variant[len("hseq-"):])
        peak = re.search(r"memory after training: resident [0-9.]+ MiB \(peak ([0-9.]+) MiB\)", out)
        header = re.search(r"precision ([^\n]*)", out)
        return tps, float(peak.group(1)) if peak else float("nan"), header.group(1) if header else ""
    cmd = [sys.executable, os.path.abspath(__file__), "_worker", "--variant", variant]
    for k, v in vars(args).items():
        if k in ("mode", "variant", "variants", "hseq_train", "out"):
            continue
        cmd += ["--" + k.replace("_", "-"), str(v)]
    cmd += ["--hseq-train", args.hseq_train]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    m = re.search(r"worker: ([0-9.e+]+) tokens/s, peak ([0-9.]+) MiB", out)
    return float(m.group(1)), float(m.group(2)), ""


def cpu_flags():
    """The CPU flags that decide the kernels: AVX-512, bf16 and AMX."""
    want = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    for line in open("/proc/cpuinfo"):
        if line.startswith("flags"):
            have = set(line.split(":", 1)[1].split())
            return " ".join(f if f in have else f"no-{f}" for f in want)
    return "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["throughput", "variants", "curve", "_worker"])
    ap.add_argument("--variants", default="hseq-fp32,hseq-bf16,torch-eager,torch-compile,torch-bf16",
                    help="variants mode: comma-separated list (the first is the ratios' denominator)")
    ap.add_argument("--variant", default="torch-eager", help=argparse.SUPPRESS)
    ap.add_argument("--hseq-train", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--steps", type=int, default=30, help="throughput mode: timed steps")
    ap.add_argument("--warmup-steps", type=int, default=3, help="throughput mode: untimed first steps (PyTorch)")
    ap.add_argument("--time-budget", type=float, default=600, help="curve mode: seconds of training each")
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--eval-windows", type=int, default=64)
    ap.add_argument("--out", default="bench/results/peer_lm")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    train, val = load_splits(args.data)
    if args.mode != "_worker":
        print(f"config: d={args.dim} heads={args.heads} layers={args.layers} T={args.seq_len} batch={args.batch} "
              f"threads={args.threads}; torch {torch.__version__}, "
              f"mkldnn bf16 {torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()}")
    if args.mode == "_worker":
        tps, _, _ = run_pytorch(args, train, val, args.steps + args.warmup_steps, 0, variant=args.variant)
        print(f"worker: {tps:.1f} tokens/s, peak {peak_rss_mib():.1f} MiB")
        return
    if args.mode == "variants":
        print(f"parameters: the same model on every side; cpu flags: {cpu_flags()}")
        rows = []
        for v in args.variants.split(","):
            tps, peak, note = run_variant(args, v)
            rows.append((v, tps, peak, note))
            print(f"{v:14s} {tps:10.1f} tokens/s  peak {peak:8.1f} MiB  {note}", flush=True)
        base = rows[0][1]
        for v, tps, _, _ in rows:
            print(f"ratio {v}/{rows[0][0]}: {tps / base:.3f}")
        return
    if args.mode == "throughput":
        h_tps, _, _ = run_hseq(args, args.steps, 0)
        p_tps, _, _ = run_pytorch(args, train, val, args.steps + args.warmup_steps, 0)
        print(f"hseq    tokens/s: {h_tps:10.1f}")
        print(f"pytorch tokens/s: {p_tps:10.1f}")
        print(f"ratio hseq/pytorch: {h_tps / p_tps:.3f}")
    else:
        os.makedirs(args.out, exist_ok=True)
        h_tps, h_bpc, _ = run_hseq(args, 0, args.time_budget, os.path.join(args.out, "hseq.csv"))
        p_tps, p_bpc, p_steps = run_pytorch(args, train, val, 0, args.time_budget, os.path.join(args.out, "pytorch.csv"))
        print(f"hseq    : {h_tps:10.1f} tokens/s, final validation bpc {h_bpc:.4f}")
        print(f"pytorch : {p_tps:10.1f} tokens/s, final validation bpc {p_bpc:.4f} ({p_steps} steps)")


if __name__ == "__main__":
    main()
