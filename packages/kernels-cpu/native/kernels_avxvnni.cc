// ---------------------------------------------------------------------------------------------
// AVX2 + AVX-VNNI (256-bit VPDPBUSD without AVX-512: Alder Lake and later Intel cores, AMD Zen 4
// and later). The ternary projections use VPDPBUSD, which multiplies u8 codes by s8 activations
// and adds groups of four products into int32 lanes in one instruction (AVX2 needs VPMADDUBSW,
// VPADDW and a widening VPMADDWD for the same). Every other op is the AVX2 path's. The integer
// sums are exact, and the float steps are the scalar kernel's, so results are bit-identical.
// ---------------------------------------------------------------------------------------------
#include <type_traits>
#include <utility>
#include "kernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avxvnni")

namespace bitnet {
namespace {

#include "ternary_avx2.h"
#include "tq1_x86.h"

// acc += Σ u8 a × s8 b by fours, accumulating in place. GCC's intrinsic lets the result land in a
// fresh register and copies it back each iteration, and with eight accumulators it spilled one
// to the stack, a store-forwarding round trip on the accumulator's chain.
inline __m256i dpbusd_acc(__m256i acc, __m256i a, const int8_t* b) {
  asm("%{vex%} vpdpbusd %2, %1, %0" : "+x"(acc) : "x"(a), "m"(*(const __m256i*)b));
  return acc;
}

// The same with the activations in a register (loaded once, used by two rows).
inline __m256i dpbusd_reg(__m256i acc, __m256i a, __m256i b) {
  asm("%{vex%} vpdpbusd %2, %1, %0" : "+x"(acc) : "x"(a), "x"(b));
  return acc;
}

// Σ u8 code × s8 activation with VPDPBUSD: four products into an int32 lane per instruction.
struct DpbusdDot {
  template <int N>
  static void i2s_row(const uint8_t* row, int64_t nb, const int8_t* q, int64_t cols, __m256i acc[N]) {
    if constexpr (N == 1) {
      // One token (decode): each code field masked in place, not shifted down (see
      // i2s_masked_sum), and two blocks per pass into eight accumulators. One VPDPBUSD chain
      // per field waits on its latency (~4 cycles on a Zen 5) every block: four chains ran at
      // 120 GMAC/s from L2 on one Zen 5 core, eight at 173 (bench/gemm.sh avxvnni 512 2560 1).
      const __m256i m0 = _mm256_set1_epi8((char)0xC0), m1 = _mm256_set1_epi8(0x30), m2 = _mm256_set1_epi8(0x0C),
                    m3 = _mm256_set1_epi8(0x03);
      __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0, e0 = a0, e1 = a0, e2 = a0, e3 = a0;
      const int64_t ahead = decode_prefetch().i2s, far = decode_prefetch().l2;
      const bool nta = decode_prefetch().non_temporal;
      int64_t b = 0;
      for (; b + 2 <= nb; b += 2) {
        prefetch_decode_line<_MM_HINT_T0>(row + 32 * b + ahead, nta);
        if (far > 0) _mm_prefetch((const char*)(row + 32 * b + far), _MM_HINT_T1);
        const __m256i p0 = _mm256_loadu_si256((const __m256i*)(row + 32 * b));
        const __m256i p1 = _mm256_loadu_si256((const __m256i*)(row + 32 * b + 32));
        const int8_t* qb = q + 128 * b;
        a0 = dpbusd_acc(a0, _mm256_and_si256(p0, m0), qb);
        a1 = dpbusd_acc(a1, _mm256_and_si256(p0, m1), qb + 32);
        a2 = dpbusd_acc(a2, _mm256_and_si256(p0, m2), qb + 64);
        a3 = dpbusd_acc(a3, _mm256_and_si256(p0, m3), qb + 96);
        e0 = dpbusd_acc(e0, _mm256_and_si256(p1, m0), qb + 128);
        e1 = dpbusd_acc(e1, _mm256_and_si256(p1, m1), qb + 160);
        e2 = dpbusd_acc(e2, _mm256_and_si256(p1, m2), qb + 192);
        e3 = dpbusd_acc(e3, _mm256_and_si256(p1, m3), qb + 224);
      }
      if (b < nb) {
        const __m256i p0 = _mm256_loadu_si256((const __m256i*)(row + 32 * b));
        const int8_t* qb = q + 128 * b;
        a0 = dpbusd_acc(a0, _mm256_and_si256(p0, m0), qb);
        a1 = dpbusd_acc(a1, _mm256_and_si256(p0, m1), qb + 32);
        a2 = dpbusd_acc(a2, _mm256_and_si256(p0, m2), qb + 64);
        a3 = dpbusd_acc(a3, _mm256_and_si256(p0, m3), qb + 96);
      }
      const __m256i a[4] = {_mm256_add_epi32(a0, e0), _mm256_add_epi32(a1, e1), _mm256_add_epi32(a2, e2),
                            _mm256_add_epi32(a3, e3)};
      acc[0] = i2s_masked_sum(a);
    } else {
      // A few tokens read the rows one after another: each line asked for kPrefetchRowsAhead
      // rows ahead, as the eight-token passes do (weight_prefetch.h).
      const int64_t ahead = 32 * nb * kPrefetchRowsAhead;
      // Two sums per token (fields 0-1, 2-3): one chain of four VPDPBUSD per token and block
      // waited on their latency (113 GMAC/s from L2 on an Intel Xeon core at four tokens).
      __m256i lo[N], hi[N];
      for (int k = 0; k < N; k++) lo[k] = hi[k] = _mm256_setzero_si256();
      for (int64_t b = 0; b < nb; b++) {
        if ((b & 1) == 0) _mm_prefetch((const char*)(row + 32 * b + ahead), _MM_HINT_T0);
        __m256i c[4];
        i2s_unpack(row + 32 * b, c);
        for (int k = 0; k < N; k++) {
          const int8_t* qk = q + k * cols + 128 * b;
          lo[k] = dpbusd_acc(dpbusd_acc(lo[k], c[0], qk), c[1], qk + 32);
          hi[k] = dpbusd_acc(dpbusd_acc(hi[k], c[2], qk + 64), c[3], qk + 96);
        }
      }
      for (int k = 0; k < N; k++) acc[k] = _mm256_add_epi32(lo[k], hi[k]);
    }
  }

  // One token over two adjacent rows (rb = ra + 32 × nb): each activation vector loaded once
  // for both, eight chains (four fields × two rows) as i2s_row<1> has with two blocks per pass.
  // One Zen 5 core from L2 (bench/gemm.sh avxvnni 1280 2560 1): 128-140 GMAC/s a row at a time,
  // 143-152 in pairs (five loads per block and row against three). In the model from memory
  // (bench-i2s, bench/ab-addons.mjs, 8 rounds) the projections took 10.88 → 10.63 ms a token,
  // faster in 7 of 8 rounds, with the pair's lines asked for in address order; asked for as two
  // streams (each row's line `ahead` bytes on) they took 10.00 → 10.55, slower.
  // The pair's lines are asked for as one run (below), at the path's own distances. Each row's
  // own lines a whole number of pairs on, as the avx2 pairs ask (MaddubsDot::pair_lead), streamed
  // 27.3-29.5 against 31.2-31.4 GB/s on a Xeon with AMX (bench/decode-sequence.sh, `steal`).
  static RowPairPlan row_pair_plan(int64_t) {
    const DecodePrefetch& d = decode_prefetch();
    return {d.i2s, d.l2, d.non_temporal};
  }
  static void i2s_row_pair(const RowPairPlan& plan, const uint8_t* ra, int64_t nb, const int8_t* q, __m256i& acc_a,
                           __m256i& acc_b) {
    const uint8_t* rb = ra + 32 * nb;
    const __m256i m0 = _mm256_set1_epi8((char)0xC0), m1 = _mm256_set1_epi8(0x30), m2 = _mm256_set1_epi8(0x0C),
                  m3 = _mm256_set1_epi8(0x03);
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0, c0 = a0, c1 = a0, c2 = a0, c3 = a0;
    const int64_t ahead = plan.ahead, far = plan.far;
    const bool nta = plan.non_temporal;
    for (int64_t b = 0; b < nb; b++) {
      // The two rows are one run of 64 · nb bytes, read at 64 bytes a block: every line of it
      // once, ahead and in order.
      prefetch_decode_line<_MM_HINT_T0>(ra + 64 * b + ahead, nta);
      if (far > 0) _mm_prefetch((const char*)(ra + 64 * b + far), _MM_HINT_T1);
      const __m256i pa = _mm256_loadu_si256((const __m256i*)(ra + 32 * b));
      const __m256i pb = _mm256_loadu_si256((const __m256i*)(rb + 32 * b));
      const int8_t* qb = q + 128 * b;
      __m256i x = _mm256_loadu_si256((const __m256i*)qb);
      a0 = dpbusd_reg(a0, _mm256_and_si256(pa, m0), x);
      c0 = dpbusd_reg(c0, _mm256_and_si256(pb, m0), x);
      x = _mm256_loadu_si256((const __m256i*)(qb + 32));
      a1 = dpbusd_reg(a1, _mm256_and_si256(pa, m1), x);
      c1 = dpbusd_reg(c1, _mm256_and_si256(pb, m1), x);
      x = _mm256_loadu_si256((const __m256i*)(qb + 64));
      a2 = dpbusd_reg(a2, _mm256_and_si256(pa, m2), x);
      c2 = dpbusd_reg(c2, _mm256_and_si256(pb, m2), x);
      x = _mm256_loadu_si256((const __m256i*)(qb + 96));
      a3 = dpbusd_reg(a3, _mm256_and_si256(pa, m3), x);
      c3 = dpbusd_reg(c3, _mm256_and_si256(pb, m3), x);
    }
    const __m256i a[4] = {a0, a1, a2, a3}, c[4] = {c0, c1, c2, c3};
    acc_a = i2s_masked_sum(a);
    acc_b = i2s_masked_sum(c);
  }
  // One token's 128 elements into an int32 accumulator (no widening needed).
  static constexpr int64_t kI2sChunkBlocks = 8;
  static void add4(__m256i& acc, const __m256i c[4], const int8_t* q) {
    for (int j = 0; j < 4; j++) acc = _mm256_dpbusd_avx_epi32(acc, c[j], _mm256_loadu_si256((const __m256i*)(q + 32 * j)));
  }
  static __m256i sums8(__m256i acc[8]) { return hsum8_i32(acc); }

  // One chain per token: in the four-token pass the four chains overlap each other.
  static __m256i tq2(const __m256i codes[8], const int8_t* q) {
    __m256i acc = _mm256_setzero_si256();
    for (int j = 0; j < 8; j++) acc = _mm256_dpbusd_avx_epi32(acc, codes[j], _mm256_loadu_si256((const __m256i*)(q + 32 * j)));
    return acc;
  }

  // Decode: four independent accumulators (a chain of eight waits on its latency; in the
  // four-token pass the extra registers spill: measured 114.6 → 91 t/s, so only here).
  static __m256i tq2_one(const __m256i codes[8], const int8_t* q) {
    __m256i a[4];
    for (int j = 0; j < 4; j++) {
      a[j] = _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), codes[j], _mm256_loadu_si256((const __m256i*)(q + 32 * j)));
    }
    for (int j = 4; j < 8; j++) {
      a[j - 4] = _mm256_dpbusd_avx_epi32(a[j - 4], codes[j], _mm256_loadu_si256((const __m256i*)(q + 32 * j)));
    }
    return _mm256_add_epi32(_mm256_add_epi32(a[0], a[1]), _mm256_add_epi32(a[2], a[3]));
  }

  // One TQ2_0 block for one token (decode), straight from its code bytes: one shift per 32
  // bytes serves two fields (MaddubsDot::tq2_block_one; the fields masked with 12 are codes × 4,
  // summed apart and shifted back exactly), four chains of two VPDPBUSD each.
  static __m256i tq2_block_one(const uint8_t* qs, const int8_t* q) {
    const __m256i m3 = _mm256_set1_epi8(3), m12 = _mm256_set1_epi8(12);
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    for (int h = 0; h < 2; h++) {
      const __m256i p = _mm256_loadu_si256((const __m256i*)(qs + 32 * h));
      const __m256i r = _mm256_srli_epi16(p, 4);
      const int8_t* qh = q + 128 * h;
      a = _mm256_dpbusd_avx_epi32(a, _mm256_and_si256(p, m3), _mm256_loadu_si256((const __m256i*)qh));
      b = _mm256_dpbusd_avx_epi32(b, _mm256_and_si256(p, m12), _mm256_loadu_si256((const __m256i*)(qh + 32)));
      c = _mm256_dpbusd_avx_epi32(c, _mm256_and_si256(r, m3), _mm256_loadu_si256((const __m256i*)(qh + 64)));
      d = _mm256_dpbusd_avx_epi32(d, _mm256_and_si256(r, m12), _mm256_loadu_si256((const __m256i*)(qh + 96)));
    }
    return _mm256_add_epi32(_mm256_add_epi32(a, c), _mm256_srai_epi32(_mm256_add_epi32(b, d), 2));
  }
};

static_assert(HasRowPairs<DpbusdDot>::value, "the one-token I2_S pass runs DpbusdDot rows in pairs");

void i2s_gemm_avxvnni(const uint8_t* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* q, const float* act_scale,
                      const int32_t* act_sum, float w_scale, int64_t T, float* out, int64_t out_stride) {
  i2s_gemm_256<DpbusdDot>(w, cols, r0, r1, q, act_scale, act_sum, w_scale, T, out, out_stride);
}

void tq1_gemm_avxvnni(const BlockTQ1* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* q, const float* act_d,
                      const int32_t* act_bsum, int64_t T, float* out, int64_t out_stride) {
  tq1_gemm_rows(w, cols, r0, r1, q, act_d, act_bsum, T, out, out_stride,
                [](const __m256i codes[8], const int8_t* qb) { return hsum_i32(DpbusdDot::tq2_one(codes, qb)); });
}

void tq2_gemm_avxvnni(const BlockTQ2* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* q, const float* act_d,
                      const int32_t* act_bsum, int64_t T, float* out, int64_t out_stride) {
  tq2_gemm_256<DpbusdDot>(w, cols, r0, r1, q, act_d, act_bsum, T, out, out_stride);
}

}  // namespace
}  // namespace bitnet

#pragma GCC pop_options

namespace bitnet {
const Kernels* kernels_avxvnni() {
  const Kernels* avx2 = kernels_avx2();
  __builtin_cpu_init();
  if (avx2 == nullptr || !__builtin_cpu_supports("avxvnni")) return nullptr;
  // The AVX2 path with the ternary projections on VPDPBUSD.
  static const Kernels table = [avx2] {
    Kernels k = *avx2;
    k.name = "avxvnni";
    k.i2s_gemm = i2s_gemm_avxvnni;
    k.tq2_gemm = tq2_gemm_avxvnni;
    k.tq1_gemm = tq1_gemm_avxvnni;
    return k;
  }();
  return &table;
}
}  // namespace bitnet

#else
namespace bitnet {
const Kernels* kernels_avxvnni() { return nullptr; }
}  // namespace bitnet
#endif
