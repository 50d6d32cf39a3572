#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The one script to run on a GPU machine, from the repository root, with a CUDA build in build-gpu/
# (cmake -B build-gpu -DHSEQ_ENABLE_CUDA=ON -DHSEQ_NATIVE_ARCH=OFF -DHSEQ_TEST_OPTIMIZATION=3
#  -DHSEQ_BUILD_CUDA_EXAMPLES=ON && cmake --build build-gpu --target hseq_tests_cuda hseq_bench_cuda;
#  NATIVE_ARCH=OFF because -march=native code built here may not run on the GPU machine's CPU;
#  CUDA_EXAMPLES=ON links the families into hseq_bench_cuda for its "families" section):
#
#   1. build-gpu/test/hseq_tests_cuda                        -> $OUT/tests.log
#   2. build-gpu/bench/hseq_bench_cuda (ceilings + kernels, then training, then the families' table:
#      three processes so that a broken CUDA context in one section does not lose the others)
#                                                             -> $OUT/bench_cuda.jsonl
#   3. python3 bench/peer_pytorch_gpu.py                      -> $OUT/peer_pytorch_gpu.jsonl
#   then $OUT/summary.txt (also printed): exit codes and the training tokens/s side by side.
#
# Each step has a time limit (at most 80 + 190 + 75 + 125 s = 7.8 minutes in all; typically ~5) and a failing step does
# not stop the others. Exit code: 0 when at least one of the two benchmarks measured something, else 1.
# Environment: OUT (default ./gpu_out), BUILD (default build-gpu), QUICK=1 (tiny sizes, a smoke run),
# BENCH_ARGS / PEER_ARGS (extra arguments), TESTS_TIMEOUT, BENCH_TIMEOUT, FAMILIES_TIMEOUT, PEER_TIMEOUT (seconds).
set -u

OUT="${OUT:-./gpu_out}"
BUILD="${BUILD:-build-gpu}"
QUICK="${QUICK:-0}"
TESTS_TIMEOUT="${TESTS_TIMEOUT:-80}"
BENCH_TIMEOUT="${BENCH_TIMEOUT:-190}"   # the first two hseq_bench_cuda processes together
FAMILIES_TIMEOUT="${FAMILIES_TIMEOUT:-75}"
PEER_TIMEOUT="${PEER_TIMEOUT:-125}"
mkdir -p "$OUT"
start=$(date +%s)
since() { echo $(( $(date +%s) - start )); }

# Shared libraries the carried binaries may not find on a bare machine: the toolkit's, those of the
# Python wheels (nvidia-cublas etc.) and anything the builder copied into $BUILD/lib.
extra_ld="$BUILD/lib:/usr/local/cuda/lib64:/usr/local/cuda/targets/x86_64-linux/lib"
pylibs=$(python3 -c 'import glob, os, site; ps = site.getsitepackages() + [site.getusersitepackages()]; print(":".join(sorted({os.path.dirname(p) for s in ps for p in glob.glob(os.path.join(s, "nvidia", "*", "lib", "*.so*"))})))' 2>/dev/null || true)
[ -n "$pylibs" ] && extra_ld="$extra_ld:$pylibs"
export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$extra_ld"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-4}" OMP_WAIT_POLICY=PASSIVE PYTHONUNBUFFERED=1

{
  echo "# date: $(date -u +%FT%TZ)  host: $(hostname)  quick: $QUICK"
  echo "# git: $(git rev-parse --short HEAD 2>/dev/null) $(git status --porcelain 2>/dev/null | wc -l) changed paths"
  nvidia-smi 2>&1 | head -20
  nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,power.limit,temperature.gpu --format=csv 2>&1
  for b in "$BUILD/test/hseq_tests_cuda" "$BUILD/bench/hseq_bench_cuda"; do
    echo "# ldd $b"
    if [ -x "$b" ]; then ldd "$b" 2>&1 | grep -E "not found|cuda|cublas|blas|gomp" ; else echo "missing"; fi
  done
  python3 -c 'import torch; print("# torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' 2>&1
} > "$OUT/env.txt" 2>&1

# 1. CUDA tests ------------------------------------------------------------------------------
tests_rc=missing
if [ -x "$BUILD/test/hseq_tests_cuda" ]; then
  tests_end=$(( $(date +%s) + TESTS_TIMEOUT ))
  timeout -k 5 "$TESTS_TIMEOUT" "$BUILD/test/hseq_tests_cuda" --duration=true > "$OUT/tests.log" 2>&1
  tests_rc=$?
  # Died by a signal (a crash, or a broken CUDA context that stops the rest) rather than failing
  # assertions (rc 1) or its time limit: run every test case in its own process, within what is
  # left of the limit, so that one run names every case that crashes or fails.
  if [ "$tests_rc" -gt 128 ] && [ "$tests_rc" != 137 ]; then
    echo "hseq_tests_cuda died (rc=$tests_rc): each test case in its own process" >> "$OUT/tests.log"
    "$BUILD/test/hseq_tests_cuda" --list-test-cases 2>/dev/null | grep -E '^cuda[ :]' > "$OUT/cases.txt"
    while IFS= read -r tc; do
      left=$(( tests_end + 60 - $(date +%s) ))
      [ "$left" -lt 5 ] && { echo "CASE NOT RUN (time): $tc" >> "$OUT/tests.log"; continue; }
      # doctest filters are wildcards: escape the characters that are special to them.
      pat=$(printf '%s' "$tc" | sed 's/[][*?,\\]/?/g')
      timeout -k 2 "$left" "$BUILD/test/hseq_tests_cuda" --test-case="$pat" > "$OUT/case.log" 2>&1
      crc=$?
      if [ "$crc" = 0 ]; then echo "CASE OK: $tc" >> "$OUT/tests.log"
      else { echo "CASE rc=$crc: $tc"; tail -40 "$OUT/case.log"; } >> "$OUT/tests.log"; fi
    done < "$OUT/cases.txt"
    rm -f "$OUT/case.log"
  fi
else
  echo "$BUILD/test/hseq_tests_cuda not found" > "$OUT/tests.log"
fi
echo "tests: rc=$tests_rc at $(since)s" | tee -a "$OUT/env.txt"

# 2. hseq_bench_cuda ---------------------------------------------------------------------------
bench_rc=missing
bench_train_rc=missing
bench_families_rc=missing
: > "$OUT/bench_cuda.jsonl"
: > "$OUT/bench_cuda.err"
if [ -x "$BUILD/bench/hseq_bench_cuda" ]; then
  q=""
  [ "$QUICK" = 1 ] && q="--quick"
  bench_end=$(( $(date +%s) + BENCH_TIMEOUT ))
  # Ceilings and kernels: ~15 s expected, 45 s budget, 60 s limit.
  timeout -k 5 60 "$BUILD/bench/hseq_bench_cuda" $q --sections ceiling,kernel --budget 45 ${BENCH_ARGS:-} \
      >> "$OUT/bench_cuda.jsonl" 2>> "$OUT/bench_cuda.err"
  bench_rc=$?
  # Training: whatever is left of the limit (no new case starts 25 s before it).
  left=$(( bench_end - $(date +%s) ))
  [ "$left" -lt 30 ] && left=30
  timeout -k 5 "$left" "$BUILD/bench/hseq_bench_cuda" $q --sections train --budget $(( left - 25 )) ${BENCH_ARGS:-} \
      >> "$OUT/bench_cuda.jsonl" 2>> "$OUT/bench_cuda.err"
  bench_train_rc=$?
  # The families' benchmark table (skipped, with a line saying so, in a build without the CUDA programs).
  timeout -k 5 "$FAMILIES_TIMEOUT" "$BUILD/bench/hseq_bench_cuda" $q --sections families --budget $(( FAMILIES_TIMEOUT - 20 )) \
      ${BENCH_ARGS:-} >> "$OUT/bench_cuda.jsonl" 2>> "$OUT/bench_cuda.err"
  bench_families_rc=$?
else
  echo "$BUILD/bench/hseq_bench_cuda not found" >> "$OUT/bench_cuda.err"
fi
echo "hseq_bench_cuda: rc=$bench_rc (ceiling,kernel) rc=$bench_train_rc (train) rc=$bench_families_rc (families) at $(since)s" \
  | tee -a "$OUT/env.txt"

# 3. PyTorch peer -----------------------------------------------------------------------------
q=""
[ "$QUICK" = 1 ] && q="--quick"
timeout -k 5 "$PEER_TIMEOUT" python3 bench/peer_pytorch_gpu.py $q --budget $(( PEER_TIMEOUT - 30 )) ${PEER_ARGS:-} \
    > "$OUT/peer_pytorch_gpu.jsonl" 2> "$OUT/peer_pytorch_gpu.err"
peer_rc=$?
echo "peer_pytorch_gpu.py: rc=$peer_rc at $(since)s" | tee -a "$OUT/env.txt"

# Summary -------------------------------------------------------------------------------------
python3 - "$OUT" "$tests_rc" "$bench_rc" "$bench_train_rc" "$peer_rc" "$bench_families_rc" > "$OUT/summary.txt" 2>&1 <<'EOF'
import json, os, sys
out, tests_rc, bench_rc, train_rc, peer_rc, families_rc = sys.argv[1:7]
print("exit codes: tests %s, hseq_bench_cuda %s (ceiling,kernel) %s (train) %s (families), peer_pytorch_gpu %s"
      % (tests_rc, bench_rc, train_rc, families_rc, peer_rc))
if "132" in (tests_rc, bench_rc, train_rc):
    print("exit code 132 = SIGILL: host code built for another CPU (configure with -DHSEQ_NATIVE_ARCH=OFF)")
if "124" in (tests_rc, bench_rc, train_rc, peer_rc) or "137" in (tests_rc, bench_rc, train_rc, peer_rc):
    print("exit code 124/137 = stopped by its time limit (see the *_TIMEOUT variables)")
def load(name):
    rows = []
    try:
        for line in open(os.path.join(out, name)):
            line = line.strip()
            if line.startswith("{"):
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    pass
    except OSError:
        pass
    return rows
h, p = load("bench_cuda.jsonl"), load("peer_pytorch_gpu.jsonl")
try:
    tail = open(os.path.join(out, "tests.log")).read().strip().splitlines()[-3:]
    print("tests.log tail: " + " | ".join(tail))
except OSError:
    pass
for r in h + p:
    if r.get("section") in ("device", "ceiling", "fatal") or "error" in r:
        keys = ("section", "name", "model", "math", "precision", "batch", "shape", "tflops", "ceiling_gbs", "error", "skipped")
        print("  " + json.dumps({k: r[k] for k in keys if k in r} if r.get("section") != "device" else r)[:400])
print("kernels (hseq):")
for r in h:
    if r.get("section") == "kernel" and "error" not in r and "skipped" not in r:
        frac = r.get("fraction_of_copy_ceiling", r.get("fraction_of_gemm_ceiling", ""))
        val = ("%.0f GB/s" % r["gbs"]) if "gbs" in r else ("%.1f TFLOP/s %s" % (r.get("tflops", 0), r.get("math", "")))
        name = r["name"] + ((" [" + r["kernels"] + "]") if r.get("kernels") else "")
        print("  %-30s %-40s %-22s %8.3f ms  frac %s" % (name, r.get("shape", ""), val, r.get("median_ms", 0), frac))
print("training tokens/s (hseq vs PyTorch eager; MFU palm vs datasheet):")
key = lambda r: (r.get("model"), r.get("batch"), r.get("math", r.get("precision")))
hm = {key(r): r for r in h if r.get("section") == "train"}
pm = {key(r): r for r in p if r.get("section") == "train"}
for k in sorted(set(hm) | set(pm), key=lambda k: (str(k[0]), -int(k[1] or 0), str(k[2]))):
    a, b = hm.get(k, {}), pm.get(k, {})
    ta, tb = a.get("tokens_per_s"), b.get("tokens_per_s")
    ratio = ("%.2f" % (ta / tb)) if ta and tb else "-"
    fmt = lambda r: ("%10.0f (mfu %.3f)" % (r["tokens_per_s"], r.get("mfu_palm_vs_datasheet", 0))) if r.get("tokens_per_s") else \
        ("%21s" % ("err" if "error" in r else "skip" if "skipped" in r else "-"))
    print("  %-27s B=%-3s %-5s hseq %s  torch %s  hseq/torch %s" % (k[0], k[1], k[2], fmt(a), fmt(b), ratio))
print("model families (hseq_bench_cuda --sections families):")
for r in h:
    if r.get("section") == "families":
        what = ("%10.0f tokens/s  %8.2f ms/step  params %s" % (r["tokens_per_s"], r.get("step_ms", 0), r.get("params"))) \
            if r.get("tokens_per_s") else ("error: " + r["error"] if "error" in r else "skipped: " + str(r.get("skipped")))
        print("  %-50s %s" % (r.get("name", ""), what))
measured = [r for r in h + p if "median_ms" in r or "tokens_per_s" in r]
sys.exit(0 if measured else 1)
EOF
summary_rc=$?
cat "$OUT/summary.txt"
echo "total: $(since)s"
# 0 when either benchmark measured anything (a failing step is tolerated), 1 otherwise.
exit $summary_rc
