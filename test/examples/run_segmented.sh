#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# ctest examples.segmented: an Hourglass whose levels segment by the data (issue 19) through the
# programs: hseq-train (a SpaceByte level with a nested word-pair level), hseq-eval and
# hseq-generate from the checkpoint (cached, per-row segmentation), a resumed run, and the refusal
# of a policy without a variable-length form.
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

set +e
out="$("$bin/hseq-train" --data "$data" --model hourglass --hierarchy "$hier" --shorten avg --upsample repeat \
        --steps 1 2>&1)"; rc=$?
set -e
[ "$rc" -ne 0 ] || fail "avg pooling over rule levels was accepted"
[[ "$out" == *"shorten 'avg'"* && "$out" == *"rule levels take shorten 'select'"* ]] || fail "refusal message: $out"
echo "segmented hourglass: trained, evaluated, generated, resumed, refused avg"
