// ---------------------------------------------------------------------------------------------
// The 128-bit ternary projections shared by the NEON paths, written once over a `Dot` policy
// that says how int8 codes × int8 activations are summed into int32 lanes (baseline NEON:
// SMULL/SMLAL into int16, then SADALP; dotprod: SDOT). Included inside each path's target region
// and anonymous namespace in kernels_neon.cc, as ternary_avx2.h is for the x86 paths.
//
// Convention: a block's codes come as int8x16 vectors c[i] whose lanes pair with activations
// q[16·i .. 16·i + 15] (8 vectors for a 128-element I2_S block, 16 for a 256-element TQ2_0
// block). Codes are 0..2, so signed and unsigned products agree.
//
// Loop order and float steps are the scalar kernel's (tokens outside, rows inside; the integer
// sum is exact, then the same float operations in the same order, no FMA), so every result is
// bit-identical to the scalar path.
// No include guard: kernels_neon.cc includes this once per path, each in its own namespace.
// ---------------------------------------------------------------------------------------------

// The eight code vectors of a 128-element I2_S block (32 bytes; element 32j+m at bits 6−2j of
// byte m): c[2j + h] holds elements 32j + 16h .. 32j + 16h + 15.
inline void i2s_unpack(const uint8_t* codes, int8x16_t c[8]) {
  const uint8x16_t mask = vdupq_n_u8(3);
  const uint8x16_t lo = vld1q_u8(codes), hi = vld1q_u8(codes + 16);
  c[0] = vreinterpretq_s8_u8(vshrq_n_u8(lo, 6));
  c[1] = vreinterpretq_s8_u8(vshrq_n_u8(hi, 6));
  c[2] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(lo, 4), mask));
  c[3] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(hi, 4), mask));
  c[4] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(lo, 2), mask));
  c[5] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(hi, 2), mask));
  c[6] = vreinterpretq_s8_u8(vandq_u8(lo, mask));
  c[7] = vreinterpretq_s8_u8(vandq_u8(hi, mask));
}

// The sixteen code vectors of a TQ2_0 block (element 128k+32l+m at bits 2l of qs[32k+m]):
// c[8k + 2l + h] holds elements 128k + 32l + 16h .. +15.
inline void tq2_unpack(const BlockTQ2& blk, int8x16_t c[16]) {
  const uint8x16_t mask = vdupq_n_u8(3);
  for (int k = 0; k < 2; k++) {
    for (int h = 0; h < 2; h++) {
      const uint8x16_t packed = vld1q_u8(blk.qs + 32 * k + 16 * h);
      c[8 * k + 0 + h] = vreinterpretq_s8_u8(vandq_u8(packed, mask));
      c[8 * k + 2 + h] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(packed, 2), mask));
      c[8 * k + 4 + h] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(packed, 4), mask));
      c[8 * k + 6 + h] = vreinterpretq_s8_u8(vshrq_n_u8(packed, 6));
    }
  }
}

// out = (Σ code·q − Σq) / act_scale · w_scale. Tokens outside, rows inside (a group's
// activations stay in L1 while the rows of one call stream past); four, then single tokens
// per pass share each row's unpacked codes.
template <class Dot, int N>
inline void i2s_tokens_neon(const uint8_t* row, int64_t nb, int64_t cols, int64_t r, int64_t t, const int8_t* q,
                            const float* act_scale, const int32_t* act_sum, float w_scale, float* out,
                            int64_t out_stride) {
  int32x4_t acc[N];
  for (int k = 0; k < N; k++) acc[k] = vdupq_n_s32(0);
  const int8_t* qt = q + t * cols;
  for (int64_t b = 0; b < nb; b++) {
    int8x16_t c[8];
    i2s_unpack(row + 32 * b, c);
    for (int k = 0; k < N; k++) acc[k] = Dot::dot8(acc[k], c, qt + k * cols + 128 * b);
  }
  for (int k = 0; k < N; k++) {
    const float y = (float)(vaddvq_s32(acc[k]) - act_sum[t + k]) / act_scale[t + k];
    out[(t + k) * out_stride + r] = y * w_scale;
  }
}

template <class Dot>
void i2s_gemm_neon_t(const uint8_t* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* q, const float* act_scale,
                     const int32_t* act_sum, float w_scale, int64_t T, float* out, int64_t out_stride) {
  const int64_t nb = cols / 128;
  const int64_t row_bytes = cols / 4;
  int64_t t = 0;
  for (; t + 4 <= T; t += 4) {
    for (int64_t r = r0; r < r1; r++) {
      i2s_tokens_neon<Dot, 4>(w + r * row_bytes, nb, cols, r, t, q, act_scale, act_sum, w_scale, out, out_stride);
    }
  }
  for (; t < T; t++) {
    for (int64_t r = r0; r < r1; r++) {
      i2s_tokens_neon<Dot, 1>(w + r * row_bytes, nb, cols, r, t, q, act_scale, act_sum, w_scale, out, out_stride);
    }
  }
}

// Each output is Σ_b (float)(sumi_b − bsum_b) · (act_d_b · w_d_b) over blocks in order (the
// scalar kernel's float steps). Four tokens per pass over a row share each block's codes.
template <class Dot>
void tq2_gemm_neon_t(const BlockTQ2* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* q, const float* act_d,
                     const int32_t* act_bsum, int64_t T, float* out, int64_t out_stride) {
  const int64_t nb = cols / 256;
  int8x16_t c[16];
  int64_t t = 0;
  for (; t + 4 <= T; t += 4) {
    const int8_t* q0 = q + t * cols;
    for (int64_t r = r0; r < r1; r++) {
      const BlockTQ2* row = w + r * nb;
      float32x4_t sumf = vdupq_n_f32(0.0f);
      for (int64_t b = 0; b < nb; b++) {
        tq2_unpack(row[b], c);
        const int64_t off = 256 * b;
        int32x4_t sumi = {vaddvq_s32(Dot::dot16(c, q0 + off)), vaddvq_s32(Dot::dot16(c, q0 + cols + off)),
                          vaddvq_s32(Dot::dot16(c, q0 + 2 * cols + off)), vaddvq_s32(Dot::dot16(c, q0 + 3 * cols + off))};
        const int32x4_t bsum = {act_bsum[t * nb + b], act_bsum[(t + 1) * nb + b], act_bsum[(t + 2) * nb + b],
                                act_bsum[(t + 3) * nb + b]};
        const float32x4_t ad = {act_d[t * nb + b], act_d[(t + 1) * nb + b], act_d[(t + 2) * nb + b],
                                act_d[(t + 3) * nb + b]};
        const float32x4_t scale = vmulq_n_f32(ad, f16_to_f32(row[b].d));
        sumi = vsubq_s32(sumi, bsum);
        sumf = vaddq_f32(sumf, vmulq_f32(vcvtq_f32_s32(sumi), scale));
      }
      float o[4];
      vst1q_f32(o, sumf);
      for (int k = 0; k < 4; k++) out[(t + k) * out_stride + r] = o[k];
    }
  }
  for (; t < T; t++) {
    const int8_t* qt = q + t * cols;
    for (int64_t r = r0; r < r1; r++) {
      const BlockTQ2* row = w + r * nb;
      float sumf = 0.0f;
      for (int64_t b = 0; b < nb; b++) {
        tq2_unpack(row[b], c);
        const int32_t sumi = vaddvq_s32(Dot::dot16(c, qt + 256 * b)) - act_bsum[t * nb + b];
        sumf += (float)sumi * (act_d[t * nb + b] * f16_to_f32(row[b].d));
      }
      out[t * out_stride + r] = sumf;
    }
  }
}

// Q8_0 × Q8_0: per block an exact int32 sum, then the scalar kernel's float steps in block order.
template <class Dot>
void q8_0_gemm_neon_t(const BlockQ8_0* w, int64_t cols, int64_t r0, int64_t r1, const BlockQ8_0* xq, int64_t T,
                      float* out, int64_t out_stride) {
  const int64_t nb = cols / 32;
  for (int64_t r = r0; r < r1; r++) {
    const BlockQ8_0* row = w + r * nb;
    for (int64_t t = 0; t < T; t++) {
      const BlockQ8_0* xt = xq + t * nb;
      float sumf = 0.0f;
      for (int64_t b = 0; b < nb; b++) {
        const int32_t sumi = Dot::dot32_s8(row[b].qs, xt[b].qs);
        sumf += (float)sumi * (f16_to_f32(row[b].d) * f16_to_f32(xt[b].d));
      }
      out[t * out_stride + r] = sumf;
    }
  }
}
