#!/usr/bin/env bash
# Builds and runs bench/gemm.cc (see there): bash packages/kernels-cpu/bench/gemm.sh avx2 27648 2560 128
exec bash "$(dirname "$0")/build-run.sh" gemm "$@"
