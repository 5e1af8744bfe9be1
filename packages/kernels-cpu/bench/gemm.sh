#!/usr/bin/env bash
# Builds and runs bench/gemm.cc (see there): bash packages/kernels-cpu/bench/gemm.sh avx2 27648 2560 128
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
native="$here/../native"
out="${TMPDIR:-/tmp}/bitnet-gemm-bench"
g++ -std=c++17 -O3 -ffp-contract=off -fno-math-errno -w -o "$out" "$here/gemm.cc" \
  "$native"/kernels_{scalar,avx2,avxvnni,avx512,amx,neon,dispatch}.cc -lpthread
exec "$out" "$@"
