// ---------------------------------------------------------------------------------------------
// Kernel table: one row of function pointers per SIMD path (scalar, avx2, avxvnni, avx512vnni,
// neon, neon-dotprod, neon-i8mm),
// chosen at run time by what the CPU reports, overridable for tests.
//
// Shapes: W is (rows × cols) row-major in its packed format; activations are (T × cols);
// outputs are out[t * out_stride + r] for rows r in [r0, r1) — each thread takes a row range.
// ---------------------------------------------------------------------------------------------
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>
#include "common.h"

namespace bitnet {

// Activation layout a path's ternary kernels read: natural order, or within every 256 elements
// the order [0..31, 128..159, 32..63, 160..191, 64..95, 192..223, 96..127, 224..255] that lets
// one 64-byte load of packed codes feed four full-width 512-bit dot products.
enum ActLayout : int { LAYOUT_NATURAL = 0, LAYOUT_INTERLEAVE256 = 1 };

// The ways Kernels::stream_read can read memory (its `variant` argument).
constexpr int kStreamReadVariants = 3;

// How far ahead the x86 scores kernels ask L2 for key lines, one line for each they read: 16 KiB,
// two key blocks of a 128-wide head. On a Zen 5, four heads' scores over 3000 positions from
// memory (`COPIES=64 bench/build-run.sh attention <path> 4 3000 128`, two at once) took 21.7-33.1
// instead of 46.5-50.9 µs (`avx512vnni`) and 39.7-43.8 instead of 62.2-70.3 (`avx2`) against the
// model's old request of each next block's 128 lines in one burst before scoring it.
constexpr int64_t kKeyPrefetchBytes = 16384;

struct Kernels {
  const char* name;
  ActLayout layout;

  // I2_S × per-token int8: out = (Σ code·q − Σq) / act_scale · w_scale (exact integer dot).
  void (*i2s_gemm)(const uint8_t* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* q, const float* act_scale,
                   const int32_t* act_sum, float w_scale, int64_t T, float* out, int64_t out_stride);

  // TQ2_0 × Q8_K: per 256-block, Σ code·q − bsum, times d_w · d_a, summed over blocks.
  void (*tq2_gemm)(const BlockTQ2* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* q, const float* act_d,
                   const int32_t* act_bsum, int64_t T, float* out, int64_t out_stride);

  // F16 × f32 (activations already rounded to f16 values): the output head / F16 matmuls.
  void (*f16_gemm)(const uint16_t* w, int64_t cols, int64_t r0, int64_t r1, const float* x, int64_t T, float* out,
                   int64_t out_stride);

  // Q8_0 × Q8_0 activations (the optional requantized head).
  void (*q8_0_gemm)(const BlockQ8_0* w, int64_t cols, int64_t r0, int64_t r1, const BlockQ8_0* xq, int64_t T,
                    float* out, int64_t out_stride);

  // Attention scores of nq query heads that share one KV head (grouped-query attention):
  // scores[h·score_stride + j] = Σ_i q[h·hd + i]·k[i·stride + j] for h < nq, j < len, summed in
  // i order (each position is one SIMD lane, so every path matches the scalar order exactly).
  // K is f16, transposed: hd rows of `stride` positions (the model passes one 32-position block
  // of its key cache at a time, Model::ensure_capacity), read once for all nq heads; q holds
  // f16-rounded values. Reads no key beyond len. A product of two f16 values is exact in f32
  // (22 significant bits at most, far from f32's range limits), so a fused multiply-add rounds
  // once where mul-then-add rounds twice with the first rounding a no-op: the same bits, and the
  // x86 paths use FMA (one operation instead of two per product).
  void (*attn_scores)(const float* q, int64_t nq, const uint16_t* kt, int64_t stride, int64_t hd, int64_t len,
                      float* scores, int64_t score_stride);

  // For the nq query heads that share one KV head: out[h·hd + i] = Σ_j p[h·p_stride + j]·v[j·kvw +
  // i] for h < nq, i < hd, summed in j order (lanes over i: exact). p holds f16-rounded values
  // (the model rounds the probabilities), so FMA gives the same bits here too. A path may convert
  // each f16 value row once for all nq heads. With `carry`, out already holds each lane's sum over
  // earlier positions and the sums continue from it, in order: one call over positions [0, len)
  // and two over [0, m) then [m, len) with carry give the same bits (the model splits a batch's
  // tokens, whose lengths differ, this way).
  void (*attn_values)(const float* p, int64_t nq, int64_t p_stride, const uint16_t* v, int64_t kvw, int64_t hd,
                      int64_t len, float* out, bool carry);

  // Σ (double)(x[i]·x[i]) — the RMSNorm sum (scalar: in order; SIMD: in lanes).
  double (*sum_squares)(const float* x, int64_t n);

  // y[i] = (float)exp((double)x[i]) — SIMD paths evaluate exp in double precision, so the result
  // differs from libm's only when it lies within ~1e-16 of a float rounding boundary.
  void (*exp)(const float* x, float* y, int64_t n);

  // The exponentials of one attention row: s[i] = (float)exp((double)(s[i]·scale − max)) where
  // max is the largest s[j]·scale (NaN skipped, as std::max does); the product and the difference
  // in f32, the exp as `exp` computes it. One pass for the maximum and one for the rest, in the
  // path's vectors, where four scalar passes (scale, maximum, difference, exp) took as long as
  // the exp itself.
  void (*softmax_exp)(float* s, int64_t n, float scale);

  // y = relu(g)² · u, elementwise (exact on every path).
  void (*relu2_glu)(const float* g, const float* u, float* y, int64_t n);

  // Per-token int8 activations (bitnet.cpp quantize_row_i8_s), natural order: s = 127/max|x|
  // (max floored at 1e-5, divided in double), q = clamp(nearest_int(x·s)), and Σq. Exact on
  // every path (max and round-to-nearest-even do not depend on order or width).
  void (*quantize_i8)(const float* x, int64_t n, int8_t* q, float* scale, int32_t* sum);

  // Q8_K per 256-block (ggml quantize_row_q8_K_ref): d = 1/iscale with iscale = −127/x_max
  // (x_max the first element of largest magnitude), q = min(127, nearest_int(iscale·x)), and
  // per-block Σq. Exact on every path.
  void (*quantize_q8k)(const float* x, int64_t n, int8_t* q, float* d, int32_t* bsum);

  // Reads n bytes (a multiple of 64) as fast as this path can stream them and returns a
  // checksum: the bandwidth probe behind `bitnet bench`, which keeps the fastest of the
  // kStreamReadVariants ways (which one wins depends on the CPU): 0 plain loads that only the
  // hardware prefetcher follows; 1 two lines per 128-byte step, each asked 8 KiB ahead into L2,
  // as the multi-token kernels prefetch; 2 one line per step, asked 4 KiB ahead into L2, as the
  // F16 head reads (on a Xeon with AMX: 37 GB/s from the page cache where 0 and 1 read 32-35).
  uint64_t (*stream_read)(const uint8_t* p, int64_t n, int variant);

  // f32 → f16 bits, and f32 → nearest f16 value as f32 (y may be x): round to nearest even, as
  // ggml's conversion (hardware F16C on the x86 SIMD paths gives the same bits for every
  // non-NaN input).
  void (*to_f16)(const float* x, uint16_t* y, int64_t n);
  void (*round_f16)(const float* x, float* y, int64_t n);

  // Q6_K × Q8_K (a Q6_K output head): per 256-block the exact integer
  // isum = Σ_i sc_i · Σ_{its 16 values} (q6 − 32)·q8, then out += (float)isum · (d_w · d_a),
  // blocks in order: every path gives the same bits. xq: T × cols int8, xd: T × cols/256 block
  // scales, xbsum: T × cols/16 sums of 16 consecutive xq (for paths that multiply the unsigned q6
  // and subtract 32·Σq8 afterwards).
  void (*q6_k_gemm)(const uint8_t* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* xq, const float* xd,
                    const int16_t* xbsum, int64_t T, float* out, int64_t out_stride);

  // TQ1_0 × Q8_K on the file's base-3 blocks (1.69 bits per weight), tokens one at a time
  // (decode): tq2_gemm's contract, and its result bits on the losslessly repacked weights (the
  // same integer sums and float steps).
  void (*tq1_gemm)(const BlockTQ1* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* q, const float* act_d,
                   const int32_t* act_bsum, int64_t T, float* out, int64_t out_stride);

  // TQ1_0 → TQ2_0, n blocks (lossless: same codes, same scale).
  void (*tq1_to_tq2)(const BlockTQ1* src, BlockTQ2* dst, int64_t n);

  // How far ahead attn_scores asks for the key lines it will read, itself (kKeyPrefetchBytes);
  // 0: it does not, and the model asks for each next key block before scoring this one.
  int64_t key_prefetch_bytes = 0;
};

// softmax_exp in portable code around a path's exp (the scalar and NEON paths): the maximum over
// eight interleaved partial maxima (exact in any order), then the differences, then Exp.
template <void (*Exp)(const float* x, float* y, int64_t n)>
void softmax_exp_portable(float* s, int64_t n, float scale) {
  for (int64_t j = 0; j < n; j++) s[j] = s[j] * scale;
  float part[8];
  for (float& m : part) m = -INFINITY;
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    for (int i = 0; i < 8; i++) part[i] = std::max(part[i], s[j + i]);
  }
  for (; j < n; j++) part[0] = std::max(part[0], s[j]);
  float max = part[0];
  for (int i = 1; i < 8; i++) max = std::max(max, part[i]);
  for (int64_t i = 0; i < n; i++) s[i] = s[i] - max;
  Exp(s, s, n);
}

// attn_values for a path whose kernel takes one query head at a time: the nq heads (probability
// rows p_stride apart, outputs hd apart) one after another.
template <void (*One)(const float* p, const uint16_t* v, int64_t kvw, int64_t hd, int64_t len, float* out, bool carry)>
void attn_values_each_head(const float* p, int64_t nq, int64_t p_stride, const uint16_t* v, int64_t kvw, int64_t hd,
                           int64_t len, float* out, bool carry) {
  for (int64_t h = 0; h < nq; h++) One(p + h * p_stride, v, kvw, hd, len, out + h * hd, carry);
}

// The scalar TQ1_0 kernels (shared by paths without their own).
void tq1_gemm_scalar(const BlockTQ1* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* q, const float* act_d,
                     const int32_t* act_bsum, int64_t T, float* out, int64_t out_stride);
void tq1_to_tq2_scalar(const BlockTQ1* src, BlockTQ2* dst, int64_t n);

// The scalar Q6_K × Q8_K kernel, and the 16-value sums it pairs with (ggml's Q8_K bsums).
void q6_k_gemm_scalar(const uint8_t* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* xq, const float* xd,
                      const int16_t* xbsum, int64_t T, float* out, int64_t out_stride);
void q8k_bsums16(const int8_t* q, int64_t n, int16_t* bsum);

// The scalar quantizers (shared by paths without their own).
void quantize_i8_scalar(const float* x, int64_t n, int8_t* q, float* scale, int32_t* sum);
void quantize_q8k_scalar(const float* x, int64_t n, int8_t* q, float* d, int32_t* bsum);
uint64_t stream_read_scalar(const uint8_t* p, int64_t n, int variant);
void to_f16_scalar(const float* x, uint16_t* y, int64_t n);
void round_f16_scalar(const float* x, float* y, int64_t n);

// Read bandwidth of [p, p + bytes) with `threads` threads, one figure (GB/s) per repetition.
std::vector<double> measure_read_bandwidth(const Kernels& k, const uint8_t* p, int64_t bytes, int threads, int reps);

const Kernels& kernels_scalar();
const Kernels* kernels_avx2();       // nullptr when not compiled in or not supported
const Kernels* kernels_avxvnni();    // AVX2 + AVX-VNNI (the AVX2 path, projections on VPDPBUSD)
const Kernels* kernels_avx512vnni();  // nullptr when not compiled in or not supported
const Kernels* kernels_neon();          // AArch64 Advanced SIMD; nullptr elsewhere
const Kernels* kernels_neon_dotprod();  // + SDOT; nullptr when the CPU lacks it
const Kernels* kernels_neon_i8mm();     // + SMMLA for multi-token projections

// The best path this CPU supports, or the named one ("scalar", "avx2", "avxvnni", "avx512vnni", "neon",
// "neon-dotprod", "neon-i8mm").
// Returns nullptr for a name that is not available here.
const Kernels* select_kernels(const char* name);

// Names of the paths available on this CPU, best last.
int available_kernel_paths(const char** out, int max);

// How far ahead (bytes) the one-token loops of the x86 paths prefetch weight rows into L1. The
// best distance depends on the CPU more than on the path. On a Zen 5 the I2_S loops streamed
// 10-15% faster with the line 6 KiB ahead than with the hardware prefetcher alone (its TQ2_0
// rows and F16 head gained only once the requests were non-temporal: below). On a Xeon with AMX
// (Sapphire Rapids class), 4 KiB or more ahead fell off a cliff (I2_S projections at 19 GB/s of
// a 30 GB/s probe) while 1.5-3 KiB reached 26-29, the F16 head read 7% faster 2 KiB ahead, and
// TQ2_0 decode went from 70-73% to 81-83% of its bound (`avx512vnni`; `avx2` 60% to 80%) (bench/
// decode-sequence.sh, bench/ab-addons.mjs, `bitnet bench`; BENCHMARKS.md). So on Intel CPUs the
// I2_S and TQ2_0 one-token loops prefetch 2 KiB ahead; elsewhere 6 KiB, non-temporal.
// BITNET_DECODE_PREFETCH_BYTES (a multiple of 64 up to 65536) sets both for the process, read
// once; 0 asks for nothing ahead (the TQ2_0 loops then issue no prefetch, the I2_S loops one for
// the line they are reading). An invalid value leaves the defaults (the TypeScript side rejects
// it before any model loads).
//
// The I2_S rows also ask for each line `l2` bytes ahead into L2 (PREFETCHT1), on Intel 16 KiB:
// the L1 distance alone is a cliff (on a busier day of the same Xeon, 3 KiB streamed at 20 GB/s
// against 2 KiB's 22-24 of a 26-28 GB/s probe), while with the far L2 request in flight the
// short L1 one only has to cover L2's latency: `avx512vnni` 22.9 → 25.4-25.7 GB/s, `avxvnni`
// 22.8-25.0 → 25.0-27.6, any L1 distance from 1 to 3 KiB within 1%, and 8, 16 or 32 KiB alike
// (bench/decode-sequence.sh). The `avx2` I2_S loop asks `l2_avx2` ahead instead, on Intel 6 KiB,
// both of its distances rounded to whole pairs of rows (MaddubsDot::pair_lead). One row at a time
// 4 KiB had been best (16 KiB cost it 1-7% in that harness and about 10% in the model; 4 KiB took
// its projections from 26.6 to 25.0 ms a token); in whole pairs 6 KiB streamed 28.4-28.8 GB/s
// against 26.4-26.8 at 4 KiB and 28.4-28.7 at 7-8 KiB (decode-sequence.sh `steal` from the page
// cache), and in the model its projections took 18.25 ms a token against 18.58 at 8 KiB (byte
// distances: 19.73 at 4 KiB, 19.49 at 6). The TQ2_0 rows do not ask (no gain in the model). Elsewhere 0
// for both: on a Zen 5, 16 KiB ahead slowed `avx512vnni` bench-i2s decode from
// 44.70-46.76 to 40.80-41.46 t/s (bitnet bench, three alternating pairs).
// BITNET_DECODE_PREFETCH_L2_BYTES (a multiple of 64 up to 65536; 0 turns it off) overrides it.
//
// The one-token F16 rows (the output head) ask for each line `head` bytes ahead into L2 alone
// (PREFETCHT1), on Intel 3 KiB: on a Xeon with AMX the head read its 657 MB from the page cache
// in 21.8-22.2 ms at 2 KiB into L1 and 18.7-18.8 ms at 4 KiB into L2 (`avx2`, 35 GB/s; 8 KiB
// 18.6, none 23.6; `avx512vnni` 20.7 → 19.1-19.3, 8 KiB 19.5-19.9), where the bandwidth probe's
// loops then read 32; and every multiple of 4 KiB read slower than its neighbours (the request
// then shares the load's low twelve address bits): 3 KiB took the head 19.53 against 20.08 ms
// a token at 4 KiB (8 of 8 rounds). BITNET_DECODE_PREFETCH_HEAD_BYTES overrides it; 0 turns it
// off. Elsewhere 4 KiB, non-temporal (into L2 it was slower on a Zen 5 than the hardware
// prefetcher alone).
//
// Elsewhere than on Intel those requests (`i2s`, `other`, `head`) are non-temporal
// (PREFETCHNTA, `non_temporal`), so that a line read once per token need not pass through L2
// and, evicted from there, into L3 (AMD's L3 is filled by L2's evictions). On a Zen 5
// (bench/ab-addons.mjs, old and new builds alternating in one process, 6 rounds, medians) a
// bench-i2s token took 7.7% less time on `avx512vnni` (23.85 → 22.01 ms: projections 9.91 →
// 9.23, head 12.04 → 11.40), 6.0% on `avxvnni` and 8.1% on `avx2`; the TQ2_0 rows, which had
// no software prefetch there, took 9% less time 6 KiB ahead non-temporal (3 KiB: 7-9%). The
// head's distance mattered little (1-16 KiB within noise); I2_S rows 6 KiB ahead beat 1, 2, 4 and
// 12 KiB. A read loop is not faster so (the bandwidth probe's loops kept their lead), so the
// bound is unchanged. BITNET_DECODE_PREFETCH_NTA (0 or 1) overrides it. Not measured on Intel.
//
// How wide the `avx512vnni` (and `amx`) path's one-token I2_S loop reads: on Intel 256 bits (EVEX
// VPDPBUSD on ymm, one 64-byte line of codes per step as two 32-byte blocks): on the Xeon with
// AMX the projections took 15.3-15.6 ms a bench-i2s token against 17.2-17.5 with 512-bit
// vectors (the `avxvnni` loop's rate, which the 512-bit one never reached there). Elsewhere 512,
// the loop measured on AMD Zen 4 and Zen 5. Integer sums, so the same bits either way.
// BITNET_DECODE_VECTOR_BITS (256 or 512) overrides it.
//
// Whose F16 head the `avx512vnni` (and `amx`) path runs, in every step: on Intel (256) the `avx2`
// path's, bit for bit: its one-token loop itself (bench/ab-addons.mjs on the Xeon with AMX, 20
// alternating rounds: 20.3-20.7 against 21.4-21.6 ms a bench-i2s token, faster in 19 of 20), and
// for several tokens the same sums in 512-bit vectors, two rows at a time (a perplexity run as
// fast as with the 512-bit head); elsewhere (512) the 512-bit head. Unlike the I2_S loop's width
// this one changes the logits' rounding (the float sums run in other lanes), so it holds for
// prompt and decode steps alike: a token's logits never depend on how many tokens share its
// step. BITNET_HEAD_VECTOR_BITS (256 or 512) overrides it.
struct DecodePrefetch {
  int64_t i2s;    // the one-token I2_S rows, into L1
  int64_t other;  // the one-token TQ2_0 rows, into L1; 0: no software prefetch
  int64_t l2;     // the one-token I2_S rows again (VNNI paths), this far ahead into L2; 0: none
  int64_t l2_avx2;  // the same for the avx2 path's one-token I2_S rows (its best distance differs)
  int64_t head;   // the one-token F16 rows (output head), this far ahead; 0: none
  int vector_bits;  // the avx512vnni path's one-token I2_S loop: 256-bit or 512-bit vectors
  int head_bits;    // the avx512vnni path's F16 head, every step: 256 (the avx2 head) or 512
  bool non_temporal;  // the `i2s`, `other` and `head` requests as PREFETCHNTA instead
};
const DecodePrefetch& decode_prefetch();
// The CPU's defaults, whatever the environment says.
DecodePrefetch default_decode_prefetch();

// ---- AMX (x86 Sapphire Rapids and later): prefill GEMM for I2_S ----
// True when the CPU has AMX-INT8 and the OS granted tile state to this process.
bool amx_available();
// Packs T tokens of natural-order int8 activations into 16×64-byte B tiles
// ((T+15)/16 × cols/64 tiles of 1 KiB).
void pack_amx_activations(const int8_t* q, int64_t cols, int64_t T, int8_t* btiles);
// I2_S rows [r0, r1) (multiples of 16) with T packed tokens: out[t · out_stride + r] =
// (float)(Σ code·q − act_sum[t]) / act_scale[t] · w_scale, the other paths' operations.
void i2s_gemm_amx(const uint8_t* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* btiles, int64_t T,
                  const float* act_scale, const int32_t* act_sum, float w_scale, float* out, int64_t out_stride);

// TQ2_0 × Q8_K for T packed tokens (natural order): out[t · out_stride + r] for rows [r0, r1)
// (multiples of 16), blocks summed in order with the scalar kernel's rounding (bit-exact).
void tq2_gemm_amx(const BlockTQ2* w, int64_t cols, int64_t r0, int64_t r1, const int8_t* btiles, int64_t T,
                  const float* act_d, const int32_t* act_bsum, float* out, int64_t out_stride);

// Reorders one token's int8 activations (cols, multiple of 128) into `layout`.
void permute_activations(const int8_t* src, int8_t* dst, int64_t cols, ActLayout layout);

}  // namespace bitnet
