#!/usr/bin/env bash
# Sets up, builds the examples, and runs the toy-bandit demo: DPO, listwise DPO, a Bradley-Terry reward model
# and PPO, each converging to the closed-form KL-constrained optimum (docs/examples/toy_bandit.md).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/setup.sh"
"$root/scripts/build.sh" -DRLHF_BUILD_TESTS=OFF -DRLHF_BUILD_BENCH=OFF -DRLHF_BUILD_EXAMPLES=ON
exec "${RLHF_BUILD_DIR:-$root/build}/examples/toy_bandit/toy_bandit"
