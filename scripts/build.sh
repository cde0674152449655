#!/usr/bin/env bash
# Configures and builds rlhf-cpp into build/ (or $RLHF_BUILD_DIR). Extra arguments go to cmake.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${RLHF_BUILD_DIR:-$root/build}"
jobs="${RLHF_JOBS:-$(nproc)}"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build "$build" -j "$jobs"
