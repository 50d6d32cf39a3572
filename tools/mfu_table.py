#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""MFU of the committed GPU training runs in both FLOP conventions, from their raw output alone
(nothing is rerun): PaLM's (6 N_eff + the attention term, not halved for the causal mask) and the
causal one (attention term halved: the products a causal mask leaves). Each row pairs hseq's run
(hseq_bench_cuda, section "train") with PyTorch eager's run of the same model, batch and precision
from the same machine and script (bench/peer_pytorch_gpu.py), both counted with hseq's
`flops(T)` (include/hseq/models/flops.hpp) and divided by the datasheet dense peak of the math
used. The JSON lines already carry both counts (flops_per_token_palm, flops_per_token_causal).

    python3 tools/mfu_table.py bench/results/gpu_h100/bench_mma_fp32.jsonl bench/results/gpu_h100/peer_fp32.jsonl
    python3 tools/mfu_table.py bench/results/gpu_h100/bench_cuda.jsonl bench/results/gpu_h100/peer_pytorch_gpu.jsonl
"""
import json
import sys

PEER_PRECISION = {"fp32": "fp32", "tf32": "tf32", "bf16": "bf16"}
PEER_MODEL = {  # hseq's model names -> bench/peer_pytorch_gpu.py's
    "transformer_lm": "transformer_lm",
    "hourglass_avgpool_repeat": "hourglass_avgpool_repeat",
    "hourglass_attnpool_attnup": "hourglass_attnpool_attnup",
}


def rows(path, section="train"):
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                j = json.loads(line)
                if j.get("section") == section and "tokens_per_s" in j:
                    yield j


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    hseq = list(rows(sys.argv[1]))
    peer = {(j["model"], j["batch"], j.get("precision")): j for j in rows(sys.argv[2])}
    print(f"hseq: {sys.argv[1]}\nPyTorch: {sys.argv[2]}")
    print("| model | batch | math | FLOPs/token PaLM / causal (M) | hseq tokens/s | MFU PaLM | MFU causal "
          "| PyTorch tokens/s | MFU PaLM | MFU causal |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for j in hseq:
        palm, causal, peak = j["flops_per_token_palm"], j["flops_per_token_causal"], j["datasheet_tflops"] * 1e12
        math = j["math"]
        p = peer.get((PEER_MODEL.get(j["model"], j["model"]), j["batch"], PEER_PRECISION.get(math, math)))
        cells = [j["model"], str(j["batch"]), math, f"{palm / 1e6:.1f} / {causal / 1e6:.1f}",
                 f"{j['tokens_per_s'] / 1e3:.1f}k", f"{j['tokens_per_s'] * palm / peak:.1%}",
                 f"{j['tokens_per_s'] * causal / peak:.1%}"]
        if p:
            # The peer counts with the same formula; the check keeps a mismatched pairing out.
            assert abs(p["flops_per_token_palm"] - palm) < 1e-6 * palm, (j["model"], p["flops_per_token_palm"], palm)
            cells += [f"{p['tokens_per_s'] / 1e3:.1f}k", f"{p['tokens_per_s'] * palm / peak:.1%}",
                      f"{p['tokens_per_s'] * causal / peak:.1%}"]
        else:
            cells += ["-", "-", "-"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
