#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# ctest examples.large_corpus: hseq-train trains on a corpus larger than the address space it may
# use (`ulimit -v`), because the dataset maps the file through a few windows instead of reading it
# (hseq/io/mapped_corpus.hpp), and on a directory of files.
#   1. A 3 GiB file (sparse, so it costs no disk: real text at its start and at its end, zeros
#      between) and an address-space limit of 1 GiB.
#   2. The control: under that limit, reading the file into one buffer (dd bs=2G) fails.
#   3. hseq-train on the file under the limit: trains, validates on the file's tail, exits 0, and
#      reports the split sizes of the whole 3 GiB.
#   4. hseq-train on a directory holding the big file and a small one, under the limit: "2 files".
#   usage: run_large_corpus.sh HSEQ_TRAIN TEXT_FILE WORK_DIR
set -euo pipefail
train="$1" text="$2" work="$3"
rm -rf "$work" && mkdir -p "$work/dir" && cd "$work"
fail() { echo "FAIL: $*" >&2; exit 1; }

size=$((3 * 1024 * 1024 * 1024))
limit_kib=$((1024 * 1024))
big="$work/dir/big.txt"
truncate -s "$size" "$big"
tsize=$(stat -c %s "$text")
dd if="$text" of="$big" conv=notrunc status=none
dd if="$text" of="$big" conv=notrunc oflag=seek_bytes seek=$((size - tsize)) status=none
[ "$(stat -c %s "$big")" -eq "$size" ] || fail "the big file has $(stat -c %s "$big") bytes, expected $size"
cp "$text" "$work/dir/small.txt"

# 2. The limit bites: a whole-file read does not fit.
set +e
(ulimit -v "$limit_kib"; dd if="$big" of=/dev/null bs=2G count=1 status=none) 2> control.log
rc=$?
set -e
[ "$rc" -ne 0 ] || fail "reading 2 GiB at once under ulimit -v $limit_kib succeeded: the limit does not bite"

model=(--model transformer --dim 32 --heads 2 --layers 1 --context 32 --batch 4 --seed 3 --steps 30
       --eval-every 0 --eval-windows 8 --sample-bytes 0 --threads 1)

# 3. The file alone (validation fraction 0.1: the last 322122548 bytes, the text's copy at its end).
set +e
(ulimit -v "$limit_kib"; "$train" --data "$big" "${model[@]}" --out "$work/big.safetensors") > big.log 2>&1
rc=$?
set -e
[ "$rc" -eq 0 ] || fail "hseq-train on a 3 GiB file under ulimit -v $limit_kib: exit code $rc: $(tail -5 big.log)"
train_bytes=$((size * 9 / 10))
grep -q "data: $big ($train_bytes train bytes, $((size - train_bytes)) validation bytes)" big.log ||
  fail "the split sizes: $(grep '^data:' big.log)"
grep -Eq "validation bpc: [0-9.]+" big.log || fail "no validation bpc: $(tail -5 big.log)"
[ -s "$work/big.safetensors" ] || fail "no checkpoint"

# 4. The directory: both files, in path order (big.txt, small.txt).
set +e
(ulimit -v "$limit_kib"; "$train" --data "$work/dir" "${model[@]}") > dir.log 2>&1
rc=$?
set -e
[ "$rc" -eq 0 ] || fail "hseq-train on a directory under ulimit -v $limit_kib: exit code $rc: $(tail -5 dir.log)"
grep -q "data: $work/dir (2 files, " dir.log || fail "the directory's files: $(grep '^data:' dir.log)"
echo "large corpus: trained on $size bytes under an address-space limit of $limit_kib KiB"
rm -f "$big"
