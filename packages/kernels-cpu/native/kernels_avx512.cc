// ---------------------------------------------------------------------------------------------
// AVX-512 (F, BW, VL) + VNNI kernels. One 64-byte load of packed ternary codes (two I2_S blocks,
// or one TQ2_0 block) yields four 64-lane code vectors, each multiplied with 64 int8
// activations by vpdpbusd (u8 × s8 → int32, 4 products per lane). Activations are permuted into
// LAYOUT_INTERLEAVE256 once per token so every load is contiguous. Independent accumulators
// keep several vpdpbusd chains in flight (its latency, not memory, otherwise bounds a matvec).
// ---------------------------------------------------------------------------------------------
#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>
#include "kernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")

namespace bitnet {
namespace {

inline int32_t hsum_i32(__m512i v) { return _mm512_reduce_add_epi32(v); }
inline float hsum_f32(__m512 v) { return _mm512_reduce_add_ps(v); }

#include "q6k_x86.h"
#include "tq1_x86.h"
#include "token_blocks.h"
#include "head_groups.h"
#include "weight_prefetch.h"

// How far ahead of the current load weights are prefetched, and into which level. Measured on
// this machine (Sapphire Rapids, 2 threads, I2_S decode): into L2 (prefetcht1) 8 KiB ahead gives
// 30-32 GB/s on huge-page memory and 25 GB/s on a 4 KiB-page file mapping, against 27 and 19
// GB/s for prefetcht0 1 KiB ahead. Prefetching to L2 keeps the L1 fill buffers free for the
// loads, and running well ahead carries the stream across 4 KiB page boundaries, where the
// hardware streamer stops on file mappings.
#ifndef BITNET_PREFETCH_BYTES
#define BITNET_PREFETCH_BYTES 8192
#endif
// The one-token loops ask for their rows decode_prefetch() ahead into L1: a distance chosen per
// CPU (kernels.h says what was measured where).
constexpr int PREFETCH_BYTES = BITNET_PREFETCH_BYTES;


// acc += Σ u8 a × s8 b by fours, accumulating in place: with the intrinsic GCC lets each result
// land in a fresh register and copies it back every iteration (and with the AVX-VNNI path's
// sixteen registers spilled one to the stack, on the accumulator's chain).
inline __m512i dpbusd_acc(__m512i acc, __m512i a, const int8_t* b) {
  asm("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "m"(*(const __m512i*)b));
  return acc;
}
inline __m256i dpbusd_acc(__m256i acc, __m256i a, const int8_t* b) {
  asm("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "m"(*(const __m256i*)b));
  return acc;
}

#define CODES(packed, shift) _mm512_and_si512(_mm512_srli_epi16(packed, shift), mask3)

// A 128-element tail block (natural activation order), with 256-bit VNNI.
inline int32_t i2s_tail(const uint8_t* codes, const int8_t* q) {
  const __m256i mask = _mm256_set1_epi8(3);
  const __m256i packed = _mm256_loadu_si256((const __m256i*)codes);
  __m256i a = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_and_si256(_mm256_srli_epi16(packed, 6), mask), _mm256_loadu_si256((const __m256i*)q));
  __m256i b = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_and_si256(_mm256_srli_epi16(packed, 4), mask), _mm256_loadu_si256((const __m256i*)(q + 32)));
  a = _mm256_dpbusd_epi32(a, _mm256_and_si256(_mm256_srli_epi16(packed, 2), mask), _mm256_loadu_si256((const __m256i*)(q + 64)));
  b = _mm256_dpbusd_epi32(b, _mm256_and_si256(packed, mask), _mm256_loadu_si256((const __m256i*)(q + 96)));
  return hsum_i32(_mm512_zextsi256_si512(_mm256_add_epi32(a, b)));
}

void i2s_gemm_avx512(const uint8_t* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* q, const float* act_scale,
                     const int32_t* act_sum, float w_scale, int64_t T, float* out, int64_t out_stride) {
  const __m512i mask3 = _mm512_set1_epi8(3);
  const int64_t row_bytes = cols / 4;
  const int64_t full = cols - cols % 256;
  auto finish = [&](int64_t r, int64_t t, int32_t dot) {
    if (full < cols) dot += i2s_tail(w + r * row_bytes + full / 4, q + t * cols + full);
    const float y = (float)(dot - act_sum[t]) / act_scale[t];
    out[t * out_stride + r] = y * w_scale;
  };
  // Several tokens (batched decode of a few sequences, or prefill without AMX): NT tokens share
  // each 64-byte code load, two accumulators per token, and the weights are prefetched as in
  // decode. Without the prefetch a 4-token step streamed weights at under half the decode rate.
  auto tokens = [&](auto nt, int64_t t) {
    constexpr int NT = decltype(nt)::value;
    const int8_t* qs[NT];
    for (int j = 0; j < NT; j++) qs[j] = q + (t + j) * cols;
    for (int64_t r = r0; r < r1; r++) {
      const uint8_t* row = w + r * row_bytes;
      __m512i a[NT], b[NT];
#pragma GCC unroll 8
      for (int j = 0; j < NT; j++) a[j] = b[j] = _mm512_setzero_si512();
      for (int64_t c = 0; c < full; c += 256) {
        _mm_prefetch((const char*)(row + c / 4 + PREFETCH_BYTES), _MM_HINT_T1);
        const __m512i packed = _mm512_loadu_si512(row + c / 4);
        const __m512i k0 = CODES(packed, 6), k1 = CODES(packed, 4), k2 = CODES(packed, 2), k3 = _mm512_and_si512(packed, mask3);
#pragma GCC unroll 8
        for (int j = 0; j < NT; j++) {
          a[j] = _mm512_dpbusd_epi32(a[j], k0, _mm512_loadu_si512(qs[j] + c));
          b[j] = _mm512_dpbusd_epi32(b[j], k1, _mm512_loadu_si512(qs[j] + c + 64));
        }
#pragma GCC unroll 8
        for (int j = 0; j < NT; j++) {
          a[j] = _mm512_dpbusd_epi32(a[j], k2, _mm512_loadu_si512(qs[j] + c + 128));
          b[j] = _mm512_dpbusd_epi32(b[j], k3, _mm512_loadu_si512(qs[j] + c + 192));
        }
      }
#pragma GCC unroll 8
      for (int j = 0; j < NT; j++) finish(r, t + j, hsum_i32(_mm512_add_epi32(a[j], b[j])));
    }
  };
  // Up to 8 tokens per pass over the weights (16 accumulators + 5 code registers of 32), the
  // passes balanced (9 tokens: 5 + 4, not 8 + 1, which would stream the weights once more for
  // a single token).
  int64_t t = 0;
  for (int64_t passes = (T + 7) / 8; T - t >= 2; passes--) {
    const int64_t n = (T - t + passes - 1) / passes;
    switch (n) {
      case 8: tokens(std::integral_constant<int, 8>{}, t); break;
      case 7: tokens(std::integral_constant<int, 7>{}, t); break;
      case 6: tokens(std::integral_constant<int, 6>{}, t); break;
      case 5: tokens(std::integral_constant<int, 5>{}, t); break;
      case 4: tokens(std::integral_constant<int, 4>{}, t); break;
      case 3: tokens(std::integral_constant<int, 3>{}, t); break;
      default: tokens(std::integral_constant<int, 2>{}, t); break;
    }
    t += n;
  }
  // Decode: one token, one row after another, eight accumulators. The rows are contiguous, so
  // this is one sequential stream for the hardware prefetcher, which a software prefetch
  // decode_prefetch().i2s ahead keeps going across page boundaries; two interleaved rows with
  // software prefetch streamed ~30% slower (Zen 4, BENCHMARKS.md). Integer sums, so the order of
  // rows changes no bit.
  const __m512i m0 = _mm512_set1_epi8((char)0xC0), m1 = _mm512_set1_epi8(0x30), m2 = _mm512_set1_epi8(0x0C);
  // GGUF aligns tensors to 32 bytes, so in a mapped file every other matrix starts halfway into
  // a cache line, and each 64-byte code load would straddle two lines. Those rows load two
  // aligned halves instead (one load split across lines costs about two, and the split loads
  // cost ~5-10% of a row's rate from memory on a Zen 5).
  auto decode = [&](auto split, int64_t t) {
    const int8_t* qt = q + t * cols;
    const int64_t ahead = decode_prefetch().i2s, far = decode_prefetch().l2;
    const bool nta = decode_prefetch().non_temporal;
    for (int64_t r = r0; r < r1; r++) {
      const uint8_t* ra = w + r * row_bytes;
      // Each code field masked in place, not shifted down: field j is its code × 4^(3−j), and
      // the exact shifts below undo the scale (as i2s_masked_sum does for 256 bits). Two blocks
      // per pass into eight accumulators: one VPDPBUSD chain per field waits on its latency every
      // block (four chains: 185 GMAC/s from L2 on one Zen 5 core; eight: 230-270).
      __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0, e0 = a0, e1 = a0, e2 = a0, e3 = a0;
      auto load = [&](int64_t c) {
        if constexpr (decltype(split)::value) {
          return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_load_si256((const __m256i*)(ra + c / 4))),
                                    _mm256_load_si256((const __m256i*)(ra + c / 4 + 32)), 1);
        } else {
          return _mm512_loadu_si512(ra + c / 4);
        }
      };
      int64_t c = 0;
      for (; c + 512 <= full; c += 512) {
        prefetch_decode_line<_MM_HINT_T0>(ra + c / 4 + ahead, nta);
        prefetch_decode_line<_MM_HINT_T0>(ra + c / 4 + ahead + 64, nta);
        if (far > 0) {
          _mm_prefetch((const char*)(ra + c / 4 + far), _MM_HINT_T1);
          _mm_prefetch((const char*)(ra + c / 4 + far + 64), _MM_HINT_T1);
        }
        const __m512i pa = load(c), pb = load(c + 256);
        a0 = dpbusd_acc(a0, _mm512_and_si512(pa, m0), qt + c);
        a1 = dpbusd_acc(a1, _mm512_and_si512(pa, m1), qt + c + 64);
        a2 = dpbusd_acc(a2, _mm512_and_si512(pa, m2), qt + c + 128);
        a3 = dpbusd_acc(a3, _mm512_and_si512(pa, mask3), qt + c + 192);
        e0 = dpbusd_acc(e0, _mm512_and_si512(pb, m0), qt + c + 256);
        e1 = dpbusd_acc(e1, _mm512_and_si512(pb, m1), qt + c + 320);
        e2 = dpbusd_acc(e2, _mm512_and_si512(pb, m2), qt + c + 384);
        e3 = dpbusd_acc(e3, _mm512_and_si512(pb, mask3), qt + c + 448);
      }
      if (c < full) {
        const __m512i pa = load(c);
        a0 = dpbusd_acc(a0, _mm512_and_si512(pa, m0), qt + c);
        a1 = dpbusd_acc(a1, _mm512_and_si512(pa, m1), qt + c + 64);
        a2 = dpbusd_acc(a2, _mm512_and_si512(pa, m2), qt + c + 128);
        a3 = dpbusd_acc(a3, _mm512_and_si512(pa, mask3), qt + c + 192);
      }
      a0 = _mm512_add_epi32(a0, e0);
      a1 = _mm512_add_epi32(a1, e1);
      a2 = _mm512_add_epi32(a2, e2);
      a3 = _mm512_add_epi32(a3, e3);
      const __m512i sum = _mm512_add_epi32(_mm512_add_epi32(_mm512_srai_epi32(a0, 6), _mm512_srai_epi32(a1, 4)),
                                           _mm512_add_epi32(_mm512_srai_epi32(a2, 2), a3));
      finish(r, t, hsum_i32(sum));
    }
  };
  // The same in 256-bit vectors (decode_prefetch().vector_bits, kernels.h): each 64-byte line of
  // codes (two I2_S blocks) as two 32-byte loads, whose fields meet the interleaved activations'
  // 32-byte halves; the line decode_prefetch().i2s ahead into L1 and .l2 into L2, as the AVX-VNNI
  // loop asks.
  auto decode256 = [&](int64_t t) {
    const int8_t* qt = q + t * cols;
    const int64_t ahead = decode_prefetch().i2s, far = decode_prefetch().l2;
    const bool nta = decode_prefetch().non_temporal;
    const __m256i mask[4] = {_mm256_set1_epi8((char)0xC0), _mm256_set1_epi8(0x30), _mm256_set1_epi8(0x0C),
                             _mm256_set1_epi8(3)};
    for (int64_t r = r0; r < r1; r++) {
      const uint8_t* ra = w + r * row_bytes;
      // a[j]: field j of each line's first block (elements 32j.. of the 256, at 64j in the
      // interleaved activations); e[j]: of its second (128 + 32j.., at 64j + 32).
      __m256i a[4], e[4];
      for (int j = 0; j < 4; j++) a[j] = e[j] = _mm256_setzero_si256();
      for (int64_t c = 0; c < full; c += 256) {
        prefetch_decode_line<_MM_HINT_T0>(ra + c / 4 + ahead, nta);
        if (far > 0) _mm_prefetch((const char*)(ra + c / 4 + far), _MM_HINT_T1);
        const __m256i pa = _mm256_loadu_si256((const __m256i*)(ra + c / 4));
        const __m256i pb = _mm256_loadu_si256((const __m256i*)(ra + c / 4 + 32));
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
          a[j] = dpbusd_acc(a[j], _mm256_and_si256(pa, mask[j]), qt + c + 64 * j);
          e[j] = dpbusd_acc(e[j], _mm256_and_si256(pb, mask[j]), qt + c + 64 * j + 32);
        }
      }
      // Field j's sums are 4^(3−j) × the true ones (see decode above): exact shifts undo it.
      const __m256i sum = _mm256_add_epi32(
          _mm256_add_epi32(_mm256_srai_epi32(_mm256_add_epi32(a[0], e[0]), 6), _mm256_srai_epi32(_mm256_add_epi32(a[1], e[1]), 4)),
          _mm256_add_epi32(_mm256_srai_epi32(_mm256_add_epi32(a[2], e[2]), 2), _mm256_add_epi32(a[3], e[3])));
      finish(r, t, hsum_i32(_mm512_zextsi256_si512(sum)));
    }
  };
  // Rows are cols / 4 bytes, a multiple of 64 when cols is one of 256: then all rows share the
  // first row's alignment.
  const uintptr_t first = (uintptr_t)(w + r0 * row_bytes);
  const bool halves = first % 64 == 32 && row_bytes % 64 == 0;
  for (; t < T; t++) {
    if (decode_prefetch().vector_bits == 256) {
      decode256(t);
    } else if (halves) {
      decode(std::true_type{}, t);
    } else {
      decode(std::false_type{}, t);
    }
  }
}

// TQ2_0: one block's qs[0..63] in one load; bits 2l ↔ element groups 32l.. of chunk 0 (bytes
// 0..31) and 128+32l.. of chunk 1 (bytes 32..63): the same LAYOUT_INTERLEAVE256. Each block's
// integer sum is reduced exactly and its scale applied in scalar block order, so the result is
// bit-exact with the scalar kernel (lane-wise float accumulation would lose precision to the
// cancellation between Σ code·q and Σq).

// One token's 16-lane partial sums for one TQ2_0 block whose four code vectors are unpacked.
inline __m512i tq2_token(__m512i c0, __m512i c1, __m512i c2, __m512i c3, const int8_t* qb) {
  __m512i a0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), c0, _mm512_loadu_si512(qb));
  __m512i a1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), c1, _mm512_loadu_si512(qb + 64));
  a0 = _mm512_dpbusd_epi32(a0, c2, _mm512_loadu_si512(qb + 128));
  a1 = _mm512_dpbusd_epi32(a1, c3, _mm512_loadu_si512(qb + 192));
  return _mm512_add_epi32(a0, a1);
}

// The partial sums of one TQ2_0 block, not yet reduced. The codes are loaded into a register
// once: left free, GCC folds the load into each of the four unpacking ops, and since a 66-byte
// block's 64 code bytes nearly always straddle two cache lines, those are four split loads per
// block, which bounded the decode loop.
inline __m512i tq2_block_lanes(const uint8_t* qs, const int8_t* qb, __m512i mask3) {
  __m512i packed = _mm512_loadu_si512(qs);
  asm("" : "+v"(packed));
  return tq2_token(_mm512_and_si512(packed, mask3), CODES(packed, 2), CODES(packed, 4), CODES(packed, 6), qb);
}

// Lane k = the sum of v[k]'s sixteen lanes (integer: exact in any order).
inline __m128i hsum4_i32_512(__m512i v0, __m512i v1, __m512i v2, __m512i v3) {
  const __m256i a = _mm256_add_epi32(_mm512_castsi512_si256(v0), _mm512_extracti64x4_epi64(v0, 1));
  const __m256i b = _mm256_add_epi32(_mm512_castsi512_si256(v1), _mm512_extracti64x4_epi64(v1, 1));
  const __m256i c = _mm256_add_epi32(_mm512_castsi512_si256(v2), _mm512_extracti64x4_epi64(v2, 1));
  const __m256i d = _mm256_add_epi32(_mm512_castsi512_si256(v3), _mm512_extracti64x4_epi64(v3, 1));
  const __m256i abcd = _mm256_hadd_epi32(_mm256_hadd_epi32(a, b), _mm256_hadd_epi32(c, d));
  return _mm_add_epi32(_mm256_castsi256_si128(abcd), _mm256_extracti128_si256(abcd, 1));
}

// NT tokens per pass over a row: each block's codes are loaded and unpacked once for all of
// them (prefill, batched decode). Per token the block sums are exact integers and the scaled
// sums accumulate lane-wise in block order with the scalar kernel's operations, so every token's
// result is bit-exact with the one-token loop and the scalar kernel.
// LIVE < NT: the last NT − LIVE lanes repeat token LIVE − 1 and are not stored (a group of three
// tokens in a four-token pass).
template <int NT, int LIVE = NT>
inline void tq2_tokens_avx512(const BlockTQ2* row, int64_t nb, int64_t cols, int64_t t, int64_t r, const int8_t* q,
                              const float* act_d, const int32_t* act_bsum, float* out, int64_t out_stride,
                              __m512i mask3) {
  static_assert(NT % 4 == 0, "groups of four tokens");
  static_assert(LIVE > NT - 4 && LIVE <= NT, "only the last group may be partial");
  constexpr auto live = [](int64_t k) { return k < LIVE ? k : (int64_t)LIVE - 1; };
  __m128 sumf[NT / 4];
  for (int g = 0; g < NT / 4; g++) sumf[g] = _mm_setzero_ps();
  const int8_t* q0 = q + t * cols;
  for (int64_t b = 0; b < nb; b++) {
    prefetch_bytes(row + kPrefetchRowsAhead * nb + b, (int64_t)sizeof(BlockTQ2));
    __m512i packed = _mm512_loadu_si512(row[b].qs);
    asm("" : "+v"(packed));  // one load (see tq2_block_lanes)
    const __m512i c0 = _mm512_and_si512(packed, mask3), c1 = CODES(packed, 2), c2 = CODES(packed, 4),
                  c3 = CODES(packed, 6);
    const float wd = _cvtsh_ss(row[b].d);
    const int64_t off = 256 * b;
    for (int g = 0; g < NT / 4; g++) {
      const int64_t k0 = live(4 * g), k1 = live(4 * g + 1), k2 = live(4 * g + 2), k3 = live(4 * g + 3);
      const __m128i sumi = hsum4_i32_512(
          tq2_token(c0, c1, c2, c3, q0 + k0 * cols + off), tq2_token(c0, c1, c2, c3, q0 + k1 * cols + off),
          tq2_token(c0, c1, c2, c3, q0 + k2 * cols + off), tq2_token(c0, c1, c2, c3, q0 + k3 * cols + off));
      const __m128i bsum = _mm_setr_epi32(act_bsum[(t + k0) * nb + b], act_bsum[(t + k1) * nb + b],
                                          act_bsum[(t + k2) * nb + b], act_bsum[(t + k3) * nb + b]);
      const __m128 ad = _mm_setr_ps(act_d[(t + k0) * nb + b], act_d[(t + k1) * nb + b], act_d[(t + k2) * nb + b],
                                    act_d[(t + k3) * nb + b]);
      const __m128 scale = _mm_mul_ps(ad, _mm_set1_ps(wd));
      sumf[g] = _mm_add_ps(sumf[g], _mm_mul_ps(_mm_cvtepi32_ps(_mm_sub_epi32(sumi, bsum)), scale));
    }
  }
  for (int g = 0; g < NT / 4; g++) {
    alignas(16) float o[4];
    _mm_store_ps(o, sumf[g]);
    for (int k = 0; k < 4 && 4 * g + k < LIVE; k++) out[(t + 4 * g + k) * out_stride + r] = o[k];
  }
}

// TQ1_0 decode on this path's LAYOUT_INTERLEAVE256 activations: the 32 values of code vector i
// (elements 32i..32i+31) sit at offset 64·(i mod 4) + 32·(i div 4) of the block's activations.
void tq1_gemm_avx512(const BlockTQ1* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* q, const float* act_d,
                     const int32_t* act_bsum, int64_t T, float* out, int64_t out_stride) {
  tq1_gemm_rows(w, cols, r0, r1, q, act_d, act_bsum, T, out, out_stride, [](const __m256i codes[8], const int8_t* qb) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0;
    for (int i = 0; i < 8; i += 2) {
      a0 = _mm256_dpbusd_epi32(a0, codes[i], _mm256_loadu_si256((const __m256i*)(qb + 64 * (i % 4) + 32 * (i / 4))));
      a1 = _mm256_dpbusd_epi32(a1, codes[i + 1],
                               _mm256_loadu_si256((const __m256i*)(qb + 64 * ((i + 1) % 4) + 32 * ((i + 1) / 4))));
    }
    return hsum_i32_256(_mm256_add_epi32(a0, a1));
  });
}

// Lane k = the sum of a[k]'s sixteen lanes, k < 16: a transpose-and-add tree (unpack 32-bit,
// unpack 64-bit, then two 128-bit lane shuffles), 45 operations for sixteen sums where
// sixteen separate reductions take ~10 each. Integer: exact in any order.
inline __m512i hsum16_i32(const __m512i a[16]) {
  __m512i b[8], c[4], d[2];
  for (int i = 0; i < 8; i++) {
    b[i] = _mm512_add_epi32(_mm512_unpacklo_epi32(a[2 * i], a[2 * i + 1]), _mm512_unpackhi_epi32(a[2 * i], a[2 * i + 1]));
  }
  // Each 128-bit lane of c[i] holds tokens 4i..4i+3 (partial sums over that lane).
  for (int i = 0; i < 4; i++) {
    c[i] = _mm512_add_epi32(_mm512_unpacklo_epi64(b[2 * i], b[2 * i + 1]), _mm512_unpackhi_epi64(b[2 * i], b[2 * i + 1]));
  }
  for (int i = 0; i < 2; i++) {
    d[i] = _mm512_add_epi32(_mm512_shuffle_i32x4(c[2 * i], c[2 * i + 1], 0x88), _mm512_shuffle_i32x4(c[2 * i], c[2 * i + 1], 0xDD));
  }
  return _mm512_add_epi32(_mm512_shuffle_i32x4(d[0], d[1], 0x88), _mm512_shuffle_i32x4(d[0], d[1], 0xDD));
}

// TQ2_0, sixteen tokens [t, t + 16), one per float lane: each block's codes are unpacked once for
// all of them, the sixteen exact block sums come out of one hsum16_i32, and lane k accumulates
// token k's Σ_b (float)(sumi_b − bsum_b) · (act_d_b · w_d_b) in block order, the scalar
// kernel's operations. Four tokens per pass with a reduction each ran at 171 GMAC/s on one Zen 5
// core, under the I2_S kernel's 303: the reductions, not the products, bound it. Columns go in
// chunks so the sixteen tokens' activations of a chunk (16 KiB) stay in L1 while the rows of the
// tile stream past; each row's lanes wait in a small scratch between chunks (same bits).
void tq2_prefill16_avx512(const BlockTQ2* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* q, const float* act_d,
                          const int32_t* act_bsum, int64_t t, float* out, int64_t out_stride, __m512i mask3) {
  constexpr int64_t kChunkBlocks = 4;
  constexpr int64_t kRows = 64;
  const int64_t nb = cols / 256;
  const int8_t* q16 = q + t * cols;
  const TokenBlocks blocks = gather_token_blocks<16>(act_d, act_bsum, t, nb);
  alignas(64) float sums[kRows * 16];
  for (int64_t rs = r0; rs < r1; rs += kRows) {
    const int64_t re = std::min(rs + kRows, r1);
    for (int64_t b0 = 0; b0 < nb; b0 += kChunkBlocks) {
      const int64_t b1 = std::min(b0 + kChunkBlocks, nb);
      for (int64_t r = rs; r < re; r++) {
        const BlockTQ2* row = w + r * nb;
        prefetch_bytes(row + kPrefetchRowsAhead * nb + b0, (b1 - b0) * (int64_t)sizeof(BlockTQ2));
        float* slot = sums + 16 * (r - rs);
        __m512 sumf = b0 == 0 ? _mm512_setzero_ps() : _mm512_load_ps(slot);
        for (int64_t b = b0; b < b1; b++) {
          __m512i packed = _mm512_loadu_si512(row[b].qs);
          asm("" : "+v"(packed));  // one load (see tq2_block_lanes)
          const __m512i c0 = _mm512_and_si512(packed, mask3), c1 = CODES(packed, 2), c2 = CODES(packed, 4),
                        c3 = CODES(packed, 6);
          const int8_t* qb = q16 + 256 * b;
          __m512i acc[16];
#pragma GCC unroll 16
          for (int k = 0; k < 16; k++) {
            const int8_t* qk = qb + k * cols;
            __m512i a = _mm512_dpbusd_epi32(_mm512_setzero_si512(), c0, _mm512_loadu_si512(qk));
            a = _mm512_dpbusd_epi32(a, c1, _mm512_loadu_si512(qk + 64));
            a = _mm512_dpbusd_epi32(a, c2, _mm512_loadu_si512(qk + 128));
            acc[k] = _mm512_dpbusd_epi32(a, c3, _mm512_loadu_si512(qk + 192));
          }
          const __m512i sumi = _mm512_sub_epi32(hsum16_i32(acc), _mm512_loadu_si512(blocks.bsum + 16 * b));
          const __m512 scale = _mm512_mul_ps(_mm512_loadu_ps(blocks.d + 16 * b), _mm512_set1_ps(_cvtsh_ss(row[b].d)));
          sumf = _mm512_add_ps(sumf, _mm512_mul_ps(_mm512_cvtepi32_ps(sumi), scale));
        }
        _mm512_store_ps(slot, sumf);
      }
    }
    for (int64_t r = rs; r < re; r++) {
      for (int k = 0; k < 16; k++) out[(t + k) * out_stride + r] = sums[16 * (r - rs) + k];
    }
  }
}

void tq2_gemm_avx512(const BlockTQ2* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* q, const float* act_d,
                     const int32_t* act_bsum, int64_t T, float* out, int64_t out_stride) {
  const __m512i mask3 = _mm512_set1_epi8(3);
  const int64_t nb = cols / 256;
  // Sixteen tokens at a time in chunked row tiles (tq2_prefill16_avx512), then groups of eight,
  // four and a last three, each passing over all of the rows (a matrix's weights are L3-resident during a
  // step; tiling the rows for L2 measured no faster for these on Zen 4).
  const int64_t T4 = T - T % 4;
  int64_t t = 0;
  for (; t + 16 <= T4; t += 16) tq2_prefill16_avx512(w, cols, r0, r1, q, act_d, act_bsum, t, out, out_stride, mask3);
  for (; t + 8 <= T4; t += 8) {
    for (int64_t r = r0; r < r1; r++) {
      tq2_tokens_avx512<8>(w + r * nb, nb, cols, t, r, q, act_d, act_bsum, out, out_stride, mask3);
    }
  }
  for (; t < T4; t += 4) {
    for (int64_t r = r0; r < r1; r++) {
      tq2_tokens_avx512<4>(w + r * nb, nb, cols, t, r, q, act_d, act_bsum, out, out_stride, mask3);
    }
  }
  // A last group of three: one four-token pass with a lane idle (three one-token passes took 48
  // against 39 ms of bench-tq2 projections for four tokens); two stay one-token passes.
  if (T - T4 == 3) {
    for (int64_t r = r0; r < r1; r++) {
      tq2_tokens_avx512<4, 3>(w + r * nb, nb, cols, T4, r, q, act_d, act_bsum, out, out_stride, mask3);
    }
  }
  const int64_t t0 = T - T4 == 3 ? T : T4;
  // The remaining tokens (decode: all of them), one row after another: one sequential stream
  // for the hardware prefetcher, as in the I2_S decode above (same bits: each row's blocks are
  // summed in block order either way).
  // The rows' lines are asked for decode_prefetch().other ahead (kernels.h: 2 KiB on Intel, 6 KiB
  // non-temporal elsewhere).
  const int64_t ahead = decode_prefetch().other;
  const bool nta = decode_prefetch().non_temporal;
  for (int64_t t = t0; t < T; t++) {
    const int8_t* qt = q + t * cols;
    const float* dt = act_d + t * nb;
    const int32_t* st = act_bsum + t * nb;
    for (int64_t r = r0; r < r1; r++) {
      const BlockTQ2* ra = w + r * nb;
      float sa = 0.0f;
      int64_t b = 0;
      for (; b + 4 <= nb; b += 4) {
        if (ahead > 0) {
          // Four blocks are 264 bytes: four lines asked for per pass, the stream's drift of 8
          // bytes a pass left to the hardware prefetcher.
          const char* p = (const char*)(ra + b) + ahead;
          prefetch_decode_line<_MM_HINT_T0>(p, nta);
          prefetch_decode_line<_MM_HINT_T0>(p + 64, nta);
          prefetch_decode_line<_MM_HINT_T0>(p + 128, nta);
          prefetch_decode_line<_MM_HINT_T0>(p + 192, nta);
        }
        const __m128i sumi = _mm_sub_epi32(
            hsum4_i32_512(tq2_block_lanes(ra[b].qs, qt + 256 * b, mask3), tq2_block_lanes(ra[b + 1].qs, qt + 256 * (b + 1), mask3),
                          tq2_block_lanes(ra[b + 2].qs, qt + 256 * (b + 2), mask3), tq2_block_lanes(ra[b + 3].qs, qt + 256 * (b + 3), mask3)),
            _mm_loadu_si128((const __m128i*)(st + b)));
        const __m128i wd = _mm_setr_epi16((short)ra[b].d, (short)ra[b + 1].d, (short)ra[b + 2].d, (short)ra[b + 3].d, 0, 0, 0, 0);
        const __m128 x = _mm_mul_ps(_mm_cvtepi32_ps(sumi), _mm_mul_ps(_mm_loadu_ps(dt + b), _mm_cvtph_ps(wd)));
        alignas(16) float xs[4];
        _mm_store_ps(xs, x);
        sa += xs[0];
        sa += xs[1];
        sa += xs[2];
        sa += xs[3];
      }
      for (; b < nb; b++) {
        const int32_t ia = hsum_i32(tq2_block_lanes(ra[b].qs, qt + 256 * b, mask3)) - st[b];
        sa += (float)ia * (dt[b] * _cvtsh_ss(ra[b].d));
      }
      out[t * out_stride + r] = sa;
    }
  }
}

// One f16 row · one f32 vector: four accumulators take the 16-column quarters of each 64-column
// chunk (a 32-column remainder goes to the first two), then (a0 + a2) + (a1 + a3) is reduced and
// the last columns are added in order. Four independent chains keep enough loads in flight to
// stream a row at the memory's rate (two chains read 45 of 60 GB/s on a Zen 5 with two threads,
// four read 53-59). The row-pair kernel below keeps exactly this order per (row, token).
struct F16Acc {
  __m512 a0, a1, a2, a3;
  inline F16Acc() : a0(_mm512_setzero_ps()), a1(a0), a2(a0), a3(a0) {}
  inline void add(const __m512* w, const float* x, int64_t c, int quarters) {
    a0 = _mm512_fmadd_ps(w[0], _mm512_loadu_ps(x + c), a0);
    a1 = _mm512_fmadd_ps(w[1], _mm512_loadu_ps(x + c + 16), a1);
    if (quarters == 4) {
      a2 = _mm512_fmadd_ps(w[2], _mm512_loadu_ps(x + c + 32), a2);
      a3 = _mm512_fmadd_ps(w[3], _mm512_loadu_ps(x + c + 48), a3);
    }
  }
  inline float finish(const uint16_t* row, const float* x, int64_t full, int64_t cols) const {
    float s = hsum_f32(_mm512_add_ps(_mm512_add_ps(a0, a2), _mm512_add_ps(a1, a3)));
    for (int64_t c = full; c < cols; c++) s += f16_to_f32(row[c]) * x[c];
    return s;
  }
};

// The columns a chunk starting at c covers in F16Acc's order: 64, then one 32-column remainder.
inline int f16_quarters(int64_t c, int64_t full) { return c + 64 <= full ? 4 : 2; }

inline void f16_load(const uint16_t* row, int64_t c, int quarters, __m512* w) {
  for (int k = 0; k < quarters; k++) w[k] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(row + c + 16 * k)));
}

// Two weight rows × TB tokens: each weight vector is converted from f16 once and used for TB
// tokens (TB ≤ 2: sixteen accumulators). Per (row, token) the lanes accumulate in F16Acc's
// order, so a token's logits do not depend on how many tokens share the step.
template <int TB>
inline void f16_pair(const uint16_t* ra, const uint16_t* rb, int64_t cols, int64_t full, const float* const* xs, float* const* outs,
                     int64_t r) {
  F16Acc a[TB], b[TB];
  for (int64_t c = 0; c < full; c += 64) {
    _mm_prefetch((const char*)(ra + c) + PREFETCH_BYTES, _MM_HINT_T1);
    _mm_prefetch((const char*)(rb + c) + PREFETCH_BYTES, _MM_HINT_T1);
    const int quarters = f16_quarters(c, full);
    __m512 wa[4], wb[4];
    f16_load(ra, c, quarters, wa);
    f16_load(rb, c, quarters, wb);
    for (int k = 0; k < TB; k++) {
      a[k].add(wa, xs[k], c, quarters);
      b[k].add(wb, xs[k], c, quarters);
    }
  }
  for (int k = 0; k < TB; k++) {
    outs[k][r] = a[k].finish(ra, xs[k], full, cols);
    outs[k][r + 1] = b[k].finish(rb, xs[k], full, cols);
  }
}

// Steps of several tokens over rows [r0, r1) two rows at a time, tokens two at a time then a last
// odd one: pair(std::integral_constant<int, TB>, ra, rb, xs, outs, r) computes rows r and r + 1
// for TB tokens. Returns the first row left (a last odd row; r0 when T is 1).
template <class Pair>
inline int64_t f16_row_pairs(const uint16_t* w, int64_t cols, int64_t r0, int64_t r1, const float* x, int64_t T, float* out,
                             int64_t out_stride, Pair pair) {
  int64_t r = r0;
  for (; T > 1 && r + 2 <= r1; r += 2) {
    const uint16_t* ra = w + r * cols;
    int64_t t = 0;
    for (; t + 2 <= T; t += 2) {
      const float* xs[2] = {x + t * cols, x + (t + 1) * cols};
      float* outs[2] = {out + t * out_stride, out + (t + 1) * out_stride};
      pair(std::integral_constant<int, 2>{}, ra, ra + cols, xs, outs, r);
    }
    for (; t < T; t++) {
      const float* xs[1] = {x + t * cols};
      float* outs[1] = {out + t * out_stride};
      pair(std::integral_constant<int, 1>{}, ra, ra + cols, xs, outs, r);
    }
  }
  return r;
}

void f16_gemm_avx512(const uint16_t* w, int64_t cols, int64_t r0, int64_t r1, const float* x, int64_t T, float* out,
                     int64_t out_stride) {
  const int64_t full = cols - cols % 32;
  // Row pairs share each converted x vector between tokens, which pays for a prefill. A decode
  // (T = 1) has nothing to share and is bound by memory: one row after another is one sequential
  // stream that the hardware prefetcher follows at full speed, where two interleaved rows read ~85%
  // of it on a Zen 4 (BENCHMARKS.md) and 55-65% on a Zen 5. Both give the same bits.
  int64_t r = f16_row_pairs(w, cols, r0, r1, x, T, out, out_stride,
                            [&](auto tb, const uint16_t* ra, const uint16_t* rb, const float* const* xs, float* const* outs,
                                int64_t row) { f16_pair<decltype(tb)::value>(ra, rb, cols, full, xs, outs, row); });
  // The rows one after another (a decode, or a last odd row), with the line decode_prefetch().head
  // ahead asked for (kernels.h: into L2 on Intel, non-temporal elsewhere).
  auto rows = [&](auto prefetch) {
    const int64_t ahead = decode_prefetch().head;
    const bool nta = decode_prefetch().non_temporal;
    for (; r < r1; r++) {
      const uint16_t* ra = w + r * cols;
      for (int64_t t = 0; t < T; t++) {
        const float* xt = x + t * cols;
        F16Acc a;
        int64_t c = 0;
        for (; c + 64 <= full; c += 64) {
          if constexpr (decltype(prefetch)::value) {
            prefetch_decode_line<_MM_HINT_T1>((const char*)(ra + c) + ahead, nta);
            prefetch_decode_line<_MM_HINT_T1>((const char*)(ra + c) + ahead + 64, nta);
          }
          __m512 wv[4];
          f16_load(ra, c, 4, wv);
          a.add(wv, xt, c, 4);
        }
        if (c < full) {
          __m512 wv[4];
          f16_load(ra, c, 2, wv);
          a.add(wv, xt, c, 2);
        }
        out[t * out_stride + r] = a.finish(ra, xt, full, cols);
      }
    }
  };
  if (decode_prefetch().head > 0) {
    rows(std::true_type{});
  } else {
    rows(std::false_type{});
  }
}

void q8_0_gemm_avx512(const BlockQ8_0* w, int64_t cols, int64_t r0, int64_t r1, const BlockQ8_0* xq, int64_t T,
                      float* out, int64_t out_stride) {
  const int64_t nb = cols / 32;
  std::vector<float> xd((size_t)nb);
  for (int64_t t = 0; t < T; t++) {
    const BlockQ8_0* xt = xq + t * nb;
    for (int64_t b = 0; b < nb; b++) xd[(size_t)b] = _cvtsh_ss(xt[b].d);  // F16C, once per token
    for (int64_t r = r0; r < r1; r++) {
      const BlockQ8_0* row = w + r * nb;
      __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
      int64_t b = 0;
      for (; b + 2 <= nb; b += 2) {
        _mm_prefetch((const char*)(row + b) + PREFETCH_BYTES, _MM_HINT_T1);
        const __m256i w0 = _mm256_loadu_si256((const __m256i*)row[b].qs), w1 = _mm256_loadu_si256((const __m256i*)row[b + 1].qs);
        const __m256i x0 = _mm256_loadu_si256((const __m256i*)xt[b].qs), x1 = _mm256_loadu_si256((const __m256i*)xt[b + 1].qs);
        // int8 × int8 on u8 × s8 VNNI: |w| · (x with w's sign).
        const __m256i s0 = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(w0, w0), _mm256_sign_epi8(x0, w0));
        const __m256i s1 = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(w1, w1), _mm256_sign_epi8(x1, w1));
        acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s0), _mm256_set1_ps(_cvtsh_ss(row[b].d) * xd[(size_t)b]), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s1), _mm256_set1_ps(_cvtsh_ss(row[b + 1].d) * xd[(size_t)b + 1]), acc1);
      }
      for (; b < nb; b++) {
        const __m256i w0 = _mm256_loadu_si256((const __m256i*)row[b].qs);
        const __m256i x0 = _mm256_loadu_si256((const __m256i*)xt[b].qs);
        const __m256i s0 = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(w0, w0), _mm256_sign_epi8(x0, w0));
        acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s0), _mm256_set1_ps(_cvtsh_ss(row[b].d) * xd[(size_t)b]), acc0);
      }
      out[t * out_stride + r] = hsum_f32(_mm512_zextps256_ps512(_mm256_add_ps(acc0, acc1)));
    }
  }
}

// Scores of NQ heads sharing one KV head, 32 positions at a time: lane j of head h accumulates
// Σ_i q[h][i]·k[i][j] in i order (exact scalar order per lane; products of f16 values are exact
// in f32, so FMA gives the scalar bits: kernels.h). Each 64-byte line of a transposed key row
// (32 positions) is loaded and converted once for all NQ heads, and the NQ × 2 chains of
// dependent adds run side by side: one head's two chains waited on the add latency hd times per
// block.
template <int NQ>
void scores_heads_avx512(const float* q, const uint16_t* kt, int64_t stride, int64_t hd, int64_t len, float* scores,
                         int64_t ss) {
  int64_t j = 0;
  for (; j + 32 <= len; j += 32) {
    __m512 s0[NQ], s1[NQ];
    for (int h = 0; h < NQ; h++) s0[h] = s1[h] = _mm512_setzero_ps();
    for (int64_t i = 0; i < hd; i++) {
      const uint16_t* row = kt + i * stride + j;
      _mm_prefetch((const char*)row + kKeyPrefetchBytes, _MM_HINT_T1);  // kernels.h
      const __m512 k0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)row));
      const __m512 k1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(row + 16)));
      for (int h = 0; h < NQ; h++) {
        const __m512 qi = _mm512_set1_ps(q[h * hd + i]);
        s0[h] = _mm512_fmadd_ps(qi, k0, s0[h]);
        s1[h] = _mm512_fmadd_ps(qi, k1, s1[h]);
      }
    }
    for (int h = 0; h < NQ; h++) {
      _mm512_storeu_ps(scores + h * ss + j, s0[h]);
      _mm512_storeu_ps(scores + h * ss + j + 16, s1[h]);
    }
  }
  // The last 1-31 positions, 16 at a time: masked loads never touch the row beyond len, and
  // masked-off lanes are zeros whose sums are not stored. A scalar tail here (up to 15
  // positions × hd dependent adds, each with a software f16 conversion) took ~1.7 µs per head,
  // most of a short decode step's attention.
  for (; j < len; j += 16) {
    const __mmask16 live = len - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (len - j)) - 1);
    __m512 s[NQ];
    for (int h = 0; h < NQ; h++) s[h] = _mm512_setzero_ps();
    for (int64_t i = 0; i < hd; i++) {
      const __m512 k = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(live, kt + i * stride + j));
      for (int h = 0; h < NQ; h++) s[h] = _mm512_fmadd_ps(_mm512_set1_ps(q[h * hd + i]), k, s[h]);
    }
    for (int h = 0; h < NQ; h++) _mm512_mask_storeu_ps(scores + h * ss + j, live, s[h]);
  }
}

// Up to eight heads per pass over the keys (16 accumulators of 32 registers): a prompt's tiles
// score four tokens' heads at a time (the 2B shape's 16 rows in two passes instead of four).
void attn_scores_avx512(const float* q, int64_t nq, const uint16_t* kt, int64_t stride, int64_t hd, int64_t len,
                        float* scores, int64_t score_stride) {
  for_head_groups<8>(q, nq, hd, scores, score_stride, [&](auto heads, const float* qh, float* sh) {
    scores_heads_avx512<decltype(heads)::value>(qh, kt, stride, hd, len, sh, score_stride);
  });
}

// Output lanes over i, each summing in j order (exact). 128 lanes per pass walk the positions
// once with eight independent accumulators (one accumulator waited on its add latency). With
// `carry`, out holds the sums over earlier positions and they continue from there
// (attn_values_avx512 walks positions in tiles); `next` as in values_heads_avx512.
void attn_values_one_avx512(const float* p, const uint16_t* v, int64_t kvw, int64_t hd, int64_t len, float* out,
                            bool carry, const uint16_t* next = nullptr) {
  auto start = [carry](const float* o) { return carry ? _mm512_loadu_ps(o) : _mm512_setzero_ps(); };
  int64_t i = 0;
  for (; i + 128 <= hd; i += 128) {
    __m512 a[8];
    for (int c = 0; c < 8; c++) a[c] = start(out + i + 16 * c);
    for (int64_t j = 0; j < len; j++) {
      const __m512 pj = _mm512_set1_ps(p[j]);
      const uint16_t* row = v + j * kvw + i;
      if (next != nullptr) {
        for (int c = 0; c < 4; c++) _mm_prefetch((const char*)(next + j * kvw + i + 32 * c), _MM_HINT_T0);
      }
      for (int c = 0; c < 8; c++) {
        a[c] = _mm512_fmadd_ps(pj, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(row + 16 * c))), a[c]);
      }
    }
    for (int c = 0; c < 8; c++) _mm512_storeu_ps(out + i + 16 * c, a[c]);
  }
  for (; i + 16 <= hd; i += 16) {
    __m512 a = start(out + i);
    for (int64_t j = 0; j < len; j++) {
      const __m512 vv = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(v + j * kvw + i)));
      a = _mm512_fmadd_ps(_mm512_set1_ps(p[j]), vv, a);
    }
    _mm512_storeu_ps(out + i, a);
  }
  for (; i < hd; i++) {
    float a = carry ? out[i] : 0.0f;
    for (int64_t j = 0; j < len; j++) a += p[j] * f16_to_f32(v[j * kvw + i]);
    out[i] = a;
  }
}

// NQ heads against one KV head's values, 64 output lanes per pass (32 for more than four heads):
// each V row's f16 values are converted once for all NQ heads (NQ × 64 or 32 lanes: ≤ 16 of 32
// registers of accumulators), where one head at a time converted them once per head. Each lane
// still sums in j order (FMA, exact: kernels.h): the same bits as attn_values_one_avx512. `carry`
// as there. With `next`, the next tile's rows (as many, kvw apart) are asked for L1 as this
// one's are read: a pass over 64 output lanes reads two of a 128-wide row's four lines and would
// otherwise wait on memory for each.
template <int NQ>
void values_heads_avx512(const float* p, int64_t ps, const uint16_t* v, int64_t kvw, int64_t hd, int64_t len, float* out,
                         bool carry, const uint16_t* next) {
  constexpr int C = NQ > 4 ? 2 : 4;  // 16-lane vectors per pass
  auto start = [carry](const float* o) { return carry ? _mm512_loadu_ps(o) : _mm512_setzero_ps(); };
  int64_t i = 0;
  for (; i + 16 * C <= hd; i += 16 * C) {
    __m512 a[NQ][C];
    for (int h = 0; h < NQ; h++)
      for (int c = 0; c < C; c++) a[h][c] = start(out + h * hd + i + 16 * c);
    for (int64_t j = 0; j < len; j++) {
      const uint16_t* row = v + j * kvw + i;
      if (next != nullptr) {
        for (int c = 0; c < C; c += 2) _mm_prefetch((const char*)(next + j * kvw + i + 16 * c), _MM_HINT_T0);
      }
      __m512 vc[C];
      for (int c = 0; c < C; c++) vc[c] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(row + 16 * c)));
      for (int h = 0; h < NQ; h++) {
        const __m512 pj = _mm512_set1_ps(p[h * ps + j]);
        for (int c = 0; c < C; c++) a[h][c] = _mm512_fmadd_ps(pj, vc[c], a[h][c]);
      }
    }
    for (int h = 0; h < NQ; h++)
      for (int c = 0; c < C; c++) _mm512_storeu_ps(out + h * hd + i + 16 * c, a[h][c]);
  }
  if (i < hd) {
    // The last lanes (head dims that are not multiples of 64 or 32): one head at a time.
    for (int h = 0; h < NQ; h++) attn_values_one_avx512(p + h * ps, v + i, kvw, hd - i, len, out + h * hd + i, carry);
  }
}

// Up to eight heads per pass over the values (values_heads_avx512), the positions in tiles that
// stay in L1 while the passes over output lanes read them again (for_value_tiles).
void attn_values_avx512(const float* p, int64_t nq, int64_t p_stride, const uint16_t* v, int64_t kvw, int64_t hd,
                        int64_t len, float* out, bool carry) {
  for_value_tiles<8>(p, nq, p_stride, v, kvw, hd, len, out, carry,
                     [&](auto heads, const float* ph, const uint16_t* vt, int64_t n, float* oh, bool continues,
                         const uint16_t* next) {
                       values_heads_avx512<decltype(heads)::value>(ph, p_stride, vt, kvw, hd, n, oh, continues, next);
                  });
}

double sum_squares_avx512(const float* x, int64_t n) {
  __m512d a = _mm512_setzero_pd(), b = a;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i);
    const __m512 sq = _mm512_mul_ps(v, v);  // squares in f32, as the reference
    a = _mm512_add_pd(a, _mm512_cvtps_pd(_mm512_castps512_ps256(sq)));
    b = _mm512_add_pd(b, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(sq), 1))));
  }
  double sum = _mm512_reduce_add_pd(_mm512_add_pd(a, b));
  for (; i < n; i++) sum += (double)(x[i] * x[i]);
  return sum;
}

// exp in double precision, 8 lanes: x = k·ln2 + r (|r| ≤ ln2/2), exp(r) by a degree-13 Taylor
// polynomial (truncation < 2e-17 relative), then scaled by 2^k. Inputs are f32 values.
inline __m512d exp_pd(__m512d x) {
  x = _mm512_max_pd(_mm512_min_pd(x, _mm512_set1_pd(709.0)), _mm512_set1_pd(-745.0));
  const __m512d k = _mm512_roundscale_pd(_mm512_mul_pd(x, _mm512_set1_pd(1.4426950408889634)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  // r = x − k·ln2 with ln2 split in two (Cody–Waite) to keep r exact.
  __m512d r = _mm512_fnmadd_pd(k, _mm512_set1_pd(6.93147180369123816490e-01), x);
  r = _mm512_fnmadd_pd(k, _mm512_set1_pd(1.90821492927058770002e-10), r);
  static const double c[] = {1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0, 1.0 / 362880.0,
                             1.0 / 40320.0,      1.0 / 5040.0,      1.0 / 720.0,      1.0 / 120.0,      1.0 / 24.0,
                             1.0 / 6.0,          0.5,               1.0,              1.0};
  __m512d p = _mm512_set1_pd(c[0]);
  for (int i = 1; i < 14; i++) p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(c[i]));
  return _mm512_scalef_pd(p, k);
}

void exp_avx512(const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m512d v = _mm512_cvtps_pd(_mm256_loadu_ps(x + i));
    _mm256_storeu_ps(y + i, _mm512_cvtpd_ps(exp_pd(v)));
  }
  for (; i < n; i++) y[i] = (float)std::exp((double)x[i]);
}

// kernels.h softmax_exp: the maximum of s·scale over two vectors of lanes (VMAXPS returns its
// second operand, the running maximum, for a NaN lane: std::max's NaN rule), then the
// differences and their exps, two vectors of eight doubles at a time.
void softmax_exp_avx512(float* s, int64_t n, float scale) {
  const __m512 vs = _mm512_set1_ps(scale);
  __m512 m0 = _mm512_set1_ps(-INFINITY), m1 = m0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    m0 = _mm512_max_ps(_mm512_mul_ps(_mm512_loadu_ps(s + i), vs), m0);
    m1 = _mm512_max_ps(_mm512_mul_ps(_mm512_loadu_ps(s + i + 16), vs), m1);
  }
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, _mm512_max_ps(m0, m1));
  float max = lanes[0];
  for (int k = 1; k < 16; k++) max = std::max(max, lanes[k]);
  for (; i < n; i++) max = std::max(max, s[i] * scale);
  const __m512 vm = _mm512_set1_ps(max);
  i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 x = _mm512_sub_ps(_mm512_mul_ps(_mm512_loadu_ps(s + i), vs), vm);
    const __m256 lo = _mm512_cvtpd_ps(exp_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(x))));
    const __m256 hi = _mm512_cvtpd_ps(exp_pd(_mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)))));
    _mm256_storeu_ps(s + i, lo);
    _mm256_storeu_ps(s + i + 8, hi);
  }
  for (; i + 8 <= n; i += 8) {
    const __m256 x = _mm256_sub_ps(_mm256_mul_ps(_mm256_loadu_ps(s + i), _mm512_castps512_ps256(vs)), _mm512_castps512_ps256(vm));
    _mm256_storeu_ps(s + i, _mm512_cvtpd_ps(exp_pd(_mm512_cvtps_pd(x))));
  }
  for (; i < n; i++) s[i] = (float)std::exp((double)(s[i] * scale - max));
}

void relu2_glu_avx512(const float* g, const float* u, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 r = _mm512_max_ps(_mm512_loadu_ps(g + i), _mm512_setzero_ps());
    _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_mul_ps(r, r), _mm512_loadu_ps(u + i)));
  }
  for (; i < n; i++) {
    const float r = g[i] > 0.0f ? g[i] : 0.0f;
    y[i] = (r * r) * u[i];
  }
}

// Largest |x| of n floats (n a multiple of 16); NaN lanes are ignored, as std::max does.
inline float abs_max16(const float* x, int64_t n) {
  __m512 m = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; i += 16) m = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + i)), m);
  return _mm512_reduce_max_ps(m);
}

// nearest_int(x·s) for 16 lanes with the scalar's own bit trick (add 1.5·2^23, keep the low
// mantissa bits), so every input gives the scalar's integer: ties to even, and the same values
// for NaN and infinite products (VCVTPS2DQ would give INT_MIN for those).
inline __m512i nearest_int16(__m512 x, __m512 s) {
  const __m512i bits = _mm512_castps_si512(_mm512_add_ps(_mm512_mul_ps(x, s), _mm512_set1_ps(12582912.f)));
  return _mm512_sub_epi32(_mm512_and_si512(bits, _mm512_set1_epi32(0x007fffff)), _mm512_set1_epi32(0x00400000));
}

void quantize_i8_avx512(const float* x, int64_t n, int8_t* q, float* scale, int32_t* sum) {
  if (n % 16 != 0) {
    quantize_i8_scalar(x, n, q, scale, sum);
    return;
  }
  const double max = std::max(0.00001, (double)abs_max16(x, n));
  const float s = (float)(127.0 / max);
  const __m512 vs = _mm512_set1_ps(s);
  const __m512i lo = _mm512_set1_epi32(-128), hi = _mm512_set1_epi32(127);
  __m512i total = _mm512_setzero_si512();
  for (int64_t i = 0; i < n; i += 16) {
    // x·s rounded once, then to the nearest integer as nearest_int does.
    __m512i v = nearest_int16(_mm512_loadu_ps(x + i), vs);
    v = _mm512_min_epi32(_mm512_max_epi32(v, lo), hi);
    _mm_storeu_si128((__m128i*)(q + i), _mm512_cvtepi32_epi8(v));
    total = _mm512_add_epi32(total, v);
  }
  *scale = s;
  *sum = _mm512_reduce_add_epi32(total);
}

void quantize_q8k_avx512(const float* x, int64_t n, int8_t* q, float* d, int32_t* bsum) {
  const __m512i hi = _mm512_set1_epi32(127);
  for (int64_t b = 0; b < n / 256; b++) {
    const float* xb = x + 256 * b;
    const float amax = abs_max16(xb, 256);
    if (!(amax > 0.0f)) {
      quantize_q8k_scalar(xb, 256, q + 256 * b, d + b, bsum + b);  // zero (or NaN) blocks: as the reference
      continue;
    }
    // The first element whose magnitude is amax gives the sign, as the in-order scan does.
    float max = 0.0f;
    for (int j = 0; j < 256; j += 16) {
      const __mmask16 hit = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_loadu_ps(xb + j)), _mm512_set1_ps(amax), _CMP_EQ_OQ);
      if (hit != 0) {
        max = xb[j + __builtin_ctz(hit)];
        break;
      }
    }
    const float iscale = -127.0f / max;
    const __m512 vs = _mm512_set1_ps(iscale);
    __m512i total = _mm512_setzero_si512();
    for (int j = 0; j < 256; j += 16) {
      const __m512i v = _mm512_min_epi32(nearest_int16(_mm512_loadu_ps(xb + j), vs), hi);
      _mm_storeu_si128((__m128i*)(q + 256 * b + j), _mm512_cvtepi32_epi8(v));
      total = _mm512_add_epi32(total, v);
    }
    d[b] = 1.0f / iscale;
    bsum[b] = _mm512_reduce_add_epi32(total);
  }
}

void to_f16_avx512(const float* x, uint16_t* y, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm256_storeu_si256((__m256i*)(y + i), _mm512_cvtps_ph(_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  for (; i < n; i++) y[i] = f32_to_f16(x[i]);
}

void round_f16_avx512(const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i h = _mm512_cvtps_ph(_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm512_storeu_ps(y + i, _mm512_cvtph_ps(h));
  }
  for (; i < n; i++) y[i] = round_f16(x[i]);
}

template <bool Prefetch>
uint64_t stream_read_avx512_loop(const uint8_t* p, int64_t n) {
  __m512i a = _mm512_setzero_si512(), b = a;
  for (int64_t i = 0; i + 128 <= n; i += 128) {
    if (Prefetch) {
      _mm_prefetch((const char*)(p + i + PREFETCH_BYTES), _MM_HINT_T1);
      _mm_prefetch((const char*)(p + i + PREFETCH_BYTES + 64), _MM_HINT_T1);
    }
    a = _mm512_add_epi64(a, _mm512_loadu_si512(p + i));
    b = _mm512_add_epi64(b, _mm512_loadu_si512(p + i + 64));
  }
  return (uint64_t)_mm512_reduce_add_epi64(_mm512_add_epi64(a, b));
}

// One line per step, asked 4 KiB ahead into L2 (variant 2, Kernels::stream_read).
uint64_t stream_read_avx512_lines(const uint8_t* p, int64_t n) {
  __m512i a = _mm512_setzero_si512();
  for (int64_t i = 0; i + 64 <= n; i += 64) {
    _mm_prefetch((const char*)(p + i + 4096), _MM_HINT_T1);
    a = _mm512_add_epi64(a, _mm512_loadu_si512(p + i));
  }
  return (uint64_t)_mm512_reduce_add_epi64(a);
}

uint64_t stream_read_avx512(const uint8_t* p, int64_t n, int variant) {
  return variant == 2 ? stream_read_avx512_lines(p, n)
         : variant == 1 ? stream_read_avx512_loop<true>(p, n)
                        : stream_read_avx512_loop<false>(p, n);
}

// a0 + a1 for a 16-lane accumulator that holds the avx2 path's a0 (lanes 0-7) and a1 (8-15).
inline __m256 halves_sum(__m512 v) {
  return _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}

// The avx2 path's reduction of its four 8-lane accumulators, instruction for instruction.
inline float avx2_head_sum(__m256 a01, __m256 a23) {
  const __m256 v = _mm256_add_ps(a01, a23);
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Two rows × TB tokens of the F16 head in the avx2 path's order, with 512-bit vectors: that path
// keeps four 8-lane accumulators per token over each 32 columns (a0…a3) and sums them as
// (a0 + a1) + (a2 + a3); here a0|a1 and a2|a3 are the two halves of two 16-lane accumulators,
// each lane the same FMA on the same values, so every logit has the avx2 path's bits. Each
// converted weight vector serves TB tokens and each activation vector two rows (a prompt's or a
// perplexity run's head is bound by these operations, not by memory).
template <int TB>
inline void f16_pair_avx2_order(const uint16_t* ra, const uint16_t* rb, int64_t cols, const float* const* xs,
                                float* const* outs, int64_t r) {
  __m512 a[TB][2], b[TB][2];
  for (int k = 0; k < TB; k++) a[k][0] = a[k][1] = b[k][0] = b[k][1] = _mm512_setzero_ps();
  int64_t c = 0;
  for (; c + 32 <= cols; c += 32) {
    const __m512 wa0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(ra + c)));
    const __m512 wa1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(ra + c + 16)));
    const __m512 wb0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(rb + c)));
    const __m512 wb1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(rb + c + 16)));
    for (int k = 0; k < TB; k++) {
      const __m512 x0 = _mm512_loadu_ps(xs[k] + c), x1 = _mm512_loadu_ps(xs[k] + c + 16);
      a[k][0] = _mm512_fmadd_ps(wa0, x0, a[k][0]);
      a[k][1] = _mm512_fmadd_ps(wa1, x1, a[k][1]);
      b[k][0] = _mm512_fmadd_ps(wb0, x0, b[k][0]);
      b[k][1] = _mm512_fmadd_ps(wb1, x1, b[k][1]);
    }
  }
  for (int k = 0; k < TB; k++) {
    float sa = avx2_head_sum(halves_sum(a[k][0]), halves_sum(a[k][1]));
    float sb = avx2_head_sum(halves_sum(b[k][0]), halves_sum(b[k][1]));
    for (int64_t cc = c; cc < cols; cc++) {
      sa += f16_to_f32(ra[cc]) * xs[k][cc];
      sb += f16_to_f32(rb[cc]) * xs[k][cc];
    }
    outs[k][r] = sa;
    outs[k][r + 1] = sb;
  }
}

// The F16 head at the width decode_prefetch().head_bits says (kernels.h), one order for every
// number of tokens. 256: the avx2 path's logits, bit for bit (on Intel, where its one-token loop
// read a token's head 5% faster than the 512-bit one): decode runs that path's own loop (one row
// after another, bound by memory), steps of several tokens run it in pairs of rows at 512 bits.
void f16_gemm_avx512_path(const uint16_t* w, int64_t cols, int64_t r0, int64_t r1, const float* x, int64_t T, float* out,
                          int64_t out_stride) {
  static const Kernels* const avx2 = decode_prefetch().head_bits == 256 ? kernels_avx2() : nullptr;
  if (avx2 == nullptr) {  // 512, or a CPU without AVX2 (none with AVX-512 is known)
    f16_gemm_avx512(w, cols, r0, r1, x, T, out, out_stride);
    return;
  }
  const int64_t r = f16_row_pairs(w, cols, r0, r1, x, T, out, out_stride,
                                  [&](auto tb, const uint16_t* ra, const uint16_t* rb, const float* const* xs,
                                      float* const* outs, int64_t row) {
                                    f16_pair_avx2_order<decltype(tb)::value>(ra, rb, cols, xs, outs, row);
                                  });
  if (r < r1) avx2->f16_gemm(w, cols, r, r1, x, T, out, out_stride);
}

const Kernels AVX512 = {"avx512vnni",       LAYOUT_INTERLEAVE256, i2s_gemm_avx512,    tq2_gemm_avx512,
                        f16_gemm_avx512_path, q8_0_gemm_avx512,   attn_scores_avx512, attn_values_avx512,
                        sum_squares_avx512, exp_avx512,           softmax_exp_avx512, relu2_glu_avx512,   quantize_i8_avx512,
                        quantize_q8k_avx512, stream_read_avx512, to_f16_avx512,   round_f16_avx512,
                        q6_k_gemm_x86,      tq1_gemm_avx512,      tq1_to_tq2_x86,
                        kKeyPrefetchBytes};

}  // namespace

const Kernels* kernels_avx512_impl() { return &AVX512; }

}  // namespace bitnet

#pragma GCC pop_options

namespace bitnet {
const Kernels* kernels_avx512vnni() {
  __builtin_cpu_init();
  const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                  __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
  return ok ? kernels_avx512_impl() : nullptr;
}
}  // namespace bitnet

#else
namespace bitnet {
const Kernels* kernels_avx512vnni() { return nullptr; }
}  // namespace bitnet
#endif
