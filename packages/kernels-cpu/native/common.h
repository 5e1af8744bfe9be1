// ---------------------------------------------------------------------------------------------
// bitnet-ts kernels-cpu: shared definitions.
// Numerics follow the TypeScript reference backend ("ggml" numerics) so the scalar path is
// bit-exact with it (built with -ffp-contract=off: no fused multiply-adds behind our back).
// ---------------------------------------------------------------------------------------------
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace bitnet {

// ggml type ids we execute.
enum GgmlType : int32_t {
  T_F32 = 0, T_F16 = 1, T_Q4_0 = 2, T_Q8_0 = 8, T_Q6_K = 14, T_Q8_K = 15,
  T_BF16 = 30, T_TQ1_0 = 34, T_TQ2_0 = 35, T_I2_S = 36,
};

// ---- f16 <-> f32 (ggml_compute_fp16_to_fp32 / fp32_to_fp16: round to nearest even) ----------
inline float bits_to_f32(uint32_t w) { float f; std::memcpy(&f, &w, 4); return f; }
inline uint32_t f32_to_bits(float f) { uint32_t w; std::memcpy(&w, &f, 4); return w; }

inline float f16_to_f32(uint16_t h) {
  const uint32_t w = (uint32_t)h << 16;
  const uint32_t sign = w & 0x80000000u;
  const uint32_t two_w = w + w;
  const uint32_t exp_offset = 0xE0u << 23;
  const float normalized = bits_to_f32((two_w >> 4) + exp_offset) * 0x1.0p-112f;
  const uint32_t magic_mask = 126u << 23;
  const float denormalized = bits_to_f32((two_w >> 17) | magic_mask) - 0.5f;
  const uint32_t cutoff = 1u << 27;
  const uint32_t result = sign | (two_w < cutoff ? f32_to_bits(denormalized) : f32_to_bits(normalized));
  return bits_to_f32(result);
}

inline uint16_t f32_to_f16(float f) {
  float base = (std::fabs(f) * 0x1.0p+112f) * 0x1.0p-110f;
  const uint32_t w = f32_to_bits(f);
  const uint32_t shl1_w = w + w;
  const uint32_t sign = w & 0x80000000u;
  uint32_t bias = shl1_w & 0xFF000000u;
  if (bias < 0x71000000u) bias = 0x71000000u;
  base = bits_to_f32((bias >> 1) + 0x07800000u) + base;
  const uint32_t bits = f32_to_bits(base);
  const uint32_t exp_bits = (bits >> 13) & 0x00007C00u;
  const uint32_t mantissa_bits = bits & 0x00000FFFu;
  const uint32_t nonsign = exp_bits + mantissa_bits;
  return (uint16_t)((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign));
}

inline float round_f16(float f) { return f16_to_f32(f32_to_f16(f)); }

inline float bf16_to_f32(uint16_t h) { return bits_to_f32((uint32_t)h << 16); }

// ggml nearest_int: round to nearest, ties to even, for |x| < 2^22.
inline int nearest_int(float fval) {
  float val = fval + 12582912.f;
  int32_t i;
  std::memcpy(&i, &val, 4);
  return (i & 0x007fffff) - 0x00400000;
}

// Block layouts (ggml-common.h), sizes pinned.
struct BlockTQ2 { uint8_t qs[64]; uint16_t d; };
static_assert(sizeof(BlockTQ2) == 66, "TQ2_0 block is 66 bytes");
struct BlockTQ1 { uint8_t qs[48]; uint8_t qh[4]; uint16_t d; };
static_assert(sizeof(BlockTQ1) == 54, "TQ1_0 block is 54 bytes");
struct BlockQ8_0 { uint16_t d; int8_t qs[32]; };
static_assert(sizeof(BlockQ8_0) == 34, "Q8_0 block is 34 bytes");
// Q6_K: 256 values in ql[128] (low 4 bits), qh[64] (high 2 bits), int8 scales[16] (one per 16
// values), then the f16 super-block scale d. Read as bytes (210 is not a multiple of 2 or 4).
constexpr int64_t kQ6KBlockBytes = 210;

}  // namespace bitnet
