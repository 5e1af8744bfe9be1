// Where a model's ops run: on the GPU (CudaExec, kernels.cu) or on the CPU through the kernels'
// host twins (HostExec, host.cc). The model (model.cc) is written once against this interface,
// so the host run checks its orchestration (buffers, KV caches, positions, batching) and the
// kernels' arithmetic on any machine. Pointers are the executor's memory ("device" pointers).
// Every call is issued in order; to_host waits for what came before it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

namespace bitnet_cuda {

// A failure of the executor (out of memory, a CUDA error): the message names what and why.
struct ExecError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class Act : int { Relu2 = 0, Silu = 1 };

// Ternary projections of one input run as one launch (q, k and v; gate and up): each matrix's
// codes, TQ2_0 block scales (null for I2_S), rows, I2_S tensor scale and output.
constexpr int kMaxGroup = 4;
struct TernaryMatrix {
  const uint8_t* codes = nullptr;
  const float* block_scales = nullptr;
  int64_t rows = 0;
  float w_scale = 1.0f;
  float* y = nullptr;
};
struct TernaryGroup {
  int count = 0;
  TernaryMatrix m[kMaxGroup];
};

struct Exec {
  virtual ~Exec() = default;
  virtual const char* name() const = 0;
  // Memory the executor can still give, and in all (bytes); the host reports 0 / 0.
  virtual void memory(uint64_t* free_bytes, uint64_t* total_bytes) = 0;
  virtual void* alloc(size_t bytes, const char* what) = 0;  // throws ExecError
  virtual void release(void* p) = 0;
  virtual void to_device(void* dst, const void* src, size_t bytes) = 0;
  // Host memory the executor copies from without staging it (page-locked for a GPU), and a copy
  // from it that returns at once: src must stay as it is until the next sync().
  virtual void* alloc_host(size_t bytes, const char* what) = 0;  // throws ExecError
  virtual void release_host(void* p) = 0;
  virtual void to_device_async(void* dst, const void* src, size_t bytes) = 0;
  virtual void to_host(void* dst, const void* src, size_t bytes) = 0;
  virtual void copy(void* dst, const void* src, size_t bytes) = 0;
  virtual void sync() = 0;
  // Makes this executor's device the calling thread's current one. CUDA keeps the current device
  // per host thread, and a model's calls come from several (the main thread, libuv's workers):
  // every Model entry point that reaches the executor calls this first.
  virtual void bind() {}

  // CUDA graphs: the ops issued between begin_capture() and end_capture() are recorded instead of
  // run, and replay() runs the recording again (one launch for a whole decode step). An executor
  // without graphs returns false from begin_capture() and runs the ops as they come.
  virtual bool begin_capture() { return false; }
  virtual void end_capture() {}
  // Ends a recording that failed part-way and drops it.
  virtual void abort_capture() {}
  virtual void replay() {}

  // out[t, :] = table row tokens[t] (f16 or f32 table of width d).
  virtual void embed(const void* table, bool f16, const int32_t* tokens, int64_t T, int64_t d, float* out) = 0;
  virtual void rms_norm(const float* x, const float* w, int64_t T, int64_t n, float eps, float* out) = 0;
  // Per-token int8 (bitnet.cpp): q, scale and Σq per token.
  virtual void quantize_i8(const float* x, int64_t T, int64_t n, int8_t* q, float* scale, int32_t* sum) = 0;
  // Q8_K per 256 block: q, d and Σq per block.
  virtual void quantize_q8k(const float* x, int64_t T, int64_t n, int8_t* q, float* d, int32_t* bsum) = 0;
  // rms_norm into `out`, then out's quantization for a ternary projection (q8k: Q8_K, else per-token
  // int8) into q, scale and sum: the same values as the three calls one after the other, in one
  // pass where the executor can (the GPU: one kernel instead of two).
  virtual void rms_norm_quantize(const float* x, const float* w, int64_t T, int64_t n, float eps, float* out, bool q8k,
                                 int8_t* q, float* scale, int32_t* sum) {
    rms_norm(x, w, T, n, eps, out);
    if (q8k) {
      quantize_q8k(out, T, n, q, scale, sum);
    } else {
      quantize_i8(out, T, n, q, scale, sum);
    }
  }
  virtual void i2s_gemm(const uint8_t* codes, int64_t rows, int64_t cols, float w_scale, const int8_t* q,
                        const float* scale, const int32_t* sum, int64_t T, float* y) = 0;
  // TQ2_0 codes (64 bytes per 256 block) with per-row-block scales (rows × cols/256).
  virtual void tq2_gemm(const uint8_t* codes, const float* block_scales, int64_t rows, int64_t cols, const int8_t* q,
                        const float* d, const int32_t* bsum, int64_t T, float* y) = 0;
  // sum = a + b (the residual stream), then rms_norm_quantize of sum: one kernel on the GPU.
  virtual void add_rms_norm_quantize(const float* a, const float* b, float* sum_out, const float* w, int64_t T,
                                     int64_t n, float eps, float* out, bool q8k, int8_t* q, float* scale,
                                     int32_t* sum) {
    add(a, b, T * n, sum_out);
    rms_norm_quantize(sum_out, w, T, n, eps, out, q8k, q, scale, sum);
  }
  // The group's projections of the same quantized input (I2_S when i2s, else TQ2_0): the same
  // values as i2s_gemm / tq2_gemm on each, in one launch where the executor can.
  virtual void ternary_group(bool i2s, const TernaryGroup& g, int64_t cols, const int8_t* q, const float* scale,
                             const int32_t* sum, int64_t T) {
    for (int i = 0; i < g.count; i++) {
      const TernaryMatrix& m = g.m[i];
      if (i2s) {
        i2s_gemm(m.codes, m.rows, cols, m.w_scale, q, scale, sum, T, m.y);
      } else {
        tq2_gemm(m.codes, m.block_scales, m.rows, cols, q, scale, sum, T, m.y);
      }
    }
  }
  // y = W x for f16 or f32 weights; round_x: x rounded to f16 first (ggml, before an F16 matmul).
  virtual void float_gemm(const void* w, bool f16, int64_t rows, int64_t cols, const float* x, int64_t T,
                          bool round_x, float* y) = 0;
  virtual void scale(float* y, int64_t n, float s) = 0;
  // NeoX RoPE with per-token tables cos/sin [T × n_rot/2].
  virtual void rope(const float* x, const float* cos, const float* sin, int64_t T, int64_t heads, int64_t head_dim,
                    int64_t n_rot, float* out) = 0;
  // Stores each token's k and v (f16) at its position in its sequence's cache of this layer.
  virtual void kv_store(const float* k, const float* v, uint16_t* const* kcache, uint16_t* const* vcache,
                        const int32_t* pos, int64_t T, int64_t kv_width) = 0;
  // Causal GQA attention of each token over its cache's first pos + 1 positions. `scores` is
  // scratch of T × n_head × max_len floats.
  virtual void attention(const float* q, const uint16_t* const* kcache, const uint16_t* const* vcache,
                         const int32_t* pos, int64_t T, int64_t n_head, int64_t n_head_kv, int64_t head_dim,
                         float* scores, int64_t max_len, float* out) = 0;
  virtual void add(const float* a, const float* b, int64_t n, float* out) = 0;
  // A layer's RoPE of q (into q_out) and of k (into k_out), and k and v stored into the cache
  // (f16) at each token's position: the values rope(q), rope(k) and kv_store give, in one launch
  // where the executor can.
  virtual void rope_kv_store(const float* q, const float* k, const float* v, const float* cos, const float* sin,
                             int64_t T, int64_t n_head, int64_t n_head_kv, int64_t head_dim, int64_t n_rot,
                             float* q_out, float* k_out, uint16_t* const* kcache, uint16_t* const* vcache,
                             const int32_t* pos) {
    rope(q, cos, sin, T, n_head, head_dim, n_rot, q_out);
    rope(k, cos, sin, T, n_head_kv, head_dim, n_rot, k_out);
    kv_store(k_out, v, kcache, vcache, pos, T, n_head_kv * head_dim);
  }
  // The GLU of gate and up into glu_out, then rms_norm_quantize of it: one kernel on the GPU.
  virtual void glu_rms_norm_quantize(const float* gate, const float* up, Act act, float* glu_out, const float* w,
                                     int64_t T, int64_t n, float eps, float* out, bool q8k, int8_t* q, float* scale,
                                     int32_t* sum) {
    glu(gate, up, T * n, act, glu_out);
    rms_norm_quantize(glu_out, w, T, n, eps, out, q8k, q, scale, sum);
  }
  virtual void glu(const float* gate, const float* up, int64_t n, Act act, float* out) = 0;
  // out[i, :] = x[rows[i], :] for n rows of `width`.
  virtual void gather_rows(const float* x, const int32_t* rows, int64_t n, int64_t width, float* out) = 0;
  // Per row r of `rows` logits rows with row_k[r] > 0 (executor memory): its row_k[r] ≤ kmax best
  // ids into out[r·2·kmax …] and their values (as f32 bits) into the kmax words after them, ranked
  // as top_k.cuh says. Rows with row_k[r] ≤ 0 are left alone.
  virtual void top_k(const float* logits, int64_t rows, int64_t vocab, const int32_t* row_k, int32_t* out,
                     int kmax) = 0;
};

std::unique_ptr<Exec> make_host_exec();
// Throws ExecError when no GPU can be used (the message says why).
std::unique_ptr<Exec> make_cuda_exec(int device);

}  // namespace bitnet_cuda
