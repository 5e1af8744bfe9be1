// ---------------------------------------------------------------------------------------------
// Q6_K × Q8_K on AVX2 (also compiled into the AVX-512 path): the output head as 6-bit weights.
// Included inside namespace bitnet { namespace { … } } of a file compiled for AVX2.
//
// A block's 256 six-bit codes (0..63) are unpacked once into eight vectors of 32 unsigned bytes
// in element order; VPMADDUBSW multiplies them by the int8 activations (pairs ≤ 2·63·127, no
// saturation), VPMADDWD by the int16 sub-block scales (lanes 0-7 one sub-block of 16, 8-15 the
// next). The −32 offset is applied once per block as −32·Σ sc_i·Σq8_i from the activations' 16-value
// sums. Integer sums are exact and the float step is the scalar kernel's, block by block, so the
// result is bit-identical to the scalar path. Technique after llama.cpp's
// ggml-cpu/arch/x86/quants.c (ggml_vec_dot_q6_K_q8_K).
// ---------------------------------------------------------------------------------------------

// One Q6_K block unpacked: codes (0..63) of elements 32c..32c+31, and for each c the scales of
// its two sub-blocks as int16 lanes (0-7: sub-block 2c, 8-15: sub-block 2c + 1).
struct Q6KBlock {
  __m256i codes[8];
  __m256i scales[8];
  __m256i scales16;  // all 16 scales as int16, for the −32 correction
};

inline void q6k_unpack(const uint8_t* blk, Q6KBlock& u) {
  const __m256i low4 = _mm256_set1_epi8(0x0F), high2 = _mm256_set1_epi8(0x30);
  for (int half = 0; half < 2; half++) {
    const __m256i qa = _mm256_loadu_si256((const __m256i*)(blk + 64 * half));
    const __m256i qb = _mm256_loadu_si256((const __m256i*)(blk + 64 * half + 32));
    const __m256i qh = _mm256_loadu_si256((const __m256i*)(blk + 128 + 32 * half));
    // 16-bit shifts: bits crossing into the neighbouring byte are masked off.
    u.codes[4 * half + 0] = _mm256_or_si256(_mm256_and_si256(qa, low4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), high2));
    u.codes[4 * half + 1] = _mm256_or_si256(_mm256_and_si256(qb, low4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), high2));
    u.codes[4 * half + 2] =
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qa, 4), low4), _mm256_and_si256(qh, high2));
    u.codes[4 * half + 3] =
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qb, 4), low4), _mm256_and_si256(_mm256_srli_epi16(qh, 2), high2));
  }
  const __m128i sc = _mm_loadu_si128((const __m128i*)(blk + 192));
  for (int c = 0; c < 8; c++) {
    // Bytes [sc[2c] × 8, sc[2c+1] × 8], sign-extended to int16.
    const __m128i pick = _mm_set_epi64x(0x0101010101010101LL * (2 * c + 1), 0x0101010101010101LL * (2 * c));
    u.scales[c] = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc, pick));
  }
  u.scales16 = _mm256_cvtepi8_epi16(sc);
}

inline int32_t hsum_i32_256(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

// isum of one block with one token, unpacking as it goes (decode): nothing of the block is kept,
// so the 16 AVX2 registers hold it all (the unpacked Q6KBlock would spill: 7-10 ms vs 5.7 ms per
// 2B-4T head on AVX2).
inline int32_t q6k_block_dot_streaming(const uint8_t* blk, const int8_t* q, const int16_t* bsum) {
  const __m256i low4 = _mm256_set1_epi8(0x0F), high2 = _mm256_set1_epi8(0x30);
  const __m128i sc = _mm_loadu_si128((const __m128i*)(blk + 192));
  __m256i acc0 = _mm256_setzero_si256(), acc1 = acc0;
  for (int half = 0; half < 2; half++) {
    const __m256i qa = _mm256_loadu_si256((const __m256i*)(blk + 64 * half));
    const __m256i qb = _mm256_loadu_si256((const __m256i*)(blk + 64 * half + 32));
    const __m256i qh = _mm256_loadu_si256((const __m256i*)(blk + 128 + 32 * half));
    const int8_t* qx = q + 128 * half;
    auto scale = [&](int c) {
      const __m128i pick = _mm_set_epi64x(0x0101010101010101LL * (2 * c + 1), 0x0101010101010101LL * (2 * c));
      return _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc, pick));
    };
    const __m256i c0 = _mm256_or_si256(_mm256_and_si256(qa, low4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), high2));
    const __m256i c1 = _mm256_or_si256(_mm256_and_si256(qb, low4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), high2));
    acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(_mm256_maddubs_epi16(c0, _mm256_loadu_si256((const __m256i*)qx)), scale(4 * half)));
    acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(_mm256_maddubs_epi16(c1, _mm256_loadu_si256((const __m256i*)(qx + 32))), scale(4 * half + 1)));
    const __m256i c2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qa, 4), low4), _mm256_and_si256(qh, high2));
    const __m256i c3 =
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qb, 4), low4), _mm256_and_si256(_mm256_srli_epi16(qh, 2), high2));
    acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(_mm256_maddubs_epi16(c2, _mm256_loadu_si256((const __m256i*)(qx + 64))), scale(4 * half + 2)));
    acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(_mm256_maddubs_epi16(c3, _mm256_loadu_si256((const __m256i*)(qx + 96))), scale(4 * half + 3)));
  }
  const __m256i offset = _mm256_madd_epi16(_mm256_cvtepi8_epi16(sc), _mm256_loadu_si256((const __m256i*)bsum));
  return hsum_i32_256(_mm256_sub_epi32(_mm256_add_epi32(acc0, acc1), _mm256_slli_epi32(offset, 5)));
}

// isum of one unpacked block with one token's 256 activations and their 16 sums.
inline int32_t q6k_block_dot(const Q6KBlock& u, const int8_t* q, const int16_t* bsum) {
  __m256i acc0 = _mm256_setzero_si256(), acc1 = acc0;
  for (int c = 0; c < 8; c += 2) {
    const __m256i p0 = _mm256_maddubs_epi16(u.codes[c], _mm256_loadu_si256((const __m256i*)(q + 32 * c)));
    const __m256i p1 = _mm256_maddubs_epi16(u.codes[c + 1], _mm256_loadu_si256((const __m256i*)(q + 32 * c + 32)));
    acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(p0, u.scales[c]));
    acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(p1, u.scales[c + 1]));
  }
  const __m256i offset = _mm256_madd_epi16(u.scales16, _mm256_loadu_si256((const __m256i*)bsum));
  return hsum_i32_256(_mm256_sub_epi32(_mm256_add_epi32(acc0, acc1), _mm256_slli_epi32(offset, 5)));
}

inline float q6k_block_d(const uint8_t* blk) { return f16_to_f32((uint16_t)(blk[208] | (blk[209] << 8))); }

void q6_k_gemm_x86(const uint8_t* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* xq, const float* xd,
                   const int16_t* xbsum, int64_t T, float* out, int64_t out_stride) {
  const int64_t nb = cols / 256;
  for (int64_t r = r0; r < r1; r++) {
    const uint8_t* row = w + r * nb * kQ6KBlockBytes;
    if (T == 1) {
      // Decode: one pass over the row, unpacking each block for its only token.
      float sumf = 0.0f;
      for (int64_t b = 0; b < nb; b++) {
        const uint8_t* blk = row + b * kQ6KBlockBytes;
        // Into L2, 8 KiB ahead, as the other matvec kernels (carries the stream across 4 KiB
        // pages of a file mapping, where the hardware streamer stops).
        _mm_prefetch((const char*)blk + 8192, _MM_HINT_T1);
        _mm_prefetch((const char*)blk + 8192 + 64, _MM_HINT_T1);
        _mm_prefetch((const char*)blk + 8192 + 128, _MM_HINT_T1);
        _mm_prefetch((const char*)blk + 8192 + 192, _MM_HINT_T1);
        const int32_t isum = q6k_block_dot_streaming(blk, xq + 256 * b, xbsum + 16 * b);
        sumf += (float)isum * (q6k_block_d(blk) * xd[b]);
      }
      out[r] = sumf;
      continue;
    }
    // Several tokens: each block unpacked once for all of them; per-token sums wait in out[].
    for (int64_t t = 0; t < T; t++) out[t * out_stride + r] = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
      const uint8_t* blk = row + b * kQ6KBlockBytes;
      Q6KBlock u;
      q6k_unpack(blk, u);
      const float dw = q6k_block_d(blk);
      for (int64_t t = 0; t < T; t++) {
        const int32_t isum = q6k_block_dot(u, xq + t * cols + 256 * b, xbsum + t * (cols / 16) + 16 * b);
        float& sumf = out[t * out_stride + r];
        sumf += (float)isum * (dw * xd[t * nb + b]);
      }
    }
  }
}
