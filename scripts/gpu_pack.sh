#!/usr/bin/env bash
# Packs what the CUDA build needs from this machine's Debian packages into gpu_deps/ (git-ignored), for a GPU
# machine that has no network (no apt): the header-only Eigen (libeigen3-dev), doctest (doctest-dev),
# nlohmann-json (nlohmann-json3-dev) and CLI11 (libcli11-dev; the gpt_dpo example's command line). Google
# Benchmark is not needed: bench_gpt_cuda times itself. Copies keep the packages' file times (cp -p), so packing
# again does not make a build out of date.
# Then scripts/gpu_run.sh builds and runs the CUDA targets with them; name gpu_deps in the device tool's carry.
#
#   scripts/gpu_pack.sh            -> gpu_deps/include/{eigen3,doctest,nlohmann,CLI}, gpu_deps/MANIFEST
#   RLHF_GPU_DEPS_DIR=dir scripts/gpu_pack.sh   another folder
#   scripts/gpu_pack.sh --binaries  also the binaries the last dry run of scripts/gpu_run.sh built here (build-gpu/;
#                                   the targets of its stages, listed in build-gpu/TARGETS; all nine by default),
#                                   stripped (the GPT's six ~34 MB), in gpu_deps/bin/ with the stamp of the sources
#                                   they were built from: the GPU machine skips its build while the sources are
#                                   unchanged (and the binaries of its stages are all there and load). Mind the
#                                   device tool's 64 MiB for all it carries: RLHF_GPU_STAGES picks fewer.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="${RLHF_GPU_DEPS_DIR:-$root/gpu_deps}"
src="${RLHF_GPU_PACK_FROM:-/usr/include}"

need() {  # need <dir under $src> <Debian package>
  [ -d "$src/$1" ] || { echo "gpu_pack: $src/$1 missing: apt-get install $2 (scripts/setup.sh)" >&2; exit 1; }
}
need eigen3/Eigen libeigen3-dev
need doctest doctest-dev
need nlohmann nlohmann-json3-dev
need CLI libcli11-dev

rm -rf "$dest/include"
mkdir -p "$dest/include/eigen3"
# Eigen: the Eigen/ tree only (unsupported/ is not used); doctest, nlohmann and CLI11 whole.
cp -rp "$src/eigen3/Eigen" "$dest/include/eigen3/"
cp -rp "$src/doctest" "$src/nlohmann" "$src/CLI" "$dest/include/"
{
  echo "# scripts/gpu_pack.sh, $(date -u +%Y-%m-%dT%H:%M:%SZ), from $src on $(hostname)"
  for p in libeigen3-dev doctest-dev nlohmann-json3-dev libcli11-dev; do
    echo "$p $(dpkg-query -W -f='${Version}' "$p" 2>/dev/null || echo '?')"
  done
} >"$dest/MANIFEST"
rm -rf "$dest/bin"
if [ "${1:-}" = "--binaries" ]; then
  build="${RLHF_GPU_BUILD_DIR:-$root/build-gpu}"
  mkdir -p "$dest/bin"
  [ -f "$build/STAMP" ] && [ -f "$build/TARGETS" ] ||
    { echo "gpu_pack: $build/STAMP or TARGETS missing: the last gpu_run.sh did not build all its targets" >&2; exit 1; }
  for t in $(cat "$build/TARGETS"); do
    [ -x "$build/$t/$t" ] || { echo "gpu_pack: $build/$t/$t missing: run scripts/gpu_run.sh first" >&2; exit 1; }
    strip -o "$dest/bin/$t" "$build/$t/$t"
  done
  cp "$build/STAMP" "$dest/bin/STAMP"  # the sources' stamp taken when that build started
  echo "gpu_pack: binaries for sources $(cat "$dest/bin/STAMP"): $(du -sh "$dest/bin" | cut -f1)"
fi
echo "gpu_pack: $dest: $(du -sh "$dest" | cut -f1) ($(find "$dest" -type f | wc -l) files)"
cat "$dest/MANIFEST"
