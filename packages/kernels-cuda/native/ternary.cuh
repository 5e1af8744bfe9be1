// The arithmetic the CUDA kernels share with their host twins: one definition, compiled for the
// GPU and for the CPU, so the host tests check the very indexing and rounding the device runs.
#pragma once
#include <cstdint>
#include <cmath>

#if defined(__CUDACC__)
#define BITNET_HD __host__ __device__ __forceinline__
#else
#define BITNET_HD inline
#endif

namespace bitnet_cuda {

// I2_S as the file stores it: 128-element blocks of 32 bytes; byte p of a block holds elements
// p, p+32, p+64, p+96 in bits 7-6, 5-4, 3-2, 1-0 (codes 0, 1, 2 = −1, 0, +1). So the 32-bit word
// at byte p (p a multiple of 4) holds, in each 2-bit field, four consecutive elements: after a
// shift and a 0x03 mask per byte it is one dp4a operand, and the kernels read the file's bytes
// as they are, with no repack at upload.
constexpr int kI2sBlock = 128;
constexpr int kI2sBlockBytes = 32;
// One 16-byte load (four words) per lane per step: half an I2_S block.
constexpr int kI2sChunkBytes = 16;
constexpr int kI2sChunkElems = 64;

// Σ a[i]·b[i] over the four signed bytes of each operand, plus c: the dp4a instruction, and its
// exact host equivalent.
BITNET_HD int32_t dp4a(int32_t a, int32_t b, int32_t c) {
#if defined(__CUDA_ARCH__)
  return __dp4a(a, b, c);
#else
  for (int i = 0; i < 4; i++) c += (int32_t)(int8_t)(a >> (8 * i)) * (int32_t)(int8_t)(b >> (8 * i));
  return c;
#endif
}

// Σ code·q over the 64 elements of one 16-byte chunk of an I2_S row. `words` are the chunk's
// four code words; `q32` is the token's int8 activations read as int32 (four per word), and
// `chunk` the chunk's index within the row. Codes are unsigned (0..2), so the −1 offset is taken
// out once per row with the activation sum: Σ(code − 1)·q = Σ code·q − Σ q.
BITNET_HD int32_t i2s_chunk_dot(const uint32_t words[4], const int32_t* q32, int64_t chunk, int32_t acc) {
  // Element index of the chunk's first word in field 0: block (chunk / 2) · 128 + (chunk % 2) · 16.
  const int64_t base = (chunk >> 1) * kI2sBlock + (chunk & 1) * 16;
#pragma unroll
  for (int i = 0; i < 4; i++) {
    const int64_t e = base + 4 * i;  // elements e..e+3 of field 0
    const uint32_t w = words[i];
    acc = dp4a((int32_t)((w >> 6) & 0x03030303u), q32[(e + 0) >> 2], acc);
    acc = dp4a((int32_t)((w >> 4) & 0x03030303u), q32[(e + 32) >> 2], acc);
    acc = dp4a((int32_t)((w >> 2) & 0x03030303u), q32[(e + 64) >> 2], acc);
    acc = dp4a((int32_t)(w & 0x03030303u), q32[(e + 96) >> 2], acc);
  }
  return acc;
}

// The row's output from its exact integer sum, in the reference's rounding order:
// fround(fround(dot / s) · w_scale), with dot = Σ code·q − Σ q.
BITNET_HD float i2s_finish(int32_t code_dot, int32_t act_sum, float act_scale, float w_scale) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(__fdiv_rn((float)(code_dot - act_sum), act_scale), w_scale);
#else
  volatile float d = (float)(code_dot - act_sum) / act_scale;  // volatile: no contraction
  return d * w_scale;
#endif
}

// bitnet.cpp's per-token absmax scale: 127 / max(1e-5, max|x|), the division in double.
BITNET_HD float i8_scale(float absmax) {
  const double m = absmax > 0.00001 ? (double)absmax : 0.00001;
  return (float)(127.0 / m);
}

// ggml's nearest_int of x·s, clamped to int8: the f32 product, then round half to even through
// the 1.5·2^23 trick (exact for |v| < 2^22).
BITNET_HD int32_t i8_quantize(float x, float s) {
#if defined(__CUDA_ARCH__)
  const float v = __fmul_rn(x, s);
  const int32_t r = (int32_t)(__fsub_rn(__fadd_rn(v, 12582912.0f), 12582912.0f));
#else
  volatile float v = x * s;
  volatile float t = v + 12582912.0f;
  // A NaN product (a NaN or infinite input) converts to 0 on the GPU (cvt.rzi); casting it is
  // undefined in C++ (x86 gives INT_MIN), so the twin says 0 as the device does.
  if (t != t) return 0;
  const int32_t r = (int32_t)(t - 12582912.0f);
#endif
  return r > 127 ? 127 : r < -128 ? -128 : r;
}

}  // namespace bitnet_cuda
