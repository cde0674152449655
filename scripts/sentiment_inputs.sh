#!/usr/bin/env bash
# The inputs the sentiment example's numbers depend on, outside the repository: the fortune files it reads (Debian
# fortunes, fortunes-min: every plain file of the folder, as rlhf/io/corpus.hpp reads them), the npm review fixtures
# and VADER lexicon, and the versions of the packages that make or compile them. Prints one line per input:
# "<sha256 or version>  <name>".
#
#   scripts/sentiment_inputs.sh           print them
#   scripts/sentiment_inputs.sh --check   compare with docs/experiments/sentiment_inputs.txt; prints what differs
#                                         and exits 1 when something does (scripts/demo.sh warns, and runs on)
#   scripts/sentiment_inputs.sh --write   rewrite docs/experiments/sentiment_inputs.txt (commit it with the csvs)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
committed="$root/docs/experiments/sentiment_inputs.txt"
npm="${RLHF_NPM_PREFIX:-$root/third_party/npm}/node_modules"
fortunes="${RLHF_FORTUNES_DIR:-/usr/share/games/fortunes}"
mode="${1:-}"
case "$mode" in
  "" | --check | --write) ;;
  -h | --help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "sentiment_inputs: unknown argument '$mode' (--check, --write or none; --help)" >&2; exit 2 ;;
esac

inputs() {
  for f in "$fortunes"/*; do  # as read_fortunes: no *.dat, *.u8, links, hidden files or folders
    case "$f" in *.dat | *.u8) continue ;; esac
    [ -f "$f" ] && [ ! -L "$f" ] || continue
    printf '%s  fortunes/%s\n' "$(sha256sum < "$f" | cut -d' ' -f1)" "$(basename "$f")"
  done
  for f in sentiment/test/fixtures/imdb.json sentiment/test/fixtures/amazon.json sentiment/test/fixtures/yelp.json \
           vader-sentiment/vader_lexicon.txt; do
    if [ -f "$npm/$f" ]; then printf '%s  npm/%s\n' "$(sha256sum < "$npm/$f" | cut -d' ' -f1)" "$f"
    else printf 'missing  npm/%s\n' "$f"; fi
  done
  for p in sentiment vader-sentiment; do
    v="$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$npm/$p/package.json" 2>/dev/null | head -1)"
    printf '%s  npm package %s\n' "${v:-missing}" "$p"
  done
  for p in fortunes fortunes-min libsentencepiece-dev libeigen3-dev; do
    v="$(dpkg-query -W -f='${Version}' "$p" 2>/dev/null || true)"
    printf '%s  debian package %s\n' "${v:-missing}" "$p"
  done
}

case "$mode" in
  "") inputs ;;
  --write) inputs > "$committed"; echo "sentiment_inputs: wrote $committed ($(wc -l < "$committed") inputs)" ;;
  --check)
    if [ ! -f "$committed" ]; then echo "sentiment_inputs: no $committed to compare with" >&2; exit 1; fi
    if diff <(sort -k2 "$committed") <(inputs | sort -k2) > /tmp/sentiment_inputs.$$ 2>&1; then
      rm -f /tmp/sentiment_inputs.$$
      echo "inputs:   the same as docs/experiments/sentiment_inputs.txt ($(wc -l < "$committed") files and versions)"
    else
      echo "inputs:   NOT the ones of docs/experiments/sentiment_inputs.txt; the committed csvs need not reproduce:" >&2
      grep '^[<>]' /tmp/sentiment_inputs.$$ | sed 's/^</  committed:/; s/^>/  here:     /' >&2
      rm -f /tmp/sentiment_inputs.$$
      exit 1
    fi ;;
esac
