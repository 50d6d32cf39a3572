#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# ctest fuzz.<name>: runs libFuzzer harness BINARY for SECONDS over the seed directories; new
# inputs go to WORK_DIR/new (emptied first), a crashing input to WORK_DIR/crash-* (libFuzzer's
# artifact prefix), so the committed corpus is never written to.
#   usage: run_fuzz.sh BINARY SECONDS WORK_DIR SEED_DIR...
# Any extra libFuzzer options can be given in HSEQ_FUZZ_OPTIONS (e.g. "-jobs=2 -workers=2").
set -euo pipefail
bin="$1" seconds="$2" work="$3"
shift 3
rm -rf "$work" && mkdir -p "$work/new"
# -max_len 65536: the dataset harness needs inputs longer than a page to cross its windows, and the
# checkpoint seeds are 41 kB.
# -rss_limit_mb: a harness that allocates without bound is a finding too.
# shellcheck disable=SC2086
exec "$bin" -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -timeout=30 -print_final_stats=1 \
  -artifact_prefix="$work/" ${HSEQ_FUZZ_OPTIONS:-} "$work/new" "$@"
