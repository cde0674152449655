#!/usr/bin/env bash
# Packs what the CUDA build needs from this machine's Debian packages into gpu_deps/ (git-ignored), for a GPU
# machine that has no network (no apt): the header-only Eigen (libeigen3-dev), doctest (doctest-dev) and
# nlohmann-json (nlohmann-json3-dev). Google Benchmark is not needed: bench_gpt_cuda times itself.
# Then scripts/gpu_run.sh builds and runs the CUDA targets with them; name gpu_deps in the device tool's carry.
#
#   scripts/gpu_pack.sh            -> gpu_deps/include/{eigen3,doctest,nlohmann}, gpu_deps/MANIFEST
#   RLHF_GPU_DEPS_DIR=dir scripts/gpu_pack.sh   another folder
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

rm -rf "$dest/include"
mkdir -p "$dest/include/eigen3"
# Eigen: the Eigen/ tree only (unsupported/ is not used); doctest and nlohmann whole.
cp -r "$src/eigen3/Eigen" "$dest/include/eigen3/"
cp -r "$src/doctest" "$src/nlohmann" "$dest/include/"
{
  echo "# scripts/gpu_pack.sh, $(date -u +%Y-%m-%dT%H:%M:%SZ), from $src on $(hostname)"
  for p in libeigen3-dev doctest-dev nlohmann-json3-dev; do
    echo "$p $(dpkg-query -W -f='${Version}' "$p" 2>/dev/null || echo '?')"
  done
} >"$dest/MANIFEST"
echo "gpu_pack: $dest: $(du -sh "$dest" | cut -f1) ($(find "$dest" -type f | wc -l) files)"
cat "$dest/MANIFEST"
