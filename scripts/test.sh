#!/usr/bin/env bash
# Sets up, builds, and runs every test through ctest; prints ctest's summary.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/setup.sh"
"$root/scripts/build.sh" -DRLHF_BUILD_TESTS=ON -DRLHF_BUILD_BENCH=OFF -DRLHF_BUILD_EXAMPLES=ON
cd "${RLHF_BUILD_DIR:-$root/build}"
ctest --output-on-failure -j "${RLHF_JOBS:-$(nproc)}"
