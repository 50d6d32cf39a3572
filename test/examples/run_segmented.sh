#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# ctest examples.segmented: an Hourglass whose levels segment by the data (issue 19) through the
# programs: hseq-train (a SpaceByte level with a nested pair level; an entropy level over a byte LM
# trained first, --entropy-model; a learned router; the segment mean; attention pooling and unpooling; HAED over words), hseq-eval and hseq-generate from the checkpoints (cached,
# per-row segmentation), a resumed run, and the refusals (a policy without a variable-length form,
# an entropy level without or with a wrong LM).
#   usage: run_segmented.sh BIN_DIR DATA_FILE WORK_DIR
set -euo pipefail
bin="$1" data="$2" work="$3"
rm -rf "$work" && mkdir -p "$work" && cd "$work"
fail() { echo "FAIL: $*" >&2; exit 1; }
hier="1@1 1@space/12 1@fixed:2 1@space/12 1@1"
model=(--data "$data" --model hourglass --hierarchy "$hier" --shorten select --upsample repeat --dim 32 --heads 2
       --context 64 --batch 4 --seed 3 --eval-every 0 --eval-windows 4 --sample-bytes 0 --threads 1)

out="$("$bin/hseq-train" "${model[@]}" --steps 30 --out "$work/seg.safetensors" 2>&1)" || fail "train: $out"
[[ "$out" == *"\"hierarchy\":\"$hier\""* ]] || fail "the configuration does not record the rule levels: $out"
[[ "$out" == *"validation bpc:"* ]] || fail "no validation bpc: $out"
[ -s "$work/seg.safetensors" ] || fail "no checkpoint"

out="$("$bin/hseq-eval" --data "$data" --checkpoint "$work/seg.safetensors" --threads 1 2>&1)" || fail "eval: $out"
[[ "$out" =~ bpc:\ [0-9.]+ ]] || fail "eval printed no bpc: $out"

out="$("$bin/hseq-generate" --checkpoint "$work/seg.safetensors" --prompt "In the beginning " --bytes 80 --seed 5 \
        --threads 1 2>&1)" || fail "generate: $out"
[[ "$out" == *"generated 80 bytes"* ]] || fail "generate: $out"
again="$("$bin/hseq-generate" --checkpoint "$work/seg.safetensors" --prompt "In the beginning " --bytes 80 --seed 5 \
        --threads 1 2>&1)"
[ "$(echo "$out" | head -n -1)" == "$(echo "$again" | head -n -1)" ] || fail "the same seed generated different text"

out="$("$bin/hseq-train" "${model[@]}" --steps 40 --resume "$work/seg.safetensors" --out "$work/seg2.safetensors" 2>&1)" \
  || fail "resume: $out"
[[ "$out" == *"resuming at step 30"* && "$out" == *"step 40/40"* ]] || fail "resume did not continue from step 30 to 40: $out"

# Entropy boundaries (BLT): a tiny byte LM first, then an Hourglass segmented by its entropies; the
# checkpoint carries the frozen LM, so eval and generate need no flag.
out="$("$bin/hseq-train" --data "$data" --model transformer --dim 16 --heads 2 --layers 1 --context 64 --batch 4 \
        --steps 20 --seed 4 --eval-every 0 --eval-windows 2 --sample-bytes 0 --threads 1 \
        --out "$work/lm.safetensors" 2>&1)" || fail "entropy LM: $out"
ent=(--data "$data" --model hourglass --hierarchy "1@1 1@entropy:3/12 1@1" --shorten select --upsample repeat --dim 32
     --heads 2 --context 64 --batch 4 --seed 3 --eval-every 0 --eval-windows 4 --sample-bytes 0 --threads 1)
out="$("$bin/hseq-train" "${ent[@]}" --entropy-model "$work/lm.safetensors" --steps 20 --out "$work/ent.safetensors" 2>&1)" \
  || fail "train with entropy boundaries: $out"
[[ "$out" == *"entropy model: $work/lm.safetensors ("*" tensors, frozen)"* ]] || fail "the entropy LM was not loaded: $out"
[[ "$out" == *'"entropy_lm":{'* ]] || fail "the configuration does not record the entropy LM: $out"
out="$("$bin/hseq-eval" --data "$data" --checkpoint "$work/ent.safetensors" --threads 1 2>&1)" || fail "eval: $out"
[[ "$out" =~ bpc:\ [0-9.]+ ]] || fail "eval (entropy) printed no bpc: $out"
out="$("$bin/hseq-generate" --checkpoint "$work/ent.safetensors" --prompt "And " --bytes 40 --threads 1 2>&1)" \
  || fail "generate (entropy): $out"
[[ "$out" == *"generated 40 bytes"* ]] || fail "generate (entropy): $out"
# A learned router (H-Net): its ratio loss is a logged term, the weight and rule are in the
# checkpoint, and eval, cached generation and resume work from it.
rt=(--data "$data" --model hourglass --hierarchy "1@1 1@router:4/12 1@1" --shorten select --upsample repeat --dim 32
    --heads 2 --context 64 --batch 4 --seed 3 --eval-every 10 --eval-windows 4 --sample-bytes 0 --threads 1
    --ratio-weight 0.1)
out="$("$bin/hseq-train" "${rt[@]}" --steps 20 --out "$work/router.safetensors" --csv "$work/router.csv" 2>&1)" \
  || fail "train with a router: $out"
[[ "$out" == *'"hierarchy":"1@1 1@router:4/12 1@1"'* && "$out" == *'"ratio_weight":0.1'* ]] \
  || fail "the configuration does not record the router: $out"
[[ "$out" =~ segments\ \([0-9]+\ held-out\ windows\ of\ 64\):\ level\ 0\ \(router:4/12\)\ [0-9.]+\ bytes\ per\ segment ]] \
  || fail "no segment report: $out"
head -n 1 "$work/router.csv" | grep -q ',ce,ratio,val_ce,val_ratio' || fail "the CSV log has no ratio column: $(head -n 1 "$work/router.csv")"
ratio_col=$(head -n 1 "$work/router.csv" | tr ',' '\n' | grep -nx ratio | cut -d: -f1)
last_ratio=$(tail -n 1 "$work/router.csv" | cut -d, -f"$ratio_col")
awk -v r="$last_ratio" 'BEGIN { exit !(r > 0 && r < 100) }' || fail "the ratio loss is not a positive number: $last_ratio"
out="$("$bin/hseq-eval" --data "$data" --checkpoint "$work/router.safetensors" --threads 1 2>&1)" || fail "eval: $out"
[[ "$out" =~ bpc:\ [0-9.]+ ]] || fail "eval (router) printed no bpc: $out"
out="$("$bin/hseq-generate" --checkpoint "$work/router.safetensors" --prompt "And " --bytes 40 --seed 2 --threads 1 2>&1)" \
  || fail "generate (router): $out"
[[ "$out" == *"generated 40 bytes"* ]] || fail "generate (router): $out"
out="$("$bin/hseq-train" "${rt[@]}" --steps 30 --resume "$work/router.safetensors" --out "$work/router2.safetensors" 2>&1)" \
  || fail "resume (router): $out"
[[ "$out" == *"resuming at step 20"* && "$out" == *"step 30/30"* ]] || fail "resume (router) did not continue: $out"
# AU-Net's position-indexed unpooling (--upsample linear over a rule level): trains, generates.
lin=(--data "$data" --model hourglass --hierarchy "1@1 1@space/8 1@1" --shorten select --upsample linear --dim 32
     --heads 2 --context 64 --batch 4 --seed 3 --eval-every 0 --eval-windows 4 --sample-bytes 0 --threads 1)
out="$("$bin/hseq-train" "${lin[@]}" --steps 10 --out "$work/lin.safetensors" 2>&1)" \
  || fail "train with position-indexed upsampling: $out"
[[ "$out" == *'"upsample":"linear"'* ]] || fail "the configuration does not record the linear upsampling: $out"
out="$("$bin/hseq-generate" --checkpoint "$work/lin.safetensors" --prompt "And " --bytes 40 --seed 2 --threads 1 2>&1)" \
  || fail "generate (linear upsampling): $out"
[[ "$out" == *"generated 40 bytes"* ]] || fail "generate (linear upsampling): $out"
# Dynamic Token Pooling's MLP boundary predictor with H-Net's EMA de-chunking: recorded in the
# checkpoint, and eval and cached generation read them back.
mlp=(--data "$data" --model hourglass --hierarchy "1@1 1@mlp:4/12 1@1" --shorten select --upsample repeat --dim 32
     --heads 2 --context 64 --batch 4 --seed 3 --eval-every 0 --eval-windows 4 --sample-bytes 0 --threads 1)
out="$("$bin/hseq-train" "${mlp[@]}" --dechunk ema --steps 10 --out "$work/ema.safetensors" 2>&1)" \
  || fail "train with an MLP router and EMA de-chunking: $out"
[[ "$out" == *'"hierarchy":"1@1 1@mlp:4/12 1@1"'* && "$out" == *'"dechunk":"ema"'* ]] \
  || fail "the configuration does not record the MLP router and the de-chunking: $out"
[[ "$out" =~ level\ 0\ \(mlp:4/12\)\ [0-9.]+\ bytes\ per\ segment ]] || fail "no segment report (mlp): $out"
out="$("$bin/hseq-eval" --data "$data" --checkpoint "$work/ema.safetensors" --threads 1 2>&1)" || fail "eval (ema): $out"
[[ "$out" =~ bpc:\ [0-9.]+ ]] || fail "eval (ema) printed no bpc: $out"
out="$("$bin/hseq-generate" --checkpoint "$work/ema.safetensors" --prompt "And " --bytes 40 --seed 2 --threads 1 2>&1)" \
  || fail "generate (ema): $out"
[[ "$out" == *"generated 40 bytes"* ]] || fail "generate (ema): $out"
set +e
out="$("$bin/hseq-train" "${ent[@]}" --entropy-model "$work/lm.safetensors" --dechunk ema --steps 1 2>&1)"; rc=$?
set -e
[ "$rc" -ne 0 ] && [[ "$out" == *'dechunk "ema" needs a router level'* ]] || fail "--dechunk ema without a router: $out"

set +e
out="$("$bin/hseq-train" "${ent[@]}" --steps 1 2>&1)"; rc=$?
set -e
[ "$rc" -ne 0 ] && [[ "$out" == *"no entropy LM is configured"* ]] || fail "an entropy level without --entropy-model: $out"
set +e
out="$("$bin/hseq-train" "${ent[@]}" --steps 1 --entropy-model "$work/seg.safetensors" 2>&1)"; rc=$?
set -e
[ "$rc" -ne 0 ] && [[ "$out" == *"a 'hourglass' checkpoint"* ]] || fail "a non-LM --entropy-model: $out"

set +e
out="$("$bin/hseq-train" --data "$data" --model hourglass --hierarchy "$hier" --shorten linear --upsample repeat \
        --steps 1 2>&1)"; rc=$?
set -e
[ "$rc" -ne 0 ] || fail "linear pooling over rule levels was accepted"
[[ "$out" == *"shorten 'linear'"* && "$out" == *"rule levels take shorten 'select', 'avg' or 'attention'"* ]] || fail "refusal message: $out"

# The segment mean (--shorten avg) over spacelike segments: train, eval, cached generation.
out="$("$bin/hseq-train" "${model[@]/select/avg}" --steps 10 --out "$work/mean.safetensors" 2>&1)" || fail "train (mean): $out"
[[ "$out" == *'"shorten":"avg"'* ]] || fail "not the avg policy: $out"
out="$("$bin/hseq-generate" --checkpoint "$work/mean.safetensors" --prompt "And " --bytes 30 --threads 1 2>&1)" \
  || fail "generate (mean): $out"
[[ "$out" == *"generated 30 bytes"* ]] || fail "generate (mean): $out"
# Attention over the segment's bytes and cross-attention unpooling (--shorten/--upsample attention,
# the programs' defaults): train, eval, cached generation.
att=("${model[@]/select/attention}")
att=("${att[@]/repeat/attention_linear}")
out="$("$bin/hseq-train" "${att[@]}" --steps 10 --out "$work/attn.safetensors" 2>&1)" || fail "train (attention): $out"
[[ "$out" == *'"shorten":"attention"'* && "$out" == *'"upsample":"attention_linear"'* ]] \
  || fail "not the attention policies: $out"
out="$("$bin/hseq-eval" --data "$data" --checkpoint "$work/attn.safetensors" --threads 1 2>&1)" || fail "eval (attention): $out"
[[ "$out" =~ bpc:\ [0-9.]+ ]] || fail "eval (attention) printed no bpc: $out"
out="$("$bin/hseq-generate" --checkpoint "$work/attn.safetensors" --prompt "And " --bytes 30 --threads 1 2>&1)" \
  || fail "generate (attention): $out"
[[ "$out" == *"generated 30 bytes"* ]] || fail "generate (attention): $out"
# HRED/HAED over the same rules (--segment word: hier::Delimited's "@word"): train, checkpoint, generate.
out="$("$bin/hseq-train" --data "$data" --model hierarchical --segment word --dim 32 --heads 2 --layers 1 \
        --decoder-layers 1 --context 64 --batch 4 --steps 10 --seed 3 --eval-every 0 --eval-windows 4 --sample-bytes 0 \
        --threads 1 --out "$work/hred_word.safetensors" 2>&1)" || fail "train HAED over words: $out"
[[ "$out" == *'"segment":"word"'* && "$out" == *'"delimiter":"@word"'* ]] || fail "HAED's config lacks the rule: $out"
out="$("$bin/hseq-generate" --checkpoint "$work/hred_word.safetensors" --prompt "And " --bytes 30 --threads 1 2>&1)" \
  || fail "generate (HAED over words): $out"
[[ "$out" == *"generated 30 bytes"* ]] || fail "generate (HAED over words): $out"
echo "segmented hourglass: trained, evaluated, generated, resumed (space, entropy, router, mean, attention; HAED over words), refused linear and missing LMs"
