// ---------------------------------------------------------------------------------------------
// AArch64 kernels: three paths, chosen at run time by what the CPU reports.
//   neon          Advanced SIMD, which every AArch64 CPU has: ternary dots on SMULL/SMLAL into
//                 int16 lanes, widened with SADALP.
//   neon-dotprod  + the dot-product extension (SDOT: four int8 products into an int32 lane per
//                 instruction; Cortex-A55/A76 and later, Apple M1 and later, Graviton 2 and later).
//   neon-i8mm     + the int8 matrix-multiply extension (SMMLA: a 2×8 by 8×2 int8 product into a
//                 2×2 int32 tile; Graviton 3, Apple M2, Cortex-A510/A710 and later) for
//                 multi-token projections, SDOT for one token.
// The ternary dot products are exact integer sums and the float steps are the scalar kernel's in
// the same order, so projections are bit-identical to the scalar path. The F16 head sums f32 in
// vector lanes (tested with the same bound as the x86 paths); attention keeps one position or
// one output element per lane, each summed in the scalar order (exact).
// Technique after llama.cpp's ggml-cpu/arch/arm/quants.c (ggml_vec_dot_tq2_0_q8_K, the i8mm
// q8_0 dot) and the AVX2 path here.
// ---------------------------------------------------------------------------------------------
#include "kernels.h"

#if defined(__aarch64__) || defined(_M_ARM64)
#include <arm_neon.h>

#include <cmath>
#include <vector>

#if defined(__linux__)
#include <sys/auxv.h>
#endif
#if defined(__APPLE__)
#include <sys/sysctl.h>
#endif

namespace bitnet {
namespace {

// ---- Shared by the three paths (Advanced SIMD only) -----------------------------------------

inline float32x4_t load_f16x4(const uint16_t* p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }

void f16_gemm_neon(const uint16_t* w, int64_t cols, int64_t r0, int64_t r1, const float* x, int64_t T, float* out,
                   int64_t out_stride) {
  for (int64_t r = r0; r < r1; r++) {
    const uint16_t* row = w + r * cols;
    for (int64_t t = 0; t < T; t++) {
      const float* xt = x + t * cols;
      float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
      int64_t c = 0;
      for (; c + 16 <= cols; c += 16) {
        a0 = vfmaq_f32(a0, load_f16x4(row + c), vld1q_f32(xt + c));
        a1 = vfmaq_f32(a1, load_f16x4(row + c + 4), vld1q_f32(xt + c + 4));
        a2 = vfmaq_f32(a2, load_f16x4(row + c + 8), vld1q_f32(xt + c + 8));
        a3 = vfmaq_f32(a3, load_f16x4(row + c + 12), vld1q_f32(xt + c + 12));
      }
      float acc = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
      for (; c < cols; c++) acc += f16_to_f32(row[c]) * xt[c];
      out[t * out_stride + r] = acc;
    }
  }
}

// Scores for 8 positions at once, each lane summing in i order (the scalar order per lane).
void attn_scores_neon_head(const float* q, const uint16_t* kt, int64_t stride, int64_t hd, int64_t len, float* scores) {
  int64_t j = 0;
  for (; j + 8 <= len; j += 8) {
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0;
    for (int64_t i = 0; i < hd; i++) {
      const uint16_t* k = kt + i * stride + j;
      s0 = vaddq_f32(s0, vmulq_n_f32(load_f16x4(k), q[i]));
      s1 = vaddq_f32(s1, vmulq_n_f32(load_f16x4(k + 4), q[i]));
    }
    vst1q_f32(scores + j, s0);
    vst1q_f32(scores + j + 4, s1);
  }
  for (; j < len; j++) {
    float s = 0.0f;
    for (int64_t i = 0; i < hd; i++) s += q[i] * f16_to_f32(kt[i * stride + j]);
    scores[j] = s;
  }
}

void attn_scores_neon(const float* q, int64_t nq, const uint16_t* kt, int64_t stride, int64_t hd, int64_t len,
                      float* scores, int64_t score_stride) {
  for (int64_t h = 0; h < nq; h++) attn_scores_neon_head(q + h * hd, kt, stride, hd, len, scores + h * score_stride);
}

void attn_values_one_neon(const float* p, const uint16_t* v, int64_t kvw, int64_t hd, int64_t len, float* out,
                          bool carry) {
  int64_t i = 0;
  for (; i + 8 <= hd; i += 8) {
    float32x4_t a0 = carry ? vld1q_f32(out + i) : vdupq_n_f32(0.0f);
    float32x4_t a1 = carry ? vld1q_f32(out + i + 4) : vdupq_n_f32(0.0f);
    for (int64_t j = 0; j < len; j++) {
      const uint16_t* vj = v + j * kvw + i;
      a0 = vaddq_f32(a0, vmulq_n_f32(load_f16x4(vj), p[j]));
      a1 = vaddq_f32(a1, vmulq_n_f32(load_f16x4(vj + 4), p[j]));
    }
    vst1q_f32(out + i, a0);
    vst1q_f32(out + i + 4, a1);
  }
  for (; i < hd; i++) {
    float a = carry ? out[i] : 0.0f;
    for (int64_t j = 0; j < len; j++) a += p[j] * f16_to_f32(v[j * kvw + i]);
    out[i] = a;
  }
}

double sum_squares_neon(const float* x, int64_t n) {
  float64x2_t a = vdupq_n_f64(0.0), b = a;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const float32x4_t v = vld1q_f32(x + i);
    const float32x4_t sq = vmulq_f32(v, v);
    a = vaddq_f64(a, vcvt_f64_f32(vget_low_f32(sq)));
    b = vaddq_f64(b, vcvt_high_f64_f32(sq));
  }
  double sum = vaddvq_f64(vaddq_f64(a, b));
  for (; i < n; i++) sum += (double)(x[i] * x[i]);
  return sum;
}

// exp in double precision, 2 lanes: the AVX2 path's reduction and polynomial (kernels_avx2.cc).
inline float64x2_t exp_pd2(float64x2_t x) {
  x = vmaxq_f64(vminq_f64(x, vdupq_n_f64(709.0)), vdupq_n_f64(-708.0));
  const float64x2_t k = vrndnq_f64(vmulq_f64(x, vdupq_n_f64(1.4426950408889634)));
  float64x2_t r = vfmsq_f64(x, k, vdupq_n_f64(6.93147180369123816490e-01));
  r = vfmsq_f64(r, k, vdupq_n_f64(1.90821492927058770002e-10));
  static const double c[] = {1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0, 1.0 / 362880.0,
                             1.0 / 40320.0,      1.0 / 5040.0,      1.0 / 720.0,      1.0 / 120.0,      1.0 / 24.0,
                             1.0 / 6.0,          0.5,               1.0,              1.0};
  float64x2_t p = vdupq_n_f64(c[0]);
  for (int i = 1; i < 14; i++) p = vfmaq_f64(vdupq_n_f64(c[i]), p, r);
  // 2^k through the exponent bits (k is within the normal range after the clamp).
  const int64x2_t e = vshlq_n_s64(vaddq_s64(vcvtq_s64_f64(k), vdupq_n_s64(1023)), 52);
  return vmulq_f64(p, vreinterpretq_f64_s64(e));
}

void exp_neon(const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 2 <= n; i += 2) {
    vst1_f32(y + i, vcvt_f32_f64(exp_pd2(vcvt_f64_f32(vld1_f32(x + i)))));
  }
  for (; i < n; i++) y[i] = (float)std::exp((double)x[i]);
}

void relu2_glu_neon(const float* g, const float* u, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const float32x4_t r = vmaxq_f32(vld1q_f32(g + i), vdupq_n_f32(0.0f));
    vst1q_f32(y + i, vmulq_f32(vmulq_f32(r, r), vld1q_f32(u + i)));
  }
  for (; i < n; i++) {
    const float r = g[i] > 0.0f ? g[i] : 0.0f;
    y[i] = (r * r) * u[i];
  }
}

// FCVTN rounds by the FPCR mode, round-to-nearest-even unless a program changed it: ggml's
// conversion for every non-NaN input.
void to_f16_neon(const float* x, uint16_t* y, int64_t n) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) vst1_u16(y + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(x + i))));
  for (; i < n; i++) y[i] = f32_to_f16(x[i]);
}

void round_f16_neon(const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vcvt_f32_f16(vcvt_f16_f32(vld1q_f32(x + i))));
  for (; i < n; i++) y[i] = round_f16(x[i]);
}

template <bool Prefetch>
uint64_t stream_read_neon_loop(const uint8_t* p, int64_t n) {
  uint64x2_t a = vdupq_n_u64(0), b = a, c = a, d = a;
  for (int64_t i = 0; i + 64 <= n; i += 64) {
    if (Prefetch) __builtin_prefetch(p + i + 4096);
    a = vaddq_u64(a, vreinterpretq_u64_u8(vld1q_u8(p + i)));
    b = vaddq_u64(b, vreinterpretq_u64_u8(vld1q_u8(p + i + 16)));
    c = vaddq_u64(c, vreinterpretq_u64_u8(vld1q_u8(p + i + 32)));
    d = vaddq_u64(d, vreinterpretq_u64_u8(vld1q_u8(p + i + 48)));
  }
  const uint64x2_t s = vaddq_u64(vaddq_u64(a, b), vaddq_u64(c, d));
  return vgetq_lane_u64(s, 0) + vgetq_lane_u64(s, 1);
}

// Variants 1 and 2 (Kernels::stream_read) are the same loop here: one line per step, 4 KiB ahead.
uint64_t stream_read_neon(const uint8_t* p, int64_t n, int variant) {
  return variant != 0 ? stream_read_neon_loop<true>(p, n) : stream_read_neon_loop<false>(p, n);
}

// ---- neon: SMULL/SMLAL into int16, SADALP into int32 ----------------------------------------

struct MullDot {
  // Σ over 128 elements (8 code vectors): 16 products per int16 lane (|sum| ≤ 16·2·128 = 4096).
  static int32x4_t dot8(int32x4_t acc, const int8x16_t c[8], const int8_t* q) {
    int16x8_t s = vdupq_n_s16(0);
    for (int i = 0; i < 8; i++) {
      const int8x16_t x = vld1q_s8(q + 16 * i);
      s = vmlal_s8(s, vget_low_s8(c[i]), vget_low_s8(x));
      s = vmlal_high_s8(s, c[i], x);
    }
    return vpadalq_s16(acc, s);
  }
  // Σ over 256 elements (16 code vectors), in two halves of 128.
  static int32x4_t dot16(const int8x16_t c[16], const int8_t* q) {
    return dot8(dot8(vdupq_n_s32(0), c, q), c + 8, q + 128);
  }
  // Σ of 32 signed × signed int8 products (|product| ≤ 2^14: widened after each multiply).
  static int32_t dot32_s8(const int8_t* a, const int8_t* b) {
    int32x4_t acc = vdupq_n_s32(0);
    for (int i = 0; i < 32; i += 16) {
      const int8x16_t x = vld1q_s8(a + i), y = vld1q_s8(b + i);
      acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(x), vget_low_s8(y)));
      acc = vpadalq_s16(acc, vmull_high_s8(x, y));
    }
    return vaddvq_s32(acc);
  }
  // 16 signed × signed products (|product| ≤ 32·127 in the Q6_K head), pairs summed into int32 lanes.
  static int32x4_t dot16_s8(int8x16_t a, int8x16_t b) {
    return vpaddlq_s16(vaddq_s16(vmull_s8(vget_low_s8(a), vget_low_s8(b)), vmull_high_s8(a, b)));
  }
};

#include "ternary_neon.h"
#include "q6k_neon.h"
#include "tq1_neon.h"

void tq1_gemm_neon(const BlockTQ1* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* q, const float* act_d,
                   const int32_t* act_bsum, int64_t T, float* out, int64_t out_stride) {
  tq1_gemm_neon_t<MullDot>(w, cols, r0, r1, q, act_d, act_bsum, T, out, out_stride);
}

void q6_k_gemm_neon(const uint8_t* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* xq, const float* xd,
                    const int16_t* xbsum, int64_t T, float* out, int64_t out_stride) {
  q6_k_gemm_neon_t<MullDot>(w, cols, r0, r1, xq, xd, xbsum, T, out, out_stride);
}

void i2s_gemm_neon(const uint8_t* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* q, const float* act_scale,
                   const int32_t* act_sum, float w_scale, int64_t T, float* out, int64_t out_stride) {
  i2s_gemm_neon_t<MullDot>(w, cols, r0, r1, q, act_scale, act_sum, w_scale, T, out, out_stride);
}
void tq2_gemm_neon(const BlockTQ2* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* q, const float* act_d,
                   const int32_t* act_bsum, int64_t T, float* out, int64_t out_stride) {
  tq2_gemm_neon_t<MullDot>(w, cols, r0, r1, q, act_d, act_bsum, T, out, out_stride);
}
void q8_0_gemm_neon(const BlockQ8_0* w, int64_t cols, int64_t r0, int64_t r1, const BlockQ8_0* xq, int64_t T,
                    float* out, int64_t out_stride) {
  q8_0_gemm_neon_t<MullDot>(w, cols, r0, r1, xq, T, out, out_stride);
}

}  // namespace
}  // namespace bitnet

// ---- neon-dotprod: SDOT ----------------------------------------------------------------------

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("dotprod"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("arch=armv8.2-a+dotprod")
#endif

namespace bitnet {
namespace {
namespace dotprod {

struct SdotDot {
  // Two accumulators, so consecutive SDOTs do not wait on each other's latency.
  static int32x4_t dot8(int32x4_t acc, const int8x16_t c[8], const int8_t* q) {
    int32x4_t other = vdupq_n_s32(0);
    for (int i = 0; i < 8; i += 2) {
      acc = vdotq_s32(acc, c[i], vld1q_s8(q + 16 * i));
      other = vdotq_s32(other, c[i + 1], vld1q_s8(q + 16 * i + 16));
    }
    return vaddq_s32(acc, other);
  }
  static int32x4_t dot16(const int8x16_t c[16], const int8_t* q) {
    return dot8(dot8(vdupq_n_s32(0), c, q), c + 8, q + 128);
  }
  static int32_t dot32_s8(const int8_t* a, const int8_t* b) {
    int32x4_t acc = vdotq_s32(vdupq_n_s32(0), vld1q_s8(a), vld1q_s8(b));
    acc = vdotq_s32(acc, vld1q_s8(a + 16), vld1q_s8(b + 16));
    return vaddvq_s32(acc);
  }
  static int32x4_t dot16_s8(int8x16_t a, int8x16_t b) { return vdotq_s32(vdupq_n_s32(0), a, b); }
};

#include "ternary_neon.h"
#include "q6k_neon.h"
#include "tq1_neon.h"

void tq1_gemm(const BlockTQ1* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* q, const float* act_d,
              const int32_t* act_bsum, int64_t T, float* out, int64_t out_stride) {
  tq1_gemm_neon_t<SdotDot>(w, cols, r0, r1, q, act_d, act_bsum, T, out, out_stride);
}

void q6_k_gemm(const uint8_t* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* xq, const float* xd,
               const int16_t* xbsum, int64_t T, float* out, int64_t out_stride) {
  q6_k_gemm_neon_t<SdotDot>(w, cols, r0, r1, xq, xd, xbsum, T, out, out_stride);
}

void i2s_gemm(const uint8_t* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* q, const float* act_scale,
              const int32_t* act_sum, float w_scale, int64_t T, float* out, int64_t out_stride) {
  i2s_gemm_neon_t<SdotDot>(w, cols, r0, r1, q, act_scale, act_sum, w_scale, T, out, out_stride);
}
void tq2_gemm(const BlockTQ2* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* q, const float* act_d,
              const int32_t* act_bsum, int64_t T, float* out, int64_t out_stride) {
  tq2_gemm_neon_t<SdotDot>(w, cols, r0, r1, q, act_d, act_bsum, T, out, out_stride);
}
void q8_0_gemm(const BlockQ8_0* w, int64_t cols, int64_t r0, int64_t r1, const BlockQ8_0* xq, int64_t T, float* out,
               int64_t out_stride) {
  q8_0_gemm_neon_t<SdotDot>(w, cols, r0, r1, xq, T, out, out_stride);
}

}  // namespace dotprod
}  // namespace
}  // namespace bitnet

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

// ---- neon-i8mm: SMMLA for two rows × two tokens, SDOT for the rest ---------------------------

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("dotprod,i8mm"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("arch=armv8.2-a+dotprod+i8mm")
#endif

namespace bitnet {
namespace {
namespace i8mm {

// Token pairs interleaved in 8-byte chunks ([t0 c0..7, t1 c0..7, t0 c8..15, t1 c8..15, …]): the
// B operand of SMMLA, one 16-byte load per 8 elements of both tokens. Per thread and call: the
// projection's activations change between calls.
const int8_t* interleave_pairs(const int8_t* q, int64_t cols, int64_t pairs) {
  thread_local std::vector<int8_t> buffer;
  buffer.resize((size_t)(pairs * 2 * cols));
  for (int64_t p = 0; p < pairs; p++) {
    const int8_t* a = q + 2 * p * cols;
    const int8_t* b = a + cols;
    int8_t* dst = buffer.data() + 2 * p * cols;
    for (int64_t c = 0; c < cols; c += 16) {
      const int64x2_t x = vreinterpretq_s64_s8(vld1q_s8(a + c)), y = vreinterpretq_s64_s8(vld1q_s8(b + c));
      vst1q_s8(dst + 2 * c, vreinterpretq_s8_s64(vzip1q_s64(x, y)));
      vst1q_s8(dst + 2 * c + 16, vreinterpretq_s8_s64(vzip2q_s64(x, y)));
    }
  }
  return buffer.data();
}

// SMMLA over one code vector of two rows: acc[k] lanes (r0·t0, r0·t1, r1·t0, r1·t1) for token
// pair k, whose interleaved activations for these 16 elements start at b[k].
template <int P>
inline void mmla16(int32x4_t acc[P], int8x16_t c0, int8x16_t c1, const int8_t* const b[P]) {
  const int64x2_t x = vreinterpretq_s64_s8(c0), y = vreinterpretq_s64_s8(c1);
  const int8x16_t lo = vreinterpretq_s8_s64(vzip1q_s64(x, y)), hi = vreinterpretq_s8_s64(vzip2q_s64(x, y));
  for (int k = 0; k < P; k++) {
    acc[k] = vmmlaq_s32(acc[k], lo, vld1q_s8(b[k]));
    acc[k] = vmmlaq_s32(acc[k], hi, vld1q_s8(b[k] + 16));
  }
}

// Rows r, r+1 × P token pairs from pair p of I2_S.
template <int P>
inline void i2s_pairs(const uint8_t* w, int64_t cols, int64_t r, int64_t p, const int8_t* pairs,
                      const float* act_scale, const int32_t* act_sum, float w_scale, float* out, int64_t out_stride) {
  const int64_t nb = cols / 128, row_bytes = cols / 4;
  const uint8_t* row0 = w + r * row_bytes;
  const uint8_t* row1 = row0 + row_bytes;
  int32x4_t acc[P];
  for (int k = 0; k < P; k++) acc[k] = vdupq_n_s32(0);
  for (int64_t b = 0; b < nb; b++) {
    int8x16_t c0[8], c1[8];
    i2s_unpack(row0 + 32 * b, c0);
    i2s_unpack(row1 + 32 * b, c1);
    for (int i = 0; i < 8; i++) {
      const int8_t* src[P];
      for (int k = 0; k < P; k++) src[k] = pairs + 2 * (p + k) * cols + 2 * (128 * b + 16 * i);
      mmla16<P>(acc, c0[i], c1[i], src);
    }
  }
  for (int k = 0; k < P; k++) {
    int32_t s[4];
    vst1q_s32(s, acc[k]);
    const int64_t t0 = 2 * (p + k), t1 = t0 + 1;
    const int64_t ts[4] = {t0, t1, t0, t1}, rs[4] = {r, r, r + 1, r + 1};
    for (int l = 0; l < 4; l++) {
      const float y = (float)(s[l] - act_sum[ts[l]]) / act_scale[ts[l]];
      out[ts[l] * out_stride + rs[l]] = y * w_scale;
    }
  }
}

// Rows r, r+1 × P token pairs of TQ2_0: per block the 2×2 integer sums, then each output's float
// step (lane-wise, the scalar order).
template <int P>
inline void tq2_pairs(const BlockTQ2* w, int64_t cols, int64_t r, int64_t p, const int8_t* pairs, const float* act_d,
                      const int32_t* act_bsum, float* out, int64_t out_stride) {
  const int64_t nb = cols / 256;
  const BlockTQ2* row0 = w + r * nb;
  const BlockTQ2* row1 = row0 + nb;
  float32x4_t sumf[P];
  for (int k = 0; k < P; k++) sumf[k] = vdupq_n_f32(0.0f);
  for (int64_t b = 0; b < nb; b++) {
    int8x16_t c0[16], c1[16];
    tq2_unpack(row0[b], c0);
    tq2_unpack(row1[b], c1);
    int32x4_t acc[P];
    for (int k = 0; k < P; k++) acc[k] = vdupq_n_s32(0);
    for (int i = 0; i < 16; i++) {
      const int8_t* src[P];
      for (int k = 0; k < P; k++) src[k] = pairs + 2 * (p + k) * cols + 2 * (256 * b + 16 * i);
      mmla16<P>(acc, c0[i], c1[i], src);
    }
    const float d0 = f16_to_f32(row0[b].d), d1 = f16_to_f32(row1[b].d);
    const float32x4_t dw = {d0, d0, d1, d1};
    for (int k = 0; k < P; k++) {
      const int64_t t0 = 2 * (p + k), t1 = t0 + 1;
      const int32x4_t bsum = {act_bsum[t0 * nb + b], act_bsum[t1 * nb + b], act_bsum[t0 * nb + b], act_bsum[t1 * nb + b]};
      const float32x4_t ad = {act_d[t0 * nb + b], act_d[t1 * nb + b], act_d[t0 * nb + b], act_d[t1 * nb + b]};
      sumf[k] = vaddq_f32(sumf[k], vmulq_f32(vcvtq_f32_s32(vsubq_s32(acc[k], bsum)), vmulq_f32(ad, dw)));
    }
  }
  for (int k = 0; k < P; k++) {
    float s[4];
    vst1q_f32(s, sumf[k]);
    const int64_t t0 = 2 * (p + k), t1 = t0 + 1;
    out[t0 * out_stride + r] = s[0];
    out[t1 * out_stride + r] = s[1];
    out[t0 * out_stride + r + 1] = s[2];
    out[t1 * out_stride + r + 1] = s[3];
  }
}

void i2s_gemm(const uint8_t* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* q, const float* act_scale,
              const int32_t* act_sum, float w_scale, int64_t T, float* out, int64_t out_stride) {
  const int64_t pairs = T / 2, r_even = r0 + (r1 - r0) / 2 * 2;
  if (pairs == 0 || r_even == r0) {
    dotprod::i2s_gemm(w, cols, r0, r1, q, act_scale, act_sum, w_scale, T, out, out_stride);
    return;
  }
  const int8_t* pq = interleave_pairs(q, cols, pairs);
  int64_t p = 0;
  for (; p + 2 <= pairs; p += 2) {
    for (int64_t r = r0; r < r_even; r += 2) i2s_pairs<2>(w, cols, r, p, pq, act_scale, act_sum, w_scale, out, out_stride);
  }
  for (; p < pairs; p++) {
    for (int64_t r = r0; r < r_even; r += 2) i2s_pairs<1>(w, cols, r, p, pq, act_scale, act_sum, w_scale, out, out_stride);
  }
  const int64_t t_odd = 2 * pairs;  // a last unpaired token, and a last unpaired row
  if (t_odd < T) {
    dotprod::i2s_gemm(w, cols, r0, r_even, q + t_odd * cols, act_scale + t_odd, act_sum + t_odd, w_scale, 1,
                      out + t_odd * out_stride, out_stride);
  }
  if (r_even < r1) dotprod::i2s_gemm(w, cols, r_even, r1, q, act_scale, act_sum, w_scale, T, out, out_stride);
}

void tq2_gemm(const BlockTQ2* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* q, const float* act_d,
              const int32_t* act_bsum, int64_t T, float* out, int64_t out_stride) {
  const int64_t pairs = T / 2, r_even = r0 + (r1 - r0) / 2 * 2, nb = cols / 256;
  if (pairs == 0 || r_even == r0) {
    dotprod::tq2_gemm(w, cols, r0, r1, q, act_d, act_bsum, T, out, out_stride);
    return;
  }
  const int8_t* pq = interleave_pairs(q, cols, pairs);
  int64_t p = 0;
  for (; p + 2 <= pairs; p += 2) {
    for (int64_t r = r0; r < r_even; r += 2) tq2_pairs<2>(w, cols, r, p, pq, act_d, act_bsum, out, out_stride);
  }
  for (; p < pairs; p++) {
    for (int64_t r = r0; r < r_even; r += 2) tq2_pairs<1>(w, cols, r, p, pq, act_d, act_bsum, out, out_stride);
  }
  const int64_t t_odd = 2 * pairs;
  if (t_odd < T) {
    dotprod::tq2_gemm(w, cols, r0, r_even, q + t_odd * cols, act_d + t_odd * nb, act_bsum + t_odd * nb, 1,
                      out + t_odd * out_stride, out_stride);
  }
  if (r_even < r1) dotprod::tq2_gemm(w, cols, r_even, r1, q, act_d, act_bsum, T, out, out_stride);
}

}  // namespace i8mm
}  // namespace
}  // namespace bitnet

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

// ---- Tables and run-time detection -----------------------------------------------------------

namespace bitnet {
namespace {

const Kernels NEON = {"neon",           LAYOUT_NATURAL,      i2s_gemm_neon,    tq2_gemm_neon,
                      f16_gemm_neon,    q8_0_gemm_neon,      attn_scores_neon, attn_values_each_head<attn_values_one_neon>,
                      sum_squares_neon, exp_neon,            softmax_exp_portable<exp_neon>, relu2_glu_neon,   quantize_i8_scalar,
                      quantize_q8k_scalar, stream_read_neon, to_f16_neon,      round_f16_neon,
                      q6_k_gemm_neon,   tq1_gemm_neon,       tq1_to_tq2_neon};

const Kernels NEON_DOTPROD = {"neon-dotprod",   LAYOUT_NATURAL,      dotprod::i2s_gemm, dotprod::tq2_gemm,
                              f16_gemm_neon,    dotprod::q8_0_gemm,  attn_scores_neon,  attn_values_each_head<attn_values_one_neon>,
                              sum_squares_neon, exp_neon,            softmax_exp_portable<exp_neon>, relu2_glu_neon,    quantize_i8_scalar,
                              quantize_q8k_scalar, stream_read_neon, to_f16_neon,       round_f16_neon,
                              dotprod::q6_k_gemm, dotprod::tq1_gemm, tq1_to_tq2_neon};

// The Q8_0 head keeps SDOT: one token per call row (decode), where SMMLA's pairs would be half empty.
const Kernels NEON_I8MM = {"neon-i8mm",      LAYOUT_NATURAL,      i8mm::i2s_gemm,   i8mm::tq2_gemm,
                           f16_gemm_neon,    dotprod::q8_0_gemm,  attn_scores_neon, attn_values_each_head<attn_values_one_neon>,
                           sum_squares_neon, exp_neon,            softmax_exp_portable<exp_neon>, relu2_glu_neon,   quantize_i8_scalar,
                           quantize_q8k_scalar, stream_read_neon, to_f16_neon,      round_f16_neon,
                           dotprod::q6_k_gemm, dotprod::tq1_gemm, tq1_to_tq2_neon};

#if defined(__linux__)
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#ifndef HWCAP2_I8MM
#define HWCAP2_I8MM (1 << 13)
#endif
bool cpu_has_dotprod() { return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0; }
bool cpu_has_i8mm() { return (getauxval(AT_HWCAP2) & HWCAP2_I8MM) != 0; }
#elif defined(__APPLE__)
bool sysctl_flag(const char* name) {
  int value = 0;
  size_t size = sizeof(value);
  return ::sysctlbyname(name, &value, &size, nullptr, 0) == 0 && value != 0;
}
bool cpu_has_dotprod() { return sysctl_flag("hw.optional.arm.FEAT_DotProd"); }
bool cpu_has_i8mm() { return sysctl_flag("hw.optional.arm.FEAT_I8MM"); }
#else
// No portable query on this OS: only what the compiler was told the target always has.
#if defined(__ARM_FEATURE_DOTPROD)
bool cpu_has_dotprod() { return true; }
#else
bool cpu_has_dotprod() { return false; }
#endif
#if defined(__ARM_FEATURE_MATMUL_INT8)
bool cpu_has_i8mm() { return true; }
#else
bool cpu_has_i8mm() { return false; }
#endif
#endif

}  // namespace

const Kernels* kernels_neon() { return &NEON; }
const Kernels* kernels_neon_dotprod() {
  static const bool ok = cpu_has_dotprod();
  return ok ? &NEON_DOTPROD : nullptr;
}
const Kernels* kernels_neon_i8mm() {
  static const bool ok = cpu_has_dotprod() && cpu_has_i8mm();
  return ok ? &NEON_I8MM : nullptr;
}

}  // namespace bitnet

#else
namespace bitnet {
const Kernels* kernels_neon() { return nullptr; }
const Kernels* kernels_neon_dotprod() { return nullptr; }
const Kernels* kernels_neon_i8mm() { return nullptr; }
}  // namespace bitnet
#endif
