// ---------------------------------------------------------------------------------------------
// TQ1_0 read as it is in the file (1.69 bits per weight) on AArch64: base-3 blocks unpacked in
// registers to the 0..2 codes the TQ2_0 kernels multiply, sixteen per vector in element order.
// Trit n of byte x is ⌊3 · (x · 3ⁿ mod 256) / 256⌋ (ggml's TQ1_0 layout): VMUL.8 wraps mod 256,
// and the top trit is the high byte of a widening multiply by 3. Included in each NEON path's
// namespace after ternary_neon.h (its Dot and tq2 helpers).
// ---------------------------------------------------------------------------------------------

inline uint8x16_t tq1_trit(uint8x16_t q) {
  const uint8x8_t three = vdup_n_u8(3);
  return vcombine_u8(vshrn_n_u16(vmull_u8(vget_low_u8(q), three), 8), vshrn_n_u16(vmull_u8(vget_high_u8(q), three), 8));
}

// c[i]: elements 16i..16i+15 of the block, as tq2_unpack gives them for a TQ2_0 block.
inline void tq1_unpack(const BlockTQ1& blk, int8x16_t c[16]) {
  static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
  const uint8x16_t a = vld1q_u8(blk.qs), b = vld1q_u8(blk.qs + 16), y = vld1q_u8(blk.qs + 32);
  for (int n = 0; n < 5; n++) {
    const uint8x16_t p = vdupq_n_u8(pow3[n]);
    // qs[0..31]: element 32n + m is trit n of byte m; qs[32..47]: element 160 + 16n + m.
    c[2 * n] = vreinterpretq_s8_u8(tq1_trit(vmulq_u8(a, p)));
    c[2 * n + 1] = vreinterpretq_s8_u8(tq1_trit(vmulq_u8(b, p)));
    c[10 + n] = vreinterpretq_s8_u8(tq1_trit(vmulq_u8(y, p)));
  }
  // qh[0..3]: element 240 + 4n + j is trit n of qh[j] (n < 4).
  uint32_t qh;
  std::memcpy(&qh, blk.qh, 4);
  static const uint8_t hp[16] = {1, 1, 1, 1, 3, 3, 3, 3, 9, 9, 9, 9, 27, 27, 27, 27};
  c[15] = vreinterpretq_s8_u8(tq1_trit(vmulq_u8(vreinterpretq_u8_u32(vdupq_n_u32(qh)), vld1q_u8(hp))));
}

// Rows [r0, r1) × T tokens one at a time (decode), with the TQ2_0 kernel's steps per block.
template <class Dot>
void tq1_gemm_neon_t(const BlockTQ1* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* q, const float* act_d,
                     const int32_t* act_bsum, int64_t T, float* out, int64_t out_stride) {
  const int64_t nb = cols / 256;
  int8x16_t c[16];
  for (int64_t t = 0; t < T; t++) {
    const int8_t* qt = q + t * cols;
    for (int64_t r = r0; r < r1; r++) {
      const BlockTQ1* row = w + r * nb;
      float sumf = 0.0f;
      for (int64_t b = 0; b < nb; b++) {
        tq1_unpack(row[b], c);
        const int32_t sumi = vaddvq_s32(Dot::dot16(c, qt + 256 * b)) - act_bsum[t * nb + b];
        sumf += (float)sumi * (act_d[t * nb + b] * f16_to_f32(row[b].d));
      }
      out[t * out_stride + r] = sumf;
    }
  }
}

inline void tq1_to_tq2_neon(const BlockTQ1* src, BlockTQ2* dst, int64_t n) {
  int8x16_t c[16];
  for (int64_t b = 0; b < n; b++) {
    tq1_unpack(src[b], c);
    // TQ2_0 byte 32k + 16h + m holds elements 128k + 32l + 16h + m at bits 2l: c[8k + 2l + h].
    for (int k = 0; k < 2; k++) {
      for (int h = 0; h < 2; h++) {
        const uint8x16_t v = vorrq_u8(
            vorrq_u8(vreinterpretq_u8_s8(c[8 * k + h]), vshlq_n_u8(vreinterpretq_u8_s8(c[8 * k + 2 + h]), 2)),
            vorrq_u8(vshlq_n_u8(vreinterpretq_u8_s8(c[8 * k + 4 + h]), 4), vshlq_n_u8(vreinterpretq_u8_s8(c[8 * k + 6 + h]), 6)));
        vst1q_u8(dst[b].qs + 32 * k + 16 * h, v);
      }
    }
    dst[b].d = src[b].d;
  }
}
