#!/usr/bin/env bash
# Configure, build and run hseq's tests (all but the 'slow' label). Used by CI (.ci/run).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh
# Ninja for a new build tree (scripts/setup.sh installs it); an existing tree keeps the generator
# it was configured with.
generator=()
if [ ! -f build/CMakeCache.txt ] && command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "${generator[@]}"
cmake --build build -j"$(nproc)"
ctest --test-dir build --output-on-failure -LE slow -j"$(nproc)"
