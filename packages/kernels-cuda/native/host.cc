// The host twins of the CUDA kernels: the same per-chunk functions (ternary.cuh) and the same
// lane split, run on the CPU. They need no CUDA toolkit, so every machine (CI included) checks
// the arithmetic the GPU runs.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdlib>
#include <vector>

#include "kernels.h"
#include "tensor_core.cuh"
#include "ternary.cuh"
#include "top_k.cuh"
#include "twins.cuh"

namespace bitnet_cuda {

namespace {
constexpr int kWarp = 32;
}  // namespace

void ternary_tc_host(bool i2s, const uint8_t* codes, const float* block_scales, int64_t rows, int64_t cols,
                     float w_scale, const int8_t* q, const float* act_scale, const int32_t* act_sum, int64_t T,
                     float* y);

void i2s_linear_host(const uint8_t* codes, int64_t rows, int64_t cols, float w_scale, const float* x, int64_t T,
                     float* y, int8_t* q, float* act_scale, int32_t* act_sum) {
  for (int64_t t = 0; t < T; t++) {
    float m = 0.0f;
    for (int64_t c = 0; c < cols; c++) m = std::max(m, std::fabs(x[t * cols + c]));
    const float s = i8_scale(m);
    int32_t sum = 0;
    for (int64_t c = 0; c < cols; c++) {
      const int32_t v = i8_quantize(x[t * cols + c], s);
      q[t * cols + c] = (int8_t)v;
      sum += v;
    }
    act_scale[t] = s;
    act_sum[t] = sum;
  }
  if (use_tensor_cores(T)) {
    ternary_tc_host(true, codes, nullptr, rows, cols, w_scale, q, act_scale, act_sum, T, y);
    return;
  }
  const int64_t chunks = cols / kI2sChunkElems;
  for (int64_t t = 0; t < T; t++) {
    std::vector<int32_t> q32((size_t)cols / 4);
    std::memcpy(q32.data(), q + t * cols, (size_t)cols);
    for (int64_t r = 0; r < rows; r++) {
      const uint8_t* row = codes + r * (cols / 4);
      int32_t total = 0;
      for (int lane = 0; lane < kWarp; lane++) {
        int32_t acc = 0;
        for (int64_t c = lane; c < chunks; c += kWarp) {
          uint32_t words[4];
          std::memcpy(words, row + c * kI2sChunkBytes, sizeof words);
          acc = i2s_chunk_dot(words, q32.data(), c, acc);
        }
        total += acc;
      }
      y[t * rows + r] = i2s_finish(total, act_sum[t], act_scale[t], w_scale);
    }
  }
}

// The GPU's selection (top_k_kernel) one step after another: the same rank keys, the same
// digit choice per pass, the same split into elements above the threshold and ties taken in id
// order, the same rank sort.
void top_k_row_host(const float* row, int64_t vocab, int k, int32_t* ids, float* values) {
  std::vector<uint32_t> keys((size_t)vocab);
  for (int64_t i = 0; i < vocab; i++) keys[i] = top_k_key(row[i]);
  if (k == 1) {
    uint32_t best_key = 0;
    int32_t best_id = INT32_MAX;
    for (int64_t i = 0; i < vocab; i++) {
      if (top_k_before(keys[i], (int32_t)i, best_key, best_id)) {
        best_key = keys[i];
        best_id = (int32_t)i;
      }
    }
    ids[0] = best_id;
    values[0] = row[best_id];
    return;
  }
  uint32_t prefix = 0, mask = 0, equal = 0;
  int32_t remaining = k;
  for (int shift = 24; shift >= 0; shift -= 8) {
    uint32_t counts[256] = {};
    for (int64_t i = 0; i < vocab; i++) {
      if ((keys[i] & mask) == prefix) counts[(keys[i] >> shift) & 255u]++;
    }
    const int d = top_k_pick_digit(counts, &remaining);
    prefix |= (uint32_t)d << shift;
    mask |= 255u << shift;
    equal = counts[d];
  }
  const uint32_t threshold = prefix;
  const bool all_ties = (uint32_t)remaining == equal;
  std::vector<uint32_t> cand_key;
  std::vector<int32_t> cand_id;
  for (int64_t i = 0; i < vocab; i++) {
    if (keys[i] > threshold || (all_ties && keys[i] == threshold)) {
      cand_key.push_back(keys[i]);
      cand_id.push_back((int32_t)i);
    }
  }
  for (int64_t i = 0, taken = 0; !all_ties && i < vocab && taken < remaining; i++) {
    if (keys[i] == threshold) {
      cand_key.push_back(threshold);
      cand_id.push_back((int32_t)i);
      taken++;
    }
  }
  for (int i = 0; i < k; i++) {
    int rank = 0;
    for (int j = 0; j < k; j++) rank += top_k_before(cand_key[j], cand_id[j], cand_key[i], cand_id[i]) ? 1 : 0;
    ids[rank] = cand_id[i];
    values[rank] = row[cand_id[i]];
  }
}

// The tensor-core kernel (ternary_tc_kernel) tile by tile: each of its 128 threads' loads and
// decodes through the same tensor_core.cuh functions into the same shared-memory layout, the
// fragments' products as plain integer sums over that layout, the same epilogues.
void ternary_tc_host(bool i2s, const uint8_t* codes, const float* block_scales, int64_t rows, int64_t cols,
                     float w_scale, const int8_t* q, const float* act_scale, const int32_t* act_sum, int64_t T,
                     float* y) {
  const int64_t steps = cols / kTcK, nb = cols / 256;
  std::vector<int8_t> a_side(kTcSideBytes), b_side(kTcSideBytes);
  std::vector<int32_t> acc(kTcRows * kTcTokens), sums(kTcRows * kTcSumStride);
  std::vector<float> sumf(kTcThreads * kTcOutPerThread);
  for (int64_t r0 = 0; r0 < rows; r0 += kTcRows) {
    for (int64_t t0 = 0; t0 < T; t0 += kTcTokens) {
      std::fill(acc.begin(), acc.end(), 0);
      std::fill(sumf.begin(), sumf.end(), 0.0f);
      for (int64_t s = 0; s < steps; s++) {
        for (int tid = 0; tid < kTcThreads; tid++) {
          uint32_t words[4] = {0, 0, 0, 0};
          const int64_t code_row = r0 + tc_code_row(tid);
          if (code_row < rows) {
            const uint8_t* src = i2s ? codes + code_row * (cols / 4) + s * 32
                                     : codes + (code_row * nb + s / 2) * 64 + (s % 2) * 32;
            std::memcpy(words, src + 16 * tc_code_half(tid), 16);
          }
          tc_decode_codes(words, i2s, tc_code_row(tid), tc_code_half(tid), a_side.data());
          const int64_t act_token = t0 + tc_act_token(tid);
          for (int i = 0; i < 4; i++) {
            const int k = tc_act_column(tid, i);
            int8_t* dst = b_side.data() + tc_index(tc_act_token(tid), k);
            if (act_token < T) {
              std::memcpy(dst, q + act_token * cols + s * kTcK + k, 16);
            } else {
              std::memset(dst, 0, 16);
            }
          }
        }
        // The fragments' products: per chunk, 16 contiguous bytes of a row and of a token.
        for (int row = 0; row < kTcRows; row++) {
          for (int tok = 0; tok < kTcTokens; tok++) {
            int32_t sum = acc[row * kTcTokens + tok];
            for (int c = 0; c < kTcK; c += kTcChunk) {
              const int8_t* a = a_side.data() + tc_index(row, c);
              const int8_t* b = b_side.data() + tc_index(tok, c);
              for (int k = 0; k < kTcChunk; k++) sum += (int32_t)a[k] * (int32_t)b[k];
            }
            acc[row * kTcTokens + tok] = sum;
          }
        }
        if (!i2s && (s & 1) != 0) {
          for (int row = 0; row < kTcRows; row++) {
            for (int tok = 0; tok < kTcTokens; tok++) sums[row * kTcSumStride + tok] = acc[row * kTcTokens + tok];
          }
          std::fill(acc.begin(), acc.end(), 0);
          const int64_t b = s / 2;
          for (int tid = 0; tid < kTcThreads; tid++) {
            const int64_t out_row = r0 + tc_out_row(tid);
            if (out_row >= rows) continue;
            const float dw = block_scales[out_row * nb + b];
            for (int j = 0; j < kTcOutPerThread; j++) {
              const int tok = tc_out_token(tid, j);
              const int64_t t = t0 + tok;
              if (t < T) {
                float& f = sumf[tid * kTcOutPerThread + j];
                f = tq2_accumulate(f, sums[tc_out_row(tid) * kTcSumStride + tok] - act_sum[t * nb + b],
                                   act_scale[t * nb + b], dw);
              }
            }
          }
        }
      }
      if (i2s) {
        for (int row = 0; row < kTcRows; row++) {
          for (int tok = 0; tok < kTcTokens; tok++) sums[row * kTcSumStride + tok] = acc[row * kTcTokens + tok];
        }
      }
      for (int tid = 0; tid < kTcThreads; tid++) {
        const int64_t out_row = r0 + tc_out_row(tid);
        if (out_row >= rows) continue;
        for (int j = 0; j < kTcOutPerThread; j++) {
          const int tok = tc_out_token(tid, j);
          const int64_t t = t0 + tok;
          if (t < T) {
            y[t * rows + out_row] = i2s ? i2s_finish(sums[tc_out_row(tid) * kTcSumStride + tok], act_sum[t],
                                                     act_scale[t], w_scale)
                                        : sumf[tid * kTcOutPerThread + j];
          }
        }
      }
    }
  }
}

void top_k_host(const float* logits, int64_t rows, int64_t vocab, int k, int32_t* ids, float* values) {
  for (int64_t r = 0; r < rows; r++) top_k_row_host(logits + r * vocab, vocab, k, ids + r * k, values + r * k);
}

}  // namespace bitnet_cuda

// ---------------------------------------------------------------------------------------------
// HostExec: the model's ops on the CPU, lane by lane where the GPU reduces across a warp, with
// the warp's butterfly order (xor 16, 8, 4, 2, 1), so its results are the GPU's.
#include <type_traits>

#include "exec.h"
#include "twins.cuh"

namespace bitnet_cuda {
namespace {

// The warp's butterfly over kLanes partial sums; f32 lanes add as the GPU rounds (add_rn, never
// contracted or kept wider), f64 lanes plainly.
template <typename T>
T butterfly_sum(T* v) {
  for (int o = kLanes / 2; o > 0; o /= 2) {
    T next[kLanes];
    for (int l = 0; l < kLanes; l++) {
      if constexpr (std::is_same_v<T, float>) {
        next[l] = add_rn(v[l], v[l ^ o]);
      } else {
        next[l] = v[l] + v[l ^ o];
      }
    }
    for (int l = 0; l < kLanes; l++) v[l] = next[l];
  }
  return v[0];
}

// The fused multiply-adds are a libm call without the FMA instructions: clones with them where
// the CPU has them (the head and attention are most of a host step).
#if defined(__x86_64__) && defined(__GNUC__)
#define BITNET_FMA_CLONES __attribute__((target_clones("fma", "default")))
#else
#define BITNET_FMA_CLONES
#endif

BITNET_FMA_CLONES
void host_float_gemm(const void* w, bool f16, int64_t rows, int64_t cols, const float* x, int64_t T, bool round_x,
                     float* y) {
  // Each lane's columns in the GPU's order (twins.cuh: float_column_order). The row and the input
  // are first gathered into that order, lane-minor within each step, so that the 32 lanes advance
  // together over contiguous floats (and the loop vectorizes).
  std::vector<int64_t> column((size_t)cols);
  std::vector<int> lanes_at;  // per step: how many lanes take part
  {
    int64_t p = 0;
    if (float_rows_grouped(cols)) {
      for (int64_t c0 = 0; c0 < cols; c0 += kLanes * kFloatGroup) {
        const int lanes = (int)std::min<int64_t>(kLanes, (cols - c0) / kFloatGroup);
        for (int k = 0; k < kFloatGroup; k++) {
          for (int l = 0; l < lanes; l++) column[p++] = c0 + kFloatGroup * l + k;
          lanes_at.push_back(lanes);
        }
      }
    } else {
      for (int64_t c0 = 0; c0 < cols; c0 += kLanes) {
        const int lanes = (int)std::min<int64_t>(kLanes, cols - c0);
        for (int l = 0; l < lanes; l++) column[p++] = c0 + l;
        lanes_at.push_back(lanes);
      }
    }
  }
  std::vector<float> xr((size_t)cols), wr((size_t)cols);
  for (int64_t t = 0; t < T; t++) {
    for (int64_t p = 0; p < cols; p++) {
      const float v = x[t * cols + column[p]];
      xr[p] = round_x ? round_f16(v) : v;
    }
    for (int64_t r = 0; r < rows; r++) {
      if (f16) {
        const uint16_t* row = (const uint16_t*)w + r * cols;
        for (int64_t p = 0; p < cols; p++) wr[p] = f16_to_f32(row[column[p]]);
      } else {
        const float* row = (const float*)w + r * cols;
        for (int64_t p = 0; p < cols; p++) wr[p] = row[column[p]];
      }
      float part[kLanes] = {};
      int64_t p = 0;
      for (const int lanes : lanes_at) {
        for (int l = 0; l < lanes; l++) part[l] = fma_rn(wr[p + l], xr[p + l], part[l]);
        p += lanes;
      }
      y[t * rows + r] = butterfly_sum(part);
    }
  }
}

BITNET_FMA_CLONES
void host_attention(const float* q, const uint16_t* const* kcache, const uint16_t* const* vcache, const int32_t* pos,
                    int64_t T, int64_t n_head, int64_t n_head_kv, int64_t head_dim, float* scores, int64_t max_len,
                    float* out) {
  // The GPU's block per (token, head) (twins.cuh): threads over positions, then warps over
  // segments of positions, in the same orders.
  const int64_t kvw = n_head_kv * head_dim, group = n_head / n_head_kv;
  const float scale = (float)(1.0 / std::sqrt((double)head_dim));
  std::vector<float> qh((size_t)head_dim), partial((size_t)(kAttnWarps * head_dim));
  for (int64_t t = 0; t < T; t++) {
    const int64_t len = pos[t] + 1;
    for (int64_t h = 0; h < n_head; h++) {
      const int64_t kvh = h / group;
      for (int64_t i = 0; i < head_dim; i++) qh[i] = round_f16(q[t * n_head * head_dim + h * head_dim + i]);
      float* s = scores + (t * n_head + h) * max_len;
      float max = -INFINITY;
      for (int64_t j = 0; j < len; j++) {
        const uint16_t* kr = kcache[t] + j * kvw + kvh * head_dim;
        float acc = 0.0f;
        for (int64_t i = 0; i < head_dim; i++) acc = fma_rn(qh[i], f16_to_f32(kr[i]), acc);
        s[j] = mul_rn(acc, scale);
        max = std::max(max, s[j]);
      }
      double thread_sum[kAttnThreads] = {};
      for (int64_t j = 0; j < len; j++) {
        s[j] = softmax_exp(s[j], max);
        thread_sum[j % kAttnThreads] += (double)s[j];
      }
      double sum = 0;
      for (int w = 0; w < kAttnWarps; w++) sum += butterfly_sum(thread_sum + w * kLanes);
      const float inv = (float)(1.0 / sum);
      for (int64_t j = 0; j < len; j++) s[j] = softmax_prob(s[j], inv);
      for (int w = 0; w < kAttnWarps; w++) {
        const int64_t j0 = attn_segment_start(len, w), j1 = attn_segment_start(len, w + 1);
        for (int64_t i = 0; i < head_dim; i++) {
          float acc = 0.0f;
          for (int64_t j = j0; j < j1; j++) acc = fma_rn(s[j], f16_to_f32(vcache[t][j * kvw + kvh * head_dim + i]), acc);
          partial[w * head_dim + i] = acc;
        }
      }
      for (int64_t i = 0; i < head_dim; i++) {
        float acc = partial[i];
        for (int w = 1; w < kAttnWarps; w++) acc = add_rn(acc, partial[w * head_dim + i]);
        out[t * n_head * head_dim + h * head_dim + i] = acc;
      }
    }
  }
}

struct HostExec final : Exec {
  const char* name() const override { return "host"; }
  void memory(uint64_t* free_bytes, uint64_t* total_bytes) override {
    *free_bytes = 0;
    *total_bytes = 0;
  }
  void* alloc(size_t bytes, const char* what) override {
    void* p = std::calloc(std::max<size_t>(bytes, 1), 1);
    if (p == nullptr) throw ExecError(std::string("out of host memory for ") + what);
    return p;
  }
  void release(void* p) override { std::free(p); }
  void to_device(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void* alloc_host(size_t bytes, const char* what) override { return alloc(bytes, what); }
  void release_host(void* p) override { std::free(p); }
  void to_device_async(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void to_host(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void copy(void* dst, const void* src, size_t bytes) override { std::memmove(dst, src, bytes); }
  void sync() override {}

  void embed(const void* table, bool f16, const int32_t* tokens, int64_t T, int64_t d, float* out) override {
    for (int64_t t = 0; t < T; t++) {
      for (int64_t i = 0; i < d; i++) {
        out[t * d + i] = f16 ? f16_to_f32(((const uint16_t*)table)[tokens[t] * d + i])
                             : ((const float*)table)[tokens[t] * d + i];
      }
    }
  }

  void rms_norm(const float* x, const float* w, int64_t T, int64_t n, float eps, float* out) override {
    for (int64_t t = 0; t < T; t++) {
      double part[kLanes];
      for (int l = 0; l < kLanes; l++) part[l] = rms_lane_sum(x + t * n, n, l);
      const float s = rms_scale(butterfly_sum(part), n, eps);
      for (int64_t i = 0; i < n; i++) out[t * n + i] = rms_apply(x[t * n + i], s, w[i]);
    }
  }

  void quantize_i8(const float* x, int64_t T, int64_t n, int8_t* q, float* scale, int32_t* sum) override {
    for (int64_t t = 0; t < T; t++) {
      float m = 0.0f;
      for (int64_t c = 0; c < n; c++) m = std::max(m, std::fabs(x[t * n + c]));
      const float s = i8_scale(m);
      int32_t total = 0;
      for (int64_t c = 0; c < n; c++) {
        const int32_t v = i8_quantize(x[t * n + c], s);
        q[t * n + c] = (int8_t)v;
        total += v;
      }
      scale[t] = s;
      sum[t] = total;
    }
  }

  void quantize_q8k(const float* x, int64_t T, int64_t n, int8_t* q, float* d, int32_t* bsum) override {
    const int64_t nb = n / 256;
    for (int64_t t = 0; t < T; t++) {
      for (int64_t b = 0; b < nb; b++) {
        const float* xb = x + t * n + b * 256;
        int8_t* qb = q + t * n + b * 256;
        float amax = 0.0f, max = 0.0f;
        for (int i = 0; i < 256; i++) {
          if (std::fabs(xb[i]) > amax) {
            amax = std::fabs(xb[i]);
            max = xb[i];
          }
        }
        int32_t total = 0;
        if (amax == 0.0f) {
          std::memset(qb, 0, 256);
          d[t * nb + b] = 0.0f;
        } else {
          const float iscale = q8k_iscale(max);
          for (int i = 0; i < 256; i++) {
            qb[i] = (int8_t)q8k_quantize(xb[i], iscale);
            total += qb[i];
          }
          d[t * nb + b] = div_rn(1.0f, iscale);
        }
        bsum[t * nb + b] = total;
      }
    }
  }

  void i2s_gemm(const uint8_t* codes, int64_t rows, int64_t cols, float w_scale, const int8_t* q, const float* scale,
                const int32_t* sum, int64_t T, float* y) override {
    if (use_tensor_cores(T)) {
      ternary_tc_host(true, codes, nullptr, rows, cols, w_scale, q, scale, sum, T, y);
      return;
    }
    const int64_t chunks = cols / kI2sChunkElems;
    for (int64_t t = 0; t < T; t++) {
      const int32_t* q32 = reinterpret_cast<const int32_t*>(q + t * cols);
      for (int64_t r = 0; r < rows; r++) {
        const uint8_t* row = codes + r * (cols / 4);
        int32_t acc = 0;
        for (int64_t c = 0; c < chunks; c++) {
          uint32_t words[4];
          std::memcpy(words, row + c * kI2sChunkBytes, sizeof words);
          acc = i2s_chunk_dot(words, q32, c, acc);
        }
        y[t * rows + r] = i2s_finish(acc, sum[t], scale[t], w_scale);
      }
    }
  }

  void tq2_gemm(const uint8_t* codes, const float* block_scales, int64_t rows, int64_t cols, const int8_t* q,
                const float* d, const int32_t* bsum, int64_t T, float* y) override {
    if (use_tensor_cores(T)) {
      ternary_tc_host(false, codes, block_scales, rows, cols, 1.0f, q, d, bsum, T, y);
      return;
    }
    const int64_t nb = cols / 256;
    for (int64_t t = 0; t < T; t++) {
      for (int64_t r = 0; r < rows; r++) {
        float sumf = 0.0f;
        for (int64_t b = 0; b < nb; b++) {
          const uint8_t* blk = codes + (r * nb + b) * 64;
          const int32_t* q32 = reinterpret_cast<const int32_t*>(q + t * cols + b * 256);
          int32_t acc = 0;
          for (int w = 0; w < 16; w++) {
            uint32_t word;
            std::memcpy(&word, blk + 4 * w, 4);
            acc = tq2_word_dot(word, q32, w, acc);
          }
          sumf = tq2_accumulate(sumf, acc - bsum[t * nb + b], d[t * nb + b], block_scales[r * nb + b]);
        }
        y[t * rows + r] = sumf;
      }
    }
  }

  void float_gemm(const void* w, bool f16, int64_t rows, int64_t cols, const float* x, int64_t T, bool round_x,
                  float* y) override {
    host_float_gemm(w, f16, rows, cols, x, T, round_x, y);
  }

  void scale(float* y, int64_t n, float s) override {
    for (int64_t i = 0; i < n; i++) y[i] = mul_rn(y[i], s);
  }

  void rope(const float* x, const float* cos, const float* sin, int64_t T, int64_t heads, int64_t head_dim,
            int64_t n_rot, float* out) override {
    const int64_t half = n_rot / 2, width = heads * head_dim;
    for (int64_t t = 0; t < T; t++) {
      for (int64_t h = 0; h < heads; h++) {
        const float* xi = x + t * width + h * head_dim;
        float* o = out + t * width + h * head_dim;
        for (int64_t i = 0; i < half; i++) {
          rope_pair(xi[i], xi[i + half], cos[t * half + i], sin[t * half + i], &o[i], &o[i + half]);
        }
        for (int64_t i = n_rot; i < head_dim; i++) o[i] = xi[i];
      }
    }
  }

  void kv_store(const float* k, const float* v, uint16_t* const* kcache, uint16_t* const* vcache, const int32_t* pos,
                int64_t T, int64_t kv_width) override {
    for (int64_t t = 0; t < T; t++) {
      for (int64_t i = 0; i < kv_width; i++) {
        kcache[t][pos[t] * kv_width + i] = f32_to_f16(k[t * kv_width + i]);
        vcache[t][pos[t] * kv_width + i] = f32_to_f16(v[t * kv_width + i]);
      }
    }
  }

  void attention(const float* q, const uint16_t* const* kcache, const uint16_t* const* vcache, const int32_t* pos,
                 int64_t T, int64_t n_head, int64_t n_head_kv, int64_t head_dim, float* scores, int64_t max_len,
                 float* out) override {
    host_attention(q, kcache, vcache, pos, T, n_head, n_head_kv, head_dim, scores, max_len, out);
  }

  void add(const float* a, const float* b, int64_t n, float* out) override {
    for (int64_t i = 0; i < n; i++) out[i] = add_rn(a[i], b[i]);
  }
  void glu(const float* gate, const float* up, int64_t n, Act act, float* out) override {
    for (int64_t i = 0; i < n; i++) out[i] = act == Act::Relu2 ? glu_relu2(gate[i], up[i]) : glu_silu(gate[i], up[i]);
  }
  void gather_rows(const float* x, const int32_t* rows, int64_t n, int64_t width, float* out) override {
    for (int64_t i = 0; i < n; i++) std::memcpy(out + i * width, x + rows[i] * width, width * sizeof(float));
  }

  void top_k(const float* logits, int64_t rows, int64_t vocab, const int32_t* row_k, int32_t* out, int kmax) override {
    for (int64_t r = 0; r < rows; r++) {
      if (row_k[r] <= 0) continue;
      int32_t* ids = out + r * 2 * kmax;
      top_k_row_host(logits + r * vocab, vocab, row_k[r], ids, reinterpret_cast<float*>(ids + kmax));
    }
  }
};

}  // namespace

std::unique_ptr<Exec> make_host_exec() { return std::make_unique<HostExec>(); }

}  // namespace bitnet_cuda
