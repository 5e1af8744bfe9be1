// ---------------------------------------------------------------------------------------------
// AVX2 (+FMA, F16C) kernels. The ternary dot products are exact integer sums (identical to the
// scalar path); float accumulation across blocks and in the F16 head uses vector lanes, so those
// results differ from the scalar order by rounding only (tested with named tolerances).
// Technique after bitnet.cpp's I2_S kernels (src/ggml-bitnet-mad.cpp) and llama.cpp's
// ggml-cpu/arch/x86/quants.c (ggml_vec_dot_tq2_0_q8_K).
// ---------------------------------------------------------------------------------------------
#include <algorithm>
#include <cmath>
#include <type_traits>
#include <utility>
#include "kernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")

namespace bitnet {
namespace {

#include "ternary_avx2.h"
#include "q6k_x86.h"
#include "tq1_x86.h"
#include "head_groups.h"

inline float hsum_f32(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// One token's 128 elements of one I2_S block (32 bytes of codes at pb, activations at qb): one
// shift by 4 serves two fields, fields 1 and 3 (bits 4-5 of the shifted and 0-1 of the plain
// byte) are codes and fields 0 and 2 masked with 0x0C codes × 4, so their products go to two
// int16 sums, in true units and in fours (a multiple of 4, shifted back exactly when widened).
// Per block one shift, four ANDs, four VPMADDUBSW and four VPADDW. The masks come by value: a
// reference would put them in memory, and every pin's memory clobber would reload them.
inline void i2s_block_one(const uint8_t* pb, const int8_t* qb, __m256i m3, __m256i m12, __m256i& sum16,
                          __m256i& fours16) {
  const __m256i p = _mm256_loadu_si256((const __m256i*)pb);
  const __m256i r = _mm256_srli_epi16(p, 4);
  const __m256i f0 = _mm256_maddubs_epi16(_mm256_and_si256(r, m12), _mm256_loadu_si256((const __m256i*)qb));
  const __m256i f1 = _mm256_maddubs_epi16(_mm256_and_si256(r, m3), _mm256_loadu_si256((const __m256i*)(qb + 32)));
  const __m256i f2 = _mm256_maddubs_epi16(_mm256_and_si256(p, m12), _mm256_loadu_si256((const __m256i*)(qb + 64)));
  const __m256i f3 = _mm256_maddubs_epi16(_mm256_and_si256(p, m3), _mm256_loadu_si256((const __m256i*)(qb + 96)));
  fours16 = _mm256_add_epi16(fours16, _mm256_add_epi16(f0, f2));
  sum16 = _mm256_add_epi16(sum16, _mm256_add_epi16(f1, f3));
}

// Σ u8 code × s8 activation with VPMADDUBSW: pairs into int16 (|lane| ≤ 2·3·128), summed in
// int16 while they cannot overflow, widened with VPMADDWD.
struct MaddubsDot {
  // N tokens; int16 sums for up to 8 blocks (≤ 8 blocks × 4 × 2 × 3 × 128 = 24576 < 32767).
  template <int N>
  static void i2s_row(const uint8_t* row, int64_t nb, const int8_t* q, int64_t cols, __m256i acc32[N]) {
    const __m256i ones = _mm256_set1_epi16(1);
    if constexpr (N == 1) {
      // One token, one row (decode runs rows in pairs, row_pair below; this loop takes the odd row
      // of a share). One token is bound by vector ALU ops as much as by memory: three shifts, four
      // ANDs, four VPMADDUBSW and four VPADDW per block keep a Zen 5's four vector pipes busy
      // (107-113 GMAC/s from L2 on one core, i.e. ~28 GB/s of codes, below one core's ~36 GB/s from
      // memory). One shift by 4 serves two fields instead: fields 1 and 3 (bits 4-5 of the shifted
      // and 0-1 of the plain byte) are codes, fields 0 and 2 masked with 0x0C are codes × 4. Their
      // products go to two int16 sums, one in true units and one in fours (exact: a multiple of 4
      // shifted by 2 loses no bit), widened every four blocks (fours: ≤ 4 × 2 × 2 × 12 × 128 =
      // 24576 < 32767 even for code 3); the four blocks unrolled: 120-125 GMAC/s.
      const __m256i m3 = _mm256_set1_epi8(3), m12 = _mm256_set1_epi8(12);
      __m256i ones32 = _mm256_setzero_si256(), fours32 = ones32;
      auto block = [&](int64_t b, __m256i& ones16, __m256i& fours16) {
        i2s_block_one(row + 32 * b, q + 128 * b, m3, m12, ones16, fours16);
      };
      // A second request, decode_prefetch().l2_avx2 ahead into L2 (4 KiB on Intel): on the Xeon
      // with AMX, its memory slower that day (probe 28 GB/s), the projections took 25.0 instead
      // of 26.6 ms a token, faster in 8 of 8 rounds (bench/ab-addons.mjs; 2 KiB 25.3, 8 KiB 26.2),
      // and bench/decode-sequence.sh streamed 20.1-20.8 against 16.4-16.8 GB/s. (On a faster
      // day the VNNI paths' 16 KiB cost this loop 7%; 16 KiB still streams 18.6 here.)
      const int64_t ahead = decode_prefetch().i2s, far = decode_prefetch().l2_avx2;
      const bool nta = decode_prefetch().non_temporal;
      int64_t b = 0;
      for (; b + 4 <= nb; b += 4) {
        prefetch_decode_line<_MM_HINT_T0>(row + 32 * b + ahead, nta);
        prefetch_decode_line<_MM_HINT_T0>(row + 32 * b + ahead + 64, nta);
        if (far > 0) {
          _mm_prefetch((const char*)(row + 32 * b + far), _MM_HINT_T1);
          _mm_prefetch((const char*)(row + 32 * b + far + 64), _MM_HINT_T1);
        }
        __m256i ones16 = _mm256_setzero_si256(), fours16 = ones16;
        // Block by block (pin, ternary_avx2.h): left free, GCC interleaves the four blocks,
        // runs out of the 16 registers and spills sums and constants to the stack every pass;
        // pinned between blocks, everything stays in registers and the loop streamed 5-6% more
        // (28.9-29.5 against 26.5-28.0 GB/s, bench/decode-sequence.sh avx2, on an Intel Xeon;
        // a pin after the fourth block as well measured 27.3-28.2).
        block(b, ones16, fours16);
        pin(ones16);
        pin(fours16);
        block(b + 1, ones16, fours16);
        pin(ones16);
        pin(fours16);
        block(b + 2, ones16, fours16);
        pin(ones16);
        pin(fours16);
        block(b + 3, ones16, fours16);
        fours32 = _mm256_add_epi32(fours32, _mm256_madd_epi16(fours16, ones));
        ones32 = _mm256_add_epi32(ones32, _mm256_madd_epi16(ones16, ones));
      }
      if (b < nb) {
        __m256i ones16 = _mm256_setzero_si256(), fours16 = ones16;
        for (; b < nb; b++) block(b, ones16, fours16);
        fours32 = _mm256_add_epi32(fours32, _mm256_madd_epi16(fours16, ones));
        ones32 = _mm256_add_epi32(ones32, _mm256_madd_epi16(ones16, ones));
      }
      acc32[0] = _mm256_add_epi32(ones32, _mm256_srai_epi32(fours32, 2));
      return;
    }
    // A few tokens read the rows one after another: each line asked for kPrefetchRowsAhead
    // rows ahead, as the eight-token passes do (weight_prefetch.h).
    const int64_t ahead = 32 * nb * kPrefetchRowsAhead;
    for (int k = 0; k < N; k++) acc32[k] = _mm256_setzero_si256();
    for (int64_t b0 = 0; b0 < nb; b0 += kI2sChunkBlocks) {
      const int64_t b1 = b0 + kI2sChunkBlocks < nb ? b0 + kI2sChunkBlocks : nb;
      __m256i acc16[N];
      for (int k = 0; k < N; k++) acc16[k] = _mm256_setzero_si256();
      for (int64_t b = b0; b < b1; b++) {
        if ((b & 1) == 0) _mm_prefetch((const char*)(row + 32 * b + ahead), _MM_HINT_T0);
        __m256i c[4];
        i2s_unpack(row + 32 * b, c);
        for (int k = 0; k < N; k++) add4(acc16[k], c, q + k * cols + 128 * b);
      }
      for (int k = 0; k < N; k++) acc32[k] = _mm256_add_epi32(acc32[k], _mm256_madd_epi16(acc16[k], ones));
    }
  }

  // One token over two rows at a time (ra and the row after it), their blocks alternating and
  // each row asking for its own lines ahead: two streams of lines per thread instead of one. The
  // vector operations per block are i2s_row<1>'s, but from memory the two streams kept more in
  // flight. On a Xeon with AMX (bench/decode-sequence.sh avx2, 2 threads, bench-i2s): 26.0-27.1
  // against 24.2-25.9 GB/s for one row at a time; asking for the two rows' lines as one run, in
  // the order DpbusdDot does, streamed 24.7-24.8 against 26.6-27.1. In the model
  // (bench/ab-addons.mjs, builds alternating): projections 21.35 against 23.09 ms a token, 12 of
  // 12 rounds. The fours of four blocks (≤ 4 × 2 × 2 × 12 × 128 = 24576) are shifted back
  // exactly into the row's int16 sum, which widens every eight blocks (≤ 8 × (1536 + 1536) =
  // 24576, code 3 too), where folding every two blocks and widening every four cost 1.4% in the
  // model (20.80 against 21.10 ms, 11 of 12 rounds; from L2 88 against 84-86 GMAC/s). The
  // requests go out a line at a time, every other block: all four of a four-block step at its
  // start ran slower in the model (21.47 against 21.04 ms) though no slower from L2.
  //
  // A request distance for row_pair: pairs lie back to back (2 × row_bytes each), so a whole
  // number of pairs ahead each row asks for the same byte of the same row in a later pair, and
  // both rows' requests run equally far ahead of their reads whatever the row length. Any other
  // distance can land one row's requests in the other row just ahead of its reads: 2 KiB past a
  // 1728-byte row (the down projection's 6912 columns) is 320 bytes into the next, and one thread
  // streamed a matrix of such rows at 13.9-14.0 GB/s against 15.8-15.9 for 2560 columns
  // (bench/decode-sequence.sh avx2 1 30 one,wide; the same from L2). The nearest whole number of
  // pairs, at least one (a distance of 0 stays 0, as for the other loops). Two threads, 2B-4T
  // shapes, Xeon with AMX: 30.0-30.1 GB/s against 27.9-28.1 with the byte distances (`steal`;
  // `wide` 30.0-30.6 against 27.5-27.7), and in the model the projections took 18.86 instead of
  // 20.12 ms a token (8 of 8 rounds, with the L2 request 6 KiB ahead: kernels.h). With no L1
  // request (BITNET_DECODE_PREFETCH_BYTES=0) the pairs streamed 27.8-28.1 against 29.8-30.0.
  static int64_t pair_lead(int64_t lead, int64_t row_bytes) {
    const int64_t pair = 2 * row_bytes;
    return lead <= 0 ? 0 : std::max<int64_t>(1, (lead + pair / 2) / pair) * pair;
  }
  template <bool Nta, bool Far>
  static void row_pair(const uint8_t* ra, int64_t nb, const int8_t* q, int64_t ahead, int64_t far, __m256i& acc_a,
                       __m256i& acc_b) {
    const uint8_t* rb = ra + 32 * nb;
    const __m256i m3 = _mm256_set1_epi8(3), m12 = _mm256_set1_epi8(12), ones = _mm256_set1_epi16(1);
    // The line `ahead` bytes past pb into L1 (non-temporal off Intel) and the one `far` past it
    // into L2 (whole pairs: row_pair_plan).
    auto request = [ahead, far](const uint8_t* pb) {
      if constexpr (Nta) {
        _mm_prefetch((const char*)(pb + ahead), _MM_HINT_NTA);
      } else {
        _mm_prefetch((const char*)(pb + ahead), _MM_HINT_T0);
      }
      if constexpr (Far) _mm_prefetch((const char*)(pb + far), _MM_HINT_T1);
    };
    // Four blocks (two lines) of each row, the rows' blocks alternating (pin: ternary_avx2.h). The
    // masks are captured by value (i2s_block_one: a reference would put them in memory).
    auto four = [m3, m12, request](const uint8_t* pa, const uint8_t* pb, const int8_t* qb, __m256i& sa, __m256i& sb) {
      __m256i fa = _mm256_setzero_si256(), fb = fa;
      for (int k = 0; k < 4; k++) {
        if (k % 2 == 0) {
          request(pa + 32 * k);
          request(pb + 32 * k);
        }
        i2s_block_one(pa + 32 * k, qb + 128 * k, m3, m12, sa, fa);
        i2s_block_one(pb + 32 * k, qb + 128 * k, m3, m12, sb, fb);
        if (k < 3) {
          pin(sa);
          pin(sb);
          pin(fa);
          pin(fb);
        }
      }
      sa = _mm256_add_epi16(sa, _mm256_srai_epi16(fa, 2));
      sb = _mm256_add_epi16(sb, _mm256_srai_epi16(fb, 2));
    };
    acc_a = _mm256_setzero_si256();
    acc_b = acc_a;
    int64_t b = 0;
    for (; b + 8 <= nb; b += 8) {
      __m256i sa = _mm256_setzero_si256(), sb = sa;
      four(ra + 32 * b, rb + 32 * b, q + 128 * b, sa, sb);
      pin(sa);
      pin(sb);
      four(ra + 32 * b + 128, rb + 32 * b + 128, q + 128 * b + 512, sa, sb);
      acc_a = _mm256_add_epi32(acc_a, _mm256_madd_epi16(sa, ones));
      acc_b = _mm256_add_epi32(acc_b, _mm256_madd_epi16(sb, ones));
    }
    __m256i sa = _mm256_setzero_si256(), sb = sa;
    if (b + 4 <= nb) {
      four(ra + 32 * b, rb + 32 * b, q + 128 * b, sa, sb);
      b += 4;
    }
    // The last one to three blocks (≤ 4 × 3072 + 3 × 1536 + 3 × 6144 / 4 in int16).
    __m256i fa = _mm256_setzero_si256(), fb = fa;
    for (; b < nb; b++) {
      request(ra + 32 * b);
      request(rb + 32 * b);
      i2s_block_one(ra + 32 * b, q + 128 * b, m3, m12, sa, fa);
      i2s_block_one(rb + 32 * b, q + 128 * b, m3, m12, sb, fb);
    }
    acc_a = _mm256_add_epi32(acc_a, _mm256_madd_epi16(_mm256_add_epi16(sa, _mm256_srai_epi16(fa, 2)), ones));
    acc_b = _mm256_add_epi32(acc_b, _mm256_madd_epi16(_mm256_add_epi16(sb, _mm256_srai_epi16(fb, 2)), ones));
  }
  // The request distances of a call's row pairs, worked out once per call (two divisions per
  // pair cost the loop 3% from L2).
  static RowPairPlan row_pair_plan(int64_t nb) {
    const DecodePrefetch& d = decode_prefetch();
    return {pair_lead(d.i2s, 32 * nb), d.l2_avx2 > 0 ? pair_lead(d.l2_avx2, 32 * nb) : 0, d.non_temporal};
  }
  static void i2s_row_pair(const RowPairPlan& plan, const uint8_t* ra, int64_t nb, const int8_t* q, __m256i& acc_a,
                           __m256i& acc_b) {
    const int64_t ahead = plan.ahead, far = plan.far;
    if (plan.non_temporal) {
      far > 0 ? row_pair<true, true>(ra, nb, q, ahead, far, acc_a, acc_b) : row_pair<true, false>(ra, nb, q, ahead, far, acc_a, acc_b);
    } else {
      far > 0 ? row_pair<false, true>(ra, nb, q, ahead, far, acc_a, acc_b)
              : row_pair<false, false>(ra, nb, q, ahead, far, acc_a, acc_b);
    }
  }

  // One token's 128 elements: four VPMADDUBSW summed in int16. An accumulator may take 10 I2_S
  // blocks (≤ 10 × 4 × 768 = 30720 < 32767, whatever the codes) or one TQ2_0 block, then sums8
  // widens it. Ten rather than eight: a 2560-column row is two chunks instead of three, one
  // widening and reduction (sums8) fewer per row and group of eight tokens, and the eight-token
  // pass ran 1-1.5% faster (bench/gemm.sh avx2 6912 2560 128: 113.3-113.9 against 111.8-112.4
  // GMAC/s on an Intel Xeon; 2560 × 6912 unchanged).
  static constexpr int64_t kI2sChunkBlocks = 10;
  static void add4(__m256i& acc, const __m256i c[4], const int8_t* q) {
    const __m256i s01 = _mm256_add_epi16(_mm256_maddubs_epi16(c[0], _mm256_loadu_si256((const __m256i*)q)),
                                         _mm256_maddubs_epi16(c[1], _mm256_loadu_si256((const __m256i*)(q + 32))));
    const __m256i s23 = _mm256_add_epi16(_mm256_maddubs_epi16(c[2], _mm256_loadu_si256((const __m256i*)(q + 64))),
                                         _mm256_maddubs_epi16(c[3], _mm256_loadu_si256((const __m256i*)(q + 96))));
    acc = _mm256_add_epi16(acc, _mm256_add_epi16(s01, s23));
  }
  static __m256i sums8(__m256i acc[8]) {
    const __m256i ones = _mm256_set1_epi16(1);
    for (int k = 0; k < 8; k++) acc[k] = _mm256_madd_epi16(acc[k], ones);
    return hsum8_i32(acc);
  }

  // One TQ2_0 block: eight VPMADDUBSW summed in int16 (≤ 8 × 2 × 2 × 128 = 4096), widened once.
  static __m256i tq2(const __m256i codes[8], const int8_t* q) {
    __m256i p = _mm256_maddubs_epi16(codes[0], _mm256_loadu_si256((const __m256i*)q));
    for (int j = 1; j < 8; j++) {
      p = _mm256_add_epi16(p, _mm256_maddubs_epi16(codes[j], _mm256_loadu_si256((const __m256i*)(q + 32 * j))));
    }
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
  }
  static __m256i tq2_one(const __m256i codes[8], const int8_t* q) { return tq2(codes, q); }

  // One TQ2_0 block for one token (decode), straight from its code bytes: one shift per 32
  // bytes serves two fields, as in i2s_row<1> (fields 0 and 2 masked with 3 are codes, fields 1
  // and 3 masked with 12 are codes × 4, summed apart and shifted back exactly: a multiple of 4;
  // |fours| ≤ 4 × 2 × 12 × 128 = 12288 in int16). Per block 2 shifts, 8 ANDs and one VPSRAW
  // instead of tq2_unpack's 6 shifts and 8 ANDs.
  static __m256i tq2_block_one(const uint8_t* qs, const int8_t* q) {
    const __m256i m3 = _mm256_set1_epi8(3), m12 = _mm256_set1_epi8(12);
    __m256i ones16 = _mm256_setzero_si256(), fours16 = ones16;
    for (int h = 0; h < 2; h++) {
      const __m256i p = _mm256_loadu_si256((const __m256i*)(qs + 32 * h));
      const __m256i r = _mm256_srli_epi16(p, 4);
      const int8_t* qh = q + 128 * h;
      const __m256i f0 = _mm256_maddubs_epi16(_mm256_and_si256(p, m3), _mm256_loadu_si256((const __m256i*)qh));
      const __m256i f1 = _mm256_maddubs_epi16(_mm256_and_si256(p, m12), _mm256_loadu_si256((const __m256i*)(qh + 32)));
      const __m256i f2 = _mm256_maddubs_epi16(_mm256_and_si256(r, m3), _mm256_loadu_si256((const __m256i*)(qh + 64)));
      const __m256i f3 = _mm256_maddubs_epi16(_mm256_and_si256(r, m12), _mm256_loadu_si256((const __m256i*)(qh + 96)));
      ones16 = _mm256_add_epi16(ones16, _mm256_add_epi16(f0, f2));
      fours16 = _mm256_add_epi16(fours16, _mm256_add_epi16(f1, f3));
    }
    return _mm256_madd_epi16(_mm256_add_epi16(ones16, _mm256_srai_epi16(fours16, 2)), _mm256_set1_epi16(1));
  }
};

static_assert(HasRowPairs<MaddubsDot>::value, "the one-token I2_S pass runs MaddubsDot rows in pairs");

void i2s_gemm_avx2(const uint8_t* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* q, const float* act_scale,
                   const int32_t* act_sum, float w_scale, int64_t T, float* out, int64_t out_stride) {
  i2s_gemm_256<MaddubsDot>(w, cols, r0, r1, q, act_scale, act_sum, w_scale, T, out, out_stride);
}

void tq1_gemm_avx2(const BlockTQ1* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* q, const float* act_d,
                   const int32_t* act_bsum, int64_t T, float* out, int64_t out_stride) {
  tq1_gemm_rows(w, cols, r0, r1, q, act_d, act_bsum, T, out, out_stride,
                [](const __m256i codes[8], const int8_t* qb) { return hsum_i32(MaddubsDot::tq2_one(codes, qb)); });
}

void tq2_gemm_avx2(const BlockTQ2* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* q, const float* act_d,
                   const int32_t* act_bsum, int64_t T, float* out, int64_t out_stride) {
  tq2_gemm_256<MaddubsDot>(w, cols, r0, r1, q, act_d, act_bsum, T, out, out_stride);
}

template <bool Prefetch>
static void f16_rows_avx2(const uint16_t* w, int64_t cols, int64_t r0, int64_t r1, const float* x, int64_t T, float* out,
                          int64_t out_stride) {
  const int64_t ahead = decode_prefetch().head;  // bytes; into L2 on Intel, non-temporal elsewhere (kernels.h)
  const bool nta = decode_prefetch().non_temporal;
  for (int64_t r = r0; r < r1; r++) {
    const uint16_t* row = w + r * cols;
    int64_t t0 = 0;
    // Two tokens per pass: each weight vector is converted once for both (the conversion is
    // two of the three operations per eight weights). Per token the same four accumulators over
    // the same columns and the same reduction as below, so its logits keep their bits whatever
    // the number of tokens in the step.
    for (; t0 + 2 <= T; t0 += 2) {
      const float* x0 = x + t0 * cols;
      const float* x1 = x0 + cols;
      __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
      int64_t c = 0;
      for (; c + 32 <= cols; c += 32) {
        if constexpr (Prefetch) prefetch_decode_line<_MM_HINT_T1>((const char*)(row + c) + ahead, nta);
        const __m256 w0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(row + c)));
        const __m256 w1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(row + c + 8)));
        const __m256 w2 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(row + c + 16)));
        const __m256 w3 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(row + c + 24)));
        a0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x0 + c), a0);
        a1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x0 + c + 8), a1);
        a2 = _mm256_fmadd_ps(w2, _mm256_loadu_ps(x0 + c + 16), a2);
        a3 = _mm256_fmadd_ps(w3, _mm256_loadu_ps(x0 + c + 24), a3);
        b0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x1 + c), b0);
        b1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x1 + c + 8), b1);
        b2 = _mm256_fmadd_ps(w2, _mm256_loadu_ps(x1 + c + 16), b2);
        b3 = _mm256_fmadd_ps(w3, _mm256_loadu_ps(x1 + c + 24), b3);
      }
      float s0 = hsum_f32(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
      float s1 = hsum_f32(_mm256_add_ps(_mm256_add_ps(b0, b1), _mm256_add_ps(b2, b3)));
      for (; c < cols; c++) {
        const float wc = f16_to_f32(row[c]);
        s0 += wc * x0[c];
        s1 += wc * x1[c];
      }
      out[t0 * out_stride + r] = s0;
      out[(t0 + 1) * out_stride + r] = s1;
    }
    for (int64_t t = t0; t < T; t++) {
      const float* xt = x + t * cols;
      __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
      int64_t c = 0;
      for (; c + 32 <= cols; c += 32) {
        if constexpr (Prefetch) prefetch_decode_line<_MM_HINT_T1>((const char*)(row + c) + ahead, nta);
        a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(row + c))), _mm256_loadu_ps(xt + c), a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(row + c + 8))), _mm256_loadu_ps(xt + c + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(row + c + 16))), _mm256_loadu_ps(xt + c + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(row + c + 24))), _mm256_loadu_ps(xt + c + 24), a3);
      }
      float acc = hsum_f32(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
      for (; c < cols; c++) {
        acc += f16_to_f32(row[c]) * xt[c];
      }
      out[t * out_stride + r] = acc;
    }
  }
}

void f16_gemm_avx2(const uint16_t* w, int64_t cols, int64_t r0, int64_t r1, const float* x, int64_t T, float* out,
                   int64_t out_stride) {
  if (decode_prefetch().head > 0) {
    f16_rows_avx2<true>(w, cols, r0, r1, x, T, out, out_stride);
  } else {
    f16_rows_avx2<false>(w, cols, r0, r1, x, T, out, out_stride);
  }
}

void q8_0_gemm_avx2(const BlockQ8_0* w, int64_t cols, int64_t r0, int64_t r1, const BlockQ8_0* xq, int64_t T,
                    float* out, int64_t out_stride) {
  const int64_t nb = cols / 32;
  for (int64_t r = r0; r < r1; r++) {
    const BlockQ8_0* row = w + r * nb;
    for (int64_t t = 0; t < T; t++) {
      const BlockQ8_0* xt = xq + t * nb;
      __m256 acc = _mm256_setzero_ps();
      for (int64_t b = 0; b < nb; b++) {
        const __m256i wq = _mm256_loadu_si256((const __m256i*)row[b].qs);
        const __m256i xv = _mm256_loadu_si256((const __m256i*)xt[b].qs);
        // s8 × s8 via the sign trick: |w| (u8) × (x with w's sign).
        const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(wq, wq), _mm256_sign_epi8(xv, wq));
        const __m256 s = _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
        acc = _mm256_fmadd_ps(s, _mm256_set1_ps(_cvtsh_ss(row[b].d) * _cvtsh_ss(xt[b].d)), acc);  // F16C
      }
      out[t * out_stride + r] = hsum_f32(acc);
    }
  }
}

// h with its 16-bit lane `lane` (0, 2, 4 or 6: an odd tail's last position) replaced by v.
inline __m128i insert_u16(__m128i h, uint16_t v, int lane) {
  switch (lane) {
    case 0: return _mm_insert_epi16(h, v, 0);
    case 2: return _mm_insert_epi16(h, v, 2);
    case 4: return _mm_insert_epi16(h, v, 4);
    default: return _mm_insert_epi16(h, v, 6);
  }
}

// Scores of NQ heads sharing one KV head, 8·V positions at a time: lane j of head h accumulates
// Σ_i q[h][i]·k[i][j] in i order (exact scalar order per lane; FMA: kernels.h). Each key load
// and conversion serves all NQ heads, and the NQ × V chains of dependent adds run side by side
// (eight accumulators of 16 registers: V = 4 for one or two heads, which uses the whole 64-byte
// line of each key row, V = 2 for three or four).
template <int NQ>
void scores_heads_avx2(const float* q, const uint16_t* kt, int64_t stride, int64_t hd, int64_t len, float* scores,
                       int64_t ss) {
  constexpr int V = NQ <= 2 ? 4 : 2;
  int64_t j = 0;
  for (; j + 8 * V <= len; j += 8 * V) {
    __m256 acc[NQ][V];
    for (int h = 0; h < NQ; h++) {
      for (int v = 0; v < V; v++) acc[h][v] = _mm256_setzero_ps();
    }
    // Each key row's line asked for kKeyPrefetchBytes ahead as its first half is read (kernels.h).
    const bool ask = (j & 31) == 0;
    for (int64_t i = 0; i < hd; i++) {
      const uint16_t* row = kt + i * stride + j;
      if (ask) _mm_prefetch((const char*)row + kKeyPrefetchBytes, _MM_HINT_T1);
      __m256 k[V];
      for (int v = 0; v < V; v++) k[v] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(row + 8 * v)));
      for (int h = 0; h < NQ; h++) {
        const __m256 qi = _mm256_set1_ps(q[h * hd + i]);
        for (int v = 0; v < V; v++) acc[h][v] = _mm256_fmadd_ps(qi, k[v], acc[h][v]);
      }
    }
    for (int h = 0; h < NQ; h++) {
      for (int v = 0; v < V; v++) _mm256_storeu_ps(scores + h * ss + j + 8 * v, acc[h][v]);
    }
  }
  // The last positions, 8 lanes at a time. A partial group loads its even part by a masked
  // 32-bit load (which never touches the row beyond len) and inserts an odd last position
  // alone; the other lanes are zeros whose sums are not stored. A scalar tail (up to 7
  // positions × hd dependent adds with software f16 conversions) took most of a short decode
  // step's attention.
  for (; j < len; j += 8) {
    const int rem = (int)std::min<int64_t>(8, len - j);
    const __m128i pairs = _mm_cmpgt_epi32(_mm_set1_epi32(rem / 2), _mm_setr_epi32(0, 1, 2, 3));
    __m256 s[NQ];
    for (int h = 0; h < NQ; h++) s[h] = _mm256_setzero_ps();
    for (int64_t i = 0; i < hd; i++) {
      const uint16_t* row = kt + i * stride + j;
      __m128i k16;
      if (rem == 8) {
        k16 = _mm_loadu_si128((const __m128i*)row);
      } else {
        k16 = _mm_maskload_epi32((const int*)row, pairs);
        if (rem & 1) k16 = insert_u16(k16, row[rem - 1], rem - 1);
      }
      const __m256 k = _mm256_cvtph_ps(k16);
      for (int h = 0; h < NQ; h++) s[h] = _mm256_fmadd_ps(_mm256_set1_ps(q[h * hd + i]), k, s[h]);
    }
    for (int h = 0; h < NQ; h++) {
      if (rem == 8) {
        _mm256_storeu_ps(scores + h * ss + j, s[h]);
      } else {
        alignas(32) float lanes[8];
        _mm256_store_ps(lanes, s[h]);
        for (int r = 0; r < rem; r++) scores[h * ss + j + r] = lanes[r];
      }
    }
  }
}

// Up to four heads per pass over the keys.
void attn_scores_avx2(const float* q, int64_t nq, const uint16_t* kt, int64_t stride, int64_t hd, int64_t len,
                      float* scores, int64_t score_stride) {
  for_head_groups(q, nq, hd, scores, score_stride, [&](auto heads, const float* qh, float* sh) {
    scores_heads_avx2<decltype(heads)::value>(qh, kt, stride, hd, len, sh, score_stride);
  });
}

// Output lanes over i, each summing in j order (exact). 64 lanes per pass walk the positions
// once for eight accumulators instead of once per 8 lanes. With `carry`, out holds the sums over
// earlier positions and they continue from there (attn_values_avx2 walks positions in tiles);
// `next` as in values_heads_avx2.
void attn_values_one_avx2(const float* p, const uint16_t* v, int64_t kvw, int64_t hd, int64_t len, float* out,
                          bool carry, const uint16_t* next = nullptr) {
  auto start = [carry](const float* o) { return carry ? _mm256_loadu_ps(o) : _mm256_setzero_ps(); };
  int64_t i = 0;
  for (; i + 64 <= hd; i += 64) {
    __m256 a[8];
    for (int c = 0; c < 8; c++) a[c] = start(out + i + 8 * c);
    for (int64_t j = 0; j < len; j++) {
      const __m256 pj = _mm256_set1_ps(p[j]);
      const uint16_t* row = v + j * kvw + i;
      if (next != nullptr) {
        for (int c = 0; c < 2; c++) _mm_prefetch((const char*)(next + j * kvw + i + 32 * c), _MM_HINT_T0);
      }
      for (int c = 0; c < 8; c++) {
        a[c] = _mm256_fmadd_ps(pj, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(row + 8 * c))), a[c]);
      }
    }
    for (int c = 0; c < 8; c++) _mm256_storeu_ps(out + i + 8 * c, a[c]);
  }
  for (; i + 8 <= hd; i += 8) {
    __m256 a = start(out + i);
    for (int64_t j = 0; j < len; j++) {
      const __m256 vv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(v + j * kvw + i)));
      a = _mm256_fmadd_ps(_mm256_set1_ps(p[j]), vv, a);
    }
    _mm256_storeu_ps(out + i, a);
  }
  for (; i < hd; i++) {
    float a = carry ? out[i] : 0.0f;
    for (int64_t j = 0; j < len; j++) a += p[j] * f16_to_f32(v[j * kvw + i]);
    out[i] = a;
  }
}

// NQ heads against one KV head's values, 16 output lanes per pass: each V row's f16 values are
// converted once for all NQ heads (2 × NQ accumulators ≤ 8 of 16 registers), where one head at a
// time converted them once per head (a conversion is two of the five operations per 8 values and
// head). Each lane still sums in j order (FMA, exact: kernels.h): the same bits as
// attn_values_one_avx2. `carry` as there. With `next`, the next tile's rows (as many, kvw apart)
// are asked for L1 as this one's are read: its first pass over output lanes reads only every
// fourth line of a 128-wide row and would otherwise wait on memory for each.
template <int NQ>
void values_heads_avx2(const float* p, int64_t ps, const uint16_t* v, int64_t kvw, int64_t hd, int64_t len, float* out,
                       bool carry, const uint16_t* next) {
  if constexpr (NQ == 1) {
    attn_values_one_avx2(p, v, kvw, hd, len, out, carry, next);
    return;
  }
  auto start = [carry](const float* o) { return carry ? _mm256_loadu_ps(o) : _mm256_setzero_ps(); };
  int64_t i = 0;
  for (; i + 16 <= hd; i += 16) {
    __m256 a[NQ][2];
    for (int h = 0; h < NQ; h++) {
      a[h][0] = start(out + h * hd + i);
      a[h][1] = start(out + h * hd + i + 8);
    }
    for (int64_t j = 0; j < len; j++) {
      const uint16_t* row = v + j * kvw + i;
      if (next != nullptr) _mm_prefetch((const char*)(next + j * kvw + i), _MM_HINT_T0);
      const __m256 v0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)row));
      const __m256 v1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(row + 8)));
      for (int h = 0; h < NQ; h++) {
        const __m256 pj = _mm256_set1_ps(p[h * ps + j]);
        a[h][0] = _mm256_fmadd_ps(pj, v0, a[h][0]);
        a[h][1] = _mm256_fmadd_ps(pj, v1, a[h][1]);
      }
    }
    for (int h = 0; h < NQ; h++) {
      _mm256_storeu_ps(out + h * hd + i, a[h][0]);
      _mm256_storeu_ps(out + h * hd + i + 8, a[h][1]);
    }
  }
  if (i < hd) {
    // The last hd % 16 lanes: one head at a time.
    for (int h = 0; h < NQ; h++) attn_values_one_avx2(p + h * ps, v + i, kvw, hd - i, len, out + h * hd + i, carry);
  }
}

// Up to four heads per pass over the values (values_heads_avx2), the positions in tiles that
// stay in L1 while the passes over output lanes read them again (for_value_tiles).
void attn_values_avx2(const float* p, int64_t nq, int64_t p_stride, const uint16_t* v, int64_t kvw, int64_t hd,
                      int64_t len, float* out, bool carry) {
  for_value_tiles(p, nq, p_stride, v, kvw, hd, len, out, carry,
                  [&](auto heads, const float* ph, const uint16_t* vt, int64_t n, float* oh, bool continues, const uint16_t* next) {
                    values_heads_avx2<decltype(heads)::value>(ph, p_stride, vt, kvw, hd, n, oh, continues, next);
                  });
}

double sum_squares_avx2(const float* x, int64_t n) {
  __m256d a = _mm256_setzero_pd(), b = a;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    const __m256 sq = _mm256_mul_ps(v, v);
    a = _mm256_add_pd(a, _mm256_cvtps_pd(_mm256_castps256_ps128(sq)));
    b = _mm256_add_pd(b, _mm256_cvtps_pd(_mm256_extractf128_ps(sq, 1)));
  }
  __m256d s = _mm256_add_pd(a, b);
  __m128d h = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
  double sum = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
  for (; i < n; i++) sum += (double)(x[i] * x[i]);
  return sum;
}

// exp in double precision, 4 lanes (see kernels_avx512.cc exp_pd).
inline __m256d exp_pd4(__m256d x) {
  x = _mm256_max_pd(_mm256_min_pd(x, _mm256_set1_pd(709.0)), _mm256_set1_pd(-708.0));
  const __m256d k = _mm256_round_pd(_mm256_mul_pd(x, _mm256_set1_pd(1.4426950408889634)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256d r = _mm256_fnmadd_pd(k, _mm256_set1_pd(6.93147180369123816490e-01), x);
  r = _mm256_fnmadd_pd(k, _mm256_set1_pd(1.90821492927058770002e-10), r);
  static const double c[] = {1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0, 1.0 / 362880.0,
                             1.0 / 40320.0,      1.0 / 5040.0,      1.0 / 720.0,      1.0 / 120.0,      1.0 / 24.0,
                             1.0 / 6.0,          0.5,               1.0,              1.0};
  __m256d p = _mm256_set1_pd(c[0]);
  for (int i = 1; i < 14; i++) p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(c[i]));
  // 2^k through the exponent bits (k is within the normal range after the clamp).
  const __m256i e = _mm256_slli_epi64(_mm256_add_epi64(_mm256_cvtepi32_epi64(_mm256_cvtpd_epi32(k)), _mm256_set1_epi64x(1023)), 52);
  return _mm256_mul_pd(p, _mm256_castsi256_pd(e));
}

void exp_avx2(const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const __m256d v = _mm256_cvtps_pd(_mm_loadu_ps(x + i));
    _mm_storeu_ps(y + i, _mm256_cvtpd_ps(exp_pd4(v)));
  }
  for (; i < n; i++) y[i] = (float)std::exp((double)x[i]);
}

// kernels.h softmax_exp: the maximum of s·scale over two vectors of lanes (VMAXPS returns its
// second operand, the running maximum, for a NaN lane: std::max's NaN rule), then the
// differences and their exps, two vectors of four doubles at a time.
void softmax_exp_avx2(float* s, int64_t n, float scale) {
  const __m256 vs = _mm256_set1_ps(scale);
  __m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    m0 = _mm256_max_ps(_mm256_mul_ps(_mm256_loadu_ps(s + i), vs), m0);
    m1 = _mm256_max_ps(_mm256_mul_ps(_mm256_loadu_ps(s + i + 8), vs), m1);
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, _mm256_max_ps(m0, m1));
  float max = lanes[0];
  for (int k = 1; k < 8; k++) max = std::max(max, lanes[k]);
  for (; i < n; i++) max = std::max(max, s[i] * scale);
  const __m256 vm = _mm256_set1_ps(max);
  i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 x = _mm256_sub_ps(_mm256_mul_ps(_mm256_loadu_ps(s + i), vs), vm);
    const __m128 lo = _mm256_cvtpd_ps(exp_pd4(_mm256_cvtps_pd(_mm256_castps256_ps128(x))));
    const __m128 hi = _mm256_cvtpd_ps(exp_pd4(_mm256_cvtps_pd(_mm256_extractf128_ps(x, 1))));
    _mm256_storeu_ps(s + i, _mm256_set_m128(hi, lo));
  }
  for (; i + 4 <= n; i += 4) {
    const __m128 x = _mm_sub_ps(_mm_mul_ps(_mm_loadu_ps(s + i), _mm256_castps256_ps128(vs)), _mm256_castps256_ps128(vm));
    _mm_storeu_ps(s + i, _mm256_cvtpd_ps(exp_pd4(_mm256_cvtps_pd(x))));
  }
  for (; i < n; i++) s[i] = (float)std::exp((double)(s[i] * scale - max));
}

void relu2_glu_avx2(const float* g, const float* u, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 r = _mm256_max_ps(_mm256_loadu_ps(g + i), _mm256_setzero_ps());
    _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(r, r), _mm256_loadu_ps(u + i)));
  }
  for (; i < n; i++) {
    const float r = g[i] > 0.0f ? g[i] : 0.0f;
    y[i] = (r * r) * u[i];
  }
}

// Largest |x| of n floats (n a multiple of 8); NaN lanes are ignored, as std::max does
// (VMAXPS returns its second operand when either is NaN).
inline float abs_max8(const float* x, int64_t n) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 m = _mm256_setzero_ps();
  for (int64_t i = 0; i < n; i += 8) m = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)), m);
  __m128 r = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
  r = _mm_max_ps(r, _mm_movehl_ps(r, r));
  r = _mm_max_ss(r, _mm_movehdup_ps(r));
  return _mm_cvtss_f32(r);
}

// nearest_int(x·s) for 8 lanes with the scalar's own bit trick (add 1.5·2^23, keep the low
// mantissa bits), so every input gives the scalar's integer: ties to even, and the same values
// for NaN and infinite products (VCVTPS2DQ would give INT_MIN for those).
inline __m256i nearest_int8(__m256 x, __m256 s) {
  const __m256i bits = _mm256_castps_si256(_mm256_add_ps(_mm256_mul_ps(x, s), _mm256_set1_ps(12582912.f)));
  return _mm256_sub_epi32(_mm256_and_si256(bits, _mm256_set1_epi32(0x007fffff)), _mm256_set1_epi32(0x00400000));
}

// The low bytes of four vectors of int32 as 32 int8 in order: the (int8_t) cast of the scalar
// code. Masked to 0..255 first, so the saturating packs (which work per 128-bit lane) are exact.
inline __m256i pack_i8(__m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i low = _mm256_set1_epi32(0xff);
  const __m256i ab = _mm256_packus_epi32(_mm256_and_si256(a, low), _mm256_and_si256(b, low));
  const __m256i cd = _mm256_packus_epi32(_mm256_and_si256(c, low), _mm256_and_si256(d, low));
  return _mm256_permutevar8x32_epi32(_mm256_packus_epi16(ab, cd), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

void quantize_i8_avx2(const float* x, int64_t n, int8_t* q, float* scale, int32_t* sum) {
  if (n % 32 != 0) {
    quantize_i8_scalar(x, n, q, scale, sum);
    return;
  }
  const double max = std::max(0.00001, (double)abs_max8(x, n));
  const float s = (float)(127.0 / max);
  const __m256 vs = _mm256_set1_ps(s);
  const __m256i lo = _mm256_set1_epi32(-128), hi = _mm256_set1_epi32(127);
  __m256i total = _mm256_setzero_si256();
  for (int64_t i = 0; i < n; i += 32) {
    __m256i v[4];
    for (int j = 0; j < 4; j++) {
      v[j] = _mm256_min_epi32(_mm256_max_epi32(nearest_int8(_mm256_loadu_ps(x + i + 8 * j), vs), lo), hi);
      total = _mm256_add_epi32(total, v[j]);
    }
    _mm256_storeu_si256((__m256i*)(q + i), pack_i8(v[0], v[1], v[2], v[3]));
  }
  *scale = s;
  *sum = hsum_i32(total);
}

void quantize_q8k_avx2(const float* x, int64_t n, int8_t* q, float* d, int32_t* bsum) {
  const __m256i hi = _mm256_set1_epi32(127);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (int64_t b = 0; b < n / 256; b++) {
    const float* xb = x + 256 * b;
    const float amax = abs_max8(xb, 256);
    if (!(amax > 0.0f)) {
      quantize_q8k_scalar(xb, 256, q + 256 * b, d + b, bsum + b);  // zero (or NaN) blocks: as the reference
      continue;
    }
    // The first element whose magnitude is amax gives the sign, as the in-order scan does.
    float max = 0.0f;
    for (int j = 0; j < 256; j += 8) {
      const __m256 hit = _mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(xb + j)), _mm256_set1_ps(amax), _CMP_EQ_OQ);
      const int bits = _mm256_movemask_ps(hit);
      if (bits != 0) {
        max = xb[j + __builtin_ctz(bits)];
        break;
      }
    }
    const float iscale = -127.0f / max;
    const __m256 vs = _mm256_set1_ps(iscale);
    __m256i total = _mm256_setzero_si256();
    for (int j = 0; j < 256; j += 32) {
      __m256i v[4];
      for (int k = 0; k < 4; k++) {
        v[k] = _mm256_min_epi32(nearest_int8(_mm256_loadu_ps(xb + j + 8 * k), vs), hi);
        total = _mm256_add_epi32(total, v[k]);
      }
      _mm256_storeu_si256((__m256i*)(q + 256 * b + j), pack_i8(v[0], v[1], v[2], v[3]));
    }
    d[b] = 1.0f / iscale;
    bsum[b] = hsum_i32(total);
  }
}

void to_f16_avx2(const float* x, uint16_t* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm_storeu_si128((__m128i*)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  for (; i < n; i++) y[i] = f32_to_f16(x[i]);
}

void round_f16_avx2(const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm256_storeu_ps(y + i, _mm256_cvtph_ps(h));
  }
  for (; i < n; i++) y[i] = round_f16(x[i]);
}

template <bool Prefetch>
uint64_t stream_read_avx2_loop(const uint8_t* p, int64_t n) {
  __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
  for (int64_t i = 0; i + 128 <= n; i += 128) {
    if (Prefetch) {
      _mm_prefetch((const char*)(p + i + 8192), _MM_HINT_T1);
      _mm_prefetch((const char*)(p + i + 8192 + 64), _MM_HINT_T1);
    }
    a = _mm256_add_epi64(a, _mm256_loadu_si256((const __m256i*)(p + i)));
    b = _mm256_add_epi64(b, _mm256_loadu_si256((const __m256i*)(p + i + 32)));
    c = _mm256_add_epi64(c, _mm256_loadu_si256((const __m256i*)(p + i + 64)));
    d = _mm256_add_epi64(d, _mm256_loadu_si256((const __m256i*)(p + i + 96)));
  }
  const __m256i s = _mm256_add_epi64(_mm256_add_epi64(a, b), _mm256_add_epi64(c, d));
  return (uint64_t)_mm256_extract_epi64(s, 0) + (uint64_t)_mm256_extract_epi64(s, 1) + (uint64_t)_mm256_extract_epi64(s, 2) +
         (uint64_t)_mm256_extract_epi64(s, 3);
}

// One line per step, asked 4 KiB ahead into L2 (variant 2, Kernels::stream_read).
uint64_t stream_read_avx2_lines(const uint8_t* p, int64_t n) {
  __m256i a = _mm256_setzero_si256(), b = a;
  for (int64_t i = 0; i + 64 <= n; i += 64) {
    _mm_prefetch((const char*)(p + i + 4096), _MM_HINT_T1);
    a = _mm256_add_epi64(a, _mm256_loadu_si256((const __m256i*)(p + i)));
    b = _mm256_add_epi64(b, _mm256_loadu_si256((const __m256i*)(p + i + 32)));
  }
  const __m256i s = _mm256_add_epi64(a, b);
  return (uint64_t)_mm256_extract_epi64(s, 0) + (uint64_t)_mm256_extract_epi64(s, 1) + (uint64_t)_mm256_extract_epi64(s, 2) +
         (uint64_t)_mm256_extract_epi64(s, 3);
}

uint64_t stream_read_avx2(const uint8_t* p, int64_t n, int variant) {
  return variant == 2 ? stream_read_avx2_lines(p, n) : variant == 1 ? stream_read_avx2_loop<true>(p, n) : stream_read_avx2_loop<false>(p, n);
}

const Kernels AVX2 = {"avx2",           LAYOUT_NATURAL,   i2s_gemm_avx2,      tq2_gemm_avx2,
                      f16_gemm_avx2,    q8_0_gemm_avx2,   attn_scores_avx2,   attn_values_avx2,
                      sum_squares_avx2, exp_avx2,         softmax_exp_avx2, relu2_glu_avx2,     quantize_i8_avx2,
                      quantize_q8k_avx2, stream_read_avx2, to_f16_avx2,       round_f16_avx2,
                      q6_k_gemm_x86,    tq1_gemm_avx2,    tq1_to_tq2_x86,
                      kKeyPrefetchBytes};

}  // namespace

const Kernels* kernels_avx2_impl() { return &AVX2; }

}  // namespace bitnet

#pragma GCC pop_options

namespace bitnet {
const Kernels* kernels_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c") ? kernels_avx2_impl() : nullptr;
}
}  // namespace bitnet

#else
namespace bitnet {
const Kernels* kernels_avx2() { return nullptr; }
}  // namespace bitnet
#endif
