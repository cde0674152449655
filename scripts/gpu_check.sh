#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: builds the CUDA typed tests (every loss and the fused log-prob on
# rlhf::thrust_cuda against Eigen) and the backend benchmarks, runs them, and prints a one-screen summary.
# About 3-5 minutes with 16 cores. Full logs go to $RLHF_GPU_BUILD_DIR (default build-gpu/).
# It also builds and runs every other ctest labelled "cuda" (the CUDA GPT's tests, the cuda_compile check), and
# the CUDA GPT's benchmark (bench_gpt_cuda: SFT/DPO steps at GPT-2 small and the peer configs).
#   scripts/gpu_check.sh            exit status 0 when the build and every CUDA test pass
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${RLHF_GPU_BUILD_DIR:-$root/build-gpu}"
jobs="${RLHF_JOBS:-$(nproc)}"
mkdir -p "$build"
t0=$SECONDS
elapsed() { echo "$((SECONDS - t0))s"; }
fail() {
  echo "gpu_check: $1 failed after $(elapsed); last lines of $2:"
  tail -n 25 "$2"
  exit 1
}

[ -d /usr/local/cuda/bin ] && export PATH="/usr/local/cuda/bin:$PATH"
command -v nvcc >/dev/null || { echo "gpu_check: nvcc not found (install the CUDA toolkit or put it on PATH)"; exit 1; }
command -v nvidia-smi >/dev/null || { echo "gpu_check: nvidia-smi not found (no GPU driver)"; exit 1; }
gpu="$(nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -n 1)"
[ -n "$gpu" ] || { echo "gpu_check: nvidia-smi sees no GPU"; exit 1; }
cap="$(echo "$gpu" | cut -d, -f2 | tr -d ' .')"
arch="90-real;90-virtual"
[[ "$cap" =~ ^[0-9]+$ ]] && arch="${cap}-real"  # this GPU only: a faster build

# ---- configure and build (only the targets this check needs) ------------------------------------------
"$root/scripts/setup.sh" >"$build/setup.log" 2>&1 ||
  echo "gpu_check: scripts/setup.sh failed (see $build/setup.log); trying anyway"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DRLHF_BUILD_TESTS=ON -DRLHF_BUILD_BENCH=ON \
  -DRLHF_BUILD_EXAMPLES=ON -DRLHF_BUILD_CUDA_TESTS=ON "-DCMAKE_CUDA_ARCHITECTURES=$arch" \
  >"$build/configure.log" 2>&1 || fail "configure" "$build/configure.log"
grep -q "CMAKE_CUDA_COMPILER:.*nvcc" "$build/CMakeCache.txt" || fail "CUDA detection (no nvcc in CMake)" "$build/configure.log"
# Every test labelled "cuda" that is a build target (the typed tests here, and any other CUDA test suite of
# the project, e.g. the CUDA GPT's), plus the benchmarks.
targets="cuda_typed_tests bench_backends_cuda bench_backends rlhf_cuda_compile_check"
known="$(cmake --build "$build" --target help 2>/dev/null)"
for t in $(cd "$build" && ctest -N -L cuda | sed -n 's/^ *Test *#[0-9]*: *//p'); do
  case " $targets " in *" $t "*) continue ;; esac
  echo "$known" | grep -Eq "(^|\.\.\. )$t(:| |\$)" && targets="$targets $t"
done
# ---- the CUDA GPT (tests/gpu, bench/gpu; docs/models/gpt_cuda.md) ------------------------------------------
# Its three test binaries are ctests labelled "cuda" (picked up above); its benchmark is built here too.
echo "$known" | grep -Eq "(^|\.\.\. )bench_gpt_cuda(:| |\$)" && targets="$targets bench_gpt_cuda"
# ---- end of the CUDA GPT's part ------------------------------------------------------------------------------
# ---- the GPT DPO example on the GPU (examples/gpt_dpo; configured above with examples ON) -------------------
echo "$known" | grep -Eq "(^|\.\.\. )gpt_dpo_cuda(:| |\$)" && targets="$targets gpt_dpo_cuda"
# ---- end of the GPT DPO example's part ----------------------------------------------------------------------
# shellcheck disable=SC2086
timeout "${RLHF_GPU_BUILD_TIMEOUT:-300}" cmake --build "$build" -j "$jobs" --target $targets >"$build/build.log" 2>&1 ||
  fail "build" "$build/build.log"
t_build=$(elapsed)

# ---- run ----------------------------------------------------------------------------------------------
timeout 120 "$build/tests/cuda/cuda_typed_tests" >"$build/typed.log" 2>&1
typed_rc=$?
(cd "$build" && timeout 180 ctest -L cuda -E '^cuda_typed_tests$' --timeout 120 >"$build/ctest_cuda.log" 2>&1)
ctest_rc=$?
timeout 120 "$build/bench/bench_backends_cuda" --benchmark_min_time=0.1 >"$build/bench_cuda.log" 2>&1
bench_cuda_rc=$?
timeout 120 "$build/bench/bench_backends" --benchmark_min_time=0.1 >"$build/bench_cpu.log" 2>&1
bench_cpu_rc=$?

# ---- one screen ---------------------------------------------------------------------------------------
echo "== rlhf gpu_check: $gpu (built for sm_${arch%%-*}, $(nproc) cores) =="
echo "build: ok in $t_build (logs in $build)"
echo "-- typed tests on thrust-cuda vs Eigen (exit $typed_rc) --"
grep -E "^cuda_typed_tests:|test cases:|assertions:|Status:" "$build/typed.log"
grep -E "ERROR|values:|logged:" "$build/typed.log" | head -n 12
[ "$typed_rc" -eq 77 ] && echo "(skipped: the binary saw no usable CUDA device)"
echo "-- other CUDA ctests (exit $ctest_rc) --"
grep -E "Test +#|tests passed|tests failed" "$build/ctest_cuda.log" | sed 's/^ *//'
echo "-- GPU benchmark, float32 (exit $bench_cuda_rc) --"
grep -E "^\|" "$build/bench_cuda.log" || tail -n 5 "$build/bench_cuda.log"
echo "-- CPU benchmark on this machine (exit $bench_cpu_rc; table in $build/bench_cpu.log) --"
# The largest ratio to Eigen of each backend over the rows (columns: loss, eigen, then time and ratio per backend).
awk -F'|' '/^\| loss/ {for (i = 5; i < NF; i += 2) name[i] = $(i - 1); next}
  /^\| [a-z]/ {for (i = 5; i < NF; i += 2) if ($i + 0 > worst[i]) {worst[i] = $i + 0; row[i] = $2}}
  END {for (i in worst) printf "worst ratio to eigen:%s %.2f (%s)\n", name[i], worst[i], row[i]}' \
  "$build/bench_cpu.log" | sed 's/  */ /g'
# ---- the CUDA GPT: its tests' results (run by the ctest above) and its benchmark --------------------------------
gpt_bench_rc=0
if [ -x "$build/bench/gpu/bench_gpt_cuda" ]; then
  timeout 150 "$build/bench/gpu/bench_gpt_cuda" --steps "${RLHF_GPT_BENCH_STEPS:-5}" >"$build/bench_gpt_cuda.log" 2>&1
  gpt_bench_rc=$?
  echo "-- CUDA GPT tests (full output: $build/Testing/Temporary/LastTest.log) --"
  for t in gpt_cuda_kernels gpt_cuda_model gpt_cuda_training; do
    awk -v t="$t" '$0 ~ "^[0-9]+/[0-9]+ Test: " t "$" {on = 1} on && /^Test time/ {on = 0} on' \
      "$build/Testing/Temporary/LastTest.log" |
      grep -E "test cases:|TEST CASE|ERROR|values:|logged:|skipped|no CUDA device" | head -n 8 | sed "s/^/$t: /"
  done
  echo "-- CUDA GPT benchmark: SFT/DPO steps, sampling (exit $gpt_bench_rc; $build/bench_gpt_cuda.log) --"
  grep -E "^(bench_gpt_cuda|MFU|\|)" "$build/bench_gpt_cuda.log" || tail -n 5 "$build/bench_gpt_cuda.log"
fi
# ---- end of the CUDA GPT's part ------------------------------------------------------------------------------
# ---- the GPT DPO example on the GPU: the same training function as on the CPU (docs/examples/gpt_dpo.md) --------
example_rc=0
if [ -x "$build/examples/gpt_dpo/gpt_dpo_cuda" ]; then
  timeout 60 "$build/examples/gpt_dpo/gpt_dpo_cuda" --device cuda --steps 20 >"$build/gpt_dpo_cuda.log" 2>&1
  example_rc=$?
  echo "-- examples/gpt_dpo on the GPU, 20 DPO steps (exit $example_rc; $build/gpt_dpo_cuda.log) --"
  tail -n 4 "$build/gpt_dpo_cuda.log"
fi
# ---- end of the GPT DPO example's part ----------------------------------------------------------------------
echo "total: $(elapsed)"
[ "$typed_rc" -eq 0 ] && [ "$ctest_rc" -eq 0 ] && [ "$gpt_bench_rc" -eq 0 ] && [ "$example_rc" -eq 0 ]
