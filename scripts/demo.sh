#!/usr/bin/env bash
# The README's main command: sets up, fetches the data, builds the flagship example and runs it:
# examples/sentiment_frontier (docs/experiments/sentiment.md): a GPT trained here on fortunes and review
# sentences, preference pairs labelled by VADER, DPO / unlikelihood / preferred-FT / PPO (learned and true
# reward) trained at several strengths, every checkpoint placed on the reward-KL frontier. Prints the frontier
# table and the paths of the plots.
#
#   scripts/demo.sh           the reduced sweep (about 5 minutes on 2 idle cores, build included)
#   scripts/demo.sh --full    the whole sweep (4 settings of every method, 3 seeds; about 40 minutes)
#   scripts/demo.sh --tiny    the tests' miniature: every phase on a toy model, seconds (CI runs it)
#   scripts/demo.sh --protocol --stage tune   the pre-registered protocol's Stage A (31 min measured on busy cores), then
#   scripts/demo.sh --protocol --stage test   its Stage B from the committed choices (63 min measured on busy cores)
#
# The program prints the commit and the machine (CPU model, the ISA flags that change float sums, the ISA it was
# compiled for, the OpenMP threads) first and keeps them in the output folder (provenance.txt); the inputs outside
# the repository are checked against docs/experiments/sentiment_inputs.txt (scripts/sentiment_inputs.sh). OpenMP
# runs 2 threads unless OMP_NUM_THREADS says otherwise: the thread count changes the sums, so the committed csvs were
# made with 2 (docs/experiments/sentiment.md#reproducibility-which-cpu-each-csv-belongs-to).
#
# Further arguments go to the program (scripts/demo.sh --seeds 1,2; --help lists them). Results are cached under
# out/sentiment/<sweep> ($RLHF_OUT_DIR): a second run skips what is done. The build has a folder of its own,
# build-demo/ ($RLHF_DEMO_BUILD_DIR), configured with only what the demo runs (no tests, no CUDA), so it never
# meets the test build (build/) whichever runs first.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
sweep=reduced
case "${1:-}" in
  --full | --tiny | --protocol) sweep="${1#--}"; shift ;;
esac
build="${RLHF_DEMO_BUILD_DIR:-$root/build-demo}"
"$root/scripts/setup.sh"
"$root/scripts/fetch_npm_data.sh"
"$root/scripts/sentiment_inputs.sh" --check || true  # a warning: the numbers may differ from the committed ones
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
# -march=native (RLHF_ARCH): the committed csvs were made so, and a csv reproduces only on its CPU class
# (docs/experiments/sentiment.md#reproducibility-which-cpu-each-csv-belongs-to). RLHF_ARCH=x86-64-v3 overrides it.
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DRLHF_ARCH="${RLHF_ARCH:-native}" -DRLHF_CUDA=OFF -DRLHF_BUILD_TESTS=OFF \
  -DRLHF_BUILD_BENCH=OFF -DRLHF_BUILD_EXAMPLES=ON -DRLHF_INSTALL=OFF >/dev/null
cmake --build "$build" --target sentiment_frontier -j "${RLHF_JOBS:-$(nproc)}"
exec "$build/examples/sentiment_frontier/sentiment_frontier" --config "$sweep" \
  --out "${RLHF_OUT_DIR:-$root/out/sentiment/$sweep}" "$@"
