// Per-element and per-lane arithmetic of the model's ops, shared by the CUDA kernels
// (kernels.cu) and their host twins (host.cc): one definition of every index and rounding, so
// the host run checks what the GPU runs. Rounding points follow the reference backend's "ggml"
// numerics (engine-core/src/reference/ops.ts); the kernels are built with --fmad=false and use
// the _rn intrinsics where an expression could otherwise be contracted.
#pragma once
#include <cstdint>
#include <cstring>
#include <cmath>

#include "ternary.cuh"

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#endif

namespace bitnet_cuda {

constexpr int kLanes = 32;

#if !defined(__CUDA_ARCH__)
inline float f16_bits_to_f32(uint16_t h);
// The host twins convert through a table (the bit manipulation per element made the host head
// ~10× slower).
inline const float* f16_table() {
  static const float* table = [] {
    static float t[65536];
    for (uint32_t i = 0; i < 65536; i++) t[i] = f16_bits_to_f32((uint16_t)i);
    return t;
  }();
  return table;
}
#endif

BITNET_HD float f16_to_f32(uint16_t h) {
#if defined(__CUDA_ARCH__)
  return __half2float(__ushort_as_half(h));
#else
  return f16_table()[h];
#endif
}

#if !defined(__CUDA_ARCH__)
inline float f16_bits_to_f32(uint16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: value = mant · 2^-24, exact in f32
      const float v = (float)mant * 5.9604644775390625e-8f;
      std::memcpy(&bits, &v, 4);
      bits |= sign;
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
#endif

// f32 → f16, round to nearest even (as the KV cache and ggml's activation rounding store it).
BITNET_HD uint16_t f32_to_f16(float f) {
#if defined(__CUDA_ARCH__)
  return __half_as_ushort(__float2half_rn(f));
#else
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t absx = x & 0x7fffffffu;
  if (absx >= 0x7f800000u) return (uint16_t)(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u : 0));
  if (absx >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);  // rounds to ∞
  if (absx < 0x38800000u) {                                      // subnormal or zero in f16
    float a;
    std::memcpy(&a, &absx, 4);
    // a · 2^24 rounded to an integer, half to even (the current rounding mode).
    const float scaled = a * 16777216.0f;
    const uint32_t m = (uint32_t)std::nearbyint(scaled);
    return (uint16_t)(sign | m);
  }
  const uint32_t mant = absx & 0x7fffffu;
  uint32_t h = ((absx >> 23) - 112) << 10 | (mant >> 13);
  const uint32_t rest = mant & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h++;
  return (uint16_t)(sign | h);
#endif
}

BITNET_HD float round_f16(float f) { return f16_to_f32(f32_to_f16(f)); }

// f32 operations that must not be fused or reordered.
BITNET_HD float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  volatile float r = a * b;
  return r;
#endif
}
BITNET_HD float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  volatile float r = a + b;
  return r;
#endif
}
BITNET_HD float sub_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  volatile float r = a - b;
  return r;
#endif
}
BITNET_HD float div_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  volatile float r = a / b;
  return r;
#endif
}
// acc + a·b with one rounding: where a·b is exact in f32 (products of f16 values), this is the
// reference's fround(acc + a·b).
BITNET_HD float fma_rn(float a, float b, float acc) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, acc);
#else
  return std::fma(a, b, acc);
#endif
}

// --- Float projections and the head (float_column_order): lane l of a warp takes the groups of
// kFloatGroup columns g ≡ l (mod 32) of a row, in order, each group's columns in order (one
// 16-byte load of f16 weights, two of f32); a row whose width is not a multiple of the group
// takes columns c ≡ l (mod 32) one at a time. The lanes' sums then meet in the warp's butterfly.
constexpr int kFloatGroup = 8;
BITNET_HD bool float_rows_grouped(int64_t cols) { return cols % kFloatGroup == 0; }

// --- RMSNorm: Σ fround(x²) in double, by lanes (lane l takes i ≡ l mod 32), then the tree. ---
BITNET_HD double rms_lane_sum(const float* x, int64_t n, int lane) {
  double s = 0;
  for (int64_t i = lane; i < n; i += kLanes) s += (double)mul_rn(x[i], x[i]);
  return s;
}
// fround(1 / fround(sqrt(fround(fround(sum / n) + fround(eps))))).
BITNET_HD float rms_scale(double sum, int64_t n, float eps) {
  const float mean = (float)(sum / (double)n);
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(mean, eps)));
#else
  volatile float m = mean + eps;
  volatile float r = std::sqrt(m);
  return div_rn(1.0f, r);
#endif
}
BITNET_HD float rms_apply(float x, float scale, float w) { return mul_rn(mul_rn(x, scale), w); }

// --- Q8_K (llama.cpp's activations for TQ types), per 256 block: the signed value of largest
// magnitude (first on ties), iscale = −127 / max, q = min(127, nearest(iscale · x)), d = 1 / iscale.
BITNET_HD float q8k_iscale(float max) { return div_rn(-127.0f, max); }
BITNET_HD int32_t q8k_quantize(float x, float iscale) {
  const float v = mul_rn(iscale, x);
  const int32_t r = (int32_t)sub_rn(add_rn(v, 12582912.0f), 12582912.0f);
  return r > 127 ? 127 : r;
}

// --- TQ2_0 codes (without the block scales), per 256 block of 64 bytes: byte 32c + m holds
// column 128c + 32l + m at bits 2l. The word at byte 32c + m (m a multiple of 4) therefore gives,
// per field l, four consecutive columns: one dp4a operand after a shift and a mask.
BITNET_HD int32_t tq2_word_dot(uint32_t w, const int32_t* q32_block, int word, int32_t acc) {
  const int c = word >> 3;         // which 32-byte half of the block
  const int m = (word & 7) * 4;    // byte within the half
  const int base = 128 * c + m;    // column of field 0
#pragma unroll
  for (int l = 0; l < 4; l++) {
    acc = dp4a((int32_t)((w >> (2 * l)) & 0x03030303u), q32_block[(base + 32 * l) >> 2], acc);
  }
  return acc;
}
// The reference's block accumulation: sumf = fround(sumf + fround(sumi · fround(da · dw))).
BITNET_HD float tq2_accumulate(float sumf, int32_t sumi, float da, float dw) {
  return add_rn(sumf, mul_rn((float)sumi, mul_rn(da, dw)));
}

// --- RoPE (NeoX) with the step's cos/sin table; dims past n_rot pass through.
BITNET_HD void rope_pair(float x0, float x1, float c, float s, float* y0, float* y1) {
  *y0 = sub_rn(mul_rn(x0, c), mul_rn(x1, s));
  *y1 = add_rn(mul_rn(x0, s), mul_rn(x1, c));
}

// --- Gates.
BITNET_HD float glu_relu2(float g, float up) {
  const float r = g > 0 ? g : 0.0f;  // NaN → 0, as ggml's relu
  return mul_rn(mul_rn(r, r), up);
}
BITNET_HD float glu_silu(float g, float up) {
  const float e = (float)exp(-(double)g);
  return mul_rn(div_rn(g, add_rn(1.0f, e)), up);
}

// --- Attention, one block of kAttnWarps warps per (token, head). Thread τ scores the positions
// j ≡ τ (mod kAttnThreads), each a sequential dot over the head's dims, and sums their
// exponentials in that order (in double); the threads' sums meet per warp in the butterfly and
// then warp after warp. Warp w then sums p·v over its segment of positions, [start(w),
// start(w + 1)), lane l taking dims l, l + 32, …; the segments' sums are added in warp order.
constexpr int kAttnWarps = 8;
constexpr int kAttnThreads = kAttnWarps * kLanes;
BITNET_HD int64_t attn_segment_start(int64_t len, int w) { return (int64_t)w * len / kAttnWarps; }

// --- Attention softmax pieces: e = fround(exp(fround(s − max))), p = f16(fround(e · inv)).
BITNET_HD float softmax_exp(float s, float max) { return (float)exp((double)sub_rn(s, max)); }
BITNET_HD float softmax_prob(float e, float inv) { return round_f16(mul_rn(e, inv)); }

}  // namespace bitnet_cuda
