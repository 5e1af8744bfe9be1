#!/usr/bin/env bash
# Builds one of this folder's microbenchmarks (<name>.cc) against the kernels and runs it:
#   bash packages/kernels-cpu/bench/build-run.sh <gemm|decode-sequence> [arguments…]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
native="$here/../native"
name="$1"
shift
out="${TMPDIR:-/tmp}/bitnet-bench-$name"
g++ -std=c++17 -O3 -ffp-contract=off -fno-math-errno -w -o "$out" "$here/$name.cc" \
  "$native"/kernels_{scalar,avx2,avxvnni,avx512,amx,neon,dispatch}.cc -lpthread
exec "$out" "$@"
