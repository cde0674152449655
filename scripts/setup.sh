#!/usr/bin/env bash
# Installs the Debian packages rlhf-cpp needs, only those missing; silent when nothing is.
set -euo pipefail

packages=(cmake g++ make pkg-config libeigen3-dev doctest-dev libbenchmark-dev nlohmann-json3-dev xtensor-dev libxsimd-dev
          libthrust-dev libcli11-dev fortunes libsentencepiece-dev gnuplot-nox python3
          libpcre2-dev libutf8proc-dev  # tokenizer.json: regexes and Unicode normalization (docs/io/tokenizer_json.md)
          clang-14 libclang-rt-14-dev  # clang: the fuzzers (scripts/check.sh)
          libopenmpi-dev openmpi-bin)  # data-parallel ranks (docs/distributed.md)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# npm (scripts/fetch_npm_data.sh) may come from another source than Debian's package (NodeSource's nodejs
# bundles it and conflicts with Debian's npm): asked for by package only when the command is missing.
command -v npm >/dev/null || missing+=(nodejs npm)
[ ${#missing[@]} -eq 0 ] && exit 0

echo "setup: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
