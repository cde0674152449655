#!/usr/bin/env bash
# A binary built for the default baseline (RLHF_ARCH x86-64-v3, or none) uses AVX-512 only inside the kernels that
# pick it at run time, so it runs on an AVX2-only CPU. Lists every function of the binary whose code names an
# AVX-512-only register (zmm0-31, xmm/ymm16-31, the k1-k7 masks) and fails on any outside those kernels.
# Usage: avx512_only_in_kernels.sh BINARY
set -euo pipefail
binary="$1"
command -v objdump >/dev/null || { echo "objdump not found: skipped"; exit 77; }
kernels='^(void )?rlhf::(cpu::sgemm_detail::multiply_avx512|cpu::dot_rows_detail::columns_avx512|gpt::bf16::detail::)'
users=$(objdump -d --no-show-raw-insn -C "$binary" | awk '
  /^[0-9a-f]+ <.*>:$/ { fn = $0; sub(/^[0-9a-f]+ </, "", fn); sub(/>:$/, "", fn); next }
  /%zmm|%[xy]mm(1[6-9]|2[0-9]|3[01])\>|%k[1-7]\>/ { if (!(fn in seen)) { seen[fn] = 1; print fn } }')
outside=$(printf '%s\n' "$users" | grep -v -E "$kernels" | grep -v '^$' || true)
echo "functions with AVX-512 code: $(printf '%s\n' "$users" | grep -c . || true)"
if [ -n "$outside" ]; then
  echo "AVX-512 code outside the run-time-dispatched kernels of $binary:"
  printf '%s\n' "$outside" | head -20
  exit 1
fi
[ -n "$users" ] || { echo "no AVX-512 code at all in $binary: the dispatched kernels are missing"; exit 1; }
echo "ok: AVX-512 only in the dispatched kernels"
