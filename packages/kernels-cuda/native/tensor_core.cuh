// The ternary projections of prompt steps on int8 tensor cores (WMMA m16n16k16, int32 sums):
// the indexing shared by the CUDA kernel (kernels.cu) and its host twin (host.cc).
//
// A thread block computes a tile of 64 output rows × 64 tokens. Per step of 128 columns it
// decodes the rows' 2-bit codes into int8 (0, 1, 2: the −1 offset is taken out afterwards with
// the activation sums, as in the dp4a kernels) and copies the tokens' int8 activations, both into
// shared memory laid out chunk by chunk: 8 chunks of 16 columns, each 64 rows (or tokens) × 16
// bytes, so every 16 × 16 fragment starts on a 256-byte boundary (WMMA's alignment) and is 256
// contiguous bytes. Integer sums are exact whatever the order, so the tile gives the dp4a
// kernels' sums bit for bit; the epilogues then round exactly as those kernels do.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "ternary.cuh"

namespace bitnet_cuda {

constexpr int kTcRows = 64;      // output rows per tile
constexpr int kTcTokens = 64;    // tokens per tile
constexpr int kTcK = 128;        // columns per step
constexpr int kTcThreads = 128;  // four warps, each 32 rows × 32 tokens
constexpr int kTcChunk = 16;     // columns per chunk (one fragment's K)
constexpr int kTcChunkBytes = kTcRows * kTcChunk;  // one chunk of a tile side (1 KiB)
constexpr int kTcSideBytes = kTcK * kTcRows;       // one tile side in shared memory (8 KiB)
constexpr int kTcSumStride = kTcTokens + 4;        // int32 sums per row of the sum tile

// Byte offset of (row or token `i`, column `k` of the step) in a tile side.
BITNET_HD int tc_index(int i, int k) { return (k >> 4) * kTcChunkBytes + i * kTcChunk + (k & 15); }

// Thread `tid`'s share of a step's codes: 16 of the 32 code bytes of row tid / 2 (the I2_S block,
// or half a TQ2_0 block, that covers the step's 128 columns).
BITNET_HD int tc_code_row(int tid) { return tid >> 1; }
BITNET_HD int tc_code_half(int tid) { return tid & 1; }

// Decodes those 16 bytes (four words) into the tile: byte p of the 32 holds the columns p,
// p + 32, p + 64, p + 96 of the step, in bits 7-6, 5-4, 3-2, 1-0 for I2_S and bits 1-0, 3-2, 5-4,
// 7-6 for TQ2_0. A word's field (after a shift and a 0x03 mask per byte) is four consecutive
// columns: each field of the four words fills 16 consecutive columns, one chunk's row.
BITNET_HD void tc_decode_codes(const uint32_t words[4], bool i2s, int row, int half, int8_t* side) {
#pragma unroll
  for (int f = 0; f < 4; f++) {
    const int shift = i2s ? 6 - 2 * f : 2 * f;
    uint32_t out[4];
#pragma unroll
    for (int i = 0; i < 4; i++) out[i] = (words[i] >> shift) & 0x03030303u;
    int8_t* dst = side + tc_index(row, 32 * f + 16 * half);
#if defined(__CUDA_ARCH__)
    *reinterpret_cast<uint4*>(dst) = make_uint4(out[0], out[1], out[2], out[3]);
#else
    std::memcpy(dst, out, 16);
#endif
  }
}

// Thread `tid`'s share of a step's activations: 64 of the 128 bytes of token tid / 2, as four
// chunks' rows.
BITNET_HD int tc_act_token(int tid) { return tid >> 1; }
BITNET_HD int tc_act_part(int tid) { return tid & 1; }
BITNET_HD int tc_act_column(int tid, int i) { return 64 * (tid & 1) + 16 * i; }

// The outputs thread tid finishes: one row of the tile, tc_out_row(tid), for 32 of its tokens,
// tc_out_token(tid, j) for j < kTcOutPerThread (consecutive threads take consecutive rows of one
// token, so the stores to y[t·rows + r] coalesce).
constexpr int kTcOutPerThread = kTcRows * kTcTokens / kTcThreads;  // 32
BITNET_HD int tc_out_row(int tid) { return tid % kTcRows; }
BITNET_HD int tc_out_token(int tid, int j) { return tid / kTcRows + (kTcThreads / kTcRows) * j; }

// The fewest tokens for which a step's ternary projections run on the tensor-core tiles, on the
// GPU and in the host twins alike: BITNET_CUDA_TC_MIN_TOKENS, 0 for never. 16 by default: from
// two dp4a passes of eight tokens on, one tile's pass over the weights does the work of all of
// them. (No GPU has measured the crossover yet; the device check times both.)
inline int64_t tensor_core_min_tokens() {
  static const int64_t v = [] {
    const char* e = std::getenv("BITNET_CUDA_TC_MIN_TOKENS");
    if (e == nullptr || *e == 0) return (int64_t)16;
    const long n = std::strtol(e, nullptr, 10);
    return n <= 0 ? INT64_MAX : (int64_t)n;
  }();
  return v;
}
inline bool use_tensor_cores(int64_t T) { return T >= tensor_core_min_tokens(); }

}  // namespace bitnet_cuda
