#!/usr/bin/env bash
# Transformer-XL and the Compressive Transformer at CPU scale with the built programs (issue 11;
# docs/performance.md, section "Transformer-XL and the Compressive Transformer at CPU scale"). One
# sub-command per measurement:
#
#   recall    the long-range recall task (tools/gen_long_range.py): a value planted, asked for
#             --min-dist..--max-dist bytes later, past what Transformer-XL's memory reaches even
#             through its layers but within the compressed memory's span. Transformer-XL (memory
#             --mem-len + --cmem-len + segment / rate rows) against the Compressive Transformer
#             (--mem-len rows, --cmem-len compressed rows and the segment / rate rows it compresses
#             at each segment: the same number of keys per query, "equal attention cost") for every function and every loss that applies (ae and attn train a learned
#             compressor: conv and dilated), the same steps, batch and seed; each scored on the held-out
#             stream segment by segment (hseq-eval --segment --score-after '?' --accuracy): the
#             answers' bits and accuracy. A Transformer-XL whose memory covers the distance (4x the
#             keys) shows the task is solvable.
#   kjv       bits per character on the King James Bible at equal training time: Transformer-XL,
#             the Compressive Transformer (each --compress function; --rate; the --compress-loss
#             default: attn for conv and dilated) and the plain Transformer LM, all at
#             the same segment (training) length; tokens/s and peak resident memory
#             (/usr/bin/time -v) of each; bpc scored segment by segment over the memories (XL,
#             Compressive) or in windows of one segment (the LM).
#   age       the attention-by-age diagnostic of the Compressive Transformer checkpoint of `kjv`
#             (the first --compress function)
#             (BUILD/bench/hseq_attention_by_age, then tools/plot_attention_age.py if matplotlib is there).
#   all       recall, kjv, age.
#
#   bash bench/compressive_claims.sh recall            # about 20 min on 2 cores
#   bash bench/compressive_claims.sh kjv               # about 25 min
#
# The script builds nothing: it needs BUILD/examples/hseq-train and hseq-eval (Release build) and,
# for `age`, BUILD/bench/hseq_attention_by_age. Every run is printed raw and kept under
# OUT/<command>/ (NAME.log, NAME.eval, NAME.time); OUT/<command>/summary.txt is the table printed
# at the end, OUT/<command>/env.txt the machine and openblas_get_corename(). Runs use
# `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE` (OpenBLAS picks its kernels itself).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
  cat <<EOF
Options (defaults in brackets):
  --build DIR          build tree holding examples/hseq-train, examples/hseq-eval [$root/build]
  --out DIR            where the raw output goes [$root/bench/results/compressive_claims]
  --threads N          OpenMP threads of every run [2]
  --segment T          segment (training) length in bytes [32 recall, 128 kjv]
  --dim D --heads H --layers L   model size [128 4 2 recall; 256 4 4 kjv]
  --mem-len M --cmem-len C --rate c   memories [16 40 4 recall; 128 128 4 kjv]
  --batch B            parallel streams per step [32 recall, 16 kjv]
  --steps N            (recall) training steps of every run [1500]
  --min-dist A --max-dist B   (recall) plant-to-query distance [198 206]
  --budget S           (kjv) training seconds per model [150]
  --compress "F ..."   (kjv) the Compressive Transformer's functions, each trained; age reads the
                       first one's checkpoint ["conv most-used mean max dilated"]
  --data FILE          (kjv) text [the King James Bible, BUILD/kjv.txt, from \`bible -f Gen1:1-Rev22:21\`]
  --lr X               peak learning rate [2e-3]
  --reuse              keep a run whose output is already there and complete (a log with its
                       "checkpoint:" line, an evaluation with its "bpc:" line): finishes an
                       interrupted command
EOF
}

cmd="${1:-help}"
[ $# -gt 0 ] && shift
case "$cmd" in
  recall|kjv|age|all) ;;
  help|-h|--help) usage; exit 0 ;;
  *) echo "unknown command '$cmd' (recall, kjv, age, all, help)" >&2; exit 2 ;;
esac

build="$root/build" out="$root/bench/results/compressive_claims" threads=2 lr=2e-3
segment="" dim="" heads=4 layers="" mem="" cmem="" rate=4 batch="" steps=1500 min_dist=198 max_dist=206
reuse=0 budget=150 compress="conv most-used mean max dilated" data=""
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --segment) segment="$2"; shift 2 ;;
    --dim) dim="$2"; shift 2 ;;
    --heads) heads="$2"; shift 2 ;;
    --layers) layers="$2"; shift 2 ;;
    --mem-len) mem="$2"; shift 2 ;;
    --cmem-len) cmem="$2"; shift 2 ;;
    --rate) rate="$2"; shift 2 ;;
    --batch) batch="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --min-dist) min_dist="$2"; shift 2 ;;
    --max-dist) max_dist="$2"; shift 2 ;;
    --budget) budget="$2"; shift 2 ;;
    --compress) compress="$2"; shift 2 ;;
    --data) data="$2"; shift 2 ;;
    --lr) lr="$2"; shift 2 ;;
    --reuse) reuse=1; shift ;;
    *) echo "unknown option '$1' (see: bash $0 help)" >&2; exit 2 ;;
  esac
done

train="$build/examples/hseq-train" eval="$build/examples/hseq-eval" age_bin="$build/bench/hseq_attention_by_age"
for p in "$train" "$eval"; do
  [ -x "$p" ] || { echo "$p is missing: cmake --build $build --target hseq-train hseq-eval" >&2; exit 1; }
done
[[ "$("$eval" --help 2>&1)" == *--score-after* ]] || { echo "$eval has no --score-after: rebuild it" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "/usr/bin/time is missing (Debian: apt-get install time)" >&2; exit 1; }
export OMP_NUM_THREADS="$threads" OPENBLAS_NUM_THREADS="$threads"

# shellcheck source=bench/common.sh
source "$root/bench/common.sh"
env_report() {  # env_report DIR: the machine, the programs and OpenBLAS's core, into DIR/env.txt and stdout
  {
    bench_env_lines "$root" "$train" "$threads"
    echo "programs: $train ($(date -u -r "$train" '+%Y-%m-%d %H:%M')), $eval"
  } | tee "$1/env.txt"
}

# run DIR NAME KIND COMMAND...: runs COMMAND under /usr/bin/time -v without the OpenBLAS overrides;
# keeps DIR/NAME.KIND (its output, also printed) and, for KIND log, DIR/NAME.time.
run() {
  local dir="$1" name="$2" kind="$3"; shift 3
  local done_line='^checkpoint: '
  [ "$kind" = log ] || done_line='^bpc: '
  if [ "$reuse" = 1 ] && grep -q "$done_line" "$dir/$name.$kind" 2> /dev/null; then
    echo "== $name.$kind: kept (--reuse)" | tee -a "$dir/commands.txt"
    return 0
  fi
  echo "== $name.$kind: $(printf '%q ' "$@")" | tee -a "$dir/commands.txt"
  if [ "$kind" = log ]; then
    /usr/bin/time -v -o "$dir/$name.time" env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$@" 2>&1 | tr '\r' '\n' \
      | grep -v '^step [0-9]*/[0-9]* |' | tee "$dir/$name.$kind"
  else
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$@" 2>&1 | tee "$dir/$name.$kind"
  fi
}
# field FILE params|tokens_per_s|train_s|steps|bpc|accuracy|scored|val_bpc
field() {
  case "$2" in
    params) sed -n 's/^parameters: \([0-9]*\).*/\1/p' "$1" | head -1 ;;
    steps) sed -n 's/^steps: \([0-9]*\) .*/\1/p' "$1" | tail -1 ;;
    tokens_per_s) sed -n 's/.*throughput: \([-0-9.eE+naif]*\) tokens\/s.*/\1/p' "$1" | tail -1 ;;
    train_s) sed -n 's/.*training time: \([-0-9.eE+]*\) s,.*/\1/p' "$1" | tail -1 ;;
    bpc) sed -n 's/^bpc: //p' "$1" | tail -1 ;;
    accuracy) sed -n 's/^accuracy: //p' "$1" | tail -1 ;;
    scored) sed -n 's/^scored: \([0-9]*\) .*/\1/p' "$1" | tail -1 ;;
    peak_mib) awk -F': ' '/Maximum resident set size/ { printf "%.1f", $2 / 1024 }' "$1" ;;
  esac
}
fmt() { awk -v x="$1" -v f="$2" 'BEGIN { if (x == "" || x == "nan" || x == "-nan") print "n/a"; else printf f, x }'; }

# ------------------------------------------------------------------------------------------------
recall() {
  local dir="$out/recall" t="${segment:-32}" d="${dim:-128}" L="${layers:-2}" m="${mem:-16}" c="${cmem:-40}"
  local b="${batch:-32}"
  mkdir -p "$dir"; : > "$dir/commands.txt"
  env_report "$dir"
  local task="$dir/task.txt"
  python3 "$root/tools/gen_long_range.py" --out "$task" --bytes 2000000 --seed 1 --min-dist "$min_dist" \
    --max-dist "$max_dist" | tee "$dir/task.info"
  local xl_mem=$((m + c + t / rate))  # the keys a Compressive query sees before the segment
  # The held-out split (the file's last 10 %) as 16 streams, each scored in one window over a memory.
  local val_bytes stream
  val_bytes=$(awk -v n="$(wc -c < "$task")" 'BEGIN { printf "%d", n - int(n * 0.9) }')
  stream=$(( (val_bytes - 1) / 16 / t * t ))
  local common=(--data "$task" --threads "$threads" --dim "$d" --heads "$heads" --layers "$L" --context "$t"
                --batch "$b" --steps "$steps" --lr "$lr" --eval-every 0 --eval-windows 16 --sample-bytes 0 --seed 1234)
  local score=(--data "$task" --threads "$threads" --batch 16 --windows 16 --seq-len "$stream" --segment "$t"
               --score-after '?' --accuracy)
  local runs=("xl|transformer-xl|--mem-len $xl_mem" "xl_mem256|transformer-xl|--mem-len 256")
  local f
  for f in mean max most-used; do runs+=("ct_${f}|compressive|--compress $f --compress-loss bptt"); done
  for f in conv dilated; do
    for l in bptt ae attn; do runs+=("ct_${f}_${l}|compressive|--compress $f --compress-loss $l"); done
  done
  local r name model extra
  for r in "${runs[@]}"; do
    IFS='|' read -r name model extra <<< "$r"
    local mflags=(--model "$model")
    # shellcheck disable=SC2206
    mflags+=($extra)
    [ "$model" = compressive ] && mflags+=(--mem-len "$m" --cmem-len "$c" --rate "$rate")
    run "$dir" "$name" log "$train" "${common[@]}" "${mflags[@]}" --out "$dir/$name.safetensors"
    run "$dir" "$name" eval "$eval" --checkpoint "$dir/$name.safetensors" "${score[@]}"
    rm -f "$dir/$name.safetensors"  # 1-2 MB each; the logs hold the figures
  done
  {
    echo "Long-range recall: distance $min_dist-$max_dist bytes; segment $t, d $d, $L layers, $heads heads, batch $b, $steps steps"
    echo "Transformer-XL memory $xl_mem rows; Compressive memory $m + compressed $c rows at rate $rate ($((m + c + t / rate)) keys before the segment with the rows compressed at it; reach $((m + (c + t / rate) * rate)) bytes)"
    echo "Scored: the byte after each '?' of the held-out split (16 streams of $stream bytes, segment by segment over a memory); chance: 1/26 = 0.038, 4.70 bits"
    printf '%-22s %10s %10s %10s %8s %10s %10s\n' run params steps train_s tok/s answer_bits accuracy
    for r in "${runs[@]}"; do
      IFS='|' read -r name model extra <<< "$r"
      printf '%-22s %10s %10s %10s %8s %10s %10s\n' "$name" "$(field "$dir/$name.log" params)" \
        "$(field "$dir/$name.log" steps)" "$(fmt "$(field "$dir/$name.log" train_s)" %.1f)" \
        "$(fmt "$(field "$dir/$name.log" tokens_per_s)" %.0f)" "$(fmt "$(field "$dir/$name.eval" bpc)" %.3f)" \
        "$(fmt "$(field "$dir/$name.eval" accuracy)" %.3f)"
    done
    echo "(xl_mem256: a memory covering the distance, 4x the keys: not equal cost, shows the task is solvable)"
  } | tee "$dir/summary.txt"
  rm -f "$task"  # 2 MB, made again by the command in task.info
}

# ------------------------------------------------------------------------------------------------
kjv_data() {
  if [ -z "$data" ]; then
    data="$build/kjv.txt"
    if [ ! -s "$data" ]; then
      command -v bible > /dev/null || { echo "no --data given and no 'bible' program (Debian: apt-get install bible-kjv)" >&2; exit 1; }
      bible -f Gen1:1-Rev22:21 > "$data.tmp"
      mv "$data.tmp" "$data"
    fi
  fi
}
kjv() {
  local dir="$out/kjv" t="${segment:-128}" d="${dim:-256}" L="${layers:-4}" m="${mem:-128}" c="${cmem:-128}"
  local b="${batch:-16}"
  kjv_data
  mkdir -p "$dir"
  [ "$reuse" = 1 ] || : > "$dir/commands.txt"
  env_report "$dir"
  local common=(--data "$data" --threads "$threads" --dim "$d" --heads "$heads" --layers "$L" --context "$t"
                --batch "$b" --steps 0 --time-budget "$budget" --lr "$lr" --warmup 100 --eval-every 0
                --eval-windows 16 --sample-bytes 0 --seed 1234)
  # Scoring: 64 windows of 2048 validation bytes; XL and Compressive segment by segment over their
  # memories (each window starts empty), the LM in windows of one segment.
  local score=(--data "$data" --threads "$threads" --batch 16)
  run "$dir" xl log "$train" "${common[@]}" --model transformer-xl --mem-len $((m + c + t / rate)) --out "$dir/xl.safetensors"
  run "$dir" xl eval "$eval" --checkpoint "$dir/xl.safetensors" "${score[@]}" --windows 64 --seq-len 2048 --segment "$t"
  local f
  for f in $compress; do
    run "$dir" "ct_$f" log "$train" "${common[@]}" --model compressive --compress "$f" --rate "$rate" --mem-len "$m" \
      --cmem-len "$c" --out "$dir/ct_$f.safetensors"
    run "$dir" "ct_$f" eval "$eval" --checkpoint "$dir/ct_$f.safetensors" "${score[@]}" --windows 64 --seq-len 2048 \
      --segment "$t"
  done
  run "$dir" lm log "$train" "${common[@]}" --model transformer --out "$dir/lm.safetensors"
  run "$dir" lm eval "$eval" --checkpoint "$dir/lm.safetensors" "${score[@]}" --seq-len "$t" --windows 1024
  {
    echo "KJV at equal training time ($budget s each): segment $t, d $d, $L layers, $heads heads, batch $b"
    echo "transformer-xl: memory $((m + c + t / rate)) rows; compressive (rate $rate): memory $m + compressed $c rows (+ $((t / rate)) compressed at each segment); transformer: context $t, no memory"
    echo "val_bpc: 64 validation windows of 2048 bytes, segment by segment over the memories (the LM: 1024 windows of $t)"
    printf '%-16s %10s %8s %10s %10s %10s\n' run params steps tok/s peak_MiB val_bpc
    local name
    for name in xl $(for f in $compress; do echo "ct_$f"; done) lm; do
      printf '%-16s %10s %8s %10s %10s %10s\n' "$name" "$(field "$dir/$name.log" params)" "$(field "$dir/$name.log" steps)" \
        "$(fmt "$(field "$dir/$name.log" tokens_per_s)" %.0f)" "$(field "$dir/$name.time" peak_mib)" \
        "$(fmt "$(field "$dir/$name.eval" bpc)" %.4f)"
    done
  } | tee "$dir/summary.txt"
}

# ------------------------------------------------------------------------------------------------
age() {
  local first="${compress%% *}"
  local dir="$out/age" src="$out/kjv/ct_$first.safetensors"
  kjv_data
  [ -s "$src" ] || { echo "$src is missing: run 'kjv' first" >&2; exit 1; }
  [ -x "$age_bin" ] || { echo "$age_bin is missing: cmake --build $build --target hseq_attention_by_age" >&2; exit 1; }
  mkdir -p "$dir"; : > "$dir/commands.txt"
  local cmd=("$age_bin" --checkpoint "$src" --data "$data" --segment "${segment:-128}" --streams 16 --bytes 8192
             --buckets 4 --threads "$threads")
  echo "== age.csv: $(printf '%q ' "${cmd[@]}")" | tee -a "$dir/commands.txt"
  "${cmd[@]}" > "$dir/age.csv" 2> >(tee "$dir/age.err" >&2)
  cat "$dir/age.csv"
  if python3 -c 'import matplotlib' 2> /dev/null; then
    python3 "$root/tools/plot_attention_age.py" "$dir/age.csv" --out "$dir/attention_by_age.png"
  else
    echo "(no matplotlib: pip install matplotlib, then python3 tools/plot_attention_age.py $dir/age.csv --out $dir/attention_by_age.png)"
  fi
}

case "$cmd" in
  recall) recall ;;
  kjv) kjv ;;
  age) age ;;
  all) recall; kjv; age ;;
esac
