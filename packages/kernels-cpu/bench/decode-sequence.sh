#!/usr/bin/env bash
# Builds and runs bench/decode-sequence.cc (see there): bash packages/kernels-cpu/bench/decode-sequence.sh avx2 2 30 ops
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
native="$here/../native"
out="${TMPDIR:-/tmp}/bitnet-decode-sequence"
g++ -std=c++17 -O3 -ffp-contract=off -fno-math-errno -w -o "$out" "$here/decode-sequence.cc" \
  "$native"/kernels_{scalar,avx2,avxvnni,avx512,amx,neon,dispatch}.cc -lpthread
exec "$out" "$@"
