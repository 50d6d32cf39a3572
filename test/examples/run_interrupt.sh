#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# ctest examples.interrupt: hseq-train loses nothing when it is stopped (examples/interrupt.hpp).
#   1. A bad output directory is refused before any training.
#   2. SIGTERM during training: exit code 143, the checkpoint written, "resume:" printed; resumed
#      with --resume, the run's loss sequence (its CSV log, appended to) equals that of an
#      uninterrupted run of the same command, step for step, to the last digit printed.
#   3. SIGINT: exit code 130 and a checkpoint.
#   4. A checkpoint write that fails midway (a file-size limit, `ulimit -f`) reports the error and
#      leaves the previous checkpoint byte for byte, with no temporary file left over.
#   5. Errors show their message without the check expression and source location, unless
#      HSEQ_DEBUG=1.
#   usage: run_interrupt.sh HSEQ_TRAIN DATA_FILE WORK_DIR
set -euo pipefail
train="$1" data="$2" work="$3"
rm -rf "$work" && mkdir -p "$work" && cd "$work"
fail() { echo "FAIL: $*" >&2; exit 1; }

# A tiny model and many steps, so a signal lands mid-run; fixed seed, no validation until the end.
model=(--data "$data" --model transformer --dim 32 --heads 2 --layers 1 --context 32 --batch 4 --seed 7
       --eval-every 0 --eval-windows 4 --sample-bytes 0 --threads 1)
steps=(--steps 4000)

# 1. Output paths are checked first.
set +e
out="$("$train" "${model[@]}" "${steps[@]}" --out "$work/no-such-dir/x.safetensors" 2>&1)"; rc=$?
set -e
[ "$rc" -eq 1 ] || fail "a missing --out directory: exit code $rc, expected 1: $out"
[[ "$out" == *"the directory '$work/no-such-dir' does not exist"* ]] || fail "missing-directory message: $out"
[[ "$out" != *"steps:"* ]] || fail "trained before checking --out: $out"
mkdir -p "$work/a-dir.safetensors"
set +e
out="$("$train" "${model[@]}" "${steps[@]}" --out "$work/a-dir.safetensors" 2>&1)"; rc=$?
set -e
[[ "$rc" -eq 1 && "$out" == *"is a directory"* ]] || fail "--out naming a directory: exit code $rc: $out"

# 5. Messages for people (the bad directory again): no check expression unless HSEQ_DEBUG=1.
[[ "$out" != *"[check"* ]] || fail "the error shows the check expression: $out"
set +e
out="$(HSEQ_DEBUG=1 "$train" "${model[@]}" "${steps[@]}" --out "$work/a-dir.safetensors" 2>&1)"
set -e
[[ "$out" == *"[check"* && "$out" == *"failed at"* ]] || fail "HSEQ_DEBUG=1 does not show where: $out"

# Waits until the CSV log $1 has at least $2 step rows (or the process $3 has ended).
wait_rows() {
  for _ in $(seq 1 3000); do
    if [ -f "$1" ] && [ "$(($(wc -l < "$1") - 1))" -ge "$2" ]; then return 0; fi
    kill -0 "$3" 2> /dev/null || return 0
    sleep 0.01
  done
}
# The step rows of a CSV log as "step,loss" (the final validation row has no loss).
losses() { awk -F, 'NR > 1 && $2 != "nan" { print $1 "," $2 }' "$1"; }

# 2. SIGTERM mid-run, then resume; against one uninterrupted run.
"$train" "${model[@]}" "${steps[@]}" --csv ref.csv --out ref.safetensors > ref.log 2>&1 || fail "reference run: $(cat ref.log)"
"$train" "${model[@]}" "${steps[@]}" --csv int.csv --out int.safetensors > int.log 2>&1 &
pid=$!
wait_rows int.csv 20 "$pid"
kill -TERM "$pid" 2> /dev/null || fail "the run ended before it could be signalled (make it longer)"
set +e
wait "$pid"; rc=$?
set -e
[ "$rc" -eq 143 ] || fail "SIGTERM: exit code $rc, expected 143: $(cat int.log)"
grep -q "interrupted by SIGTERM after step" int.log || fail "no interruption message: $(cat int.log)"
grep -q "resume: the same command with --resume $work/int.safetensors\|resume: the same command with --resume int.safetensors" int.log ||
  fail "no resume hint: $(cat int.log)"
[ -s int.safetensors ] || fail "SIGTERM: no checkpoint written"
stopped="$(losses int.csv | tail -1 | cut -d, -f1)"
[ "$stopped" -lt 4000 ] || fail "SIGTERM: the run was not stopped early (step $stopped)"
"$train" "${model[@]}" "${steps[@]}" --csv int.csv --out int.safetensors --resume int.safetensors > resume.log 2>&1 ||
  fail "resume: $(cat resume.log)"
diff <(losses ref.csv) <(losses int.csv) > diff.txt ||
  fail "the resumed run's losses differ from the uninterrupted run's (stopped after step $stopped): $(head diff.txt)"
[ "$(losses int.csv | wc -l)" -eq 4000 ] || fail "the logs do not hold 4000 steps"
echo "SIGTERM after step $stopped, resumed: 4000 losses equal to the uninterrupted run's"

# 3. SIGINT: 130 and a checkpoint.
"$train" "${model[@]}" "${steps[@]}" --csv sigint.csv --out sigint.safetensors > sigint.log 2>&1 &
pid=$!
wait_rows sigint.csv 5 "$pid"
kill -INT "$pid" 2> /dev/null || fail "the SIGINT run ended before it could be signalled"
set +e
wait "$pid"; rc=$?
set -e
[ "$rc" -eq 130 ] || fail "SIGINT: exit code $rc, expected 130: $(cat sigint.log)"
[ -s sigint.safetensors ] || fail "SIGINT: no checkpoint written"

# 4. A failed write keeps the previous checkpoint: 1 KiB file-size limit, resuming from ref.
cp ref.safetensors keep.safetensors
set +e
out="$(ulimit -f 1; "$train" "${model[@]}" --steps 4010 --out ref.safetensors --resume ref.safetensors 2>&1)"; rc=$?
set -e
[ "$rc" -eq 1 ] || fail "a write over the file-size limit: exit code $rc, expected 1: $out"
[[ "$out" == *"cannot write"* ]] || fail "the failed write is not reported: $out"
cmp -s ref.safetensors keep.safetensors || fail "the failed write changed the previous checkpoint"
leftover="$(find . -maxdepth 1 -name 'ref.safetensors.tmp.*' | wc -l)"
[ "$leftover" -eq 0 ] || fail "the failed write left a temporary file"
echo "a write over the file-size limit failed with a message and left the previous checkpoint intact"
