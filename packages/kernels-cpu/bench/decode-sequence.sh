#!/usr/bin/env bash
# Builds and runs bench/decode-sequence.cc (see there): bash packages/kernels-cpu/bench/decode-sequence.sh avx2 2 30 ops
exec bash "$(dirname "$0")/build-run.sh" decode-sequence "$@"
