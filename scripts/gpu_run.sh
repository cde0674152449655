#!/usr/bin/env bash
# The CUDA models' run on a GPU machine with no network (no apt, no pip): builds only the CUDA targets with nvcc
# from the headers that scripts/gpu_pack.sh carried (gpu_deps/), then runs, each under its own timeout inside one
# overall budget: kernels -> model -> training -> llama_kernels -> llama_model -> flash -> bf16 -> Thrust typed tests ->
# the gpt_dpo example -> the GPT benchmark (TF32), with flash attention, with bf16 products, with both -> the Llama
# benchmark. Writes $OUT/summary.txt plus one log per stage and
# build.log (what the device tool brings back); ./gpu-out when OUT is unset. docs/models/gpt_cuda.md, "Running on a
# GPU"; the Llama's stages: docs/models/llama.md, "The CUDA twin"; flash, bf16 and their benchmarks:
# docs/models/gpt_cuda.md, "Flash attention and BF16 products" (those stages: compiled here, not yet run on a device).
#
#   scripts/gpu_pack.sh && OUT=/tmp/gpu-out scripts/gpu_run.sh      (exit 0: every stage passed, or, on a machine
#                                                                   without a GPU, every stage skipped cleanly)
# Settings (environment):
#   RLHF_GPU_BUDGET        seconds for everything, build included (default 540 with a GPU; none without one)
#   RLHF_JOBS              parallel compilations (default: nproc)
#   RLHF_GPU_ARCH          CMAKE_CUDA_ARCHITECTURES (default 90: sm_90 code + PTX, H100/H200)
#   RLHF_GPU_DEPS_DIR      the folder gpu_pack.sh made (default gpu_deps/)
#   RLHF_GPU_BUILD_DIR     build folders, one per target (default build-gpu/)
#   RLHF_GPU_BENCH_STEPS   timed steps per benchmark row (default 5)
#   RLHF_GPU_STAGES        the stages to build and run, in this order (default all: kernels model training
#                          llama_kernels llama_model flash bf16 typed example bench bench_flash bench_bf16
#                          bench_fast llama_bench); e.g. "llama_kernels llama_model" builds and runs only the CUDA
#                          Llama's tests; "flash bf16 bench bench_flash bench_bf16 bench_fast" issue 31's run
#   RLHF_GPU_SANITIZER     1: then compute-sanitizer memcheck on the kernel tests with what is left of the budget
#   RLHF_GPU_FORCE_BUILD   1: build even when gpu_deps/bin holds binaries of these very sources (gpu_pack.sh
#                          --binaries; used when their stamp matches `scripts/gpu_run.sh --stamp` and they load)
set -u
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root" || exit 1
# The sources' fingerprint: prebuilt binaries (scripts/gpu_pack.sh --binaries) are used only when it matches.
stamp() {
  { find include tests bench/gpu examples/gpt_dpo -type f \( -name '*.hpp' -o -name '*.cuh' -o -name '*.cu' \
      -o -name '*.cpp' -o -name '*.h' -o -name CMakeLists.txt \) | LC_ALL=C sort | xargs sha256sum
    echo "arch ${RLHF_GPU_ARCH:-90}"; } | sha256sum | cut -c1-16
}
[ "${1:-}" = "--stamp" ] && { stamp; exit 0; }
out="${OUT:-$root/gpu-out}"
mkdir -p "$out" || exit 1
summary="$out/summary.txt"
: >"$summary"
t0=$SECONDS
say() { echo "$*" | tee -a "$summary"; }
elapsed() { echo $((SECONDS - t0)); }

[ -d /usr/local/cuda/bin ] && export PATH="/usr/local/cuda/bin:$PATH"
for d in /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda/lib64; do  # libcublas for prebuilt binaries
  [ -d "$d" ] && export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
# A GPU is there when nvidia-smi lists one (or, without nvidia-smi, a /dev/nvidia0 exists).
gpu_name=""
if command -v nvidia-smi >/dev/null 2>&1; then
  gpu_name="$(nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv,noheader 2>/dev/null |
    head -n 1)"
elif [ -e /dev/nvidia0 ]; then
  gpu_name="(a /dev/nvidia0, no nvidia-smi)"
fi
if [ -n "$gpu_name" ]; then have_gpu=1; else have_gpu=0; fi
budget="${RLHF_GPU_BUDGET:-$([ "$have_gpu" = 1 ] && echo 540 || echo 86400)}"
left() { echo $((budget - (SECONDS - t0))); }
jobs="${RLHF_JOBS:-$(nproc)}"
arch="${RLHF_GPU_ARCH:-90}"
deps="${RLHF_GPU_DEPS_DIR:-$root/gpu_deps}"
build="${RLHF_GPU_BUILD_DIR:-$root/build-gpu}"
generator="Unix Makefiles"
command -v ninja >/dev/null 2>&1 && generator="Ninja"

say "== rlhf scripts/gpu_run.sh, $(date -u +%Y-%m-%dT%H:%M:%SZ) =="
say "gpu: ${gpu_name:-none (dry run: every stage must end 'no GPU')}"
say "host: $(uname -srm), $(nproc) cores, jobs $jobs, budget ${budget}s"
say "tools: $(nvcc --version 2>/dev/null | tail -n 1 || echo 'no nvcc'); $(c++ --version 2>/dev/null | head -n 1);" \
  "$(cmake --version 2>/dev/null | head -n 1); generator $generator"
# cuDNN (its fused attention would be an alternative to our flash kernel where the machine has it): what ldconfig lists
cudnn="$(ldconfig -p 2>/dev/null | grep -o 'libcudnn\.so\.[0-9]*' | sort -u | tr '\n' ' ')"
say "cudnn: ${cudnn:-none listed by ldconfig}"
say "deps: $deps ($(grep -v '^#' "$deps/MANIFEST" 2>/dev/null | tr '\n' ' '))"
say "tree: $(git rev-parse --short HEAD 2>/dev/null || echo 'no git') $(git status --porcelain 2>/dev/null |
  grep -c . | sed 's/$/ files changed/' || true)"
command -v nvcc >/dev/null 2>&1 || { say "FAIL: nvcc not found"; exit 1; }
[ -f "$deps/include/doctest/doctest.h" ] || { say "FAIL: $deps/include lacks doctest (scripts/gpu_pack.sh)"; exit 1; }

# ---- the stages and their binaries -------------------------------------------------------------------------------
all_stages="kernels model training llama_kernels llama_model flash bf16 typed example"
all_stages="$all_stages bench bench_flash bench_bf16 bench_fast llama_bench"
stages="${RLHF_GPU_STAGES:-$all_stages}"
stage_target() {
  case $1 in
    kernels) echo gpt_cuda_kernels ;;
    model) echo gpt_cuda_model ;;
    training) echo gpt_cuda_training ;;
    llama_kernels) echo llama_cuda_kernels ;;
    llama_model) echo llama_cuda_model ;;
    flash) echo gpt_cuda_flash ;;
    bf16) echo gpt_cuda_bf16 ;;
    typed) echo cuda_typed_tests ;;
    example) echo gpt_dpo_cuda ;;
    bench | bench_flash | bench_bf16 | bench_fast) echo bench_gpt_cuda ;;
    llama_bench) echo bench_llama_cuda ;;
    *) return 1 ;;
  esac
}
for st in $stages; do
  stage_target "$st" >/dev/null || { say "FAIL: RLHF_GPU_STAGES names '$st'; the stages: $all_stages"; exit 1; }
done
selected() { case " $stages " in *" $1 "*) return 0 ;; esac; return 1; }

# ---- build: one folder per target, the targets side by side ---------------------------------------------------
# Slowest first. With fewer jobs than targets (a small machine), one compilation per target at a time.
targets=""
for t in cuda_typed_tests gpt_cuda_training llama_cuda_model gpt_cuda_model gpt_cuda_flash gpt_cuda_bf16 \
  llama_cuda_kernels gpt_cuda_kernels gpt_dpo_cuda bench_gpt_cuda bench_llama_cuda; do
  for st in $stages; do [ "$(stage_target "$st")" = "$t" ] && targets="$targets $t" && break; done  # once each
done
targets="${targets# }"
ntargets=$(echo $targets | wc -w)
if [ "$jobs" -ge "$ntargets" ]; then parallel=$ntargets per_target=$jobs; else parallel=$jobs per_target=1; fi
if [ "$have_gpu" = 1 ]; then build_limit=$(($(left) - 150)); else build_limit=$(left); fi  # 150 s kept for runs
[ "$build_limit" -lt 60 ] && build_limit=60
mkdir -p "$build"
export RLHF_ROOT="$root" RLHF_BUILD="$build" RLHF_DEPS_INC="$deps/include" RLHF_ARCH="$arch" \
  RLHF_GEN="$generator" RLHF_PER_TARGET="$per_target" RLHF_BUILD_LIMIT="$build_limit"
build_one() {  # one target: configure + build into $RLHF_BUILD/<target>, log <target>.log, status <target>.rc
  local t=$1 dir="$RLHF_BUILD/$1" s=$SECONDS rc
  rm -f "$RLHF_BUILD/$t.rc"
  {
    cmake -S "$RLHF_ROOT/tests/gpu/standalone" -B "$dir" -G "$RLHF_GEN" -DRLHF_GPU_TARGET="$t" \
      -DRLHF_GPU_DEPS="$RLHF_DEPS_INC" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="$RLHF_ARCH" \
      -DCMAKE_CUDA_COMPILER="$(command -v nvcc)" -DCMAKE_EXPORT_COMPILE_COMMANDS=ON &&
      timeout -k 10 "$RLHF_BUILD_LIMIT" cmake --build "$dir" -j "$RLHF_PER_TARGET"
  } >"$RLHF_BUILD/$t.log" 2>&1
  rc=$?
  echo "$rc $((SECONDS - s))" >"$RLHF_BUILD/$t.rc"
}
export -f build_one
say ""
say "-- build: $targets (sm_$arch, $parallel targets at a time, -j $per_target each, limit ${build_limit}s) --"
tb=$SECONDS
prebuilt=0
if [ -f "$deps/bin/STAMP" ] && [ "${RLHF_GPU_FORCE_BUILD:-0}" != 1 ]; then
  want="$(cat "$deps/bin/STAMP")" have="$(stamp)"
  if [ "$want" = "$have" ]; then
    prebuilt=1
    for t in $targets; do
      { [ -x "$deps/bin/$t" ] && ! ldd "$deps/bin/$t" 2>&1 | grep -q "not found"; } || prebuilt=0
    done
    [ "$prebuilt" = 1 ] || say "prebuilt binaries in $deps/bin do not all load here (ldd); building"
  else
    say "prebuilt binaries in $deps/bin are stale (stamp $want, sources $have); building"
  fi
fi
if [ "$prebuilt" = 1 ]; then
  say "using the prebuilt binaries of $deps/bin (stamp $want); RLHF_GPU_FORCE_BUILD=1 builds instead"
  for t in $targets; do
    mkdir -p "$build/$t" && cp "$deps/bin/$t" "$build/$t/$t" && echo "0 0" >"$build/$t.rc" &&
      echo "prebuilt: $deps/bin/$t (stamp $want)" >"$build/$t.log"
  done
else
  rm -f "$build/STAMP" "$build/TARGETS"
  sources="$(stamp)"  # before the build: binaries of sources edited during it must not pass for the new ones
  echo $targets | tr ' ' '\n' | xargs -P "$parallel" -I{} bash -c 'build_one {}'
  all_built=1
  for t in $targets; do [ "$(cut -d' ' -f1 "$build/$t.rc" 2>/dev/null)" = 0 ] || all_built=0; done
  # what gpu_pack.sh --binaries carries: the targets of this build, and the stamp of the sources they came from
  [ "$all_built" = 1 ] && echo "$sources" >"$build/STAMP" && echo "$targets" >"$build/TARGETS"
fi
: >"$out/build.log"
for t in $targets; do
  read -r rc secs <"$build/$t.rc" 2>/dev/null || { rc=?; secs=?; }
  { echo "==== $t: exit $rc in ${secs}s"; cat "$build/$t.log"; } >>"$out/build.log"
  if [ "$rc" = 0 ]; then
    [ "$prebuilt" = 1 ] && say "$(printf '%-18s prebuilt' "$t")" || say "$(printf '%-18s built in %ss' "$t" "$secs")"
  else
    [ "$rc" = 124 ] || [ "$rc" = 137 ] && why="timed out" || why="exit $rc"
    say "$(printf '%-18s BUILD FAILED (%s after %ss); first errors:' "$t" "$why" "$secs")"
    rm -f "$build/$t/$t"  # an older binary left there must not run as this build's
    failures_build=$((${failures_build:-0} + 1))
    grep -E "error|Error|undefined reference" "$build/$t.log" | head -n 6 | sed 's/^/    /' | tee -a "$summary"
  fi
done
say "build: $((SECONDS - tb))s"
# Which headers did the compilations read? None of the dependencies may come from the build machine's /usr/include
# (the GPU machine has none of them): only the carried copies in $deps.
if [ "$generator" = Ninja ] && [ "$prebuilt" = 0 ]; then
  leaked="$(for t in $targets; do [ -d "$build/$t" ] && ninja -C "$build/$t" -t deps 2>/dev/null; done |
    grep -oE "/usr/(local/)?include/(eigen3|Eigen|doctest|nlohmann|CLI|benchmark)/[^ ]*" | sort -u)"
  if [ -n "$leaked" ]; then
    say "headers read from outside $deps (FAIL):"
    echo "$leaked" | head -n 5 | sed 's/^/    /' | tee -a "$summary"
    failures_build=$((${failures_build:-0} + 1))
  else
    say "headers: Eigen, doctest, nlohmann, CLI11 only from $deps ($(for t in $targets; do
      [ -d "$build/$t" ] && ninja -C "$build/$t" -t deps 2>/dev/null; done | grep -c "$deps/include") reads)"
  fi
fi

# ---- run ---------------------------------------------------------------------------------------------------------
# Each stage: its own limit, cut to what is left of the budget. With a GPU: pass = exit 0; a skip (77) is a failure
# there. Without one (dry run): pass = the binary's "no GPU" exit (77; the example: 2 with "no CUDA device").
failures=${failures_build:-0}
bin() { echo "$build/$1/$1"; }
run_stage() {  # run_stage <name> <limit s> <skip exit code> <command...>
  local name=$1 limit=$2 skip_rc=$3 log="$out/$1.log" l rc s verdict
  shift 3
  selected "$name" || return 0
  l=$(left)
  if [ "$l" -lt 20 ]; then
    say "$(printf '%-13s NOT RUN (%ss of the budget left)' "$name" "$l")"
    failures=$((failures + 1))
    return
  fi
  [ "$limit" -gt "$((l - 5))" ] && limit=$((l - 5))
  if [ ! -x "$1" ]; then
    echo "not built: $1 (see build.log)" >"$log"
    say "$(printf '%-13s NOT BUILT' "$name")"
    failures=$((failures + 1))
    return
  fi
  s=$SECONDS
  timeout -k 5 "$limit" "$@" >"$log" 2>&1
  rc=$?
  if [ "$have_gpu" = 1 ]; then
    case $rc in
      0) verdict="PASS" ;;
      124 | 137) verdict="FAIL (timed out at ${limit}s)" ;;
      "$skip_rc") verdict="FAIL (exit $rc: it saw no GPU, nvidia-smi does)" ;;
      *) verdict="FAIL (exit $rc)" ;;
    esac
  else
    if [ "$rc" = "$skip_rc" ] && grep -q "no CUDA device" "$log"; then verdict="no GPU (skipped, exit $rc)"
    else verdict="FAIL (exit $rc; a dry run expects exit $skip_rc and 'no CUDA device')"; fi
  fi
  case $verdict in PASS | no\ GPU*) ;; *) failures=$((failures + 1)) ;; esac
  say "$(printf '%-13s %s in %ss' "$name" "$verdict" "$((SECONDS - s))")"
  grep -E "^\[doctest\] (test cases|assertions)|no CUDA device|CUDA error|compute capability|^bench_(gpt|llama)_cuda|^\||^device:|^done" \
    "$log" | head -n 12 | sed 's/^/    /' | tee -a "$summary"
  grep -E "ERROR|THREW|TEST CASE|cuda_error|exception" "$log" | head -n 12 | sed 's/^/    ! /' | tee -a "$summary"
}
say ""
say "-- run --"
export CUDA_LAUNCH_BLOCKING=1  # a kernel fault is reported at its own launch's check, not at a later case
run_stage kernels 45 77 "$(bin gpt_cuda_kernels)" --duration=true
run_stage model 60 77 "$(bin gpt_cuda_model)" --duration=true
run_stage training 75 77 "$(bin gpt_cuda_training)" --duration=true
run_stage llama_kernels 45 77 "$(bin llama_cuda_kernels)" --duration=true
run_stage llama_model 75 77 "$(bin llama_cuda_model)" --duration=true
run_stage flash 60 77 "$(bin gpt_cuda_flash)" --duration=true
run_stage bf16 45 77 "$(bin gpt_cuda_bf16)" --duration=true
run_stage typed 60 77 "$(bin cuda_typed_tests)" --duration=true
run_stage example 40 2 "$(bin gpt_dpo_cuda)" --device cuda --steps 20
unset CUDA_LAUNCH_BLOCKING  # timings: launches asynchronous
run_stage bench 150 77 "$(bin bench_gpt_cuda)" --steps "${RLHF_GPU_BENCH_STEPS:-5}"
run_stage bench_flash 150 77 "$(bin bench_gpt_cuda)" --steps "${RLHF_GPU_BENCH_STEPS:-5}" --flash
run_stage bench_bf16 150 77 "$(bin bench_gpt_cuda)" --steps "${RLHF_GPU_BENCH_STEPS:-5}" --bf16
run_stage bench_fast 150 77 "$(bin bench_gpt_cuda)" --steps "${RLHF_GPU_BENCH_STEPS:-5}" --bf16 --flash
run_stage llama_bench 120 77 "$(bin bench_llama_cuda)" --steps "${RLHF_GPU_BENCH_STEPS:-5}"

# ---- opt-in (RLHF_GPU_SANITIZER=1): compute-sanitizer on the kernel tests, with what is left of the budget --------
# (the GPT's, the Llama's and flash attention's kernel tests, when their stages ran; what is left is shared out)
sanitized=""
for t in gpt_cuda_kernels llama_cuda_kernels gpt_cuda_flash gpt_cuda_bf16; do [ -x "$(bin $t)" ] && sanitized="$sanitized $t"; done
if [ "${RLHF_GPU_SANITIZER:-0}" = 1 ] && [ "$have_gpu" = 1 ] && command -v compute-sanitizer >/dev/null 2>&1 &&
  [ -n "$sanitized" ] && [ "$(left)" -ge 60 ]; then
  n_sanitized=$(echo $sanitized | wc -w)
  for t in $sanitized; do
    limit=$((($(left) - 10) / n_sanitized))
    n_sanitized=$((n_sanitized - 1))
    [ "$limit" -lt 20 ] && break
    say ""
    say "-- compute-sanitizer memcheck on $t (informational, ${limit}s) --"
    timeout -k 5 "$limit" compute-sanitizer --tool memcheck --print-limit 10 "$(bin $t)" >"$build/sanitizer-$t.log" 2>&1
    say "exit $?"
    grep -E "ERROR SUMMARY|Invalid|test cases|Device not supported|error" "$build/sanitizer-$t.log" | head -n 15 |
      sed 's/^/    /' | tee -a "$summary"
  done
fi

say ""
if [ "$failures" = 0 ]; then
  say "RESULT: $([ "$have_gpu" = 1 ] && echo "every stage passed" || echo "dry run: built; every stage skipped cleanly (no GPU)") in $(elapsed)s"
  exit 0
fi
say "RESULT: $failures stage(s) failed or not run, $(elapsed)s. Logs: $out"
exit 1
