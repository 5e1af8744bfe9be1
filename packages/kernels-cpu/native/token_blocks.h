// ---------------------------------------------------------------------------------------------
// The multi-token TQ2_0 prefill kernels keep one token per vector lane, so each block's Q8_K
// scales and sums of N consecutive tokens are first copied block-major (block b's N values side
// by side): one vector load then serves all N lanes. Included inside namespace bitnet {
// namespace { … } } of each kernel file (AVX2/AVX-VNNI through ternary_avx2.h: N = 8; AVX-512:
// N = 16), so every instruction-set build keeps its own copy.
// ---------------------------------------------------------------------------------------------
#pragma once

struct TokenBlocks {
  const float* d;        // [nb][N]: act_d of tokens t..t+N−1
  const int32_t* bsum;   // [nb][N]: act_bsum of the same
};

// Called once per kernel call; kept out of line so that its thread_local lookups and loops stay
// out of the kernel's register allocation.
template <int N>
__attribute__((noinline)) TokenBlocks gather_token_blocks(const float* act_d, const int32_t* act_bsum, int64_t t, int64_t nb) {
  thread_local std::vector<float> d_by_block;
  thread_local std::vector<int32_t> bsum_by_block;
  if ((int64_t)d_by_block.size() < N * nb) {
    d_by_block.resize((size_t)(N * nb));
    bsum_by_block.resize((size_t)(N * nb));
  }
  // The kernels get plain pointers: in a shared library every use of a thread_local is a call
  // to __tls_get_addr, 4% of a TQ2_0 prompt step's samples in perf when the kernel's block loop
  // read the vectors directly.
  float* const d = d_by_block.data();
  int32_t* const bsum = bsum_by_block.data();
  for (int64_t b = 0; b < nb; b++) {
    for (int k = 0; k < N; k++) {
      d[N * b + k] = act_d[(t + k) * nb + b];
      bsum[N * b + k] = act_bsum[(t + k) * nb + b];
    }
  }
  return {d, bsum};
}
