#!/usr/bin/env bash
# The README's main command: sets up, fetches the data, builds the examples and runs the flagship experiment,
# examples/sentiment_frontier (docs/experiments/sentiment.md): a GPT trained here on fortunes and review
# sentences, preference pairs labelled by VADER, DPO / unlikelihood / preferred-FT / PPO (learned and true
# reward) trained at several strengths, every checkpoint placed on the reward-KL frontier. Prints the frontier
# table and the paths of the plots.
#
#   scripts/demo.sh           the reduced sweep (about 10 minutes on 2 cores, build included)
#   scripts/demo.sh --full    the whole sweep (every beta and alpha, 5 PPO settings each, 3 seeds; hours)
#
# Further arguments go to the program (e.g. --seeds 1,2). Results are cached under out/sentiment/<sweep>
# ($RLHF_OUT_DIR): a second run skips what is done. The toy-bandit demo is build/examples/toy_bandit/toy_bandit.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
sweep=reduced
if [ "${1:-}" = "--full" ]; then
  sweep=full
  shift
fi
"$root/scripts/setup.sh"
[ -x "$root/scripts/fetch_npm_data.sh" ] && "$root/scripts/fetch_npm_data.sh"
"$root/scripts/build.sh" -DRLHF_BUILD_TESTS=OFF -DRLHF_BUILD_BENCH=OFF -DRLHF_BUILD_EXAMPLES=ON
exec "${RLHF_BUILD_DIR:-$root/build}/examples/sentiment_frontier/sentiment_frontier" --config "$sweep" \
  --out "${RLHF_OUT_DIR:-$root/out/sentiment/$sweep}" "$@"
