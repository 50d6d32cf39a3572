#!/usr/bin/env bash
# The length-reduction autoencoder's reconstruction at CPU scale (issue 12; docs/autoencoder.md):
# for every data set x window x reduction x query source, hseq-train --model autoencoder for
# --budget seconds, then hseq-eval --accuracy on every held-out window; one summary row per run
# (bits per byte and token accuracy of the reconstruction). During training the CSV log records
# the accuracy on 32 held-out windows every --eval-bytes / window steps (column val_accuracy,
# against the training seconds, which exclude these evaluations): tools/plot_autoencoder_curves.py
# draws accuracy against training time from them.
#
#   bash bench/autoencoder_sweep.sh --data "kjv shakespeare" --windows "64 256" --reductions "2 4 8" \
#     --queries "pool bank mix" --budget 45
#
# Data sets: kjv (the King James Bible, BUILD/kjv.txt from `bible -f Gen1:1-Rev22:21`), shakespeare
# (../shared/data/tinyshakespeare.txt, or --shakespeare FILE); the last 10 % is held out. The script
# builds nothing: it needs BUILD/examples/hseq-train and hseq-eval (Release). Every run trains on
# --batch-tokens bytes per step (2048: batch 32 at window 64, 8 at window 256) unless --batch is
# given. Raw output under OUT/<data>_w<window>_r<reduction>_<queries>.{log,eval,csv};
# OUT/summary.txt the table of every run in OUT (earlier invocations' included);
# OUT/env.txt the machine and openblas_get_corename(). Runs use `env -u OPENBLAS_CORETYPE -u
# OPENBLAS_L2_SIZE`, one after the other.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/build" out="$root/bench/results/autoencoder" threads=2
datasets="kjv" windows="64" reductions="2 4 8" queries="pool bank mix" budget=60 eval_bytes=1600
dim=128 heads=4 enc=2 dec=2 batch="" batch_tokens=2048 lr=2e-3 shakespeare="$root/../shared/data/tinyshakespeare.txt"
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --data) datasets="$2"; shift 2 ;;
    --windows) windows="$2"; shift 2 ;;
    --reductions) reductions="$2"; shift 2 ;;
    --queries) queries="$2"; shift 2 ;;
    --budget) budget="$2"; shift 2 ;;
    --eval-bytes) eval_bytes="$2"; shift 2 ;;
    --dim) dim="$2"; shift 2 ;;
    --heads) heads="$2"; shift 2 ;;
    --layers) enc="$2"; dec="$2"; shift 2 ;;
    --batch) batch="$2"; shift 2 ;;
    --batch-tokens) batch_tokens="$2"; shift 2 ;;
    --lr) lr="$2"; shift 2 ;;
    --shakespeare) shakespeare="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
train="$build/examples/hseq-train" eval="$build/examples/hseq-eval"
for p in "$train" "$eval"; do
  [ -x "$p" ] || { echo "$p is missing: cmake --build $build --target hseq-train hseq-eval" >&2; exit 1; }
done
[[ "$("$train" --help 2>&1)" == *autoencoder* ]] || { echo "$train has no autoencoder family: rebuild it" >&2; exit 1; }
mkdir -p "$out"
export OMP_NUM_THREADS="$threads" OPENBLAS_NUM_THREADS="$threads"

data_file() {
  case "$1" in
    kjv)
      if [ ! -s "$build/kjv.txt" ]; then
        command -v bible > /dev/null || { echo "no 'bible' program (Debian: apt-get install bible-kjv)" >&2; exit 1; }
        bible -f Gen1:1-Rev22:21 > "$build/kjv.txt.tmp" && mv "$build/kjv.txt.tmp" "$build/kjv.txt"
      fi
      echo "$build/kjv.txt" ;;
    shakespeare) [ -s "$shakespeare" ] || { echo "$shakespeare is missing (--shakespeare FILE)" >&2; exit 1; }
      echo "$shakespeare" ;;
    *) echo "unknown data set '$1' (kjv, shakespeare)" >&2; exit 2 ;;
  esac
}

blas="$(ldd "$train" 2>/dev/null | awk '/libopenblas|libblas/ { print $3; exit }')"
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "git: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$root" diff --quiet 2>/dev/null || echo ' (working tree modified)')"
  echo "cpu: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(getconf _NPROCESSORS_ONLN) cores online, threads $threads"
  echo "programs: $train ($(date -u -r "$train" '+%Y-%m-%d %H:%M')), $eval"
  echo "openblas_get_corename(): $( [ -n "$blas" ] && env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 -c "
import ctypes, sys
l = ctypes.CDLL(sys.argv[1]); l.openblas_get_corename.restype = ctypes.c_char_p
print(l.openblas_get_corename().decode())" "$blas" 2>/dev/null || echo unknown)"
  echo "model: d $dim, $heads heads, $enc + $dec layers; batch ${batch:-$batch_tokens bytes / window}, lr $lr, $budget s of training per run"
  echo "curves: accuracy on 32 held-out windows every max(1, $eval_bytes / window) steps"
} | tee -a "$out/env.txt"

field() { sed -n "s/^$2: //p" "$1" | tail -1; }
for ds in $datasets; do
  file="$(data_file "$ds")"
  for w in $windows; do
    for r in $reductions; do
      for q in $queries; do
        name="${ds}_w${w}_r${r}_${q}"
        b="${batch:-$(( batch_tokens / w > 0 ? batch_tokens / w : 1 ))}"
        cmd=("$train" --data "$file" --model autoencoder --queries "$q" --reduce "$r" --window "$w" --dim "$dim"
             --heads "$heads" --enc-layers "$enc" --decoder-layers "$dec" --batch "$b" --steps 0
             --time-budget "$budget" --lr "$lr" --eval-every "$(( eval_bytes / w > 0 ? eval_bytes / w : 1 ))"
             --eval-windows 32 --threads "$threads"
             --csv "$out/$name.csv" --out "$out/$name.safetensors")
        echo "== $name: $(printf '%q ' "${cmd[@]}")" | tee -a "$out/commands.txt"
        env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "${cmd[@]}" 2>&1 | tr '\r' '\n' | grep -v '^step [0-9]' \
          | tee "$out/$name.log"
        ecmd=("$eval" --checkpoint "$out/$name.safetensors" --data "$file" --accuracy --windows 0 --batch 64
              --threads "$threads")
        echo "== $name.eval: $(printf '%q ' "${ecmd[@]}")" | tee -a "$out/commands.txt"
        env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "${ecmd[@]}" 2>&1 | tee "$out/$name.eval"
        rm -f "$out/$name.safetensors"
      done
    done
  done
done
# The table covers every run in OUT (earlier invocations' too), sorted by data, window, reduction.
rows=()
for e in $(ls "$out"/*_w*_r*_*.eval 2> /dev/null | sort -t_ -k1,1 -k2,2V -k3,3V); do
  name="$(basename "$e" .eval)"
  IFS=_ read -r ds w r q <<< "$name"
  steps="$(sed -n 's/^steps: \([0-9]*\) .*/\1/p' "$out/$name.log" | tail -1)"
  rows+=("$(printf '%-12s %6s %5s %-5s %8s %10s %10s' "$ds" "${w#w}" "1/${r#r}" "$q" "$steps" \
    "$(field "$e" bpc)" "$(field "$e" accuracy)")")
done
{
  echo "Reconstruction of every held-out window ($budget s of training each; d $dim, $enc + $dec layers)"
  printf '%-12s %6s %5s %-5s %8s %10s %10s\n' data window m/n query steps bits/byte accuracy
  printf '%s\n' "${rows[@]}"
} | tee "$out/summary.txt"
