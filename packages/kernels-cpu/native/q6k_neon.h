// ---------------------------------------------------------------------------------------------
// Q6_K × Q8_K on AArch64 (the output head as 6-bit weights). Included in each NEON path's
// namespace after its Dot struct, which supplies dot16_s8 (16 signed products into int32 lanes).
// Codes are unpacked once per block to signed int8 (q6 − 32) in element order, one vector per
// sub-block of 16; each sub-block's exact integer sum is scaled by its int8 scale in int32 lanes.
// The float step is the scalar kernel's, block by block, so results are bit-identical to it.
// ---------------------------------------------------------------------------------------------

template <class Dot>
void q6_k_gemm_neon_t(const uint8_t* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* xq, const float* xd,
                      const int16_t* xbsum, int64_t T, float* out, int64_t out_stride) {
  (void)xbsum;  // the −32 is applied to the codes themselves
  const int64_t nb = cols / 256;
  const uint8x16_t low4 = vdupq_n_u8(0x0F), high2 = vdupq_n_u8(0x30);
  const int8x16_t offset = vdupq_n_s8(32);
  for (int64_t r = r0; r < r1; r++) {
    const uint8_t* row = w + r * nb * kQ6KBlockBytes;
    for (int64_t t = 0; t < T; t++) out[t * out_stride + r] = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
      const uint8_t* blk = row + b * kQ6KBlockBytes;
      int8x16_t codes[16];  // codes[i]: sub-block i (elements 16i..16i+15)
      for (int half = 0; half < 2; half++) {
        for (int part = 0; part < 2; part++) {
          const uint8x16_t qa = vld1q_u8(blk + 64 * half + 16 * part);
          const uint8x16_t qb = vld1q_u8(blk + 64 * half + 32 + 16 * part);
          const uint8x16_t qh = vld1q_u8(blk + 128 + 32 * half + 16 * part);
          const uint8x16_t c0 = vorrq_u8(vandq_u8(qa, low4), vandq_u8(vshlq_n_u8(qh, 4), high2));
          const uint8x16_t c1 = vorrq_u8(vandq_u8(qb, low4), vandq_u8(vshlq_n_u8(qh, 2), high2));
          const uint8x16_t c2 = vorrq_u8(vshrq_n_u8(qa, 4), vandq_u8(qh, high2));
          const uint8x16_t c3 = vorrq_u8(vshrq_n_u8(qb, 4), vandq_u8(vshrq_n_u8(qh, 2), high2));
          const int s = 8 * half + part;
          codes[s + 0] = vsubq_s8(vreinterpretq_s8_u8(c0), offset);
          codes[s + 2] = vsubq_s8(vreinterpretq_s8_u8(c1), offset);
          codes[s + 4] = vsubq_s8(vreinterpretq_s8_u8(c2), offset);
          codes[s + 6] = vsubq_s8(vreinterpretq_s8_u8(c3), offset);
        }
      }
      const int8_t* sc = (const int8_t*)(blk + 192);
      const float dw = f16_to_f32((uint16_t)(blk[208] | (blk[209] << 8)));
      for (int64_t t = 0; t < T; t++) {
        const int8_t* q = xq + t * cols + 256 * b;
        int32x4_t acc = vdupq_n_s32(0);
        for (int i = 0; i < 16; i++) acc = vmlaq_n_s32(acc, Dot::dot16_s8(codes[i], vld1q_s8(q + 16 * i)), sc[i]);
        const int32_t isum = vaddvq_s32(acc);
        float& sumf = out[t * out_stride + r];
        sumf += (float)isum * (dw * xd[t * nb + b]);
      }
    }
  }
}
