// ---------------------------------------------------------------------------------------------
// AVX-512 (F, BW, VL) + VNNI kernels. One 64-byte load of packed ternary codes (two I2_S blocks,
// or one TQ2_0 block) yields four 64-lane code vectors, each multiplied with 64 int8
// activations by vpdpbusd (u8 × s8 → int32, 4 products per lane) — activations are pre-permuted
// into LAYOUT_INTERLEAVE256 once per token so every load is contiguous.
// ---------------------------------------------------------------------------------------------
#include "kernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")

namespace bitnet {
namespace {

inline int32_t hsum_i32_512(__m512i v) { return _mm512_reduce_add_epi32(v); }
inline float hsum_f32_512(__m512 v) { return _mm512_reduce_add_ps(v); }

// Σ code·q of 256 elements: I2_S codes of two consecutive 128-blocks (64 bytes), bit groups
// 6,4,2,0 ↔ element groups 0..31, 32..63, 64..95, 96..127 of each block.
inline __m512i i2s_256(__m512i acc, const uint8_t* codes, const int8_t* q) {
  const __m512i mask = _mm512_set1_epi8(3);
  const __m512i packed = _mm512_loadu_si512(codes);
  acc = _mm512_dpbusd_epi32(acc, _mm512_and_si512(_mm512_srli_epi16(packed, 6), mask), _mm512_loadu_si512(q));
  acc = _mm512_dpbusd_epi32(acc, _mm512_and_si512(_mm512_srli_epi16(packed, 4), mask), _mm512_loadu_si512(q + 64));
  acc = _mm512_dpbusd_epi32(acc, _mm512_and_si512(_mm512_srli_epi16(packed, 2), mask), _mm512_loadu_si512(q + 128));
  acc = _mm512_dpbusd_epi32(acc, _mm512_and_si512(packed, mask), _mm512_loadu_si512(q + 192));
  return acc;
}

// A 128-element tail block (natural activation order), with 256-bit VNNI.
inline __m256i i2s_128(__m256i acc, const uint8_t* codes, const int8_t* q) {
  const __m256i mask = _mm256_set1_epi8(3);
  const __m256i packed = _mm256_loadu_si256((const __m256i*)codes);
  acc = _mm256_dpbusd_epi32(acc, _mm256_and_si256(_mm256_srli_epi16(packed, 6), mask), _mm256_loadu_si256((const __m256i*)q));
  acc = _mm256_dpbusd_epi32(acc, _mm256_and_si256(_mm256_srli_epi16(packed, 4), mask), _mm256_loadu_si256((const __m256i*)(q + 32)));
  acc = _mm256_dpbusd_epi32(acc, _mm256_and_si256(_mm256_srli_epi16(packed, 2), mask), _mm256_loadu_si256((const __m256i*)(q + 64)));
  acc = _mm256_dpbusd_epi32(acc, _mm256_and_si256(packed, mask), _mm256_loadu_si256((const __m256i*)(q + 96)));
  return acc;
}

inline int32_t i2s_row_dot(const uint8_t* row, const int8_t* q, int64_t cols) {
  __m512i acc = _mm512_setzero_si512();
  int64_t c = 0;
  for (; c + 256 <= cols; c += 256) {
    acc = i2s_256(acc, row + c / 4, q + c);
  }
  int32_t dot = hsum_i32_512(acc);
  if (c < cols) {
    __m256i tail = i2s_128(_mm256_setzero_si256(), row + c / 4, q + c);
    dot += hsum_i32_512(_mm512_zextsi256_si512(tail));
  }
  return dot;
}

void i2s_gemm_avx512(const uint8_t* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* q, const float* act_scale,
                     const int32_t* act_sum, float w_scale, int64_t T, float* out, int64_t out_stride) {
  const int64_t row_bytes = cols / 4;
  const int64_t full = cols - cols % 256;
  for (int64_t r = r0; r < r1; r++) {
    const uint8_t* row = w + r * row_bytes;
    int64_t t = 0;
    for (; t + 4 <= T; t += 4) {
      // Four tokens share each 64-byte code load.
      __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
      const int8_t* q0 = q + (t + 0) * cols;
      const int8_t* q1 = q + (t + 1) * cols;
      const int8_t* q2 = q + (t + 2) * cols;
      const int8_t* q3 = q + (t + 3) * cols;
      const __m512i mask = _mm512_set1_epi8(3);
      for (int64_t c = 0; c < full; c += 256) {
        const __m512i packed = _mm512_loadu_si512(row + c / 4);
        const __m512i k0 = _mm512_and_si512(_mm512_srli_epi16(packed, 6), mask);
        const __m512i k1 = _mm512_and_si512(_mm512_srli_epi16(packed, 4), mask);
        const __m512i k2 = _mm512_and_si512(_mm512_srli_epi16(packed, 2), mask);
        const __m512i k3 = _mm512_and_si512(packed, mask);
        a0 = _mm512_dpbusd_epi32(a0, k0, _mm512_loadu_si512(q0 + c));
        a0 = _mm512_dpbusd_epi32(a0, k1, _mm512_loadu_si512(q0 + c + 64));
        a0 = _mm512_dpbusd_epi32(a0, k2, _mm512_loadu_si512(q0 + c + 128));
        a0 = _mm512_dpbusd_epi32(a0, k3, _mm512_loadu_si512(q0 + c + 192));
        a1 = _mm512_dpbusd_epi32(a1, k0, _mm512_loadu_si512(q1 + c));
        a1 = _mm512_dpbusd_epi32(a1, k1, _mm512_loadu_si512(q1 + c + 64));
        a1 = _mm512_dpbusd_epi32(a1, k2, _mm512_loadu_si512(q1 + c + 128));
        a1 = _mm512_dpbusd_epi32(a1, k3, _mm512_loadu_si512(q1 + c + 192));
        a2 = _mm512_dpbusd_epi32(a2, k0, _mm512_loadu_si512(q2 + c));
        a2 = _mm512_dpbusd_epi32(a2, k1, _mm512_loadu_si512(q2 + c + 64));
        a2 = _mm512_dpbusd_epi32(a2, k2, _mm512_loadu_si512(q2 + c + 128));
        a2 = _mm512_dpbusd_epi32(a2, k3, _mm512_loadu_si512(q2 + c + 192));
        a3 = _mm512_dpbusd_epi32(a3, k0, _mm512_loadu_si512(q3 + c));
        a3 = _mm512_dpbusd_epi32(a3, k1, _mm512_loadu_si512(q3 + c + 64));
        a3 = _mm512_dpbusd_epi32(a3, k2, _mm512_loadu_si512(q3 + c + 128));
        a3 = _mm512_dpbusd_epi32(a3, k3, _mm512_loadu_si512(q3 + c + 192));
      }
      const __m512i acc[4] = {a0, a1, a2, a3};
      for (int k = 0; k < 4; k++) {
        int32_t dot = hsum_i32_512(acc[k]);
        if (full < cols) {
          __m256i tail = i2s_128(_mm256_setzero_si256(), row + full / 4, q + (t + k) * cols + full);
          dot += hsum_i32_512(_mm512_zextsi256_si512(tail));
        }
        const float y = (float)(dot - act_sum[t + k]) / act_scale[t + k];
        out[(t + k) * out_stride + r] = y * w_scale;
      }
    }
    for (; t < T; t++) {
      const int32_t dot = i2s_row_dot(row, q + t * cols, cols);
      const float y = (float)(dot - act_sum[t]) / act_scale[t];
      out[t * out_stride + r] = y * w_scale;
    }
  }
}

// Σ code·q of one TQ2_0 block: qs[0..63] in one load; bits 2l ↔ element groups 32l.. of
// chunk 0 (bytes 0..31) and 128+32l.. of chunk 1 (bytes 32..63): LAYOUT_INTERLEAVE256.
inline __m512i tq2_256(__m512i acc, const uint8_t* qs, const int8_t* q) {
  const __m512i mask = _mm512_set1_epi8(3);
  const __m512i packed = _mm512_loadu_si512(qs);
  acc = _mm512_dpbusd_epi32(acc, _mm512_and_si512(packed, mask), _mm512_loadu_si512(q));
  acc = _mm512_dpbusd_epi32(acc, _mm512_and_si512(_mm512_srli_epi16(packed, 2), mask), _mm512_loadu_si512(q + 64));
  acc = _mm512_dpbusd_epi32(acc, _mm512_and_si512(_mm512_srli_epi16(packed, 4), mask), _mm512_loadu_si512(q + 128));
  acc = _mm512_dpbusd_epi32(acc, _mm512_and_si512(_mm512_srli_epi16(packed, 6), mask), _mm512_loadu_si512(q + 192));
  return acc;
}

void tq2_gemm_avx512(const BlockTQ2* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* q, const float* act_d,
                     const int32_t* act_bsum, int64_t T, float* out, int64_t out_stride) {
  const int64_t nb = cols / 256;
  for (int64_t r = r0; r < r1; r++) {
    const BlockTQ2* row = w + r * nb;
    for (int64_t t = 0; t < T; t++) {
      const int8_t* qt = q + t * cols;
      __m512 acc = _mm512_setzero_ps();
      float correction = 0.0f;
      for (int64_t b = 0; b < nb; b++) {
        const __m512i sum = tq2_256(_mm512_setzero_si512(), row[b].qs, qt + 256 * b);
        const float d = act_d[t * nb + b] * f16_to_f32(row[b].d);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_set1_ps(d), acc);
        correction += (float)act_bsum[t * nb + b] * d;
      }
      out[t * out_stride + r] = hsum_f32_512(acc) - correction;
    }
  }
}

void f16_gemm_avx512(const uint16_t* w, int64_t cols, int64_t r0, int64_t r1, const float* x, int64_t T, float* out,
                     int64_t out_stride) {
  for (int64_t r = r0; r < r1; r++) {
    const uint16_t* row = w + r * cols;
    for (int64_t t = 0; t < T; t++) {
      const float* xt = x + t * cols;
      __m512 a0 = _mm512_setzero_ps(), a1 = a0;
      int64_t c = 0;
      for (; c + 32 <= cols; c += 32) {
        a0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(row + c))), _mm512_loadu_ps(xt + c), a0);
        a1 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(row + c + 16))), _mm512_loadu_ps(xt + c + 16), a1);
      }
      float acc = hsum_f32_512(_mm512_add_ps(a0, a1));
      for (; c < cols; c++) {
        acc += f16_to_f32(row[c]) * xt[c];
      }
      out[t * out_stride + r] = acc;
    }
  }
}

void q8_0_gemm_avx512(const BlockQ8_0* w, int64_t cols, int64_t r0, int64_t r1, const BlockQ8_0* xq, int64_t T,
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
        const __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(wq, wq), _mm256_sign_epi8(xv, wq));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(f16_to_f32(row[b].d) * f16_to_f32(xt[b].d)), acc);
      }
      out[t * out_stride + r] = hsum_f32_512(_mm512_zextps256_ps512(acc));
    }
  }
}

const Kernels AVX512 = {"avx512vnni", LAYOUT_INTERLEAVE256, i2s_gemm_avx512, tq2_gemm_avx512, f16_gemm_avx512, q8_0_gemm_avx512};

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
