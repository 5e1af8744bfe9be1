// ---------------------------------------------------------------------------------------------
// AVX2 + AVX-VNNI (256-bit VPDPBUSD without AVX-512: Alder Lake and later Intel cores, AMD Zen 4
// and later). The ternary projections use VPDPBUSD, which multiplies u8 codes by s8 activations
// and adds groups of four products into int32 lanes in one instruction (AVX2 needs VPMADDUBSW,
// VPADDW and a widening VPMADDWD for the same). Every other op is the AVX2 path's. The integer
// sums are exact, and the float steps are the scalar kernel's, so results are bit-identical.
// ---------------------------------------------------------------------------------------------
#include "kernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avxvnni")

namespace bitnet {
namespace {

inline int32_t hsum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

// The horizontal sums of four int32 vectors as one vector (a, b, c, d).
inline __m128i hsum4_i32(__m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i s = _mm256_hadd_epi32(_mm256_hadd_epi32(a, b), _mm256_hadd_epi32(c, d));
  return _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
}

// Σ code·q of one I2_S row (128-element blocks: 32 bytes, element 32j+m at bits 6−2j of byte m)
// for N tokens `cols` apart, each block's codes unpacked once for all N.
template <int N>
inline void i2s_row_dots(const uint8_t* row, int64_t nb, const int8_t* q, int64_t cols, __m256i acc[N]) {
  const __m256i mask = _mm256_set1_epi8(3);
  for (int k = 0; k < N; k++) acc[k] = _mm256_setzero_si256();
  for (int64_t b = 0; b < nb; b++) {
    const __m256i packed = _mm256_loadu_si256((const __m256i*)(row + 32 * b));
    const __m256i c0 = _mm256_and_si256(_mm256_srli_epi16(packed, 6), mask);
    const __m256i c1 = _mm256_and_si256(_mm256_srli_epi16(packed, 4), mask);
    const __m256i c2 = _mm256_and_si256(_mm256_srli_epi16(packed, 2), mask);
    const __m256i c3 = _mm256_and_si256(packed, mask);
    for (int k = 0; k < N; k++) {
      const int8_t* qk = q + k * cols + 128 * b;
      acc[k] = _mm256_dpbusd_avx_epi32(acc[k], c0, _mm256_loadu_si256((const __m256i*)qk));
      acc[k] = _mm256_dpbusd_avx_epi32(acc[k], c1, _mm256_loadu_si256((const __m256i*)(qk + 32)));
      acc[k] = _mm256_dpbusd_avx_epi32(acc[k], c2, _mm256_loadu_si256((const __m256i*)(qk + 64)));
      acc[k] = _mm256_dpbusd_avx_epi32(acc[k], c3, _mm256_loadu_si256((const __m256i*)(qk + 96)));
    }
  }
}

// One token (decode): the four code vectors of a block feed four independent accumulators, so
// consecutive VPDPBUSDs do not wait on each other's latency as one chain would.
template <>
inline void i2s_row_dots<1>(const uint8_t* row, int64_t nb, const int8_t* q, int64_t, __m256i acc[1]) {
  const __m256i mask = _mm256_set1_epi8(3);
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (int64_t b = 0; b < nb; b++) {
    const __m256i packed = _mm256_loadu_si256((const __m256i*)(row + 32 * b));
    const int8_t* qb = q + 128 * b;
    a0 = _mm256_dpbusd_avx_epi32(a0, _mm256_and_si256(_mm256_srli_epi16(packed, 6), mask), _mm256_loadu_si256((const __m256i*)qb));
    a1 = _mm256_dpbusd_avx_epi32(a1, _mm256_and_si256(_mm256_srli_epi16(packed, 4), mask), _mm256_loadu_si256((const __m256i*)(qb + 32)));
    a2 = _mm256_dpbusd_avx_epi32(a2, _mm256_and_si256(_mm256_srli_epi16(packed, 2), mask), _mm256_loadu_si256((const __m256i*)(qb + 64)));
    a3 = _mm256_dpbusd_avx_epi32(a3, _mm256_and_si256(packed, mask), _mm256_loadu_si256((const __m256i*)(qb + 96)));
  }
  acc[0] = _mm256_add_epi32(_mm256_add_epi32(a0, a1), _mm256_add_epi32(a2, a3));
}

template <int N>
inline void i2s_tokens(const uint8_t* row, int64_t nb, int64_t cols, int64_t r, int64_t t, const int8_t* q,
                       const float* act_scale, const int32_t* act_sum, float w_scale, float* out, int64_t out_stride) {
  __m256i acc[N];
  i2s_row_dots<N>(row, nb, q + t * cols, cols, acc);
  for (int k = 0; k < N; k++) {
    const float y = (float)(hsum_i32(acc[k]) - act_sum[t + k]) / act_scale[t + k];
    out[(t + k) * out_stride + r] = y * w_scale;
  }
}

void i2s_gemm_avxvnni(const uint8_t* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* q, const float* act_scale,
                      const int32_t* act_sum, float w_scale, int64_t T, float* out, int64_t out_stride) {
  const int64_t nb = cols / 128;
  const int64_t row_bytes = cols / 4;
  // Tokens outside, rows inside: a group's activations (8 × cols bytes) stay in L1 while the
  // rows of this call (a tile of ~32 KiB, see for_row_tiles) stream past them. Rows outside
  // re-read every token's activations from L2 for each row, and that read bounded prefill.
  int64_t t = 0;
  for (; t + 8 <= T; t += 8) {
    for (int64_t r = r0; r < r1; r++) {
      i2s_tokens<8>(w + r * row_bytes, nb, cols, r, t, q, act_scale, act_sum, w_scale, out, out_stride);
    }
  }
  for (; t + 4 <= T; t += 4) {
    for (int64_t r = r0; r < r1; r++) {
      i2s_tokens<4>(w + r * row_bytes, nb, cols, r, t, q, act_scale, act_sum, w_scale, out, out_stride);
    }
  }
  for (; t < T; t++) {
    for (int64_t r = r0; r < r1; r++) {
      i2s_tokens<1>(w + r * row_bytes, nb, cols, r, t, q, act_scale, act_sum, w_scale, out, out_stride);
    }
  }
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

// One chain per token: with four tokens per pass the four chains overlap each other.
inline __m256i tq2_dot(const __m256i codes[8], const int8_t* q) {
  __m256i acc = _mm256_setzero_si256();
  for (int j = 0; j < 8; j++) acc = _mm256_dpbusd_avx_epi32(acc, codes[j], _mm256_loadu_si256((const __m256i*)(q + 32 * j)));
  return acc;
}

// One token (decode): four independent accumulators, since one VPDPBUSD chain of eight would
// wait on its latency. (In the four-token pass the extra registers spill: measured slower.)
inline __m256i tq2_dot_one(const __m256i codes[8], const int8_t* q) {
  __m256i acc[4];
  for (int j = 0; j < 4; j++) acc[j] = _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), codes[j], _mm256_loadu_si256((const __m256i*)(q + 32 * j)));
  for (int j = 4; j < 8; j++) acc[j - 4] = _mm256_dpbusd_avx_epi32(acc[j - 4], codes[j], _mm256_loadu_si256((const __m256i*)(q + 32 * j)));
  return _mm256_add_epi32(_mm256_add_epi32(acc[0], acc[1]), _mm256_add_epi32(acc[2], acc[3]));
}

// Every output is Σ_b (float)(sumi_b − bsum_b) · (act_d_b · w_d_b) over blocks in order, with
// separate multiplies and adds, as the scalar kernel; lanes hold different tokens.
void tq2_gemm_avxvnni(const BlockTQ2* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* q, const float* act_d,
                      const int32_t* act_bsum, int64_t T, float* out, int64_t out_stride) {
  const int64_t nb = cols / 256;
  const int64_t T4 = T - T % 4;
  __m256i codes[8];
  // Four tokens per pass over a row, sharing each block's unpacked codes; tokens outside, rows
  // inside, so the four tokens' activations stay in L1.
  for (int64_t t = 0; t < T4; t += 4) {
    const int8_t* q0 = q + t * cols;
    for (int64_t r = r0; r < r1; r++) {
      const BlockTQ2* row = w + r * nb;
      __m128 sumf = _mm_setzero_ps();
      for (int64_t b = 0; b < nb; b++) {
        tq2_unpack(row[b], codes);
        const int64_t off = 256 * b;
        const __m128i sumi = hsum4_i32(tq2_dot(codes, q0 + off), tq2_dot(codes, q0 + cols + off),
                                       tq2_dot(codes, q0 + 2 * cols + off), tq2_dot(codes, q0 + 3 * cols + off));
        const __m128i bsum = _mm_setr_epi32(act_bsum[t * nb + b], act_bsum[(t + 1) * nb + b],
                                            act_bsum[(t + 2) * nb + b], act_bsum[(t + 3) * nb + b]);
        const __m128 ad = _mm_setr_ps(act_d[t * nb + b], act_d[(t + 1) * nb + b], act_d[(t + 2) * nb + b],
                                      act_d[(t + 3) * nb + b]);
        const __m128 scale = _mm_mul_ps(ad, _mm_set1_ps(_cvtsh_ss(row[b].d)));
        sumf = _mm_add_ps(sumf, _mm_mul_ps(_mm_cvtepi32_ps(_mm_sub_epi32(sumi, bsum)), scale));
      }
      alignas(16) float o[4];
      _mm_store_ps(o, sumf);
      for (int k = 0; k < 4; k++) out[(t + k) * out_stride + r] = o[k];
    }
  }
  for (int64_t t = T4; t < T; t++) {
    const int8_t* qt = q + t * cols;
    for (int64_t r = r0; r < r1; r++) {
      const BlockTQ2* row = w + r * nb;
      float sumf = 0.0f;
      for (int64_t b = 0; b < nb; b++) {
        tq2_unpack(row[b], codes);
        const int32_t sumi = hsum_i32(tq2_dot_one(codes, qt + 256 * b)) - act_bsum[t * nb + b];
        sumf += (float)sumi * (act_d[t * nb + b] * _cvtsh_ss(row[b].d));
      }
      out[t * out_stride + r] = sumf;
    }
  }
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
