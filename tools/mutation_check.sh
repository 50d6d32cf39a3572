#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The mutation check of the test-strength issue: applies each deliberate bug, one at a time, to a
# fresh scratch copy of HEAD and runs the test files that must catch it (gradchecks excluded, for
# time). Every line must end in CAUGHT; a MISSED line means a test that cannot fail.
#   (a) the Hourglass short path's output multiplied by zero
#   (b) the LinearUp output read as [d, k] instead of [k, d] (tools/mutation_b_linear_up_layout.diff)
#   (c) a causal mask that lets each query see one future key
#   (d) a shift of k - 2 instead of k - 1 before shortening
#   (e) top-k sampling replaced by greedy
#   (f) generate()'s sliding window restarting from the newest quarter instead of half of the context
# usage: tools/mutation_check.sh [work dir, default /tmp/hseq_mutations]   (about 10 minutes on 2 cores)
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=${1:-/tmp/hseq_mutations}
mkdir -p "$work"
mutate() {  # name, edit (run in the copy; must print a non-zero match count), test files...
  local name=$1 edit=$2 caught=0; shift 2
  local dir="$work/$name"
  rm -rf "$dir" && mkdir -p "$dir" && git -C "$here" archive HEAD | tar -x -C "$dir"
  if ! (cd "$dir" && eval "$edit" > /dev/null); then echo "[$name] the edit did not apply"; return; fi
  for t in "$@"; do
    local log="$work/$name.$(basename "$t" .cpp).log"
    if (cd "$dir" && "$here/tools/one_test.sh" "$t" -tce="*gradcheck*" > "$log" 2>&1); then
      echo "[$name] $t passed"
    elif grep -q '^\[doctest\] test cases' "$log"; then
      echo "[$name] $t failed: $(grep '^\[doctest\] test cases' "$log")"
      caught=1
    else
      echo "[$name] $t did not build or run (see $log)"
    fi
  done
  if [ $caught = 1 ]; then echo "[$name] CAUGHT"; else echo "[$name] MISSED"; fi
}
hg=include/hseq/models/hourglass.hpp
mutate a "sed -i 's/axpy<T>(ctx, T(1), CView(lt.un), out)/axpy<T>(ctx, T(0), CView(lt.un), out)/; s/axpy<T>(ctx, T(1), CView(un), out)/axpy<T>(ctx, T(0), CView(un), out)/' $hg && grep -c 'T(0), CView' $hg" \
  test/models/test_hourglass.cpp
mutate b "patch -p1 < '$here/tools/mutation_b_linear_up_layout.diff'" \
  test/hier/test_linear_upsample.cpp test/models/test_hourglass_parity.cpp
mutate c "sed -i 's/std::int64_t num = i \* q_rate + q_offset - k_offset;/std::int64_t num = i * q_rate + q_offset - k_offset + (kind == Kind::kCausal ? 1 : 0);/' include/hseq/ops/attention_mask.hpp && grep -c 'kCausal ? 1' include/hseq/ops/attention_mask.hpp" \
  test/models/test_transformer_lm.cpp test/nn/test_attention.cpp
mutate d "sed -i 's/ShiftRight<B, T>({ls.factor - 1})/ShiftRight<B, T>({ls.factor - 2})/' $hg && grep -c 'factor - 2' $hg" \
  test/models/test_hourglass.cpp
mutate e "sed -i 's|^\(\s*\)if (cfg_.temperature == 0.0) return std::int32_t(std::max_element(logits, logits + vocab) - logits);|&\n\1if (cfg_.top_k > 0) return std::int32_t(std::max_element(logits, logits + vocab) - logits);|' include/hseq/models/sampler.hpp && grep -c 'top_k > 0) return' include/hseq/models/sampler.hpp" \
  test/models/test_sampler.cpp
mutate f "sed -i 's/max<std::int64_t>(1, cap \/ 2)/max<std::int64_t>(1, cap \/ 4)/' include/hseq/models/generate.hpp && grep -c 'cap / 4' include/hseq/models/generate.hpp" \
  test/models/test_generate.cpp
