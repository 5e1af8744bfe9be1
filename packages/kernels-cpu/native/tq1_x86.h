// ---------------------------------------------------------------------------------------------
// TQ1_0 read as it is in the file (1.69 bits per weight) on x86: the base-3 blocks are unpacked
// in registers to the 0..2 codes the TQ2_0 kernels multiply, in natural element order. Included
// inside namespace bitnet { namespace { … } } of a file compiled for AVX2 (or more).
//
// A byte holds five trits, the first in its top "digit": trit n of byte x is ⌊3 · (x · 3ⁿ mod
// 256) / 256⌋ (ggml's TQ1_0 layout). The byte products by 3 and 9 are adds and masked 16-bit
// shifts, and ⌊3q/256⌋ is two VPAVGBs of q − 1 (saturating) and a shift: exact for every byte
// (checked exhaustively). Technique after llama.cpp's ggml-cpu/arch/x86/quants.c
// (ggml_vec_dot_tq1_0_q8_K).
// ---------------------------------------------------------------------------------------------

inline __m256i tq1_mul3(__m256i x) { return _mm256_add_epi8(x, _mm256_add_epi8(x, x)); }
inline __m256i tq1_mul9(__m256i x) {
  return _mm256_add_epi8(_mm256_and_si256(_mm256_slli_epi16(x, 3), _mm256_set1_epi8((char)0xF8)), x);
}
inline __m256i tq1_trit(__m256i q) {
  const __m256i qm = _mm256_subs_epu8(q, _mm256_set1_epi8(1));
  const __m256i t = _mm256_avg_epu8(qm, _mm256_avg_epu8(qm, _mm256_setzero_si256()));
  return _mm256_and_si256(_mm256_srli_epi16(t, 6), _mm256_set1_epi8(3));
}

// codes[i]: elements 32i..32i+31 of the block (0..2), as tq2_unpack gives them for a TQ2_0 block.
inline void tq1_unpack(const BlockTQ1& blk, __m256i codes[8]) {
  // qs[0..31]: element 32n + m is trit n of byte m (n < 5).
  const __m256i x = _mm256_loadu_si256((const __m256i*)blk.qs);
  const __m256i x3 = tq1_mul3(x), x9 = tq1_mul9(x);
  codes[0] = tq1_trit(x);
  codes[1] = tq1_trit(x3);
  codes[2] = tq1_trit(x9);
  codes[3] = tq1_trit(tq1_mul9(x3));
  codes[4] = tq1_trit(tq1_mul9(x9));
  // qs[32..47]: element 160 + 16n + m is trit n of byte 32 + m; the two halves of a register
  // take trits (0, 1), (2, 3) and 4.
  const __m128i y = _mm_loadu_si128((const __m128i*)(blk.qs + 32));
  const __m128i y3 = _mm_add_epi8(y, _mm_add_epi8(y, y));
  const __m256i z01 = _mm256_set_m128i(y3, y);
  const __m256i z23 = tq1_mul9(z01);
  const __m256i z4 = tq1_mul9(z23);
  codes[5] = tq1_trit(z01);
  codes[6] = tq1_trit(z23);
  // qh[0..3]: element 240 + 4n + j is trit n of qh[j] (n < 4): the four bytes times 1, 3, 9, 27
  // side by side, then one trit each.
  uint32_t qh;
  std::memcpy(&qh, blk.qh, 4);
  const __m256i h = _mm256_set1_epi32((int)qh);
  const __m256i h3 = tq1_mul3(h), h9 = tq1_mul9(h), h27 = tq1_mul9(h3);
  const __m256i hp = _mm256_blend_epi32(_mm256_blend_epi32(h, h3, 0x22), _mm256_blend_epi32(h9, h27, 0x88), 0xCC);
  codes[7] = tq1_trit(_mm256_set_m128i(_mm256_castsi256_si128(hp), _mm256_castsi256_si128(z4)));
}

// TQ1_0 → TQ2_0 (lossless, same scale): multi-token steps convert a row tile and run the TQ2_0
// kernels on it, which beat a TQ1_0 kernel once the unpacking is shared by enough tokens.
void tq1_to_tq2_x86(const BlockTQ1* src, BlockTQ2* dst, int64_t n) {
  for (int64_t b = 0; b < n; b++) {
    __m256i c[8];
    tq1_unpack(src[b], c);
    for (int half = 0; half < 2; half++) {
      const __m256i lo = _mm256_or_si256(c[4 * half], _mm256_slli_epi16(c[4 * half + 1], 2));
      const __m256i hi = _mm256_or_si256(_mm256_slli_epi16(c[4 * half + 2], 4), _mm256_slli_epi16(c[4 * half + 3], 6));
      _mm256_storeu_si256((__m256i*)(dst[b].qs + 32 * half), _mm256_or_si256(lo, hi));
    }
    dst[b].d = src[b].d;
  }
}

// Rows [r0, r1) × T tokens one at a time (decode): per block the exact Σ code·q − Σq from
// `block_sum(codes, activations of the block)`, then the TQ2_0 kernels' float step, so the
// result has the bits of the TQ2_0 kernel on the repacked weights.
template <class BlockSum>
void tq1_gemm_rows(const BlockTQ1* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* q, const float* act_d,
                   const int32_t* act_bsum, int64_t T, float* out, int64_t out_stride, BlockSum block_sum) {
  const int64_t nb = cols / 256;
  for (int64_t t = 0; t < T; t++) {
    const int8_t* qt = q + t * cols;
    for (int64_t r = r0; r < r1; r++) {
      const BlockTQ1* row = w + r * nb;
      float sumf = 0.0f;
      for (int64_t b = 0; b < nb; b++) {
        // Into L2 8 KiB ahead, as the other matvec kernels (one line covers a block's 54 bytes).
        _mm_prefetch((const char*)(row + b) + 8192, _MM_HINT_T1);
        __m256i codes[8];
        tq1_unpack(row[b], codes);
        const int32_t sumi = block_sum(codes, qt + 256 * b) - act_bsum[t * nb + b];
        sumf += (float)sumi * (act_d[t * nb + b] * f16_to_f32(row[b].d));
      }
      out[t * out_stride + r] = sumf;
    }
  }
}
