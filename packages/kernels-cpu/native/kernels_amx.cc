// ---------------------------------------------------------------------------------------------
// AMX (Advanced Matrix Extensions) prefill GEMM for I2_S: TDPBUSD multiplies a 16×64 tile of
// unsigned int8 (the ternary codes, unpacked on the fly from 2 bits) by a 64×16 tile of signed
// int8 activations (16 tokens, VNNI layout), accumulating 16×16 int32 — 16,384 exact integer
// multiply-adds per instruction. The integer dot products are the same as every other path's,
// so results are bit-exact with the scalar kernels.
// ---------------------------------------------------------------------------------------------
#include "kernels.h"

#if defined(__x86_64__) && defined(__linux__)
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>

namespace bitnet {
namespace {

struct TileConfig {
  uint8_t palette_id;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

constexpr int TOKEN_TILES = 6;  // C tiles per pass (6 C + 1 A + 1 B = all 8 tile registers)

// A group of 16 rows is read as 16 interleaved streams, which the hardware prefetcher follows
// poorly from memory (a step of 8-16 tokens reads each weight once). The next group's bytes
// (contiguous: rows r+16..r+31) are asked for ⌊lines / k chunks⌋ + 1 lines per k chunk, in the
// first token-tile pass only: done by ~80% of this group, so that its last rows, which the next
// group needs from its first chunk on, arrive in time (spread exactly over all the chunks, the
// TQ2_0 projections of a 128-token prompt took 226-250 instead of 182-191 ms).
inline void prefetch_next_group(const uint8_t* next, int64_t group_bytes, int64_t kc, int64_t kchunks) {
  const int64_t lines = (group_bytes / 64 + kchunks) / kchunks;
  for (int64_t l = kc * lines; l < (kc + 1) * lines && 64 * l < group_bytes; l++) {
    _mm_prefetch((const char*)next + 64 * l, _MM_HINT_T0);
  }
}

#pragma GCC push_options
#pragma GCC target("amx-tile,amx-int8,avx512f,avx512bw,f16c")

void configure_tiles() {
  // Tile state is per thread: every worker configures once.
  static thread_local bool configured = false;
  if (configured) return;
  TileConfig cfg;
  std::memset(&cfg, 0, sizeof cfg);
  cfg.palette_id = 1;
  for (int i = 0; i < 8; i++) {
    cfg.rows[i] = 16;
    cfg.colsb[i] = 64;
  }
  _tile_loadconfig(&cfg);
  configured = true;
}

// Unpacks 16 rows × 64 codes (elements [k0, k0+64) of each row, k0 a multiple of 64) of an I2_S
// tensor into a 16×64 byte tile. In a 128-element block, elements 0..63 are bit groups 6 and 4
// of its 32 bytes, elements 64..127 bit groups 2 and 0.
inline void unpack_i2s_tile(const uint8_t* w, int64_t row_bytes, int64_t r, int64_t k0, uint8_t* tile) {
  // One 32-byte load per row feeds both halves of a 64-byte register, shifted by a different
  // count each (variable shift): one shift, one and, one full-line store per row.
  const __m512i mask = _mm512_set1_epi8(3);
  const int shift_hi = (k0 & 64) ? 2 : 6;
  const __m512i shifts = _mm512_inserti64x4(_mm512_set1_epi16((short)shift_hi), _mm256_set1_epi16((short)(shift_hi - 2)), 1);
  const int64_t byte = (k0 >> 7) * 32;
  for (int i = 0; i < 16; i++) {
    const __m256i packed = _mm256_loadu_si256((const __m256i*)(w + (r + i) * row_bytes + byte));
    const __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(packed), packed, 1);
    _mm512_store_si512((__m512i*)(tile + 64 * i), _mm512_and_si512(_mm512_srlv_epi16(both, shifts), mask));
  }
}

// Multiplies the weight tile in tmm0 with the activation tiles of up to 6 token tiles (b, b +
// step, ...) into accumulators tmm2..tmm7. Tile registers are immediates, hence the unrolling.
inline void dpbusd_token_tiles(const int8_t* b, int64_t step, int64_t n) {
  _tile_loadd(1, b, 64);
  _tile_dpbusd(2, 0, 1);
  if (n > 1) { _tile_loadd(1, b + step, 64); _tile_dpbusd(3, 0, 1); }
  if (n > 2) { _tile_loadd(1, b + 2 * step, 64); _tile_dpbusd(4, 0, 1); }
  if (n > 3) { _tile_loadd(1, b + 3 * step, 64); _tile_dpbusd(5, 0, 1); }
  if (n > 4) { _tile_loadd(1, b + 4 * step, 64); _tile_dpbusd(6, 0, 1); }
  if (n > 5) { _tile_loadd(1, b + 5 * step, 64); _tile_dpbusd(7, 0, 1); }
}

// Stores accumulator tmm(2 + j) (16 rows × 16 tokens of int32) to c_tile.
inline void store_token_tile(int64_t j, int32_t* c_tile) {
  switch (j) {
    case 0: _tile_stored(2, c_tile, 64); break;
    case 1: _tile_stored(3, c_tile, 64); break;
    case 2: _tile_stored(4, c_tile, 64); break;
    case 3: _tile_stored(5, c_tile, 64); break;
    case 4: _tile_stored(6, c_tile, 64); break;
    default: _tile_stored(7, c_tile, 64); break;
  }
}

void i2s_gemm_amx_impl(const uint8_t* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* btiles, int64_t T,
                       const float* act_scale, const int32_t* act_sum, float w_scale, float* out, int64_t out_stride) {
  configure_tiles();
  const int64_t row_bytes = cols / 4;
  const int64_t kchunks = cols / 64;
  const int64_t ttiles = (T + 15) / 16;
  alignas(64) uint8_t a_tile[16 * 64];
  alignas(64) int32_t c_tile[16 * 16];
  const __m512i column = _mm512_setr_epi32(0, 16, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240);
  for (int64_t r = r0; r < r1; r += 16) {
    for (int64_t tt0 = 0; tt0 < ttiles; tt0 += TOKEN_TILES) {
      const int64_t n = ttiles - tt0 < TOKEN_TILES ? ttiles - tt0 : TOKEN_TILES;
      _tile_zero(2);
      _tile_zero(3);
      _tile_zero(4);
      _tile_zero(5);
      _tile_zero(6);
      _tile_zero(7);
      for (int64_t kc = 0; kc < kchunks; kc++) {
        if (tt0 == 0) prefetch_next_group(w + (r + 16) * row_bytes, 16 * row_bytes, kc, kchunks);
        unpack_i2s_tile(w, row_bytes, r, kc * 64, a_tile);
        _tile_loadd(0, a_tile, 64);
        // B tiles are stored [token tile][k chunk][16 rows × 64 bytes].
        const int8_t* b = btiles + ((tt0 * kchunks) + kc) * 1024;
        const int64_t step = kchunks * 1024;
        dpbusd_token_tiles(b, step, n);
      }
      // C tile (rows × tokens) → out[token][16 rows]: each token's column of the tile gathered
      // into one vector and scaled there (a scalar loop over the 256 sums took 5% of a prompt).
      for (int64_t j = 0; j < n; j++) {
        store_token_tile(j, c_tile);
        const int64_t t0 = (tt0 + j) * 16;
        for (int64_t c = 0; c < 16 && t0 + c < T; c++) {
          const int64_t t = t0 + c;
          const __m512i sums = _mm512_i32gather_epi32(_mm512_add_epi32(column, _mm512_set1_epi32((int)c)), c_tile, 4);
          const __m512 y = _mm512_div_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(sums, _mm512_set1_epi32(act_sum[t]))),
                                         _mm512_set1_ps(act_scale[t]));
          _mm512_storeu_ps(out + t * out_stride + r, _mm512_mul_ps(y, _mm512_set1_ps(w_scale)));
        }
      }
    }
  }
}

// Unpacks 16 rows × 64 codes of TQ2_0 k-chunk kc (elements 64·kc … of each row): block kc/4,
// sub-chunk kc%4 covers chunk c = sub/2 (bytes 32c..32c+31), bit pairs l = 2·(sub%2) and +1.
inline void unpack_tq2_tile(const BlockTQ2* w, int64_t nb, int64_t r, int64_t kc, uint8_t* tile) {
  const __m256i mask = _mm256_set1_epi8(3);
  const int64_t b = kc >> 2, sub = kc & 3;
  const int c = (int)(sub >> 1), l0 = 2 * (int)(sub & 1);
  for (int i = 0; i < 16; i++) {
    const __m256i packed = _mm256_loadu_si256((const __m256i*)(w[(r + i) * nb + b].qs + 32 * c));
    _mm256_storeu_si256((__m256i*)(tile + 64 * i), _mm256_and_si256(_mm256_srli_epi16(packed, 2 * l0), mask));
    _mm256_storeu_si256((__m256i*)(tile + 64 * i + 32), _mm256_and_si256(_mm256_srli_epi16(packed, 2 * l0 + 2), mask));
  }
}

// Per block, C tile j (16 rows × 16 tokens, int32) becomes (Σ code·q − Σq) · (d_act · d_w) and is
// added to the float sums of its (row, token) pairs, in block order, with the scalar kernel's
// operations (d = d_act · d_w; (float)(sumi − bsum) · d; sum + that), so every result is the
// scalar kernel's bits. Vectorized over the 16 tokens of a row: the scalar version of this
// epilogue (256 conversions and multiply-adds per block and token tile) took most of the time
// and made AMX slower than the AVX-512 VNNI path for TQ2_0 (133 against 164 t/s at pp128).
void tq2_gemm_amx_impl(const BlockTQ2* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* btiles, int64_t T,
                       const float* act_d, const int32_t* act_bsum, float* out, int64_t out_stride) {
  configure_tiles();
  const int64_t nb = cols / 256;
  const int64_t kchunks = cols / 64;
  const int64_t ttiles = (T + 15) / 16;
  const int64_t step = kchunks * 1024;
  alignas(64) uint8_t a_tile[16 * 64];
  alignas(64) int32_t c_tile[16 * 16];
  alignas(64) float sums[TOKEN_TILES * 16 * 16];  // [token tile][row][token]
  alignas(64) float wd[16];
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  for (int64_t r = r0; r < r1; r += 16) {
    for (int64_t tt0 = 0; tt0 < ttiles; tt0 += TOKEN_TILES) {
      const int64_t n = ttiles - tt0 < TOKEN_TILES ? ttiles - tt0 : TOKEN_TILES;
      for (int64_t k = 0; k < n * 256; k += 16) _mm512_store_ps(sums + k, _mm512_setzero_ps());
      for (int64_t b = 0; b < nb; b++) {
        _tile_zero(2);
        _tile_zero(3);
        _tile_zero(4);
        _tile_zero(5);
        _tile_zero(6);
        _tile_zero(7);
        for (int64_t sub = 0; sub < 4; sub++) {
          const int64_t kc = 4 * b + sub;
          if (tt0 == 0) {
            prefetch_next_group((const uint8_t*)(w + (r + 16) * nb), 16 * nb * (int64_t)sizeof(BlockTQ2), kc, kchunks);
          }
          unpack_tq2_tile(w, nb, r, kc, a_tile);
          _tile_loadd(0, a_tile, 64);
          const int8_t* bt = btiles + (tt0 * kchunks + kc) * 1024;
          dpbusd_token_tiles(bt, step, n);
        }
        for (int i = 0; i < 16; i++) wd[i] = _cvtsh_ss(w[(r + i) * nb + b].d);
        for (int64_t j = 0; j < n; j++) {
          store_token_tile(j, c_tile);
          // The tile's tokens' block scale and sum (tokens past T: zeros, never written out).
          const int64_t t0 = (tt0 + j) * 16;
          const __mmask16 live = T - t0 >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (T - t0)) - 1);
          const __m512i idx = _mm512_mullo_epi32(_mm512_add_epi32(_mm512_set1_epi32((int)t0), lane), _mm512_set1_epi32((int)nb));
          const __m512 da = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), live, idx, act_d + b, 4);
          const __m512i bs = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, idx, act_bsum + b, 4);
          float* sj = sums + j * 256;
          for (int i = 0; i < 16; i++) {
            const __m512 d = _mm512_mul_ps(da, _mm512_set1_ps(wd[i]));
            const __m512 x = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_load_si512(c_tile + 16 * i), bs)), d);
            _mm512_store_ps(sj + 16 * i, _mm512_add_ps(_mm512_load_ps(sj + 16 * i), x));
          }
        }
      }
      for (int64_t j = 0; j < n; j++) {
        const int64_t t0 = (tt0 + j) * 16;
        for (int64_t c = 0; c < 16 && t0 + c < T; c++) {
          float* o = out + (t0 + c) * out_stride + r;
          for (int i = 0; i < 16; i++) o[i] = sums[j * 256 + 16 * i + c];
        }
      }
    }
  }
}

#pragma GCC pop_options

std::atomic<int> amx_state{0};  // 0 unknown, 1 usable, −1 not

}  // namespace

// Packs T tokens of natural-order int8 activations (T × cols) into B tiles:
// tile (token tile tt, k chunk kc) row kk, byte 4n + j = q[16·tt + n][64·kc + 4·kk + j] (zero-padded),
// a 16 × 16 transpose of 32-bit words, copied word by word. Moved a byte at a time with a bounds
// test per byte, 128-token bench-i2s prompts ran ~3% slower on an Intel Xeon (480 against 495
// t/s, builds alternating); a transpose in AVX-512 registers measured the same as the copies.
void pack_amx_activations(const int8_t* q, int64_t cols, int64_t T, int8_t* btiles) {
  const int64_t kchunks = cols / 64;
  const int64_t ttiles = (T + 15) / 16;
  for (int64_t tt = 0; tt < ttiles; tt++) {
    for (int64_t kc = 0; kc < kchunks; kc++) {
      int8_t* tile = btiles + (tt * kchunks + kc) * 1024;
      for (int n = 0; n < 16; n++) {
        const int64_t t = tt * 16 + n;
        if (t < T) {
          const int8_t* src = q + t * cols + 64 * kc;
          for (int kk = 0; kk < 16; kk++) std::memcpy(tile + 64 * kk + 4 * n, src + 4 * kk, 4);
        } else {
          for (int kk = 0; kk < 16; kk++) std::memset(tile + 64 * kk + 4 * n, 0, 4);
        }
      }
    }
  }
}

bool amx_available() {
  int state = amx_state.load();
  if (state == 0) {
    __builtin_cpu_init();
    bool ok = __builtin_cpu_supports("amx-int8") && __builtin_cpu_supports("amx-tile");
    if (ok) {
      // The OS must grant the tile data state to this process (Linux ≥ 5.16).
      constexpr long ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18;
      ok = syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
    }
    state = ok ? 1 : -1;
    amx_state.store(state);
  }
  return state == 1;
}

void i2s_gemm_amx(const uint8_t* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* btiles, int64_t T,
                  const float* act_scale, const int32_t* act_sum, float w_scale, float* out, int64_t out_stride) {
  i2s_gemm_amx_impl(w, cols, r0, r1, btiles, T, act_scale, act_sum, w_scale, out, out_stride);
}

void tq2_gemm_amx(const BlockTQ2* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* btiles, int64_t T,
                  const float* act_d, const int32_t* act_bsum, float* out, int64_t out_stride) {
  tq2_gemm_amx_impl(w, cols, r0, r1, btiles, T, act_d, act_bsum, out, out_stride);
}

}  // namespace bitnet

#else
namespace bitnet {
bool amx_available() { return false; }
void tq2_gemm_amx(const BlockTQ2*, int64_t, int64_t, int64_t, const int8_t*, int64_t, const float*, const int32_t*, float*, int64_t) {}
void pack_amx_activations(const int8_t*, int64_t, int64_t, int8_t*) {}
void i2s_gemm_amx(const uint8_t*, int64_t, int64_t, int64_t, const int8_t*, int64_t, const float*, const int32_t*, float,
                  float*, int64_t) {}
}  // namespace bitnet
#endif
