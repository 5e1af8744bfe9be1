// ---------------------------------------------------------------------------------------------
// The 256-bit ternary projections shared by the AVX2 and AVX-VNNI paths, written once over a
// `Dot` policy that says how u8 codes × s8 activations are summed (AVX2: VPMADDUBSW + VPADDW +
// VPMADDWD; AVX-VNNI: VPDPBUSD). Include it inside the including file's target pragma and
// anonymous namespace.
//
// Loop order: tokens outside, rows inside, so a group's activations stay in L1 while the rows
// of one call (a ~32 KiB tile, see for_row_tiles) stream past them; rows outside re-read every
// token's activations from L2 for each row, and that read bounded prefill. Integer sums are
// exact in any grouping, and the float steps are the scalar kernel's in the same order (no FMA;
// vector lanes hold different tokens), so every result is bit-identical to the scalar path.
//
// Dot provides:
//   template <int N> static void i2s_row(const uint8_t* row, int64_t nb, const int8_t* q,
//                                        int64_t cols, __m256i acc[N]);  // Σ code·q, N tokens
//   optionally static RowPairPlan row_pair_plan(int64_t nb);  // once per call, and
//              static void i2s_row_pair(const RowPairPlan& plan, const uint8_t* ra, int64_t nb,
//                            const int8_t* q, __m256i& acc_a, __m256i& acc_b);  // one token,
//                            // rows ra and ra + 32·nb at a time (where present, decode runs
//                            // rows in pairs)
//   static __m256i tq2(const __m256i codes[8], const int8_t* q);       // one token of a 4-pass
//   static __m256i tq2_one(const __m256i codes[8], const int8_t* q);   // TQ1_0 decode
//   static __m256i tq2_block_one(const uint8_t* qs, const int8_t* q);  // TQ2_0 decode, one
//                                                        // block from its code bytes
//   static constexpr int64_t kI2sChunkBlocks;  // I2_S blocks one accumulator may take (8, 10)
//   static void add4(__m256i& acc, const __m256i c[4], const int8_t* q);  // one token, 128
//                                                        // elements: acc += Σ_j c[j]·q[32j…]
//   static __m256i sums8(__m256i acc[8]);  // eight accumulators → one vector of int32 sums
//
// Prefill (eight tokens at a time) also splits the columns into chunks of ~1024 (I2_S: Dot's
// kI2sChunkBlocks × 128) so that the eight tokens' activations of a chunk (8-10 KiB) stay in L1
// while the tile's rows stream past;
// whole rows of eight 6912-column tokens (55 KiB) did not fit, and the down projection ran
// 5-15% slower than the others. Each row's running sums (int32 or float, one lane per token)
// wait in a small scratch array between chunks, which changes no result: integer sums are
// exact and the float sums still add blocks in order.
// ---------------------------------------------------------------------------------------------
#pragma once

#include "token_blocks.h"
#include "weight_prefetch.h"

// One-token I2_S rows ask for the line decode_prefetch().i2s ahead into L1 (kernels.h: 6 KiB on
// a Zen 5, where `avx2` streamed 36-43 GB/s against 33-40 with the hardware prefetcher alone and
// `avxvnni` 45-46 against 38-41; 2 KiB on Intel Xeons, where 6 KiB lost 10-15% against 2 KiB).

inline int32_t hsum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

// The horizontal sums of four int32 vectors as one vector (a, b, c, d): three hadds and one add
// instead of four full reductions.
inline __m128i hsum4_i32(__m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i s = _mm256_hadd_epi32(_mm256_hadd_epi32(a, b), _mm256_hadd_epi32(c, d));
  return _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
}

// The four code vectors of a 128-element I2_S block (32 bytes; element 32j+m at bits 6−2j of
// byte m), in activation order.
inline void i2s_unpack(const uint8_t* codes, __m256i c[4]) {
  const __m256i mask = _mm256_set1_epi8(3);
  const __m256i packed = _mm256_loadu_si256((const __m256i*)codes);
  c[0] = _mm256_and_si256(_mm256_srli_epi16(packed, 6), mask);
  c[1] = _mm256_and_si256(_mm256_srli_epi16(packed, 4), mask);
  c[2] = _mm256_and_si256(_mm256_srli_epi16(packed, 2), mask);
  c[3] = _mm256_and_si256(packed, mask);
}

// Decode with VPDPBUSD needs no shifts to unpack I2_S codes: field j of a byte, masked in place
// (0xC0, 0x30, 0x0C, 0x03), is its code times 4^(3−j), still a valid u8 operand. a[j] then holds
// 4^(3−j) × the true sums, lane by lane, so an arithmetic right shift of each lane recovers them
// exactly (a multiple of 64 shifted by 6 loses no bit, whatever its sign). Per 32 bytes that is
// four ANDs instead of three shifts and four ANDs.
inline __m256i i2s_masked_sum(const __m256i a[4]) {
  return _mm256_add_epi32(_mm256_add_epi32(_mm256_srai_epi32(a[0], 6), _mm256_srai_epi32(a[1], 4)),
                          _mm256_add_epi32(_mm256_srai_epi32(a[2], 2), a[3]));
}

// The eight code vectors of a TQ2_0 block (element 128c+32l+m at bits 2l of qs[32c+m]).
inline void tq2_unpack(const BlockTQ2& blk, __m256i codes[8]) {
  const __m256i mask = _mm256_set1_epi8(3);
  for (int c = 0; c < 2; c++) {
    const __m256i packed = _mm256_loadu_si256((const __m256i*)(blk.qs + 32 * c));
    codes[4 * c + 0] = _mm256_and_si256(packed, mask);
    codes[4 * c + 1] = _mm256_and_si256(_mm256_srli_epi16(packed, 2), mask);
    codes[4 * c + 2] = _mm256_and_si256(_mm256_srli_epi16(packed, 4), mask);
    codes[4 * c + 3] = _mm256_and_si256(_mm256_srli_epi16(packed, 6), mask);
  }
}

// Materializes v here and keeps the compiler from hoisting later loads above this point. Left
// free, GCC computes all 64 products of an eight-token block first, spills them to the stack and
// adds them afterwards (the eight-token TQ2_0 prefill ran at 57 instead of 80+ GMAC/s). The CPU
// still overlaps the tokens out of order.
inline void pin(__m256i& v) { asm volatile("" : "+x"(v)::"memory"); }

// The horizontal sums of eight int32 vectors as one vector (lane k = Σ a_k).
inline __m256i hsum8_i32(const __m256i a[8]) {
  const __m256i h0123 = _mm256_hadd_epi32(_mm256_hadd_epi32(a[0], a[1]), _mm256_hadd_epi32(a[2], a[3]));
  const __m256i h4567 = _mm256_hadd_epi32(_mm256_hadd_epi32(a[4], a[5]), _mm256_hadd_epi32(a[6], a[7]));
  return _mm256_add_epi32(_mm256_permute2x128_si256(h0123, h4567, 0x20), _mm256_permute2x128_si256(h0123, h4567, 0x31));
}

// Eight tokens (q, q + cols, …) over I2_S blocks [b0, b1) of one row: lane k holds token k's
// Σ code·q (pin: see above).
template <class Dot>
inline __m256i i2s_sums8(const uint8_t* row, int64_t b0, int64_t b1, const int8_t* q, int64_t cols) {
  __m256i acc[8];
  for (int k = 0; k < 8; k++) acc[k] = _mm256_setzero_si256();
  for (int64_t b = b0; b < b1; b++) {
    __m256i c[4];
    i2s_unpack(row + 32 * b, c);
    for (int k = 0; k < 8; k++) {
      Dot::add4(acc[k], c, q + k * cols + 128 * b);
      pin(acc[k]);
    }
  }
  return Dot::sums8(acc);
}

// The same for one TQ2_0 block, one 128-element half at a time (four code registers).
template <class Dot>
inline __m256i tq2_sums8(const BlockTQ2& blk, const int8_t* q, int64_t cols) {
  const __m256i mask = _mm256_set1_epi8(3);
  __m256i acc[8];
  for (int k = 0; k < 8; k++) acc[k] = _mm256_setzero_si256();
  for (int half = 0; half < 2; half++) {
    const __m256i packed = _mm256_loadu_si256((const __m256i*)(blk.qs + 32 * half));
    const __m256i c[4] = {_mm256_and_si256(packed, mask), _mm256_and_si256(_mm256_srli_epi16(packed, 2), mask),
                          _mm256_and_si256(_mm256_srli_epi16(packed, 4), mask), _mm256_and_si256(_mm256_srli_epi16(packed, 6), mask)};
    for (int k = 0; k < 8; k++) {
      Dot::add4(acc[k], c, q + k * cols + 128 * half);
      pin(acc[k]);
    }
  }
  return Dot::sums8(acc);
}

// Rows per scratch tile of the eight-token prefill (the scratch holds 8 lanes per row).
constexpr int64_t kPrefillRows = 64;

// I2_S, eight tokens [t, t + 8): columns in chunks, rows inside, one int32 lane per token.
template <class Dot>
void i2s_prefill8(const uint8_t* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* q, const float* act_scale,
                  const int32_t* act_sum, float w_scale, int64_t t, float* out, int64_t out_stride) {
  const int64_t nb = cols / 128;
  const int64_t row_bytes = cols / 4;
  const int8_t* q8 = q + t * cols;
  alignas(32) int32_t sums[kPrefillRows * 8];
  for (int64_t rs = r0; rs < r1; rs += kPrefillRows) {
    const int64_t re = rs + kPrefillRows < r1 ? rs + kPrefillRows : r1;
    for (int64_t b0 = 0; b0 < nb; b0 += Dot::kI2sChunkBlocks) {
      const int64_t b1 = b0 + Dot::kI2sChunkBlocks < nb ? b0 + Dot::kI2sChunkBlocks : nb;
      for (int64_t r = rs; r < re; r++) {
        prefetch_bytes(w + (r + kPrefetchRowsAhead) * row_bytes + 32 * b0, 32 * (b1 - b0));
        __m256i* slot = (__m256i*)(sums + 8 * (r - rs));
        const __m256i v = i2s_sums8<Dot>(w + r * row_bytes, b0, b1, q8, cols);
        _mm256_store_si256(slot, b0 == 0 ? v : _mm256_add_epi32(_mm256_load_si256(slot), v));
      }
    }
    for (int64_t r = rs; r < re; r++) {
      for (int k = 0; k < 8; k++) {
        const float y = (float)(sums[8 * (r - rs) + k] - act_sum[t + k]) / act_scale[t + k];
        out[(t + k) * out_stride + r] = y * w_scale;
      }
    }
  }
}

// How a call's row pairs ask for their lines (Dot::row_pair_plan, worked out once per call):
// `ahead` bytes on into L1 (non-temporal where `non_temporal`), `far` bytes on into L2 (0: not).
struct RowPairPlan {
  int64_t ahead, far;
  bool non_temporal;
};

// Whether Dot runs one token over two rows at a time (it has i2s_row_pair).
template <class Dot, class = void>
struct HasRowPairs : std::false_type {};
template <class Dot>
struct HasRowPairs<Dot, std::void_t<decltype(Dot::i2s_row_pair(Dot::row_pair_plan(0), nullptr, 0, nullptr,
                                                                 std::declval<__m256i&>(), std::declval<__m256i&>()))>>
    : std::true_type {};

// Row r's outputs for tokens [t, t + N) from their integer sums Σ code·q: (sum − Σq) / act_scale
// · w_scale, the scalar kernel's float steps in its order.
template <int N>
inline void i2s_store(const __m256i acc[N], int64_t r, int64_t t, const float* act_scale, const int32_t* act_sum,
                      float w_scale, float* out, int64_t out_stride) {
  for (int k = 0; k < N; k++) {
    const float y = (float)(hsum_i32(acc[k]) - act_sum[t + k]) / act_scale[t + k];
    out[(t + k) * out_stride + r] = y * w_scale;
  }
}

template <class Dot, int N>
inline void i2s_tokens(const uint8_t* row, int64_t nb, int64_t cols, int64_t r, int64_t t, const int8_t* q,
                       const float* act_scale, const int32_t* act_sum, float w_scale, float* out, int64_t out_stride) {
  __m256i acc[N];
  Dot::template i2s_row<N>(row, nb, q + t * cols, cols, acc);
  i2s_store<N>(acc, r, t, act_scale, act_sum, w_scale, out, out_stride);
}

// out = (Σ code·q − Σq) / act_scale · w_scale; eight, then four, then the last one to three
// tokens per pass share each row's unpacked codes.
template <class Dot>
void i2s_gemm_256(const uint8_t* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* q, const float* act_scale,
                  const int32_t* act_sum, float w_scale, int64_t T, float* out, int64_t out_stride) {
  const int64_t nb = cols / 128;
  const int64_t row_bytes = cols / 4;
  int64_t t = 0;
  for (; t + 8 <= T; t += 8) i2s_prefill8<Dot>(w, cols, r0, r1, q, act_scale, act_sum, w_scale, t, out, out_stride);
  // One pass over the rows for the next n tokens (n ≤ 4).
  auto pass = [&](auto n) {
    int64_t r = r0;
    if constexpr (decltype(n)::value == 1 && HasRowPairs<Dot>::value) {
      // One token: two rows at a time (Dot::i2s_row_pair: two streams of lines per thread).
      const RowPairPlan plan = Dot::row_pair_plan(nb);
      for (; r + 2 <= r1; r += 2) {
        __m256i acc[2];
        Dot::i2s_row_pair(plan, w + r * row_bytes, nb, q + t * cols, acc[0], acc[1]);
        i2s_store<1>(&acc[0], r, t, act_scale, act_sum, w_scale, out, out_stride);
        i2s_store<1>(&acc[1], r + 1, t, act_scale, act_sum, w_scale, out, out_stride);
      }
    }
    for (; r < r1; r++) {
      i2s_tokens<Dot, decltype(n)::value>(w + r * row_bytes, nb, cols, r, t, q, act_scale, act_sum, w_scale, out, out_stride);
    }
    t += decltype(n)::value;
  };
  while (t + 4 <= T) pass(std::integral_constant<int, 4>{});
  switch (T - t) {
    case 3: pass(std::integral_constant<int, 3>{}); break;
    case 2: pass(std::integral_constant<int, 2>{}); break;
    case 1: pass(std::integral_constant<int, 1>{}); break;
    default: break;
  }
}

// TQ2_0, eight tokens [t, t + 8): blocks in chunks, rows inside; lane k of a row's float sum is
// token k's Σ_b (float)(sumi_b − bsum_b) · (act_d_b · w_d_b), blocks added in order as the
// scalar kernel does. The tokens' block scales and sums are first gathered block-major so one
// load serves all eight lanes.
template <class Dot>
void tq2_prefill8(const BlockTQ2* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* q, const float* act_d,
                  const int32_t* act_bsum, int64_t t, float* out, int64_t out_stride) {
  constexpr int64_t kChunkBlocks = 4;  // 8 tokens × 4 × 256 = 8 KiB of activations
  const int64_t nb = cols / 256;
  const int8_t* q8 = q + t * cols;
  const TokenBlocks blocks = gather_token_blocks<8>(act_d, act_bsum, t, nb);
  alignas(32) float sums[kPrefillRows * 8];
  for (int64_t rs = r0; rs < r1; rs += kPrefillRows) {
    const int64_t re = rs + kPrefillRows < r1 ? rs + kPrefillRows : r1;
    for (int64_t b0 = 0; b0 < nb; b0 += kChunkBlocks) {
      const int64_t b1 = b0 + kChunkBlocks < nb ? b0 + kChunkBlocks : nb;
      for (int64_t r = rs; r < re; r++) {
        const BlockTQ2* row = w + r * nb;
        prefetch_bytes(row + kPrefetchRowsAhead * nb + b0, (b1 - b0) * (int64_t)sizeof(BlockTQ2));
        float* slot = sums + 8 * (r - rs);
        __m256 sumf = b0 == 0 ? _mm256_setzero_ps() : _mm256_load_ps(slot);
        for (int64_t b = b0; b < b1; b++) {
          const __m256i sumi = _mm256_sub_epi32(tq2_sums8<Dot>(row[b], q8 + 256 * b, cols),
                                                _mm256_loadu_si256((const __m256i*)(blocks.bsum + 8 * b)));
          const __m256 scale = _mm256_mul_ps(_mm256_loadu_ps(blocks.d + 8 * b), _mm256_set1_ps(_cvtsh_ss(row[b].d)));
          sumf = _mm256_add_ps(sumf, _mm256_mul_ps(_mm256_cvtepi32_ps(sumi), scale));
        }
        _mm256_store_ps(slot, sumf);
      }
    }
    for (int64_t r = rs; r < re; r++) {
      for (int k = 0; k < 8; k++) out[(t + k) * out_stride + r] = sums[8 * (r - rs) + k];
    }
  }
}

// Widest row (in TQ2_0 blocks) that the eight-row decode parks in L1: 16384 columns (8 KiB of
// vectors per 1024 columns); wider rows take the row-by-row loop.
constexpr int64_t kMaxDecodeBlocks = 64;

// Each output is Σ_b (float)(sumi_b − bsum_b) · (act_d_b · w_d_b) over blocks in order. Eight,
// then four (or a last three) tokens per pass over a row share each block's unpacked codes and
// one reduction.
template <class Dot>
void tq2_gemm_256(const BlockTQ2* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* q, const float* act_d,
                  const int32_t* act_bsum, int64_t T, float* out, int64_t out_stride) {
  const int64_t nb = cols / 256;
  const int64_t T8 = T - T % 8;
  for (int64_t t = 0; t < T8; t += 8) tq2_prefill8<Dot>(w, cols, r0, r1, q, act_d, act_bsum, t, out, out_stride);
  // Groups of four tokens, then a last group of three in the same pass (its fourth lane idle:
  // three one-token passes took longer than one four-token pass, 48 against 44 ms of bench-tq2
  // projections on avx2; two tokens still take the one-token loop twice, which was faster).
  const int64_t T4 = T % 4 == 3 ? T : T - T % 4;
  __m256i codes[8];
  for (int64_t t = T8; t < T4; t += 4) {
    const int n = T4 - t >= 4 ? 4 : 3;
    const int8_t* q0 = q + t * cols;
    // A missing fourth token reads the third's activations and scales; its lane is not stored.
    const int64_t t3 = n == 4 ? t + 3 : t + 2;
    for (int64_t r = r0; r < r1; r++) {
      const BlockTQ2* row = w + r * nb;
      __m128 sumf = _mm_setzero_ps();
      for (int64_t b = 0; b < nb; b++) {
        prefetch_bytes(row + kPrefetchRowsAhead * nb + b, (int64_t)sizeof(BlockTQ2));
        tq2_unpack(row[b], codes);
        const int64_t off = 256 * b;
        const __m256i s3 = n == 4 ? Dot::tq2(codes, q0 + 3 * cols + off) : _mm256_setzero_si256();
        const __m128i sumi =
            hsum4_i32(Dot::tq2(codes, q0 + off), Dot::tq2(codes, q0 + cols + off), Dot::tq2(codes, q0 + 2 * cols + off), s3);
        const __m128i bsum = _mm_setr_epi32(act_bsum[t * nb + b], act_bsum[(t + 1) * nb + b],
                                            act_bsum[(t + 2) * nb + b], act_bsum[t3 * nb + b]);
        const __m128 ad = _mm_setr_ps(act_d[t * nb + b], act_d[(t + 1) * nb + b], act_d[(t + 2) * nb + b],
                                      act_d[t3 * nb + b]);
        const __m128 scale = _mm_mul_ps(ad, _mm_set1_ps(_cvtsh_ss(row[b].d)));
        sumf = _mm_add_ps(sumf, _mm_mul_ps(_mm_cvtepi32_ps(_mm_sub_epi32(sumi, bsum)), scale));
      }
      alignas(16) float o[4];
      _mm_store_ps(o, sumf);
      for (int k = 0; k < n; k++) out[(t + k) * out_stride + r] = o[k];
    }
  }
  // The remaining tokens (decode: all of them). Eight rows per pass, one float lane per row:
  // each block's eight integer sums come out of one transpose-and-add (hsum8_i32) instead of
  // eight full reductions, and the block's float steps run lane-wise in the scalar kernel's
  // order (the same operations on the same values, so the same bits). The rows are still read
  // one after another, their per-block vectors parked in L1: visiting the eight rows block by
  // block (eight interleaved streams) halved the rate from memory on a Zen 5, though it ran
  // faster from cache. Leftover rows one by one.
  alignas(32) __m256i parked[kMaxDecodeBlocks * 8];
  alignas(16) uint16_t wd[kMaxDecodeBlocks * 8];
  // Each block's line is asked for decode_prefetch().other ahead (kernels.h: 2 KiB on Intel, 6 KiB
  // non-temporal elsewhere; one prefetch per 66-byte block).
  const int64_t ahead = decode_prefetch().other;
  const bool nta = decode_prefetch().non_temporal;
  for (int64_t t = T4; t < T; t++) {
    const int8_t* qt = q + t * cols;
    int64_t r = r0;
    for (; nb <= kMaxDecodeBlocks && r + 8 <= r1; r += 8) {
      for (int i = 0; i < 8; i++) {
        const BlockTQ2* row = w + (r + i) * nb;
        for (int64_t b = 0; b < nb; b++) {
          if (ahead > 0) prefetch_decode_line<_MM_HINT_T0>((const char*)(row + b) + ahead, nta);
          parked[b * 8 + i] = Dot::tq2_block_one(row[b].qs, qt + 256 * b);
          wd[b * 8 + i] = row[b].d;
        }
      }
      __m256 sumf = _mm256_setzero_ps();
      for (int64_t b = 0; b < nb; b++) {
        const __m256i sumi = _mm256_sub_epi32(hsum8_i32(parked + b * 8), _mm256_set1_epi32(act_bsum[t * nb + b]));
        const __m256 d = _mm256_mul_ps(_mm256_set1_ps(act_d[t * nb + b]), _mm256_cvtph_ps(_mm_load_si128((const __m128i*)(wd + b * 8))));
        sumf = _mm256_add_ps(sumf, _mm256_mul_ps(_mm256_cvtepi32_ps(sumi), d));
      }
      _mm256_storeu_ps(out + t * out_stride + r, sumf);
    }
    for (; r < r1; r++) {
      const BlockTQ2* row = w + r * nb;
      float sumf = 0.0f;
      for (int64_t b = 0; b < nb; b++) {
        if (ahead > 0) prefetch_decode_line<_MM_HINT_T0>((const char*)(row + b) + ahead, nta);
        const int32_t sumi = hsum_i32(Dot::tq2_block_one(row[b].qs, qt + 256 * b)) - act_bsum[t * nb + b];
        sumf += (float)sumi * (act_d[t * nb + b] * _cvtsh_ss(row[b].d));
      }
      out[t * out_stride + r] = sumf;
    }
  }
}
