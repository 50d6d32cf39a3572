#!/usr/bin/env bash
# The HAED paper's claims measured at CPU scale with the built programs (issue 10; docs/performance.md,
# section "HRED/HAED: the paper's claims at CPU scale"). One sub-command per measurement:
#
#   memory    (a) IEM phase vs full training of the same HAED (T = 1024, 8-byte segments, the same
#                 batch, steps and data), each in its own process: tokens/s and peak resident memory
#                 (/usr/bin/time -v), plus two "floor" runs (10 steps of batch 1 x 16 bytes) that
#                 measure what the peak holds besides activations (binary, data, parameters with
#                 gradients and AdamW moments, OpenBLAS buffers, the IEM segment-proposal table).
#   budget    (b) final validation bpc after equal training time: HAED with --phases iem:N,decoder
#                 (the IEM phase for --iem-fraction of the budget, then the run is resumed with the
#                 decoder phase for the rest), the same HAED trained "full", and the Transformer LM
#                 whose parameter count is within +-5 % of the HAED's (layers chosen by probing).
#   phases    (b') the HAED phase schedules side by side at equal training time: the end-to-end HAED
#                 once, then every --sweep item F:SECOND (the IEM phase for the share F of the budget,
#                 then SECOND, "decoder" (encoder and backbone frozen) or "full" (everything
#                 fine-tuned), for the rest), each as in (b).
#   grid      (c) bpc after equal training time for encoder {mlp, rnn} x backbone {rnn, transformer},
#                 decoder fixed (rnn), fixed 8-byte chunks.
#   generate  (d) cached generation bytes/s of HAED vs the Transformer LM at the same context (the
#                 checkpoints of "budget", or 1-step checkpoints of the same models when absent: the
#                 rate does not depend on the weights).
#   all       (a), (b), (c), (d) one after the other.
#
#   bash bench/hred_haed_claims.sh all --threads 2 --budget 300 --grid-budget 240   # about 36 min
#   bash bench/hred_haed_claims.sh memory --mem-steps 20 --out /tmp/claims
#
# The script builds nothing: it needs BUILD/examples/hseq-train and hseq-generate (Release build,
# see `help`). Every run is printed raw and kept under OUT/<command>/ (NAME.log: the program's
# output; NAME.time: /usr/bin/time -v; NAME.rss: resident memory sampled every 0.05-0.5 s; NAME.csv:
# one row per step); OUT/<command>/summary.txt is the summary table printed at the end.
# Runs use `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE` (OpenBLAS picks its kernels itself, as in
# the other bench results), and OUT/<command>/env.txt records the machine and openblas_get_corename().
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
  cat <<EOF
Options (defaults in brackets):
  --build DIR          build tree holding examples/hseq-train and examples/hseq-generate [$root/build]
  --data FILE          training text; the last 10 % is the validation split
                       [the King James Bible, written to BUILD/kjv.txt by \`bible -f Gen1:1-Rev22:21\`
                       (Debian's bible-kjv) when missing]
  --out DIR            where the raw output goes [$root/bench/results/hred_haed_claims]
  --threads N          OpenMP threads of every run [2]
  --context T          context and training length in bytes, a multiple of 8 [1024]
  --batch B            sequences per step [8]
  --dim D --heads H    HAED width and backbone heads [256, 4]
  --layers L           HAED backbone layers [4]
  --decoder-layers L   HAED decoder layers (GRU, or Transformer blocks) [2]
  --decoder D          HAED decoder of (a), (b), (b'), (d): rnn (GRU) or transformer [rnn]
  --iem-negatives N    IEM negatives per micro-batch [256]
  --lr X --warmup N    peak learning rate and warm-up steps of every run [2e-3, 30]
  --eval-windows N     validation windows of T bytes scored at the end of (b), (c) [128]
  --mem-steps N        (a) steps of the IEM run and of the full run [20]
  --budget S           (b) training seconds per model [300]
  --iem-fraction F     (b) share of the HAED budget planned for the IEM phase [0.75]
  --second-phase P     (b), (c) the phase after IEM: decoder (encoder and backbone frozen) or full
                       (everything fine-tuned) [decoder]
  --sweep "F:P ..."    (b') the schedules compared ["0.75:decoder 0.5:decoder 0.5:full 0.25:full"]
  --lm-dim D           (b), (d) Transformer LM width [--dim]
  --lm-layers L        (b), (d) Transformer LM layers [chosen: parameters within +-5 % of the HAED's]
  --grid-budget S      (c) training seconds per combination [240]
  --grid-objective O   (c) full (end to end) or phases (iem then decoder, as in (b)) [full]
  --gen-repeats N      (d) generation runs per model, alternating; the median is reported [3]
Build the programs first, e.g.
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DHSEQ_BUILD_EXAMPLES=ON && cmake --build build --target hseq-train hseq-generate
EOF
}

cmd="${1:-help}"
[ $# -gt 0 ] && shift
case "$cmd" in
  memory|budget|phases|grid|generate|all) ;;
  help|-h|--help) usage; exit 0 ;;
  *) echo "unknown command '$cmd' (memory, budget, phases, grid, generate, all, help)" >&2; exit 2 ;;
esac

build="$root/build"; data=""; out="$root/bench/results/hred_haed_claims"; threads=2
ctx=1024; batch=8; dim=256; heads=4; layers=4; dec_layers=2; decoder=rnn; negatives=256; lr=2e-3; warmup=30
eval_windows=128; mem_steps=20; budget=300; iem_fraction=0.75; lm_dim=""; lm_layers=""
grid_budget=240; grid_objective=full; gen_repeats=3; second_phase=decoder
sweep="0.75:decoder 0.5:decoder 0.5:full 0.25:full"
while [ $# -gt 0 ]; do
  opt="$1"; val="${2-}"
  [ $# -ge 2 ] || { echo "option $opt needs a value" >&2; exit 2; }
  case "$opt" in
    --build) build="$val" ;; --data) data="$val" ;; --out) out="$val" ;; --threads) threads="$val" ;;
    --context) ctx="$val" ;; --batch) batch="$val" ;; --dim) dim="$val" ;; --heads) heads="$val" ;;
    --layers) layers="$val" ;; --decoder-layers) dec_layers="$val" ;; --decoder) decoder="$val" ;; --iem-negatives) negatives="$val" ;;
    --lr) lr="$val" ;; --warmup) warmup="$val" ;; --eval-windows) eval_windows="$val" ;;
    --mem-steps) mem_steps="$val" ;; --budget) budget="$val" ;; --iem-fraction) iem_fraction="$val" ;;
    --second-phase) second_phase="$val" ;; --sweep) sweep="$val" ;;
    --lm-dim) lm_dim="$val" ;; --lm-layers) lm_layers="$val" ;;
    --grid-budget) grid_budget="$val" ;; --grid-objective) grid_objective="$val" ;; --gen-repeats) gen_repeats="$val" ;;
    *) echo "unknown option '$opt' (see: bash $0 help)" >&2; exit 2 ;;
  esac
  shift 2
done
lm_dim="${lm_dim:-$dim}"
case "$decoder" in rnn|transformer) ;; *) echo "--decoder: rnn or transformer, not '$decoder'" >&2; exit 2 ;; esac
case "$second_phase" in decoder|full) ;; *) echo "--second-phase: decoder or full, not '$second_phase'" >&2; exit 2 ;; esac
for item in $sweep; do
  [[ "$item" =~ ^(0?\.[0-9]+|1(\.0*)?):(decoder|full)$ ]] || { echo "--sweep item '$item': F:decoder or F:full with 0 < F <= 1" >&2; exit 2; }
done
case "$grid_objective" in full|phases) ;; *) echo "--grid-objective: full or phases, not '$grid_objective'" >&2; exit 2 ;; esac
(( ctx % 8 == 0 )) || { echo "--context $ctx is not a multiple of the 8-byte segments" >&2; exit 2; }

train="$build/examples/hseq-train"
generate="$build/examples/hseq-generate"
for p in "$train" "$generate"; do
  if [ ! -x "$p" ]; then
    echo "missing $p: build it first (this script builds nothing):" >&2
    echo "  cmake -S $root -B $build -DCMAKE_BUILD_TYPE=Release -DHSEQ_BUILD_EXAMPLES=ON" >&2
    echo "  cmake --build $build --target hseq-train hseq-generate" >&2
    exit 1
  fi
done
train_help="$("$train" --help 2>&1 || true)"
if [[ "$train_help" != *--iem-negatives* ]]; then
  echo "$train has no hierarchical family (--iem-negatives): it is older than the sources; rebuild it:" >&2
  echo "  cmake --build $build --target hseq-train hseq-generate" >&2
  exit 1
fi
[ -x /usr/bin/time ] || { echo "/usr/bin/time is missing (Debian: apt-get install time)" >&2; exit 1; }

if [ -z "$data" ]; then
  data="$build/kjv.txt"
  if [ ! -s "$data" ]; then
    command -v bible > /dev/null || { echo "no --data given and no 'bible' program (Debian: apt-get install bible-kjv)" >&2; exit 1; }
    bible -f Gen1:1-Rev22:21 > "$data.tmp"
    mv "$data.tmp" "$data"
  fi
fi
[ -s "$data" ] || { echo "--data $data: no such file (or empty)" >&2; exit 1; }
export OMP_NUM_THREADS="$threads" OPENBLAS_NUM_THREADS="$threads"

# ------------------------------------------------------------------------------------------------
# Helpers

calc() { awk "BEGIN { printf \"%s\", ($1) }"; }       # calc '2 * 3' (awk arithmetic; %s keeps precision)
fmt() { awk -v x="$1" -v f="$2" 'BEGIN { if (x == "" || x == "nan" || x == "-nan") print "n/a"; else printf f, x }'; }
# Reads a field from a run's output: field LOG params|steps|tokens_per_s|train_s|bpc
field() {
  local log="$1" what="$2"
  case "$what" in
    params) sed -n 's/^parameters: \([0-9]*\).*/\1/p' "$log" | head -1 ;;
    steps) sed -n 's/^steps: \([0-9]*\) .*/\1/p' "$log" | tail -1 ;;
    tokens_per_s) sed -n 's/.*throughput: \([-0-9.eE+naif]*\) tokens\/s.*/\1/p' "$log" | tail -1 ;;
    train_s) sed -n 's/.*training time: \([-0-9.eE+]*\) s,.*/\1/p' "$log" | tail -1 ;;
    bpc) sed -n 's/^validation bpc: //p' "$log" | tail -1 ;;
    mem_start) sed -n 's/^memory before training: resident \([0-9.]*\) MiB.*/\1/p' "$log" | tail -1 ;;
    mem_start_peak) sed -n 's/^memory before training: resident [0-9.]* MiB (peak \([0-9.]*\) MiB).*/\1/p' "$log" | tail -1 ;;
    workspace) sed -n 's/.*; workspace reserved \([0-9.e+]*\) MiB.*/\1/p' "$log" | tail -1 ;;
    gen_rate) sed -n 's/^generated .* (\([-0-9.eE+]*\) bytes\/s)$/\1/p' "$log" | tail -1 ;;
    gen_bytes) sed -n 's/^generated \([0-9]*\) bytes in .*/\1/p' "$log" | tail -1 ;;
  esac
}
peak_kb() { sed -n 's/.*Maximum resident set size (kbytes): //p' "$1"; }
mib() { [ -n "${1:-}" ] && fmt "$(calc "$1 / 1024")" "%.1f" || echo n/a; }
kib() { [ -n "${1:-}" ] && calc "$1 * 1024" || true; }  # MiB -> KiB (empty stays empty)
# ratio A B [FORMAT]: A / B, or n/a when either is missing or B is 0.
ratio() { awk -v a="${1:-}" -v b="${2:-}" -v f="${3:-%.3f}" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "n/a"; else printf f, a / b }'; }
# diff_kb A B: A - B, or empty when either is missing.
diff_kb() { [ -n "${1:-}" ] && [ -n "${2:-}" ] && calc "$1 - $2" || true; }
# Mean seconds per step over steps (from, to] of a training CSV (columns step, loss, bpc, val_bpc,
# seconds, tokens; the seconds are cumulative training time).
csv_step_s() {
  awk -F, -v a="$2" -v b="$3" 'b <= a { exit } NR > 1 && $1 == a && $2 != "" && $2 != "nan" { ta = $5 } NR > 1 && $1 == b && $2 != "nan" { tb = $5 }
    END { if (ta == "" || tb == "") print ""; else printf "%.6f", (tb - ta) / (b - a) }' "$1"
}
# Cumulative training seconds at the end of step s of a CSV (its training row, not the final validation row).
csv_seconds_at() { awk -F, -v s="$2" 'NR > 1 && $1 == s && $2 != "nan" && $2 != "" { t = $5 } END { print t }' "$1"; }

# shellcheck source=bench/common.sh
source "$root/bench/common.sh"
env_report() {  # env_report DIR: the machine, the programs and OpenBLAS's core, into DIR/env.txt and stdout
  {
    bench_env_lines "$root" "$train" "$threads"
    echo "programs: $train ($(date -u -r "$train" '+%Y-%m-%d %H:%M')), $generate"
    echo "data: $data ($(wc -c < "$data") bytes)"
  } | tee "$1/env.txt"
}

# run_one DIR NAME COMMAND...: runs COMMAND under /usr/bin/time -v without the OpenBLAS overrides,
# streams its output, and keeps DIR/NAME.log (stdout and stderr), DIR/NAME.time and DIR/NAME.rss
# (VmRSS and VmHWM in KiB sampled every 0.05 s until the program prints its "training:" line, then
# every 0.5 s: the memory timeline; the exact figures before and after training are the ones
# hseq-train prints itself). Sets RUN_RC.
run_one() {
  local dir="$1" name="$2"; shift 2
  local log="$dir/$name.log" tf="$dir/$name.time" rss="$dir/$name.rss" pidf="$dir/.$name.pid"
  : > "$log"; rm -f "$pidf" "$tf"
  local shown; shown="$(printf '%q ' "$@")"
  echo "== $name: ${shown% }" | tee -a "$dir/commands.txt"
  /usr/bin/time -v -o "$tf" bash -c 'echo $$ > "$0"; exec "$@"' "$pidf" \
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$@" > "$log" 2>&1 &
  local tpid=$! pid=""
  tail -s 0.5 -n +1 -f --pid="$tpid" "$log" &
  local tailpid=$!
  while [ -z "$pid" ] && kill -0 "$tpid" 2> /dev/null; do
    [ -s "$pidf" ] && pid="$(< "$pidf")"
    sleep 0.01
  done
  local stage=setup key value rest vm_rss vm_hwm
  printf 'epoch_s\tvm_rss_kb\tvm_hwm_kb\tstage\n' > "$rss"
  while [ -n "$pid" ] && [ -r "/proc/$pid/status" ]; do
    vm_rss=""; vm_hwm=""
    while read -r key value rest; do
      case "$key" in VmRSS:) vm_rss="$value" ;; VmHWM:) vm_hwm="$value" ;; esac
    done < "/proc/$pid/status" 2> /dev/null || true
    [ -n "$vm_rss" ] || break  # exited (a zombie has no memory lines)
    if [ "$stage" = setup ] && grep -q '^training: ' "$log"; then
      stage=run
    fi
    printf '%s\t%s\t%s\t%s\n' "${EPOCHREALTIME:-}" "$vm_rss" "$vm_hwm" "$stage" >> "$rss"
    if [ "$stage" = setup ]; then sleep 0.05; else sleep 0.5; fi
  done
  RUN_RC=0
  wait "$tpid" || RUN_RC=$?
  wait "$tailpid" 2> /dev/null || true
  rm -f "$pidf"
  echo "-- /usr/bin/time -v ($name):"
  cat "$tf"
  if [ "$RUN_RC" -ne 0 ]; then
    echo "!! $name exited with status $RUN_RC (see $log)" >&2
    return "$RUN_RC"
  fi
}

# The HAED of every measurement: MLP encoder, Transformer backbone, GRU decoder over fixed 8-byte
# segments (the hierarchical family's default policies), T = context.
haed_flags=(--model hierarchical --segment fixed8 --encoder mlp --backbone transformer --decoder "$decoder" --cell gru
            --dim "$dim" --heads "$heads" --layers "$layers" --decoder-layers "$dec_layers" --context "$ctx")
iem_flags=(--iem-negatives "$negatives")
common_flags=(--data "$data" --threads "$threads" --batch "$batch" --seq-len "$ctx" --lr "$lr" --sample-bytes 0 --seed 1234)
# A probe: one step of batch 1 x 16 bytes and one validation window; prints the parameter count.
probe_flags=(--data "$data" --threads "$threads" --batch 1 --seq-len 16 --steps 1 --warmup 1 --eval-every 0
             --eval-windows 1 --sample-bytes 0 --seed 1234)

# train_phases DIR NAME BUDGET MODEL_FLAGS...: HAED's two phases in BUDGET seconds of training, in two
# processes: NAME_iem trains "--phases iem" for PH_FRACTION (default iem_fraction) of the budget (its
# cosine decay over that time) and writes DIR/NAME.safetensors; NAME resumes it with
# "--phases iem:S,P" (S: the IEM steps taken; P: PH_SECOND, default second_phase) and the whole
# budget, so phase P trains for the rest of the training time (the schedule continues from the
# fraction of the budget already used). One CSV, DIR/NAME.csv. Sets PH_IEM_STEPS.
train_phases() {
  local dir="$1" name="$2" b="$3"; shift 3
  local ckpt="$dir/$name.safetensors" iem_s
  iem_s="$(calc "${PH_FRACTION:-$iem_fraction} * $b")"
  rm -f "$ckpt" "$dir/$name.csv"
  run_one "$dir" "${name}_iem" "$train" "$@" "${iem_flags[@]}" "${common_flags[@]}" --steps 0 --time-budget "$iem_s" \
    --warmup "$warmup" --phases iem --eval-every 0 --eval-windows 1 --csv "$dir/$name.csv" --out "$ckpt"
  PH_IEM_STEPS="$(field "$dir/${name}_iem.log" steps)"
  run_one "$dir" "$name" "$train" --resume "$ckpt" "${common_flags[@]}" --steps 0 --time-budget "$b" --warmup "$warmup" \
    --phases "iem:$PH_IEM_STEPS,${PH_SECOND:-$second_phase}" --eval-every 0 --eval-windows "$eval_windows" --csv "$dir/$name.csv" --out "$ckpt"
}
# phase_report CSV N_IEM: the steps and seconds each phase actually trained (from the CSV).
phase_report() {
  awk -F, -v n="$2" -v p="${3:-$second_phase}" 'NR > 1 && $2 != "nan" && $2 != "" { last = $1; t = $5; if ($1 == n) ti = t }
    END { if (last < n) printf "%d IEM steps in %.1f s, no %s step (the budget ended in the IEM phase)", last, t, p;
          else printf "%d IEM steps in %.1f s (%.0f %%), %d %s steps in %.1f s (%.0f %%)", n, ti, 100 * ti / t, last - n, p, t - ti, 100 * (t - ti) / t }' "$1"
}

# ------------------------------------------------------------------------------------------------
# (a) IEM phase vs full training: throughput and peak memory

cmd_memory() {
  local dir="$out/memory"
  mkdir -p "$dir"; : > "$dir/commands.txt"
  echo "==== (a) IEM phase vs full training: T = $ctx, batch $batch, $mem_steps steps each, $threads threads"
  env_report "$dir"
  local -a run_flags=("${common_flags[@]}" --steps "$mem_steps" --warmup "$(( warmup < mem_steps ? warmup : mem_steps ))"
                      --eval-every 0 --eval-windows "$batch")
  local -a floor_flags=(--data "$data" --threads "$threads" --batch 1 --seq-len 16 --steps 10 --warmup 1 --eval-every 0
                        --eval-windows 1 --sample-bytes 0 --seed 1234)
  # Floors: the same models at batch 1 x 16 bytes, so activations are negligible.
  run_one "$dir" floor_full "$train" "${haed_flags[@]}" "${floor_flags[@]}" --csv "$dir/floor_full.csv"
  run_one "$dir" floor_iem "$train" "${haed_flags[@]}" "${iem_flags[@]}" --phases iem "${floor_flags[@]}" --csv "$dir/floor_iem.csv"
  # The measured pair, one after the other.
  run_one "$dir" iem "$train" "${haed_flags[@]}" "${iem_flags[@]}" --phases iem "${run_flags[@]}" --csv "$dir/iem.csv"
  run_one "$dir" full "$train" "${haed_flags[@]}" "${run_flags[@]}" --csv "$dir/full.csv"
  # Peaks (/usr/bin/time, KiB) and the memory the program reports before its first step (KiB).
  local n f_full_peak f_iem_peak iem_peak full_peak f_full_setup f_iem_setup iem_setup full_setup
  local f_full_setup_hwm f_iem_setup_hwm iem_setup_hwm full_setup_hwm
  for n in f_full:floor_full f_iem:floor_iem iem:iem full:full; do
    printf -v "${n%%:*}_peak" '%s' "$(peak_kb "$dir/${n#*:}.time")"
    printf -v "${n%%:*}_setup" '%s' "$(kib "$(field "$dir/${n#*:}.log" mem_start)")"
    printf -v "${n%%:*}_setup_hwm" '%s' "$(kib "$(field "$dir/${n#*:}.log" mem_start_peak)")"
  done

  local iem_tps full_tps iem_tps3="" full_tps3="" s_iem s_full tok_step=$(( batch * ctx ))
  iem_tps="$(field "$dir/iem.log" tokens_per_s)"; full_tps="$(field "$dir/full.log" tokens_per_s)"
  s_iem="$(csv_step_s "$dir/iem.csv" 2 "$mem_steps")"; s_full="$(csv_step_s "$dir/full.csv" 2 "$mem_steps")"
  [ -n "$s_iem" ] && iem_tps3="$(calc "$tok_step / $s_iem")"
  [ -n "$s_full" ] && full_tps3="$(calc "$tok_step / $s_full")"
  local row='| %-34s | %9s | %9s | %9s | %12s | %12s |\n'
  {
    echo
    echo "(a) HAED (mlp / transformer / $decoder, d = $dim, $layers backbone layers, $dec_layers decoder layers), T = $ctx,"
    echo "    batch $batch, $mem_steps steps, $threads threads, data $(basename "$data") ($(wc -c < "$data") bytes); IEM: $negatives negatives"
    echo "    parameters: IEM model $(field "$dir/iem.log" params), full model $(field "$dir/full.log" params) (+ the IEM head g and temperature)"
    printf "$row" run "tokens/s" "3..N" "peak MiB" "start MiB" "start peak"
    printf "$row" --- ---: ---: ---: ---: ---:
    printf "$row" "floor: full, IEM off, batch 1 x 16" "" "" "$(mib "$f_full_peak")" "$(mib "$f_full_setup")" "$(mib "$f_full_setup_hwm")"
    printf "$row" "floor: iem phase, batch 1 x 16" "" "" "$(mib "$f_iem_peak")" "$(mib "$f_iem_setup")" "$(mib "$f_iem_setup_hwm")"
    printf "$row" "iem phase (--phases iem)" "$(fmt "$iem_tps" %.0f)" "$(fmt "$iem_tps3" %.0f)" "$(mib "$iem_peak")" "$(mib "$iem_setup")" "$(mib "$iem_setup_hwm")"
    printf "$row" "full (IEM off)" "$(fmt "$full_tps" %.0f)" "$(fmt "$full_tps3" %.0f)" "$(mib "$full_peak")" "$(mib "$full_setup")" "$(mib "$full_setup_hwm")"
    echo
    echo "tokens/s: bytes trained per second of training time over all steps, as hseq-train prints it; 3..N: steps 3 to N"
    echo "  from the CSV (no first-touch). peak: /usr/bin/time -v 'Maximum resident set size'. start / start peak: VmRSS /"
    echo "  VmHWM as hseq-train prints them before its first step ('memory before training': data, model, gradients,"
    echo "  AdamW moments, IEM proposal and the workspace allocation in place; n/a from a binary that does not print it)."
    echo "  workspace reserved (forward + backward plan of every objective the model can train in, touched only as used):"
    echo "  IEM model $(field "$dir/iem.log" workspace) MiB, full model $(field "$dir/full.log" workspace) MiB"
    echo
    echo "ratios IEM / full:"
    echo "  tokens/s                      $(ratio "$iem_tps" "$full_tps" %.2fx)   (claim: >= 2x)"
    echo "  tokens/s, steps 3..N          $(ratio "$iem_tps3" "$full_tps3" %.2fx)"
    echo "  peak RSS                      $(ratio "$iem_peak" "$full_peak")   (claim: <= 0.333)"
    echo "  peak RSS above its floor      $(ratio "$(diff_kb "$iem_peak" "$f_iem_peak")" "$(diff_kb "$full_peak" "$f_full_peak")")   (IEM $(mib "$(diff_kb "$iem_peak" "$f_iem_peak")") MiB, full $(mib "$(diff_kb "$full_peak" "$f_full_peak")") MiB: activations, workspace pages touched, per-step buffers)"
    echo "  peak RSS above RSS at start   $(ratio "$(diff_kb "$iem_peak" "$iem_setup")" "$(diff_kb "$full_peak" "$full_setup")")   (IEM $(mib "$(diff_kb "$iem_peak" "$iem_setup")") MiB, full $(mib "$(diff_kb "$full_peak" "$full_setup")") MiB)"
    echo "what the peaks are made of:"
    echo "  floor full: process, data, parameters with gradients and AdamW moments, OpenBLAS: $(mib "$f_full_peak") MiB,"
    echo "    of which the parameters, gradients and AdamW moments are $(mib "$(calc "$(field "$dir/full.log" params) * 16 / 1024")") MiB (4 x 4 bytes per parameter)"
    echo "  IEM segment proposal (floor iem - floor full): $(mib "$(diff_kb "$f_iem_peak" "$f_full_peak")") MiB at its peak (built from every"
    echo "    8-byte window of the training split); resident after it is built: $(mib "$(diff_kb "$f_iem_setup" "$f_full_setup")") MiB"
  } | tee "$dir/summary.txt"
}

# ------------------------------------------------------------------------------------------------
# (b) equal training time: HAED iem -> decoder vs HAED full vs the Transformer LM

# Sets LM_LAYERS (and prints the probed counts): the Transformer LM layers at width lm_dim whose
# parameter count is nearest to $1, unless --lm-layers is given.
choose_lm() {
  local dir="$1" target="$2"
  if [ -n "$lm_layers" ]; then LM_LAYERS="$lm_layers"; return; fi
  local p1 p2 per base
  run_one "$dir" probe_lm_1 "$train" --model transformer --dim "$lm_dim" --heads "$heads" --layers 1 --context "$ctx" "${probe_flags[@]}"
  p1="$(field "$dir/probe_lm_1.log" params)"
  run_one "$dir" probe_lm_2 "$train" --model transformer --dim "$lm_dim" --heads "$heads" --layers 2 --context "$ctx" "${probe_flags[@]}"
  p2="$(field "$dir/probe_lm_2.log" params)"
  per=$(( p2 - p1 )); base=$(( p1 - per ))
  LM_LAYERS="$(awk -v t="$target" -v b="$base" -v p="$per" 'BEGIN { l = int((t - b) / p + 0.5); print (l < 1 ? 1 : l) }')"
  echo "Transformer LM d = $lm_dim: $base + $per per layer parameters; $LM_LAYERS layers for the HAED's $target"
}

cmd_budget() {
  local dir="$out/budget"
  mkdir -p "$dir"; : > "$dir/commands.txt"
  echo "==== (b) equal training time: $budget s per model, T = $ctx, batch $batch, $threads threads; IEM share $iem_fraction"
  env_report "$dir"
  run_one "$dir" probe_haed "$train" "${haed_flags[@]}" "${probe_flags[@]}"
  local p_haed; p_haed="$(field "$dir/probe_haed.log" params)"
  choose_lm "$dir" "$p_haed"
  local -a lm_flags=(--model transformer --dim "$lm_dim" --heads "$heads" --layers "$LM_LAYERS" --context "$ctx")
  run_one "$dir" probe_lm "$train" "${lm_flags[@]}" "${probe_flags[@]}"
  local p_lm; p_lm="$(field "$dir/probe_lm.log" params)"
  local dev; dev="$(calc "100 * ($p_lm - $p_haed) / $p_haed")"
  echo "parameters: HAED $p_haed, Transformer LM ($LM_LAYERS layers, d = $lm_dim) $p_lm ($(fmt "$dev" %+.1f) %)"
  awk -v d="$dev" 'BEGIN { exit !(d < -5 || d > 5) }' && echo "!! the LM's parameter count is not within +-5 % of the HAED's; choose --lm-dim / --lm-layers" >&2

  train_phases "$dir" haed_phases "$budget" "${haed_flags[@]}"
  local -a eval_flags=(--eval-every 0 --eval-windows "$eval_windows")
  run_one "$dir" haed_full "$train" "${haed_flags[@]}" "${common_flags[@]}" "${eval_flags[@]}" \
    --steps 0 --time-budget "$budget" --warmup "$warmup" --csv "$dir/haed_full.csv" --out "$dir/haed_full.safetensors"
  run_one "$dir" lm "$train" "${lm_flags[@]}" "${common_flags[@]}" "${eval_flags[@]}" \
    --steps 0 --time-budget "$budget" --warmup "$warmup" --csv "$dir/lm.csv" --out "$dir/lm.safetensors"
  {
    echo
    echo "(b) equal training time, $budget s per model (validation and set-up excluded), T = $ctx, batch $batch,"
    echo "    $threads threads, data $(basename "$data"); final validation bpc over the same $eval_windows windows of $ctx bytes"
    echo "    of the validation split (the last 10 %) for every model; peak lr $lr, $warmup warm-up steps, cosine decay"
    echo "    over the time budget"
    printf '| %-44s | %11s | %6s | %9s | %9s | %9s |\n' model parameters steps "train s" "tokens/s" "val bpc"
    printf '| %-44s | %11s | %6s | %9s | %9s | %9s |\n' --- ---: ---: ---: ---: ---:
    local name label
    for name in haed_phases haed_full lm; do
      case "$name" in
        haed_phases) label="HAED, iem ($(fmt "$(calc "100 * $iem_fraction")" %.0f) %) then $second_phase" ;;
        haed_full) label="HAED, full (end to end)" ;;
        lm) label="Transformer LM, d = $lm_dim, $LM_LAYERS layers" ;;
      esac
      printf '| %-44s | %11s | %6s | %9s | %9s | %9s |\n' "$label" "$(field "$dir/$name.log" params)" "$(field "$dir/$name.log" steps)" \
        "$(fmt "$(field "$dir/$name.log" train_s)" %.1f)" "$(fmt "$(field "$dir/$name.log" tokens_per_s)" %.0f)" "$(fmt "$(field "$dir/$name.log" bpc)" %.4f)"
    done
    echo
    echo "HAED phases as trained: $(phase_report "$dir/haed_phases.csv" "$PH_IEM_STEPS") (steps and time: the whole run;"
    echo "  haed_phases_iem.log is its IEM process, haed_phases.log the resumed decoder process)"
    echo "parameters: HAED with its IEM head $(field "$dir/haed_phases.log" params), without $p_haed; LM $p_lm ($(fmt "$dev" %+.1f) % of $p_haed)"
  } | tee "$dir/summary.txt"
}

# ------------------------------------------------------------------------------------------------
# (b') phase schedules: the end-to-end HAED against IEM-then-decoder and IEM-then-full at several
# IEM shares, all at equal training time

cmd_phases() {
  local dir="$out/phases"
  mkdir -p "$dir"; : > "$dir/commands.txt"
  echo "==== (b') phase schedules: $budget s per run, T = $ctx, batch $batch, $threads threads; schedules: $sweep"
  env_report "$dir"
  local -a eval_flags=(--eval-every 0 --eval-windows "$eval_windows")
  run_one "$dir" haed_full "$train" "${haed_flags[@]}" "${common_flags[@]}" "${eval_flags[@]}" \
    --steps 0 --time-budget "$budget" --warmup "$warmup" --csv "$dir/haed_full.csv"
  local item frac second name
  local -a names=() notes=()
  for item in $sweep; do
    frac="${item%%:*}"; second="${item##*:}"
    name="haed_iem$(calc "100 * $frac" | awk '{ printf "%d", $1 + 0.5 }')_$second"
    PH_FRACTION="$frac" PH_SECOND="$second" train_phases "$dir" "$name" "$budget" "${haed_flags[@]}"
    rm -f "$dir/$name.safetensors"  # 80 MB each; the logs and CSVs are the record
    names+=("$name"); notes+=("$(phase_report "$dir/$name.csv" "$PH_IEM_STEPS" "$second")")
  done
  local full_bpc; full_bpc="$(field "$dir/haed_full.log" bpc)"
  local row='| %-40s | %6s | %9s | %9s | %9s |\n'
  {
    echo
    echo "(b') HAED phase schedules at equal training time, $budget s per run (validation and set-up excluded), T = $ctx,"
    echo "    batch $batch, $threads threads, data $(basename "$data"); final validation bpc over the same $eval_windows windows of"
    echo "    $ctx bytes of the validation split for every run; peak lr $lr, $warmup warm-up steps, cosine decay over the budget"
    printf "$row" schedule steps "tokens/s" "val bpc" "vs full"
    printf "$row" --- ---: ---: ---: ---:
    printf "$row" "full (end to end)" "$(field "$dir/haed_full.log" steps)" "$(fmt "$(field "$dir/haed_full.log" tokens_per_s)" %.0f)" \
      "$(fmt "$full_bpc" %.4f)" ""
    local i bpc
    for i in "${!names[@]}"; do
      name="${names[$i]}"; bpc="$(field "$dir/$name.log" bpc)"
      printf "$row" "$name" "$(field "$dir/$name.log" steps)" "$(fmt "$(field "$dir/$name.log" tokens_per_s)" %.0f)" \
        "$(fmt "$bpc" %.4f)" "$(fmt "$(calc "$bpc - $full_bpc")" %+.4f)"
    done
    echo
    echo "as trained (from the CSVs; tokens/s above is the resumed process's own figure):"
    for i in "${!names[@]}"; do echo "  ${names[$i]}: ${notes[$i]}"; done
    echo "claim (issue 10): the two-phase HAED within 0.10 bpc of full training after equal wall-clock"
  } | tee "$dir/summary.txt"
}

# ------------------------------------------------------------------------------------------------
# (c) component grid

cmd_grid() {
  local dir="$out/grid"
  mkdir -p "$dir"; : > "$dir/commands.txt"
  echo "==== (c) component grid: $grid_budget s per combination, objective $grid_objective, T = $ctx, batch $batch, $threads threads"
  env_report "$dir"
  local enc bb name
  local -a rows=()
  for enc in mlp rnn; do
    for bb in transformer rnn; do
      name="enc_${enc}_bb_${bb}"
      local -a f=(--model hierarchical --segment fixed8 --encoder "$enc" --backbone "$bb" --decoder rnn --cell gru --dim "$dim" --heads "$heads"
                  --layers "$layers" --decoder-layers "$dec_layers" --context "$ctx")
      local note=""
      if [ "$grid_objective" = phases ]; then
        train_phases "$dir" "$name" "$grid_budget" "${f[@]}"
        note="$(phase_report "$dir/$name.csv" "$PH_IEM_STEPS")"
      else
        run_one "$dir" "$name" "$train" "${f[@]}" "${common_flags[@]}" --eval-every 0 --eval-windows "$eval_windows" \
          --steps 0 --time-budget "$grid_budget" --warmup "$warmup" --csv "$dir/$name.csv"
      fi
      rows+=("$(printf '| %-7s | %-11s | %11s | %6s | %9s | %9s |%s' "$enc" "$bb" "$(field "$dir/$name.log" params)" "$(field "$dir/$name.log" steps)" \
        "$(fmt "$(field "$dir/$name.log" tokens_per_s)" %.0f)" "$(fmt "$(field "$dir/$name.log" bpc)" %.4f)" "${note:+ $note |}")")
    done
  done
  {
    echo
    echo "(c) component grid: decoder rnn (GRU, $dec_layers layers), fixed 8-byte segments, d = $dim, $layers backbone layers,"
    echo "    T = $ctx, batch $batch, $grid_budget s of training each, objective $grid_objective, $threads threads, data $(basename "$data");"
    echo "    final validation bpc over the same $eval_windows windows"
    local extra="" sep=""
    [ "$grid_objective" = phases ] && extra=" phases as trained |" && sep=" --- |"
    printf '| %-7s | %-11s | %11s | %6s | %9s | %9s |%s\n' encoder backbone parameters steps tokens/s "val bpc" "$extra"
    printf '| %-7s | %-11s | %11s | %6s | %9s | %9s |%s\n' --- --- ---: ---: ---: ---: "$sep"
    printf '%s\n' "${rows[@]}"
  } | tee "$dir/summary.txt"
}

# ------------------------------------------------------------------------------------------------
# (d) cached generation

cmd_generate() {
  local dir="$out/generate"
  mkdir -p "$dir"; : > "$dir/commands.txt"
  local n=$(( ctx - 1 ))
  echo "==== (d) cached generation: $n bytes after a 1-byte prompt (the context of $ctx filled once), $threads threads"
  env_report "$dir"
  local haed_ckpt="$out/budget/haed_phases.safetensors" lm_ckpt="$out/budget/lm.safetensors" source="the checkpoints of (b)"
  if [ ! -s "$haed_ckpt" ] || [ ! -s "$lm_ckpt" ]; then
    source="1-step checkpoints (no (b) checkpoints in $out/budget; the rate does not depend on the weights)"
    run_one "$dir" probe_haed "$train" "${haed_flags[@]}" "${probe_flags[@]}"
    local p_haed; p_haed="$(field "$dir/probe_haed.log" params)"
    choose_lm "$dir" "$p_haed"
    haed_ckpt="$dir/haed.safetensors"; lm_ckpt="$dir/lm.safetensors"
    run_one "$dir" ckpt_haed "$train" "${haed_flags[@]}" "${iem_flags[@]}" "${probe_flags[@]}" --out "$haed_ckpt"
    run_one "$dir" ckpt_lm "$train" --model transformer --dim "$lm_dim" --heads "$heads" --layers "$LM_LAYERS" --context "$ctx" \
      "${probe_flags[@]}" --out "$lm_ckpt"
  fi
  local -a g=(--prompt $'\n' --bytes "$n" --temperature 0.8 --top-k 40 --seed 7 --threads "$threads")
  local r
  local -a rates_haed=() rates_lm=()
  for r in $(seq 1 "$gen_repeats"); do  # alternating, so both see the same machine state
    run_one "$dir" "gen_haed_$r" "$generate" --checkpoint "$haed_ckpt" "${g[@]}"
    rates_haed+=("$(field "$dir/gen_haed_$r.log" gen_rate)")
    run_one "$dir" "gen_lm_$r" "$generate" --checkpoint "$lm_ckpt" "${g[@]}"
    rates_lm+=("$(field "$dir/gen_lm_$r.log" gen_rate)")
  done
  local rh rl
  rh="$(printf '%s\n' "${rates_haed[@]}" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }')"
  rl="$(printf '%s\n' "${rates_lm[@]}" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }')"
  local row='| %-34s | %9s | %9s | %-28s | %12s |\n'
  {
    echo
    echo "(d) cached generation, batch 1, $n bytes after the prompt \"\\n\" (no sliding-window rebuild), temperature 0.8,"
    echo "    top-k 40, context $ctx, $threads threads, $gen_repeats runs each (alternating); models: $source"
    printf "$row" model bytes "median B/s" "bytes/s of each run" "peak RSS MiB"
    printf "$row" --- ---: ---: --- ---:
    printf "$row" "HAED (mlp / transformer / $decoder)" "$(field "$dir/gen_haed_1.log" gen_bytes)" "$(fmt "$rh" %.0f)" "$(printf '%.0f ' "${rates_haed[@]}")" "$(mib "$(peak_kb "$dir/gen_haed_1.time")")"
    printf "$row" "Transformer LM" "$(field "$dir/gen_lm_1.log" gen_bytes)" "$(fmt "$rl" %.0f)" "$(printf '%.0f ' "${rates_lm[@]}")" "$(mib "$(peak_kb "$dir/gen_lm_1.time")")"
    echo "ratio HAED / LM (medians): $(ratio "$rh" "$rl" %.2fx). bytes/s as hseq-generate prints it: generated bytes over the"
    echo "time of prefill and generation, model loading excluded."
  } | tee "$dir/summary.txt"
}

mkdir -p "$out"
case "$cmd" in
  memory) cmd_memory ;;
  budget) cmd_budget ;;
  phases) cmd_phases ;;
  grid) cmd_grid ;;
  generate) cmd_generate ;;
  all) cmd_memory; cmd_budget; cmd_grid; cmd_generate
       echo; echo "==== summaries"; cat "$out/memory/summary.txt" "$out/budget/summary.txt" "$out/grid/summary.txt" "$out/generate/summary.txt" ;;
esac
