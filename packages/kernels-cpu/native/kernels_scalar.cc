// ---------------------------------------------------------------------------------------------
// Scalar kernels: the portable path, bit-exact with the TypeScript reference backend (same
// summation order, f32 rounding at the same points). Every SIMD path is tested against these.
// Ports of ggml-cpu/quants.c *_generic and bitnet.cpp's I2_S dot, at
// ggml-org/ggml src/ggml-cpu/quants.c (ggml_vec_dot_tq2_0_q8_K_generic).
// ---------------------------------------------------------------------------------------------
#include <algorithm>
#include <cmath>
#include <cstring>
#include "kernels.h"

namespace bitnet {
namespace {

// Ternary code of element e of an I2_S tensor (x86 128-element layout): byte 32·(e/128) + e%32,
// bits 6 − 2·((e%128)/32).
inline int i2s_code(const uint8_t* w, int64_t e) {
  const uint8_t byte = w[32 * (e >> 7) + (e & 31)];
  return (byte >> (6 - 2 * ((e & 127) >> 5))) & 3;
}

void i2s_gemm_scalar(const uint8_t* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* q, const float* act_scale,
                     const int32_t* act_sum, float w_scale, int64_t T, float* out, int64_t out_stride) {
  for (int64_t r = r0; r < r1; r++) {
    for (int64_t t = 0; t < T; t++) {
      const int8_t* qt = q + t * cols;
      int32_t dot = 0;
      for (int64_t c = 0; c < cols; c++) {
        dot += i2s_code(w, r * cols + c) * qt[c];
      }
      const float y = (float)(dot - act_sum[t]) / act_scale[t];
      out[t * out_stride + r] = y * w_scale;
    }
  }
}

void tq2_gemm_scalar(const BlockTQ2* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* q, const float* act_d,
                     const int32_t* act_bsum, int64_t T, float* out, int64_t out_stride) {
  const int64_t nb = cols / 256;
  for (int64_t r = r0; r < r1; r++) {
    const BlockTQ2* row = w + r * nb;
    for (int64_t t = 0; t < T; t++) {
      const int8_t* qt = q + t * cols;
      float sumf = 0.0f;
      for (int64_t b = 0; b < nb; b++) {
        int32_t sumi = 0;
        for (int j = 0; j < 64; j += 32) {
          for (int l = 0; l < 4; l++) {
            for (int k = 0; k < 32; k++) {
              sumi += qt[b * 256 + j * 4 + l * 32 + k] * ((row[b].qs[j + k] >> (l * 2)) & 3);
            }
          }
        }
        sumi -= act_bsum[t * nb + b];
        const float d = act_d[t * nb + b] * f16_to_f32(row[b].d);
        sumf += (float)sumi * d;
      }
      out[t * out_stride + r] = sumf;
    }
  }
}

void f16_gemm_scalar(const uint16_t* w, int64_t cols, int64_t r0, int64_t r1, const float* x, int64_t T, float* out,
                     int64_t out_stride) {
  for (int64_t r = r0; r < r1; r++) {
    const uint16_t* row = w + r * cols;
    for (int64_t t = 0; t < T; t++) {
      const float* xt = x + t * cols;
      float acc = 0.0f;
      for (int64_t c = 0; c < cols; c++) {
        acc += f16_to_f32(row[c]) * xt[c];
      }
      out[t * out_stride + r] = acc;
    }
  }
}

void q8_0_gemm_scalar(const BlockQ8_0* w, int64_t cols, int64_t r0, int64_t r1, const BlockQ8_0* xq, int64_t T,
                      float* out, int64_t out_stride) {
  const int64_t nb = cols / 32;
  for (int64_t r = r0; r < r1; r++) {
    const BlockQ8_0* row = w + r * nb;
    for (int64_t t = 0; t < T; t++) {
      const BlockQ8_0* xt = xq + t * nb;
      float sumf = 0.0f;
      for (int64_t b = 0; b < nb; b++) {
        int32_t sumi = 0;
        for (int k = 0; k < 32; k++) {
          sumi += row[b].qs[k] * xt[b].qs[k];
        }
        sumf += (float)sumi * (f16_to_f32(row[b].d) * f16_to_f32(xt[b].d));
      }
      out[t * out_stride + r] = sumf;
    }
  }
}

}  // namespace

void q6_k_gemm_scalar(const uint8_t* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* xq, const float* xd,
                      const int16_t* xbsum, int64_t T, float* out, int64_t out_stride) {
  (void)xbsum;
  const int64_t nb = cols / 256;
  for (int64_t r = r0; r < r1; r++) {
    const uint8_t* row = w + r * nb * kQ6KBlockBytes;
    for (int64_t t = 0; t < T; t++) {
      float sumf = 0.0f;
      for (int64_t b = 0; b < nb; b++) {
        const uint8_t* blk = row + b * kQ6KBlockBytes;
        const int8_t* q = xq + t * cols + 256 * b;
        const int8_t* sc = (const int8_t*)(blk + 192);
        int32_t sub[16] = {0};
        for (int half = 0; half < 2; half++) {
          const uint8_t* ql = blk + 64 * half;
          const uint8_t* qh = blk + 128 + 32 * half;
          const int8_t* qx = q + 128 * half;
          for (int l = 0; l < 32; l++) {
            const int s = 8 * half + l / 16;
            sub[s + 0] += (((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32) * qx[l];
            sub[s + 2] += (((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32) * qx[l + 32];
            sub[s + 4] += (((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32) * qx[l + 64];
            sub[s + 6] += (((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32) * qx[l + 96];
          }
        }
        int32_t isum = 0;
        for (int i = 0; i < 16; i++) isum += sc[i] * sub[i];
        const uint16_t d = (uint16_t)(blk[208] | (blk[209] << 8));
        sumf += (float)isum * (f16_to_f32(d) * xd[t * nb + b]);
      }
      out[t * out_stride + r] = sumf;
    }
  }
}

namespace {

// The 256 codes (0..2) of a TQ1_0 block in element order (ggml dequantize_row_tq1_0's order).
void tq1_codes(const BlockTQ1& in, uint8_t v[256]) {
  static const uint8_t pow3[6] = {1, 3, 9, 27, 81, 243};
  for (int n = 0; n < 5; n++) {
    for (int m = 0; m < 32; m++) v[32 * n + m] = (uint8_t)((((uint16_t)(uint8_t)(in.qs[m] * pow3[n])) * 3) >> 8);
    for (int m = 0; m < 16; m++) v[160 + 16 * n + m] = (uint8_t)((((uint16_t)(uint8_t)(in.qs[32 + m] * pow3[n])) * 3) >> 8);
  }
  for (int n = 0; n < 4; n++)
    for (int j = 0; j < 4; j++) v[240 + 4 * n + j] = (uint8_t)((((uint16_t)(uint8_t)(in.qh[j] * pow3[n])) * 3) >> 8);
}

}  // namespace

void tq1_gemm_scalar(const BlockTQ1* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* q, const float* act_d,
                     const int32_t* act_bsum, int64_t T, float* out, int64_t out_stride) {
  const int64_t nb = cols / 256;
  uint8_t v[256];
  for (int64_t r = r0; r < r1; r++) {
    const BlockTQ1* row = w + r * nb;
    for (int64_t t = 0; t < T; t++) {
      const int8_t* qt = q + t * cols;
      float sumf = 0.0f;
      for (int64_t b = 0; b < nb; b++) {
        tq1_codes(row[b], v);
        int32_t sumi = 0;
        for (int i = 0; i < 256; i++) sumi += qt[b * 256 + i] * v[i];
        sumi -= act_bsum[t * nb + b];
        const float d = act_d[t * nb + b] * f16_to_f32(row[b].d);
        sumf += (float)sumi * d;
      }
      out[t * out_stride + r] = sumf;
    }
  }
}

void tq1_to_tq2_scalar(const BlockTQ1* src, BlockTQ2* dst, int64_t n) {
  uint8_t v[256];
  for (int64_t b = 0; b < n; b++) {
    tq1_codes(src[b], v);
    std::memset(dst[b].qs, 0, 64);
    for (int c = 0; c < 2; c++)
      for (int l = 0; l < 4; l++)
        for (int m = 0; m < 32; m++) dst[b].qs[32 * c + m] |= (uint8_t)(v[128 * c + 32 * l + m] << (2 * l));
    dst[b].d = src[b].d;
  }
}

void q8k_bsums16(const int8_t* q, int64_t n, int16_t* bsum) {
  for (int64_t g = 0; g < n / 16; g++) {
    int32_t s = 0;
    for (int i = 0; i < 16; i++) s += q[16 * g + i];
    bsum[g] = (int16_t)s;
  }
}

namespace {

void attn_scores_scalar(const float* q, int64_t nq, const uint16_t* kt, int64_t stride, int64_t hd, int64_t len,
                        float* scores, int64_t score_stride) {
  for (int64_t h = 0; h < nq; h++) {
    for (int64_t j = 0; j < len; j++) {
      float s = 0.0f;
      for (int64_t i = 0; i < hd; i++) s += q[h * hd + i] * f16_to_f32(kt[i * stride + j]);
      scores[h * score_stride + j] = s;
    }
  }
}

void attn_values_one_scalar(const float* p, const uint16_t* v, int64_t kvw, int64_t hd, int64_t len, float* out,
                            bool carry) {
  for (int64_t i = 0; i < hd; i++) {
    float a = carry ? out[i] : 0.0f;
    for (int64_t j = 0; j < len; j++) a += p[j] * f16_to_f32(v[j * kvw + i]);
    out[i] = a;
  }
}

double sum_squares_scalar(const float* x, int64_t n) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; i++) sum += (double)(x[i] * x[i]);
  return sum;
}

void exp_scalar(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] = (float)std::exp((double)x[i]);
}

void relu2_glu_scalar(const float* g, const float* u, float* y, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    const float r = g[i] > 0.0f ? g[i] : 0.0f;
    y[i] = (r * r) * u[i];
  }
}

const Kernels SCALAR = {"scalar",           LAYOUT_NATURAL,     i2s_gemm_scalar,    tq2_gemm_scalar,
                        f16_gemm_scalar,    q8_0_gemm_scalar,   attn_scores_scalar, attn_values_each_head<attn_values_one_scalar>,
                        sum_squares_scalar, exp_scalar,         softmax_exp_portable<exp_scalar>, relu2_glu_scalar,   quantize_i8_scalar,
                        quantize_q8k_scalar, stream_read_scalar, to_f16_scalar,     round_f16_scalar,
                        q6_k_gemm_scalar,   tq1_gemm_scalar,    tq1_to_tq2_scalar};

}  // namespace

void to_f16_scalar(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] = f32_to_f16(x[i]);
}

void round_f16_scalar(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] = round_f16(x[i]);
}

uint64_t stream_read_scalar(const uint8_t* p, int64_t n, int variant) {
  (void)variant;  // portable code: the hardware prefetcher only
  uint64_t a = 0, b = 0, c = 0, d = 0;
  for (int64_t i = 0; i + 32 <= n; i += 32) {
    uint64_t w[4];
    std::memcpy(w, p + i, 32);
    a += w[0];
    b += w[1];
    c += w[2];
    d += w[3];
  }
  return a ^ b ^ c ^ d;
}

void quantize_i8_scalar(const float* x, int64_t n, int8_t* q, float* scale, int32_t* sum) {
  double max = 0.00001;
  for (int64_t i = 0; i < n; i++) max = std::max(max, (double)std::fabs(x[i]));
  const float s = (float)(127.0 / max);
  int32_t total = 0;
  for (int64_t i = 0; i < n; i++) {
    int v = nearest_int(x[i] * s);
    v = v > 127 ? 127 : v < -128 ? -128 : v;
    q[i] = (int8_t)v;
    total += v;
  }
  *scale = s;
  *sum = total;
}

void quantize_q8k_scalar(const float* x, int64_t n, int8_t* q, float* d, int32_t* bsum) {
  for (int64_t b = 0; b < n / 256; b++) {
    const float* xb = x + 256 * b;
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 256; j++) {
      const float ax = std::fabs(xb[j]);
      if (ax > amax) {
        amax = ax;
        max = xb[j];
      }
    }
    int32_t total = 0;
    if (amax == 0.0f) {
      std::memset(q + 256 * b, 0, 256);
      d[b] = 0.0f;
    } else {
      const float iscale = -127.0f / max;
      for (int j = 0; j < 256; j++) {
        const int v = std::min(127, nearest_int(iscale * xb[j]));
        q[256 * b + j] = (int8_t)v;
        total += v;
      }
      d[b] = 1.0f / iscale;
    }
    bsum[b] = total;
  }
}

const Kernels& kernels_scalar() { return SCALAR; }

void permute_activations(const int8_t* src, int8_t* dst, int64_t cols, ActLayout layout) {
  if (layout == LAYOUT_NATURAL) {
    std::memcpy(dst, src, (size_t)cols);
    return;
  }
  int64_t c = 0;
  for (; c + 256 <= cols; c += 256) {
    for (int l = 0; l < 4; l++) {
      std::memcpy(dst + c + 64 * l, src + c + 32 * l, 32);
      std::memcpy(dst + c + 64 * l + 32, src + c + 128 + 32 * l, 32);
    }
  }
  std::memcpy(dst + c, src + c, (size_t)(cols - c));  // a 128-element tail stays natural
}

}  // namespace bitnet
