// ---------------------------------------------------------------------------------------------
// AVX2 (+FMA, F16C) kernels. The ternary dot products are exact integer sums (identical to the
// scalar path); float accumulation across blocks and in the F16 head uses vector lanes, so those
// results differ from the scalar order by rounding only (tested with named tolerances).
// Technique after bitnet.cpp's I2_S kernels (src/ggml-bitnet-mad.cpp) and llama.cpp's
// ggml-cpu/arch/x86/quants.c (ggml_vec_dot_tq2_0_q8_K).
// ---------------------------------------------------------------------------------------------
#include "kernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")

namespace bitnet {
namespace {

inline int32_t hsum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

inline float hsum_f32(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Σ code·q over one 128-element I2_S block (32 code bytes, 128 activations in natural order),
// as int16 pair sums: maddubs(u8 codes, s8 q) ≤ 2·2·127 per lane, four of them fit in int16.
inline __m256i i2s_block(const uint8_t* codes, const int8_t* q) {
  const __m256i mask = _mm256_set1_epi8(3);
  const __m256i packed = _mm256_loadu_si256((const __m256i*)codes);
  const __m256i c0 = _mm256_and_si256(_mm256_srli_epi16(packed, 6), mask);
  const __m256i c1 = _mm256_and_si256(_mm256_srli_epi16(packed, 4), mask);
  const __m256i c2 = _mm256_and_si256(_mm256_srli_epi16(packed, 2), mask);
  const __m256i c3 = _mm256_and_si256(packed, mask);
  __m256i s = _mm256_maddubs_epi16(c0, _mm256_loadu_si256((const __m256i*)(q)));
  s = _mm256_add_epi16(s, _mm256_maddubs_epi16(c1, _mm256_loadu_si256((const __m256i*)(q + 32))));
  s = _mm256_add_epi16(s, _mm256_maddubs_epi16(c2, _mm256_loadu_si256((const __m256i*)(q + 64))));
  s = _mm256_add_epi16(s, _mm256_maddubs_epi16(c3, _mm256_loadu_si256((const __m256i*)(q + 96))));
  return _mm256_madd_epi16(s, _mm256_set1_epi16(1));
}

void i2s_gemm_avx2(const uint8_t* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* q, const float* act_scale,
                   const int32_t* act_sum, float w_scale, int64_t T, float* out, int64_t out_stride) {
  const int64_t nb = cols / 128;
  const int64_t row_bytes = cols / 4;
  for (int64_t r = r0; r < r1; r++) {
    const uint8_t* row = w + r * row_bytes;
    int64_t t = 0;
    // Four tokens per pass reuse each row's bytes from registers/L1.
    for (; t + 4 <= T; t += 4) {
      __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
      for (int64_t b = 0; b < nb; b++) {
        const uint8_t* codes = row + 32 * b;
        a0 = _mm256_add_epi32(a0, i2s_block(codes, q + (t + 0) * cols + 128 * b));
        a1 = _mm256_add_epi32(a1, i2s_block(codes, q + (t + 1) * cols + 128 * b));
        a2 = _mm256_add_epi32(a2, i2s_block(codes, q + (t + 2) * cols + 128 * b));
        a3 = _mm256_add_epi32(a3, i2s_block(codes, q + (t + 3) * cols + 128 * b));
      }
      const __m256i acc[4] = {a0, a1, a2, a3};
      for (int k = 0; k < 4; k++) {
        const int32_t dot = hsum_i32(acc[k]);
        const float y = (float)(dot - act_sum[t + k]) / act_scale[t + k];
        out[(t + k) * out_stride + r] = y * w_scale;
      }
    }
    for (; t < T; t++) {
      __m256i acc = _mm256_setzero_si256();
      for (int64_t b = 0; b < nb; b++) {
        acc = _mm256_add_epi32(acc, i2s_block(row + 32 * b, q + t * cols + 128 * b));
      }
      const float y = (float)(hsum_i32(acc) - act_sum[t]) / act_scale[t];
      out[t * out_stride + r] = y * w_scale;
    }
  }
}

// Σ code·q over one TQ2_0 block (codes of element 128c+32l+m at bits 2l of qs[32c+m]).
inline __m256i tq2_block(const BlockTQ2& blk, const int8_t* q) {
  const __m256i mask = _mm256_set1_epi8(3);
  __m256i s = _mm256_setzero_si256();
  for (int c = 0; c < 2; c++) {
    const __m256i packed = _mm256_loadu_si256((const __m256i*)(blk.qs + 32 * c));
    const int8_t* qc = q + 128 * c;
    __m256i p = _mm256_maddubs_epi16(_mm256_and_si256(packed, mask), _mm256_loadu_si256((const __m256i*)(qc)));
    p = _mm256_add_epi16(p, _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(packed, 2), mask),
                                                 _mm256_loadu_si256((const __m256i*)(qc + 32))));
    p = _mm256_add_epi16(p, _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(packed, 4), mask),
                                                 _mm256_loadu_si256((const __m256i*)(qc + 64))));
    p = _mm256_add_epi16(p, _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(packed, 6), mask),
                                                 _mm256_loadu_si256((const __m256i*)(qc + 96))));
    s = _mm256_add_epi32(s, _mm256_madd_epi16(p, _mm256_set1_epi16(1)));
  }
  return s;
}

void tq2_gemm_avx2(const BlockTQ2* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* q, const float* act_d,
                   const int32_t* act_bsum, int64_t T, float* out, int64_t out_stride) {
  const int64_t nb = cols / 256;
  for (int64_t r = r0; r < r1; r++) {
    const BlockTQ2* row = w + r * nb;
    for (int64_t t = 0; t < T; t++) {
      const int8_t* qt = q + t * cols;
      __m256 acc = _mm256_setzero_ps();
      float correction = 0.0f;  // Σ over blocks of Σq·d: maps codes {0,1,2} to {−1,0,1}
      for (int64_t b = 0; b < nb; b++) {
        const __m256i sum = tq2_block(row[b], qt + 256 * b);  // exact per-lane integer sums
        const float d = act_d[t * nb + b] * f16_to_f32(row[b].d);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_set1_ps(d), acc);
        correction += (float)act_bsum[t * nb + b] * d;
      }
      out[t * out_stride + r] = hsum_f32(acc) - correction;
    }
  }
}

void f16_gemm_avx2(const uint16_t* w, int64_t cols, int64_t r0, int64_t r1, const float* x, int64_t T, float* out,
                   int64_t out_stride) {
  for (int64_t r = r0; r < r1; r++) {
    const uint16_t* row = w + r * cols;
    for (int64_t t = 0; t < T; t++) {
      const float* xt = x + t * cols;
      __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
      int64_t c = 0;
      for (; c + 32 <= cols; c += 32) {
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
        acc = _mm256_fmadd_ps(s, _mm256_set1_ps(f16_to_f32(row[b].d) * f16_to_f32(xt[b].d)), acc);
      }
      out[t * out_stride + r] = hsum_f32(acc);
    }
  }
}

const Kernels AVX2 = {"avx2", LAYOUT_NATURAL, i2s_gemm_avx2, tq2_gemm_avx2, f16_gemm_avx2, q8_0_gemm_avx2};

}  // namespace

const Kernels* kernels_avx2_impl() { return &AVX2; }

}  // namespace bitnet

#pragma GCC pop_options

namespace bitnet {
const Kernels* kernels_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? kernels_avx2_impl() : nullptr;
}
}  // namespace bitnet

#else
namespace bitnet {
const Kernels* kernels_avx2() { return nullptr; }
}  // namespace bitnet
#endif
