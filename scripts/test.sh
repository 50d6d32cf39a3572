#!/usr/bin/env bash
# Configure, build and run hseq's tests (all but the 'slow' label). Used by CI (.ci/run).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"
ctest --test-dir build --output-on-failure -LE slow -j"$(nproc)"
