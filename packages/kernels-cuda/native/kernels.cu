// The CUDA kernels: per-token int8 activation quantization, the I2_S GEMV/GEMM (dp4a, one warp
// per output row), the f16 head GEMV, and their timing entries.
#include <cuda_fp16.h>
#include <dlfcn.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <mma.h>

#include "exec.h"
#include "kernels.h"
#include "tensor_core.cuh"
#include "ternary.cuh"
#include "twins.cuh"

namespace bitnet_cuda {
namespace {

constexpr int kWarp = 32;
constexpr int kRowsPerBlock = 4;  // warps per block in the GEMVs
constexpr int kMaxTokensPerPass = 8;

Status check(cudaError_t e, const char* what) {
  Status s;
  if (e != cudaSuccess) {
    s.error = std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
  }
  return s;
}

// A device buffer freed on every path out of an entry point.
template <typename T>
struct DeviceBuffer {
  T* ptr = nullptr;
  Status alloc(size_t count, const char* what) {
    return check(cudaMalloc(&ptr, std::max<size_t>(count, 1) * sizeof(T)), what);
  }
  ~DeviceBuffer() {
    if (ptr != nullptr) cudaFree(ptr);
  }
};

struct Event {
  cudaEvent_t e = nullptr;
  Status create() { return check(cudaEventCreate(&e), "cudaEventCreate"); }
  ~Event() {
    if (e != nullptr) cudaEventDestroy(e);
  }
};

// A block's per-token int8 quantization of `row` (n values), from each thread's max |x| over
// its share: the block's max (order-free, so exact), the scale, then each thread quantizes a
// strided share and the block sums the int8 values (exact). Blocks of up to 1024 threads.
__device__ void block_quantize_i8(float m, const float* row, int64_t n, int8_t* q, float* act_scale,
                                  int32_t* act_sum) {
  __shared__ float max_part[32];
  __shared__ int32_t sum_part[32];
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp, warps = blockDim.x / kWarp;
  for (int o = kWarp / 2; o > 0; o /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
  if (lane == 0) max_part[warp] = m;
  __syncthreads();
  m = 0.0f;
  for (int i = 0; i < warps; i++) m = fmaxf(m, max_part[i]);
  const float s = i8_scale(m);
  int32_t sum = 0;
  for (int64_t c = threadIdx.x; c < n; c += blockDim.x) {
    const int32_t v = i8_quantize(row[c], s);
    q[c] = (int8_t)v;
    sum += v;
  }
  for (int o = kWarp / 2; o > 0; o /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  if (lane == 0) sum_part[warp] = sum;
  __syncthreads();
  if (threadIdx.x == 0) {
    int32_t total = 0;
    for (int i = 0; i < warps; i++) total += sum_part[i];
    *act_scale = s;
    *act_sum = total;
  }
}

// One block per token.
__global__ void quantize_i8_kernel(const float* __restrict__ x, int64_t cols, int8_t* __restrict__ q,
                                   float* __restrict__ act_scale, int32_t* __restrict__ act_sum) {
  const int64_t t = blockIdx.x;
  const float* row = x + t * cols;
  float m = 0.0f;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) m = fmaxf(m, fabsf(row[c]));
  block_quantize_i8(m, row, cols, q + t * cols, act_scale + t, act_sum + t);
}

// A group's matrices as one launch: each matrix's blocks follow the previous one's. A block finds
// its matrix and its block index within it.
struct GroupLaunch {
  TernaryMatrix m[kMaxGroup];
  int64_t first_block[kMaxGroup + 1];
  int count;
};

__device__ __forceinline__ int group_member(const GroupLaunch& g, int64_t block, int64_t* local) {
  int m = 0;
  while (m + 1 < g.count && block >= g.first_block[m + 1]) m++;
  *local = block - g.first_block[m];
  return m;
}

// The launch of a group whose matrix of `rows` rows takes blocks(rows) blocks.
template <typename Blocks>
GroupLaunch group_launch(const TernaryGroup& g, Blocks blocks) {
  GroupLaunch l{};
  l.count = g.count;
  l.first_block[0] = 0;
  for (int i = 0; i < g.count; i++) {
    l.m[i] = g.m[i];
    l.first_block[i + 1] = l.first_block[i] + blocks(g.m[i].rows);
  }
  return l;
}

// One warp per row, NT tokens per pass: each lane loads 16 bytes of codes at a time (the warp
// reads 512 contiguous bytes per step) and uses them for all NT tokens. Integer sums, so the lane
// split and the shuffle tree change no bit.
template <int NT>
__global__ void i2s_gemv_kernel(const GroupLaunch g, int64_t cols, const int8_t* __restrict__ q,
                                const float* __restrict__ act_scale, const int32_t* __restrict__ act_sum, int64_t t0) {
  int64_t local;
  const TernaryMatrix& mat = g.m[group_member(g, blockIdx.x, &local)];
  const int64_t rows = mat.rows;
  const int64_t r = local * kRowsPerBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (r >= rows) return;
  const int64_t chunks = cols / kI2sChunkElems;
  const uint4* row = reinterpret_cast<const uint4*>(mat.codes + r * (cols / 4));
  int32_t acc[NT];
#pragma unroll
  for (int j = 0; j < NT; j++) acc[j] = 0;
  for (int64_t c = lane; c < chunks; c += kWarp) {
    const uint4 v = __ldg(row + c);
    const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int j = 0; j < NT; j++) {
      acc[j] = i2s_chunk_dot(words, reinterpret_cast<const int32_t*>(q + (t0 + j) * cols), c, acc[j]);
    }
  }
#pragma unroll
  for (int j = 0; j < NT; j++) {
    for (int o = kWarp / 2; o > 0; o /= 2) acc[j] += __shfl_xor_sync(0xffffffffu, acc[j], o);
  }
  if (lane == 0) {
#pragma unroll
    for (int j = 0; j < NT; j++) {
      const int64_t t = t0 + j;
      mat.y[t * rows + r] = i2s_finish(acc[j], act_sum[t], act_scale[t], mat.w_scale);
    }
  }
}

template <int NT>
void launch_i2s(const TernaryGroup& group, int64_t cols, const int8_t* q, const float* act_scale,
                const int32_t* act_sum, int64_t t0, cudaStream_t stream) {
  const GroupLaunch g = group_launch(group, [](int64_t rows) { return (rows + kRowsPerBlock - 1) / kRowsPerBlock; });
  i2s_gemv_kernel<NT><<<(unsigned)g.first_block[g.count], kRowsPerBlock * kWarp, 0, stream>>>(g, cols, q, act_scale,
                                                                                             act_sum, t0);
}

// A prompt step's ternary projection on int8 tensor cores: one 64-row × 64-token tile per block
// (tensor_core.cuh), four warps of 2 × 2 WMMA fragments each. kI2s: I2_S codes, one tensor scale,
// per-token int8 activations, finished as i2s_gemv_kernel; else TQ2_0 codes with per-block scales
// and Q8_K activations, each 256-column block's exact sum applied in block order as
// tq2_gemm_kernel does.
template <bool kI2s>
__global__ void __launch_bounds__(kTcThreads)
    ternary_tc_kernel(const GroupLaunch g, int64_t cols, const int8_t* __restrict__ q,
                      const float* __restrict__ act_scale, const int32_t* __restrict__ act_sum, int64_t T) {
  using namespace nvcuda;
  int64_t tile;
  const TernaryMatrix& mat = g.m[group_member(g, blockIdx.x, &tile)];
  const uint8_t* __restrict__ codes = mat.codes;
  const float* __restrict__ block_scales = mat.block_scales;
  const int64_t rows = mat.rows;
  const float w_scale = mat.w_scale;
  float* __restrict__ y = mat.y;
  __shared__ __align__(256) int8_t a_side[kTcSideBytes];
  __shared__ __align__(256) int8_t b_side[kTcSideBytes];
  __shared__ __align__(256) int32_t sums[kTcRows * kTcSumStride];
  const int tid = threadIdx.x, warp = tid / kWarp;
  const int wr = warp >> 1, wc = warp & 1;
  const int64_t r0 = tile * kTcRows, t0 = (int64_t)blockIdx.y * kTcTokens;
  const int64_t steps = cols / kTcK, nb = cols / 256;
  const int64_t code_row = r0 + tc_code_row(tid);
  const int64_t act_token = t0 + tc_act_token(tid);
  const int64_t out_row = r0 + tc_out_row(tid);
  wmma::fragment<wmma::accumulator, 16, 16, 16, int> acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; i++) {
#pragma unroll
    for (int j = 0; j < 2; j++) wmma::fill_fragment(acc[i][j], 0);
  }
  float sumf[kTcOutPerThread];
#pragma unroll
  for (int j = 0; j < kTcOutPerThread; j++) sumf[j] = 0.0f;

  for (int64_t s = 0; s < steps; s++) {
    uint32_t words[4] = {0, 0, 0, 0};
    if (code_row < rows) {
      const uint8_t* src = kI2s ? codes + code_row * (cols / 4) + s * 32
                                : codes + (code_row * nb + s / 2) * 64 + (s % 2) * 32;
      const uint4 v = __ldg(reinterpret_cast<const uint4*>(src + 16 * tc_code_half(tid)));
      words[0] = v.x;
      words[1] = v.y;
      words[2] = v.z;
      words[3] = v.w;
    }
    tc_decode_codes(words, kI2s, tc_code_row(tid), tc_code_half(tid), a_side);
#pragma unroll
    for (int i = 0; i < 4; i++) {
      const int k = tc_act_column(tid, i);
      uint4 v = make_uint4(0, 0, 0, 0);
      if (act_token < T) v = *reinterpret_cast<const uint4*>(q + act_token * cols + s * kTcK + k);
      *reinterpret_cast<uint4*>(b_side + tc_index(tc_act_token(tid), k)) = v;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kTcK / 16; kk++) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, signed char, wmma::row_major> a[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, signed char, wmma::col_major> b[2];
#pragma unroll
      for (int i = 0; i < 2; i++) {
        wmma::load_matrix_sync(a[i], a_side + tc_index(wr * 32 + i * 16, kk * 16), kTcChunk);
        wmma::load_matrix_sync(b[i], b_side + tc_index(wc * 32 + i * 16, kk * 16), kTcChunk);
      }
#pragma unroll
      for (int i = 0; i < 2; i++) {
#pragma unroll
        for (int j = 0; j < 2; j++) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
      }
    }
    __syncthreads();
    if (!kI2s && (s & 1) != 0) {
      // A TQ2_0 block is done: its exact sums, scaled and added in block order, then reset.
#pragma unroll
      for (int i = 0; i < 2; i++) {
#pragma unroll
        for (int j = 0; j < 2; j++) {
          wmma::store_matrix_sync(sums + (wr * 32 + i * 16) * kTcSumStride + wc * 32 + j * 16, acc[i][j],
                                  kTcSumStride, wmma::mem_row_major);
          wmma::fill_fragment(acc[i][j], 0);
        }
      }
      __syncthreads();
      const int64_t b = s / 2;
      if (out_row < rows) {
        const float dw = block_scales[out_row * nb + b];
#pragma unroll
        for (int j = 0; j < kTcOutPerThread; j++) {
          const int tok = tc_out_token(tid, j);
          const int64_t t = t0 + tok;
          if (t < T) {
            sumf[j] = tq2_accumulate(sumf[j], sums[tc_out_row(tid) * kTcSumStride + tok] - act_sum[t * nb + b],
                                     act_scale[t * nb + b], dw);
          }
        }
      }
      __syncthreads();
    }
  }
  if (kI2s) {
#pragma unroll
    for (int i = 0; i < 2; i++) {
#pragma unroll
      for (int j = 0; j < 2; j++) {
        wmma::store_matrix_sync(sums + (wr * 32 + i * 16) * kTcSumStride + wc * 32 + j * 16, acc[i][j], kTcSumStride,
                                wmma::mem_row_major);
      }
    }
    __syncthreads();
  }
  if (out_row >= rows) return;
#pragma unroll
  for (int j = 0; j < kTcOutPerThread; j++) {
    const int tok = tc_out_token(tid, j);
    const int64_t t = t0 + tok;
    if (t < T) {
      y[t * rows + out_row] =
          kI2s ? i2s_finish(sums[tc_out_row(tid) * kTcSumStride + tok], act_sum[t], act_scale[t], w_scale) : sumf[j];
    }
  }
}

void launch_ternary_tc(bool i2s, const TernaryGroup& group, int64_t cols, const int8_t* q, const float* act_scale,
                       const int32_t* act_sum, int64_t T, cudaStream_t stream) {
  const GroupLaunch g = group_launch(group, [](int64_t rows) { return (rows + kTcRows - 1) / kTcRows; });
  const dim3 grid((unsigned)g.first_block[g.count], (unsigned)((T + kTcTokens - 1) / kTcTokens));
  if (i2s) {
    ternary_tc_kernel<true><<<grid, kTcThreads, 0, stream>>>(g, cols, q, act_scale, act_sum, T);
  } else {
    ternary_tc_kernel<false><<<grid, kTcThreads, 0, stream>>>(g, cols, q, act_scale, act_sum, T);
  }
}

// All T tokens in passes of up to eight, the passes balanced (9 tokens: 5 + 4); from
// tensor_core_min_tokens() tokens on, the tensor-core tiles instead. kernel: 0 picks by T
// (use_tensor_cores), 1 the dp4a passes, 2 the tensor-core tiles.
void i2s_group(const TernaryGroup& g, int64_t cols, const int8_t* q, const float* act_scale, const int32_t* act_sum,
               int64_t T, cudaStream_t stream, int kernel = 0) {
  if (kernel == 2 || (kernel == 0 && use_tensor_cores(T))) {
    launch_ternary_tc(true, g, cols, q, act_scale, act_sum, T, stream);
    return;
  }
  int64_t t = 0;
  for (int64_t passes = (T + kMaxTokensPerPass - 1) / kMaxTokensPerPass; t < T; passes--) {
    const int64_t n = (T - t + passes - 1) / passes;
    switch (n) {
      case 8: launch_i2s<8>(g, cols, q, act_scale, act_sum, t, stream); break;
      case 7: launch_i2s<7>(g, cols, q, act_scale, act_sum, t, stream); break;
      case 6: launch_i2s<6>(g, cols, q, act_scale, act_sum, t, stream); break;
      case 5: launch_i2s<5>(g, cols, q, act_scale, act_sum, t, stream); break;
      case 4: launch_i2s<4>(g, cols, q, act_scale, act_sum, t, stream); break;
      case 3: launch_i2s<3>(g, cols, q, act_scale, act_sum, t, stream); break;
      case 2: launch_i2s<2>(g, cols, q, act_scale, act_sum, t, stream); break;
      default: launch_i2s<1>(g, cols, q, act_scale, act_sum, t, stream); break;
    }
    t += n;
  }
}

TernaryGroup group_of_one(const uint8_t* codes, const float* block_scales, int64_t rows, float w_scale, float* y) {
  TernaryGroup g;
  g.count = 1;
  g.m[0] = TernaryMatrix{codes, block_scales, rows, w_scale, y};
  return g;
}

void i2s_gemm(const uint8_t* codes, int64_t rows, int64_t cols, float w_scale, const int8_t* q, const float* act_scale,
              const int32_t* act_sum, float* y, int64_t T, cudaStream_t stream, int kernel = 0) {
  i2s_group(group_of_one(codes, nullptr, rows, w_scale, y), cols, q, act_scale, act_sum, T, stream, kernel);
}

// One warp per row of f16 weights: each lane converts eight halves per 16-byte load and
// accumulates in f32; the warp sums its lanes by shuffles.
__global__ void f16_gemv_kernel(const uint16_t* __restrict__ w, int64_t rows, int64_t cols, const float* __restrict__ x,
                                int64_t T, float* __restrict__ y) {
  const int64_t r = (int64_t)blockIdx.x * kRowsPerBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (r >= rows) return;
  const uint16_t* row = w + r * cols;
  for (int64_t t = 0; t < T; t++) {
    const float* xt = x + t * cols;
    float acc = 0.0f;
    // 16-byte loads where the row is 16-byte aligned and whole; a scalar loop otherwise.
    if (cols % 8 == 0 && (reinterpret_cast<uintptr_t>(row) % 16) == 0) {
      const uint4* row8 = reinterpret_cast<const uint4*>(row);
      for (int64_t c = lane; c < cols / 8; c += kWarp) {
        const uint4 v = __ldg(row8 + c);
        const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
          const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&words[i]));
          acc = fmaf(f.x, xt[8 * c + 2 * i], acc);
          acc = fmaf(f.y, xt[8 * c + 2 * i + 1], acc);
        }
      }
    } else {
      for (int64_t c = lane; c < cols; c += kWarp) {
        acc = fmaf(__half2float(*reinterpret_cast<const __half*>(row + c)), xt[c], acc);
      }
    }
    for (int o = kWarp / 2; o > 0; o /= 2) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    if (lane == 0) y[t * rows + r] = acc;
  }
}

}  // namespace

int runtime_version() {
  int v = 0;
  cudaRuntimeGetVersion(&v);
  return v;
}

Status devices(int* count) {
  *count = 0;
  return check(cudaGetDeviceCount(count), "cudaGetDeviceCount");
}

Status device_info(int index, DeviceInfo* info) {
  cudaDeviceProp p;
  Status s = check(cudaGetDeviceProperties(&p, index), "cudaGetDeviceProperties");
  if (!s.ok()) return s;
  info->name = p.name;
  info->major = p.major;
  info->minor = p.minor;
  info->sm_count = p.multiProcessorCount;
  info->total_memory = p.totalGlobalMem;
  int v = 0;
  if (cudaDeviceGetAttribute(&v, cudaDevAttrGlobalMemoryBusWidth, index) == cudaSuccess) info->memory_bus_bits = v;
  if (cudaDeviceGetAttribute(&v, cudaDevAttrMemoryClockRate, index) == cudaSuccess) info->memory_clock_khz = v;
  return s;
}

Status i2s_linear_device(const uint8_t* codes, int64_t rows, int64_t cols, float w_scale, const float* x, int64_t T,
                         float* y, int8_t* q, float* act_scale, int32_t* act_sum) {
  DeviceBuffer<uint8_t> d_codes;
  DeviceBuffer<float> d_x, d_y, d_scale;
  DeviceBuffer<int8_t> d_q;
  DeviceBuffer<int32_t> d_sum;
  Status s;
  if (!(s = d_codes.alloc(rows * cols / 4, "cudaMalloc (codes)")).ok()) return s;
  if (!(s = d_x.alloc(T * cols, "cudaMalloc (activations)")).ok()) return s;
  if (!(s = d_y.alloc(T * rows, "cudaMalloc (output)")).ok()) return s;
  if (!(s = d_scale.alloc(T, "cudaMalloc (scales)")).ok()) return s;
  if (!(s = d_q.alloc(T * cols, "cudaMalloc (int8 activations)")).ok()) return s;
  if (!(s = d_sum.alloc(T, "cudaMalloc (sums)")).ok()) return s;
  if (!(s = check(cudaMemcpy(d_codes.ptr, codes, rows * cols / 4, cudaMemcpyHostToDevice), "copy codes")).ok()) return s;
  if (!(s = check(cudaMemcpy(d_x.ptr, x, T * cols * sizeof(float), cudaMemcpyHostToDevice), "copy activations")).ok())
    return s;
  quantize_i8_kernel<<<(unsigned)T, 256>>>(d_x.ptr, cols, d_q.ptr, d_scale.ptr, d_sum.ptr);
  if (!(s = check(cudaGetLastError(), "quantize_i8_kernel")).ok()) return s;
  i2s_gemm(d_codes.ptr, rows, cols, w_scale, d_q.ptr, d_scale.ptr, d_sum.ptr, d_y.ptr, T, nullptr);
  if (!(s = check(cudaGetLastError(), "i2s_gemv_kernel")).ok()) return s;
  if (!(s = check(cudaDeviceSynchronize(), "synchronize")).ok()) return s;
  if (!(s = check(cudaMemcpy(y, d_y.ptr, T * rows * sizeof(float), cudaMemcpyDeviceToHost), "copy output")).ok())
    return s;
  if (!(s = check(cudaMemcpy(q, d_q.ptr, T * cols, cudaMemcpyDeviceToHost), "copy int8 activations")).ok()) return s;
  if (!(s = check(cudaMemcpy(act_scale, d_scale.ptr, T * sizeof(float), cudaMemcpyDeviceToHost), "copy scales")).ok())
    return s;
  return check(cudaMemcpy(act_sum, d_sum.ptr, T * sizeof(int32_t), cudaMemcpyDeviceToHost), "copy sums");
}

Status f16_linear_device(const uint16_t* w, int64_t rows, int64_t cols, const float* x, int64_t T, float* y) {
  DeviceBuffer<uint16_t> d_w;
  DeviceBuffer<float> d_x, d_y;
  Status s;
  if (!(s = d_w.alloc(rows * cols, "cudaMalloc (weights)")).ok()) return s;
  if (!(s = d_x.alloc(T * cols, "cudaMalloc (activations)")).ok()) return s;
  if (!(s = d_y.alloc(T * rows, "cudaMalloc (output)")).ok()) return s;
  if (!(s = check(cudaMemcpy(d_w.ptr, w, rows * cols * 2, cudaMemcpyHostToDevice), "copy weights")).ok()) return s;
  if (!(s = check(cudaMemcpy(d_x.ptr, x, T * cols * sizeof(float), cudaMemcpyHostToDevice), "copy activations")).ok())
    return s;
  const unsigned blocks = (unsigned)((rows + kRowsPerBlock - 1) / kRowsPerBlock);
  f16_gemv_kernel<<<blocks, kRowsPerBlock * kWarp>>>(d_w.ptr, rows, cols, d_x.ptr, T, d_y.ptr);
  if (!(s = check(cudaGetLastError(), "f16_gemv_kernel")).ok()) return s;
  if (!(s = check(cudaDeviceSynchronize(), "synchronize")).ok()) return s;
  return check(cudaMemcpy(y, d_y.ptr, T * rows * sizeof(float), cudaMemcpyDeviceToHost), "copy output");
}

namespace {
// Times `run` with events, after one untimed run; the median of `reps`.
template <typename Run>
Status time_median(int reps, Run run, double* median_ms) {
  Event start, stop;
  Status s;
  if (!(s = start.create()).ok() || !(s = stop.create()).ok()) return s;
  run();
  if (!(s = check(cudaDeviceSynchronize(), "warm-up")).ok()) return s;
  std::vector<double> ms;
  for (int i = 0; i < std::max(reps, 1); i++) {
    cudaEventRecord(start.e);
    run();
    cudaEventRecord(stop.e);
    if (!(s = check(cudaEventSynchronize(stop.e), "timed run")).ok()) return s;
    float e = 0;
    cudaEventElapsedTime(&e, start.e, stop.e);
    ms.push_back(e);
  }
  std::sort(ms.begin(), ms.end());
  *median_ms = ms[ms.size() / 2];
  return check(cudaGetLastError(), "kernel");
}
}  // namespace

Status time_i2s_gemv(int64_t rows, int64_t cols, int64_t T, int kernel, int reps, double* median_ms) {
  DeviceBuffer<uint8_t> d_codes;
  DeviceBuffer<int8_t> d_q;
  DeviceBuffer<float> d_y, d_scale;
  DeviceBuffer<int32_t> d_sum;
  Status s;
  if (!(s = d_codes.alloc(rows * cols / 4, "cudaMalloc (codes)")).ok()) return s;
  if (!(s = d_q.alloc(T * cols, "cudaMalloc (int8 activations)")).ok()) return s;
  if (!(s = d_y.alloc(T * rows, "cudaMalloc (output)")).ok()) return s;
  if (!(s = d_scale.alloc(T, "cudaMalloc (scales)")).ok()) return s;
  if (!(s = d_sum.alloc(T, "cudaMalloc (sums)")).ok()) return s;
  // Codes 0x55 (every element 0 after the offset) and activations 1: the timing does not depend
  // on the values, only on the bytes moved.
  if (!(s = check(cudaMemset(d_codes.ptr, 0x55, rows * cols / 4), "memset codes")).ok()) return s;
  if (!(s = check(cudaMemset(d_q.ptr, 1, T * cols), "memset activations")).ok()) return s;
  if (!(s = check(cudaMemset(d_scale.ptr, 0, T * sizeof(float)), "memset scales")).ok()) return s;
  if (!(s = check(cudaMemset(d_sum.ptr, 0, T * sizeof(int32_t)), "memset sums")).ok()) return s;
  return time_median(
      reps,
      [&] { i2s_gemm(d_codes.ptr, rows, cols, 1.0f, d_q.ptr, d_scale.ptr, d_sum.ptr, d_y.ptr, T, nullptr, kernel); },
      median_ms);
}

namespace {
// The few cuBLAS entry points the kernel table calls, declared here (the toolkit that builds the
// addon need not ship cuBLAS): handles are pointers, enums are ints (values from cublas_api.h
// and library_types.h).
using cublas_create_t = int (*)(void**);
using cublas_destroy_t = int (*)(void*);
using cublas_set_stream_t = int (*)(void*, cudaStream_t);
using cublas_gemm_ex_t = int (*)(void*, int, int, int, int, int, const void*, const void*, int, int, const void*, int,
                                 int, const void*, void*, int, int, int, int);
constexpr int kCublasOpN = 0, kCublasOpT = 1, kCudaR16BF = 14, kCublasCompute32F = 68, kCublasGemmDefault = -1;
}  // namespace

Status time_cublas_bf16_gemv(const char* library, int64_t rows, int64_t cols, int reps, double* median_ms,
                             std::string* loaded) {
  void* lib = nullptr;
  for (const char* name : {library, "libcublas.so.13", "libcublas.so.12", "libcublas.so"}) {
    if (name != nullptr && name[0] != 0 && (lib = dlopen(name, RTLD_NOW | RTLD_LOCAL)) != nullptr) {
      *loaded = name;
      break;
    }
  }
  Status s;
  if (lib == nullptr) {
    s.error = "cuBLAS could not be loaded (set BITNET_CUBLAS_PATH to libcublas.so): " + std::string(dlerror());
    return s;
  }
  auto create = (cublas_create_t)dlsym(lib, "cublasCreate_v2");
  auto destroy = (cublas_destroy_t)dlsym(lib, "cublasDestroy_v2");
  auto gemm = (cublas_gemm_ex_t)dlsym(lib, "cublasGemmEx");
  if (create == nullptr || destroy == nullptr || gemm == nullptr) {
    s.error = std::string("cuBLAS at ") + *loaded + " lacks cublasCreate_v2, cublasDestroy_v2 or cublasGemmEx";
    return s;
  }
  DeviceBuffer<uint16_t> w, x, y;
  if (!(s = w.alloc(rows * cols, "cudaMalloc (bf16 weights)")).ok()) return s;
  if (!(s = x.alloc(cols, "cudaMalloc (bf16 input)")).ok()) return s;
  if (!(s = y.alloc(rows, "cudaMalloc (bf16 output)")).ok()) return s;
  // bf16 0x3c00 ≈ 0.0078 everywhere: the time does not depend on the values.
  if (!(s = check(cudaMemset(w.ptr, 0x3c, rows * cols * 2), "memset weights")).ok()) return s;
  if (!(s = check(cudaMemset(x.ptr, 0x3c, cols * 2), "memset input")).ok()) return s;
  void* handle = nullptr;
  if (create(&handle) != 0) {
    s.error = "cublasCreate failed";
    return s;
  }
  const float alpha = 1.0f, beta = 0.0f;
  int status = 0;
  // y (rows) = Wᵀ-as-stored · x: W row-major rows × cols is column-major cols × rows (lda = cols).
  s = time_median(
      reps,
      [&] {
        status = gemm(handle, kCublasOpT, kCublasOpN, (int)rows, 1, (int)cols, &alpha, w.ptr, kCudaR16BF, (int)cols,
                      x.ptr, kCudaR16BF, (int)cols, &beta, y.ptr, kCudaR16BF, (int)rows, kCublasCompute32F,
                      kCublasGemmDefault);
      },
      median_ms);
  destroy(handle);
  if (s.ok() && status != 0) s.error = "cublasGemmEx returned status " + std::to_string(status);
  return s;
}

Status time_copy(int64_t bytes, int reps, double* median_ms) {
  DeviceBuffer<uint8_t> a, b;
  Status s;
  if (!(s = a.alloc(bytes, "cudaMalloc (source)")).ok()) return s;
  if (!(s = b.alloc(bytes, "cudaMalloc (destination)")).ok()) return s;
  if (!(s = check(cudaMemset(a.ptr, 1, bytes), "memset")).ok()) return s;
  return time_median(reps, [&] { cudaMemcpyAsync(b.ptr, a.ptr, bytes, cudaMemcpyDeviceToDevice); }, median_ms);
}

}  // namespace bitnet_cuda

// ---------------------------------------------------------------------------------------------
// CudaExec: the model's ops as kernels, one warp per item (a token, a token's row, a head),
// reducing across the warp in the butterfly order host.cc reproduces.
#include "exec.h"
#include "top_k.cuh"
#include "twins.cuh"

namespace bitnet_cuda {
namespace {

constexpr int kWarpsPerBlock = 4;

unsigned blocks_for(int64_t items) { return (unsigned)((items + kWarpsPerBlock - 1) / kWarpsPerBlock); }

template <typename T>
__device__ T warp_sum(T v) {
  for (int o = kLanes / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ float warp_sum_rn(float v) {
  for (int o = kLanes / 2; o > 0; o /= 2) v = __fadd_rn(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ float warp_max(float v) {
  for (int o = kLanes / 2; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

#define WARP_ITEM(items)                                                          \
  const int64_t item = (int64_t)blockIdx.x * kWarpsPerBlock + threadIdx.x / kLanes; \
  const int lane = threadIdx.x % kLanes;                                           \
  if (item >= (items)) return;

__global__ void embed_kernel(const void* table, bool f16, const int32_t* tokens, int64_t T, int64_t d, float* out) {
  WARP_ITEM(T);
  const int64_t row = tokens[item];
  for (int64_t i = lane; i < d; i += kLanes) {
    out[item * d + i] = f16 ? f16_to_f32(((const uint16_t*)table)[row * d + i]) : ((const float*)table)[row * d + i];
  }
}

__global__ void rms_norm_kernel(const float* x, const float* w, int64_t T, int64_t n, float eps, float* out) {
  WARP_ITEM(T);
  const float* xt = x + item * n;
  const float s = rms_scale(warp_sum(rms_lane_sum(xt, n, lane)), n, eps);
  for (int64_t i = lane; i < n; i += kLanes) out[item * n + i] = rms_apply(xt[i], s, w[i]);
}

// Q8_K of one 256-value block by one warp.
__device__ void q8k_block_warp(const float* xb, int8_t* qb, float* d_out, int32_t* bsum_out, int lane) {
  // The first value of largest magnitude: each lane's first maximum, then the lowest index.
  float amax = 0.0f;
  int at = 256;
  for (int i = lane; i < 256; i += kLanes) {
    if (fabsf(xb[i]) > amax) {
      amax = fabsf(xb[i]);
      at = i;
    }
  }
  for (int o = kLanes / 2; o > 0; o /= 2) {
    const float a2 = __shfl_xor_sync(0xffffffffu, amax, o);
    const int at2 = __shfl_xor_sync(0xffffffffu, at, o);
    if (a2 > amax || (a2 == amax && at2 < at)) {
      amax = a2;
      at = at2;
    }
  }
  int32_t total = 0;
  if (amax == 0.0f) {
    for (int i = lane; i < 256; i += kLanes) qb[i] = 0;
  } else {
    const float iscale = q8k_iscale(xb[at]);
    for (int i = lane; i < 256; i += kLanes) {
      const int32_t v = q8k_quantize(xb[i], iscale);
      qb[i] = (int8_t)v;
      total += v;
    }
  }
  total = warp_sum(total);
  if (lane == 0) {
    *d_out = amax == 0.0f ? 0.0f : __fdiv_rn(1.0f, q8k_iscale(xb[at]));
    *bsum_out = total;
  }
}

__global__ void quantize_q8k_kernel(const float* x, int64_t T, int64_t n, int8_t* q, float* d, int32_t* bsum) {
  const int64_t nb = n / 256;
  WARP_ITEM(T * nb);
  const int64_t t = item / nb, b = item % nb;
  q8k_block_warp(x + t * n + b * 256, q + t * n + b * 256, d + item, bsum + item, lane);
}

// RMSNorm and the quantization of its output for a ternary projection in one kernel, one block
// per token: warp 0 sums the squares in rms_norm_kernel's lane order (so the same scale), every
// thread writes its share of the normalized row, then the row is quantized as quantize_i8_kernel
// (max, scale, values and their sum: order-free) or per 256 block as quantize_q8k_kernel.
// kInput says what the norm's input is: x (kNormOfX); the residual sum x + b (kNormOfSum); or the
// GLU of gate x and up b (kNormOfRelu2, kNormOfSilu). The sum or the GLU is written to sum_out as
// add_kernel or glu_kernel would (a step's captures read it).
constexpr int kNormOfX = 0, kNormOfSum = 1, kNormOfRelu2 = 2, kNormOfSilu = 3;
template <int kInput>
__global__ void rms_norm_quantize_kernel(const float* x, const float* b, float* sum_out, const float* w, int64_t n,
                                         float eps, float* out, int q8k, int8_t* q, float* scale, int32_t* sum) {
  __shared__ float s_norm;
  const int64_t t = blockIdx.x;
  const float* xt = x + t * n;
  float* ot = out + t * n;
  const int warp = threadIdx.x / kLanes, lane = threadIdx.x % kLanes, warps = blockDim.x / kLanes;
  // A computed input (the residual sum or the GLU) is computed once per element by the whole
  // block and written to sum_out, which the norm then reads: each thread reads x[i] and b[i]
  // before it writes sum_out[i] (either may share sum_out's buffer), and out is written only
  // after every input was read (out may share x's or b's).
  const float* in_row = xt;
  if constexpr (kInput != kNormOfX) {
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      float v;
      if constexpr (kInput == kNormOfSum) v = __fadd_rn(xt[i], b[t * n + i]);
      if constexpr (kInput == kNormOfRelu2) v = glu_relu2(xt[i], b[t * n + i]);
      if constexpr (kInput == kNormOfSilu) v = glu_silu(xt[i], b[t * n + i]);
      sum_out[t * n + i] = v;
    }
    __syncthreads();
    in_row = sum_out + t * n;
  }
  if (warp == 0) {
    double part = 0;
    for (int64_t i = lane; i < n; i += kLanes) {
      const float v = in_row[i];
      part += (double)mul_rn(v, v);
    }
    const float s = rms_scale(warp_sum(part), n, eps);
    if (lane == 0) s_norm = s;
  }
  __syncthreads();
  const float norm = s_norm;
  float m = 0.0f;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const float v = rms_apply(in_row[i], norm, w[i]);
    ot[i] = v;
    m = fmaxf(m, fabsf(v));
  }
  __syncthreads();
  if (q8k != 0) {
    const int64_t nb = n / 256;
    for (int64_t b = warp; b < nb; b += warps) {
      q8k_block_warp(ot + b * 256, q + t * n + b * 256, scale + t * nb + b, sum + t * nb + b, lane);
    }
    return;
  }
  block_quantize_i8(m, ot, n, q + t * n, scale + t, sum + t);
}

// One warp per (token, row): half-warps take alternate blocks, 16 lanes × one code word each;
// the block's integer sum is exact, and lane 0 applies the block scales in block order.
__global__ void tq2_gemm_kernel(const GroupLaunch g, int64_t cols, const int8_t* q, const float* d,
                                const int32_t* bsum, int64_t T) {
  int64_t local;
  const TernaryMatrix& mat = g.m[group_member(g, blockIdx.x, &local)];
  const uint8_t* codes = mat.codes;
  const float* block_scales = mat.block_scales;
  const int64_t rows = mat.rows;
  float* y = mat.y;
  const int64_t item = local * kWarpsPerBlock + threadIdx.x / kLanes;
  const int lane = threadIdx.x % kLanes;
  if (item >= T * rows) return;
  const int64_t t = item / rows, r = item % rows, nb = cols / 256;
  const int half = lane / 16, w = lane % 16;
  float sumf = 0.0f;
  for (int64_t b0 = 0; b0 < nb; b0 += 2) {
    const int64_t b = b0 + half;
    int32_t acc = 0;
    if (b < nb) {
      const uint32_t word = reinterpret_cast<const uint32_t*>(codes + (r * nb + b) * 64)[w];
      acc = tq2_word_dot(word, reinterpret_cast<const int32_t*>(q + t * cols + b * 256), w, 0);
    }
    for (int o = 8; o > 0; o /= 2) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    const int32_t second = __shfl_sync(0xffffffffu, acc, 16);
    if (lane == 0) {
      sumf = tq2_accumulate(sumf, acc - bsum[t * nb + b0], d[t * nb + b0], block_scales[r * nb + b0]);
      if (b0 + 1 < nb) {
        sumf = tq2_accumulate(sumf, second - bsum[t * nb + b0 + 1], d[t * nb + b0 + 1], block_scales[r * nb + b0 + 1]);
      }
    }
  }
  if (lane == 0) y[t * rows + r] = sumf;
}

// One warp per (row, TB tokens), each lane taking its columns in twins.cuh's order (8-column
// groups: one 16-byte load of f16 weights, two of f32) and applying each loaded group to every
// token: per token the sums run in the order host.cc reproduces, and a step's rows read the
// weights once per TB tokens (the head of a 16-sequence decode step reads its 0.66 GB once, not 16
// times). TB is 1 for one token, where the accumulators of more would only cost registers
// (occupancy for the head's stream), else 8 or 16 (float_gemm below).
template <int TB>
__global__ void float_gemm_kernel(const void* w, bool f16, int64_t rows, int64_t cols, const float* x, int64_t T,
                                  bool round_x, float* y) {
  WARP_ITEM(((T + TB - 1) / TB) * rows);
  const int64_t t0 = item / rows * TB, r = item % rows;
  const int nt = (int)(T - t0 < TB ? T - t0 : TB);
  float acc[TB];
#pragma unroll
  for (int k = 0; k < TB; k++) acc[k] = 0.0f;
  if (float_rows_grouped(cols)) {
    for (int64_t g = lane; g < cols / kFloatGroup; g += kLanes) {
      float wv[kFloatGroup];
      if (f16) {
        const uint4 v = __ldg(reinterpret_cast<const uint4*>((const uint16_t*)w + r * cols) + g);
        const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
          const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&words[i]));
          wv[2 * i] = f.x;
          wv[2 * i + 1] = f.y;
        }
      } else {
        const float4* row = reinterpret_cast<const float4*>((const float*)w + r * cols);
        const float4 a = __ldg(row + 2 * g), b = __ldg(row + 2 * g + 1);
        wv[0] = a.x, wv[1] = a.y, wv[2] = a.z, wv[3] = a.w;
        wv[4] = b.x, wv[5] = b.y, wv[6] = b.z, wv[7] = b.w;
      }
#pragma unroll
      for (int k = 0; k < TB; k++) {
        if (k < nt) {
          const float4* x4 = reinterpret_cast<const float4*>(x + (t0 + k) * cols);
          const float4 xa = x4[2 * g], xb = x4[2 * g + 1];
          const float xv[kFloatGroup] = {xa.x, xa.y, xa.z, xa.w, xb.x, xb.y, xb.z, xb.w};
#pragma unroll
          for (int i = 0; i < kFloatGroup; i++) acc[k] = fma_rn(wv[i], round_x ? round_f16(xv[i]) : xv[i], acc[k]);
        }
      }
    }
  } else {
    for (int64_t c = lane; c < cols; c += kLanes) {
      const float wv = f16 ? f16_to_f32(((const uint16_t*)w)[r * cols + c]) : ((const float*)w)[r * cols + c];
#pragma unroll
      for (int k = 0; k < TB; k++) {
        if (k < nt) {
          const float xv = x[(t0 + k) * cols + c];
          acc[k] = fma_rn(wv, round_x ? round_f16(xv) : xv, acc[k]);
        }
      }
    }
  }
  // nt is the same on every lane of the warp, so the shuffles inside see the whole warp.
#pragma unroll
  for (int k = 0; k < TB; k++) {
    if (k < nt) {
      const float sum = warp_sum_rn(acc[k]);
      if (lane == 0) y[(t0 + k) * rows + r] = sum;
    }
  }
}

__global__ void scale_kernel(float* y, int64_t n, float s) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = __fmul_rn(y[i], s);
}

__global__ void rope_kernel(const float* x, const float* cos, const float* sin, int64_t T, int64_t heads,
                            int64_t head_dim, int64_t n_rot, float* out) {
  WARP_ITEM(T * heads);
  const int64_t t = item / heads, half = n_rot / 2;
  const float* xi = x + item * head_dim;
  float* o = out + item * head_dim;
  for (int64_t i = lane; i < half; i += kLanes) {
    rope_pair(xi[i], xi[i + half], cos[t * half + i], sin[t * half + i], &o[i], &o[i + half]);
  }
  for (int64_t i = n_rot + lane; i < head_dim; i += kLanes) o[i] = xi[i];
}

__global__ void kv_store_kernel(const float* k, const float* v, uint16_t* const* kcache, uint16_t* const* vcache,
                                const int32_t* pos, int64_t T, int64_t kv_width) {
  WARP_ITEM(T);
  const int64_t p = pos[item];
  for (int64_t i = lane; i < kv_width; i += kLanes) {
    kcache[item][p * kv_width + i] = f32_to_f16(k[item * kv_width + i]);
    vcache[item][p * kv_width + i] = f32_to_f16(v[item * kv_width + i]);
  }
}

// rope_kernel on q and on k and kv_store_kernel in one launch: one warp per (token, head) of q
// (roped into q_out), of k (roped into k_out, which a step's captures read, and stored as f16 at
// the token's position, as kv_store_kernel stores k_out) and of v (stored). Each value goes
// through the same functions in the same order as with the three kernels. Each lane writes only
// the elements it read (q_out may be q, k_out may be k).
__global__ void rope_kv_store_kernel(const float* q, const float* k, const float* v, const float* cos,
                                     const float* sin, int64_t T, int64_t n_head, int64_t n_head_kv, int64_t head_dim,
                                     int64_t n_rot, float* q_out, float* k_out, uint16_t* const* kcache,
                                     uint16_t* const* vcache, const int32_t* pos) {
  const int64_t per_token = n_head + 2 * n_head_kv;
  WARP_ITEM(T * per_token);
  const int64_t t = item / per_token, slot = item % per_token, half = n_rot / 2, kvw = n_head_kv * head_dim;
  const float* c = cos + t * half;
  const float* s = sin + t * half;
  if (slot < n_head) {
    const float* xi = q + (t * n_head + slot) * head_dim;
    float* o = q_out + (t * n_head + slot) * head_dim;
    for (int64_t i = lane; i < half; i += kLanes) rope_pair(xi[i], xi[i + half], c[i], s[i], &o[i], &o[i + half]);
    for (int64_t i = n_rot + lane; i < head_dim; i += kLanes) o[i] = xi[i];
  } else if (slot < n_head + n_head_kv) {
    const int64_t h = slot - n_head;
    const float* xi = k + t * kvw + h * head_dim;
    float* o = k_out + t * kvw + h * head_dim;
    uint16_t* kc = kcache[t] + pos[t] * kvw + h * head_dim;
    for (int64_t i = lane; i < half; i += kLanes) {
      float a, b;
      rope_pair(xi[i], xi[i + half], c[i], s[i], &a, &b);
      o[i] = a;
      o[i + half] = b;
      kc[i] = f32_to_f16(a);
      kc[i + half] = f32_to_f16(b);
    }
    for (int64_t i = n_rot + lane; i < head_dim; i += kLanes) {
      const float a = xi[i];
      o[i] = a;
      kc[i] = f32_to_f16(a);
    }
  } else {
    const int64_t h = slot - n_head - n_head_kv;
    const float* vi = v + t * kvw + h * head_dim;
    uint16_t* vc = vcache[t] + pos[t] * kvw + h * head_dim;
    for (int64_t i = lane; i < head_dim; i += kLanes) vc[i] = f32_to_f16(vi[i]);
  }
}

// One block per (token, head), as twins.cuh lays out (attn_segment_start): positions split over
// the block's threads for the scores and over its warps for the weighted sum of values. Dynamic
// shared memory: the rounded query and each warp's sums (head_dim × (1 + kAttnWarps) floats).
__global__ void __launch_bounds__(kAttnThreads)
    attention_kernel(const float* q, const uint16_t* const* kcache, const uint16_t* const* vcache, const int32_t* pos,
                     int64_t n_head, int64_t n_head_kv, int64_t head_dim, float* scores, int64_t max_len,
                     float* out) {
  extern __shared__ float attn_shared[];
  __shared__ float warp_max_part[kAttnWarps];
  __shared__ double warp_sum_part[kAttnWarps];
  float* qs = attn_shared;                // head_dim
  float* partial = attn_shared + head_dim;  // kAttnWarps × head_dim
  const int64_t item = blockIdx.x;
  const int64_t t = item / n_head, h = item % n_head;
  const int tid = threadIdx.x, warp = tid / kLanes, lane = tid % kLanes;
  const int64_t kvw = n_head_kv * head_dim, kvh = h / (n_head / n_head_kv), len = pos[t] + 1;
  const float scale = (float)(1.0 / sqrt((double)head_dim));
  const float* qh = q + item * head_dim;
  const uint16_t* keys = kcache[t] + kvh * head_dim;
  const uint16_t* values = vcache[t] + kvh * head_dim;
  float* s = scores + item * max_len;
  for (int64_t i = tid; i < head_dim; i += kAttnThreads) qs[i] = round_f16(qh[i]);
  __syncthreads();
  float m = -INFINITY;
  // Key rows are read 16 bytes (eight halves) at a time where they are 16-byte aligned; the dot
  // is the same sequence of multiply-adds either way.
  const bool wide = head_dim % 8 == 0 && kvw % 8 == 0 && (reinterpret_cast<uintptr_t>(keys) % 16) == 0;
  for (int64_t j = tid; j < len; j += kAttnThreads) {
    float acc = 0.0f;
    if (wide) {
      const uint4* kr = reinterpret_cast<const uint4*>(keys + j * kvw);
      for (int64_t c = 0; c < head_dim / 8; c++) {
        const uint4 v = kr[c];
        const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int h = 0; h < 4; h++) {
          const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&words[h]));
          acc = __fmaf_rn(qs[8 * c + 2 * h], f.x, acc);
          acc = __fmaf_rn(qs[8 * c + 2 * h + 1], f.y, acc);
        }
      }
    } else {
      for (int64_t i = 0; i < head_dim; i++) acc = __fmaf_rn(qs[i], f16_to_f32(keys[j * kvw + i]), acc);
    }
    s[j] = __fmul_rn(acc, scale);
    m = fmaxf(m, s[j]);
  }
  m = warp_max(m);
  if (lane == 0) warp_max_part[warp] = m;
  __syncthreads();
  m = -INFINITY;
  for (int w = 0; w < kAttnWarps; w++) m = fmaxf(m, warp_max_part[w]);
  double sum = 0;
  for (int64_t j = tid; j < len; j += kAttnThreads) {
    s[j] = softmax_exp(s[j], m);
    sum += (double)s[j];
  }
  sum = warp_sum(sum);
  if (lane == 0) warp_sum_part[warp] = sum;
  __syncthreads();
  sum = 0;
  for (int w = 0; w < kAttnWarps; w++) sum += warp_sum_part[w];
  const float inv = (float)(1.0 / sum);
  for (int64_t j = tid; j < len; j += kAttnThreads) s[j] = softmax_prob(s[j], inv);
  __syncthreads();
  const int64_t j0 = attn_segment_start(len, warp), j1 = attn_segment_start(len, warp + 1);
  for (int64_t i = lane; i < head_dim; i += kLanes) {
    float acc = 0.0f;
    for (int64_t j = j0; j < j1; j++) acc = __fmaf_rn(s[j], f16_to_f32(values[j * kvw + i]), acc);
    partial[warp * head_dim + i] = acc;
  }
  __syncthreads();
  for (int64_t i = tid; i < head_dim; i += kAttnThreads) {
    float acc = partial[i];
    for (int w = 1; w < kAttnWarps; w++) acc = __fadd_rn(acc, partial[w * head_dim + i]);
    out[item * head_dim + i] = acc;
  }
}

__global__ void add_kernel(const float* a, const float* b, int64_t n, float* out) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = __fadd_rn(a[i], b[i]);
}

__global__ void glu_kernel(const float* gate, const float* up, int64_t n, int act, float* out) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = act == 0 ? glu_relu2(gate[i], up[i]) : glu_silu(gate[i], up[i]);
}

__global__ void gather_rows_kernel(const float* x, const int32_t* rows, int64_t n, int64_t width, float* out) {
  WARP_ITEM(n);
  for (int64_t i = lane; i < width; i += kLanes) out[item * width + i] = x[rows[item] * width + i];
}

// One block per row whose k (row_k, in device memory, so a recorded decode step reads each
// replay's) is positive; each row's output is kmax ids, then kmax values (top_k.cuh).
__global__ void top_k_kernel(const float* __restrict__ logits, int64_t vocab, const int32_t* __restrict__ row_k,
                             int32_t* __restrict__ out, int kmax) {
  const int64_t r = blockIdx.x;
  // The callers keep k within both; the kernel does not trust them with its shared arrays.
  const int32_t k = (int32_t)min((int64_t)min(row_k[r], min(kmax, kMaxDeviceTopK)), vocab);
  if (k <= 0) return;
  const float* row = logits + r * vocab;
  int32_t* ids = out + r * 2 * kmax;
  float* values = reinterpret_cast<float*>(ids + kmax);
  const int tid = threadIdx.x, lane = tid % kLanes, warp = tid / kLanes, warps = blockDim.x / kLanes;
  __shared__ uint32_t counts[256];
  __shared__ uint32_t cand_key[kMaxDeviceTopK];
  __shared__ int32_t cand_id[kMaxDeviceTopK];
  __shared__ uint32_t warp_key[32];
  __shared__ int32_t warp_id[32];
  __shared__ int32_t warp_ties[32];
  __shared__ uint32_t s_prefix, s_equal;
  __shared__ int32_t s_remaining, s_slots, s_taken;
  if (k == 1) {
    // Greedy: one pass, the best (key, id) per thread, then per warp, then per block.
    uint32_t best_key = 0;
    int32_t best_id = INT32_MAX;
    for (int64_t i = tid; i < vocab; i += blockDim.x) {
      const uint32_t key = top_k_key(row[i]);
      if (top_k_before(key, (int32_t)i, best_key, best_id)) {
        best_key = key;
        best_id = (int32_t)i;
      }
    }
    for (int o = kLanes / 2; o > 0; o /= 2) {
      const uint32_t other_key = __shfl_xor_sync(0xffffffffu, best_key, o);
      const int32_t other_id = __shfl_xor_sync(0xffffffffu, best_id, o);
      if (top_k_before(other_key, other_id, best_key, best_id)) {
        best_key = other_key;
        best_id = other_id;
      }
    }
    if (lane == 0) {
      warp_key[warp] = best_key;
      warp_id[warp] = best_id;
    }
    __syncthreads();
    if (tid == 0) {
      for (int w = 1; w < warps; w++) {
        if (top_k_before(warp_key[w], warp_id[w], best_key, best_id)) {
          best_key = warp_key[w];
          best_id = warp_id[w];
        }
      }
      ids[0] = best_id;
      values[0] = row[best_id];
    }
    return;
  }
  // The k-th largest key, a digit at a time from the top.
  uint32_t prefix = 0, mask = 0;
  if (tid == 0) s_remaining = k;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int d = tid; d < 256; d += blockDim.x) counts[d] = 0;
    __syncthreads();
    // Logits share few leading digits, so a warp's lanes mostly count the same digit: one
    // atomic per distinct digit in the warp (its lowest lane adds how many lanes have it)
    // instead of up to 32 on one counter. Every lane runs every iteration (match_any needs them).
    for (int64_t base = 0; base < vocab; base += blockDim.x) {
      const int64_t i = base + tid;
      uint32_t digit = 256;  // none: past the row, or not matching the digits chosen so far
      if (i < vocab) {
        const uint32_t key = top_k_key(row[i]);
        if ((key & mask) == prefix) digit = (key >> shift) & 255u;
      }
      const unsigned same = __match_any_sync(0xffffffffu, digit);
      if (digit < 256 && lane == __ffs(same) - 1) atomicAdd(&counts[digit], (uint32_t)__popc(same));
    }
    __syncthreads();
    if (tid == 0) {
      int32_t remaining = s_remaining;
      const int d = top_k_pick_digit(counts, &remaining);
      s_remaining = remaining;
      s_prefix = prefix | ((uint32_t)d << shift);
      s_equal = counts[d];  // after the last pass: how many elements equal the threshold
    }
    __syncthreads();
    prefix = s_prefix;
    mask |= 255u << shift;
  }
  const uint32_t threshold = prefix;
  const int32_t ties_wanted = s_remaining;
  const int32_t above = k - ties_wanted;
  // Every element above the threshold, and every one equal to it when all of those are wanted
  // (the usual case: distinct logits), in any order (the rank sort orders them).
  const bool all_ties = (uint32_t)ties_wanted == s_equal;
  if (tid == 0) {
    s_slots = 0;
    s_taken = 0;
  }
  __syncthreads();
  for (int64_t i = tid; i < vocab; i += blockDim.x) {
    const uint32_t key = top_k_key(row[i]);
    if (key > threshold || (all_ties && key == threshold)) {
      const int32_t slot = atomicAdd(&s_slots, 1);
      cand_key[slot] = key;
      cand_id[slot] = (int32_t)i;
    }
  }
  __syncthreads();
  // Otherwise the lowest ids among the equal ones: the row in id order, a block-wide count of
  // equal elements per chunk, until enough are taken.
  if (!all_ties) {
    for (int64_t base = 0; base < vocab; base += blockDim.x) {
      const int32_t taken = s_taken;
      if (taken >= ties_wanted) break;
      const int64_t i = base + tid;
      const bool tie = i < vocab && top_k_key(row[i]) == threshold;
      const unsigned ballot = __ballot_sync(0xffffffffu, tie);
      if (lane == 0) warp_ties[warp] = __popc(ballot);
      __syncthreads();
      int32_t before = taken + __popc(ballot & ((1u << lane) - 1u));
      for (int w = 0; w < warp; w++) before += warp_ties[w];
      if (tie && before < ties_wanted) {
        cand_key[above + before] = threshold;
        cand_id[above + before] = (int32_t)i;
      }
      __syncthreads();
      if (tid == 0) {
        int32_t total = 0;
        for (int w = 0; w < warps; w++) total += warp_ties[w];
        s_taken = taken + total;
      }
      __syncthreads();
    }
  }
  __syncthreads();
  for (int i = tid; i < k; i += blockDim.x) {
    int rank = 0;
    for (int j = 0; j < k; j++) rank += top_k_before(cand_key[j], cand_id[j], cand_key[i], cand_id[i]) ? 1 : 0;
    ids[rank] = cand_id[i];
    values[rank] = row[cand_id[i]];
  }
}

constexpr int kTopKThreads = 512;

unsigned flat_blocks(int64_t n) { return (unsigned)((n + 255) / 256); }

struct CudaExec final : Exec {
  cudaStream_t stream = nullptr;
  int device = 0;

  explicit CudaExec(int dev) : device(dev) {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) throw ExecError(std::string("no CUDA GPU: ") + cudaGetErrorString(e));
    if (dev < 0 || dev >= count) {
      throw ExecError("CUDA device " + std::to_string(dev) + " does not exist (" + std::to_string(count) + " found)");
    }
    ok(cudaSetDevice(dev), "cudaSetDevice");
    ok(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
  }
  ~CudaExec() override {
    if (graph_exec != nullptr) cudaGraphExecDestroy(graph_exec);
    if (stream != nullptr) cudaStreamDestroy(stream);
  }
  cudaGraphExec_t graph_exec = nullptr;
  bool capturing = false;

  bool begin_capture() override {
    if (getenv("BITNET_CUDA_GRAPHS") != nullptr && std::string(getenv("BITNET_CUDA_GRAPHS")) == "0") return false;
    ok(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
    capturing = true;
    return true;
  }
  void end_capture() override {
    cudaGraph_t graph = nullptr;
    capturing = false;
    ok(cudaStreamEndCapture(stream, &graph), "cudaStreamEndCapture");
    const cudaError_t e = cudaGraphInstantiate(&graph_exec, graph, 0);
    cudaGraphDestroy(graph);
    ok(e, "cudaGraphInstantiate");
  }
  void abort_capture() override {
    if (!capturing) {
      cudaGetLastError();  // whatever the failed end of the capture left
      return;
    }
    capturing = false;
    cudaGraph_t graph = nullptr;
    cudaStreamEndCapture(stream, &graph);
    if (graph != nullptr) cudaGraphDestroy(graph);
    cudaGetLastError();
  }
  void replay() override { ok(cudaGraphLaunch(graph_exec, stream), "cudaGraphLaunch"); }
  void bind() override { ok(cudaSetDevice(device), "cudaSetDevice"); }
  static void ok(cudaError_t e, const char* what) {
    if (e != cudaSuccess) throw ExecError(std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
  }
  void launched(const char* what) {
    ok(cudaGetLastError(), what);
  }
  const char* name() const override { return "cuda"; }
  void memory(uint64_t* free_bytes, uint64_t* total_bytes) override {
    size_t f = 0, t = 0;
    cudaSetDevice(device);
    cudaMemGetInfo(&f, &t);
    *free_bytes = f;
    *total_bytes = t;
  }
  void* alloc(size_t bytes, const char* what) override {
    cudaSetDevice(device);
    void* p = nullptr;
    const cudaError_t e = cudaMalloc(&p, std::max<size_t>(bytes, 1));
    if (e != cudaSuccess) {
      cudaGetLastError();  // clear the sticky-free allocation error
      size_t f = 0, t = 0;
      cudaMemGetInfo(&f, &t);
      throw ExecError(std::string("out of GPU memory for ") + what + ": asked " + std::to_string(bytes) +
                      " bytes with " + std::to_string(f) + " of " + std::to_string(t) + " free");
    }
    ok(cudaMemsetAsync(p, 0, bytes, stream), "cudaMemset");
    return p;
  }
  void release(void* p) override {
    if (p != nullptr) {
      cudaStreamSynchronize(stream);
      cudaFree(p);
    }
  }
  void* alloc_host(size_t bytes, const char* what) override {
    bind();
    void* p = nullptr;
    const cudaError_t e = cudaMallocHost(&p, std::max<size_t>(bytes, 1));
    if (e != cudaSuccess) {
      cudaGetLastError();
      throw ExecError(std::string("out of page-locked host memory for ") + what + ": asked " + std::to_string(bytes) +
                      " bytes (" + cudaGetErrorString(e) + ")");
    }
    return p;
  }
  void release_host(void* p) override {
    if (p != nullptr) {
      cudaStreamSynchronize(stream);
      cudaFreeHost(p);
    }
  }
  void to_device_async(void* dst, const void* src, size_t bytes) override {
    ok(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream), "copy to the GPU");
  }
  void to_device(void* dst, const void* src, size_t bytes) override {
    // Synchronous with respect to the host buffer (it may be freed right after).
    ok(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream), "copy to the GPU");
    ok(cudaStreamSynchronize(stream), "copy to the GPU");
  }
  void to_host(void* dst, const void* src, size_t bytes) override {
    ok(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream), "copy from the GPU");
    ok(cudaStreamSynchronize(stream), "copy from the GPU");
  }
  void copy(void* dst, const void* src, size_t bytes) override {
    ok(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream), "copy on the GPU");
  }
  void sync() override { ok(cudaStreamSynchronize(stream), "synchronize"); }

  void embed(const void* table, bool f16, const int32_t* tokens, int64_t T, int64_t d, float* out) override {
    embed_kernel<<<blocks_for(T), kWarpsPerBlock * kLanes, 0, stream>>>(table, f16, tokens, T, d, out);
    launched("embed");
  }
  void rms_norm(const float* x, const float* w, int64_t T, int64_t n, float eps, float* out) override {
    rms_norm_kernel<<<blocks_for(T), kWarpsPerBlock * kLanes, 0, stream>>>(x, w, T, n, eps, out);
    launched("rms_norm");
  }
  void rms_norm_quantize(const float* x, const float* w, int64_t T, int64_t n, float eps, float* out, bool q8k,
                         int8_t* q, float* scale, int32_t* sum) override {
    rms_norm_quantize_kernel<kNormOfX>
        <<<(unsigned)T, 256, 0, stream>>>(x, nullptr, nullptr, w, n, eps, out, q8k ? 1 : 0, q, scale, sum);
    launched("rms_norm_quantize");
  }
  void add_rms_norm_quantize(const float* a, const float* b, float* sum_out, const float* w, int64_t T, int64_t n,
                             float eps, float* out, bool q8k, int8_t* q, float* scale, int32_t* sum) override {
    rms_norm_quantize_kernel<kNormOfSum>
        <<<(unsigned)T, 256, 0, stream>>>(a, b, sum_out, w, n, eps, out, q8k ? 1 : 0, q, scale, sum);
    launched("add_rms_norm_quantize");
  }
  void glu_rms_norm_quantize(const float* gate, const float* up, Act act, float* glu_out, const float* w, int64_t T,
                             int64_t n, float eps, float* out, bool q8k, int8_t* q, float* scale,
                             int32_t* sum) override {
    auto kernel = act == Act::Relu2 ? rms_norm_quantize_kernel<kNormOfRelu2> : rms_norm_quantize_kernel<kNormOfSilu>;
    kernel<<<(unsigned)T, 256, 0, stream>>>(gate, up, glu_out, w, n, eps, out, q8k ? 1 : 0, q, scale, sum);
    launched("glu_rms_norm_quantize");
  }
  void rope_kv_store(const float* q, const float* k, const float* v, const float* cos, const float* sin, int64_t T,
                     int64_t n_head, int64_t n_head_kv, int64_t head_dim, int64_t n_rot, float* q_out, float* k_out,
                     uint16_t* const* kcache, uint16_t* const* vcache, const int32_t* pos) override {
    rope_kv_store_kernel<<<blocks_for(T * (n_head + 2 * n_head_kv)), kWarpsPerBlock * kLanes, 0, stream>>>(
        q, k, v, cos, sin, T, n_head, n_head_kv, head_dim, n_rot, q_out, k_out, kcache, vcache, pos);
    launched("rope_kv_store");
  }
  void quantize_i8(const float* x, int64_t T, int64_t n, int8_t* q, float* scale, int32_t* sum) override {
    quantize_i8_kernel<<<(unsigned)T, 256, 0, stream>>>(x, n, q, scale, sum);
    launched("quantize_i8");
  }
  void quantize_q8k(const float* x, int64_t T, int64_t n, int8_t* q, float* d, int32_t* bsum) override {
    quantize_q8k_kernel<<<blocks_for(T * (n / 256)), kWarpsPerBlock * kLanes, 0, stream>>>(x, T, n, q, d, bsum);
    launched("quantize_q8k");
  }
  void i2s_gemm(const uint8_t* codes, int64_t rows, int64_t cols, float w_scale, const int8_t* q, const float* scale,
                const int32_t* sum, int64_t T, float* y) override {
    bitnet_cuda::i2s_gemm(codes, rows, cols, w_scale, q, scale, sum, y, T, stream);
    launched("i2s_gemm");
  }
  void tq2_gemm(const uint8_t* codes, const float* block_scales, int64_t rows, int64_t cols, const int8_t* q,
                const float* d, const int32_t* bsum, int64_t T, float* y) override {
    tq2_group(group_of_one(codes, block_scales, rows, 1.0f, y), cols, q, d, bsum, T);
    launched("tq2_gemm");
  }
  void tq2_group(const TernaryGroup& group, int64_t cols, const int8_t* q, const float* d, const int32_t* bsum,
                 int64_t T) {
    if (use_tensor_cores(T)) {
      launch_ternary_tc(false, group, cols, q, d, bsum, T, stream);
      return;
    }
    const GroupLaunch g = group_launch(group, [T](int64_t rows) { return (int64_t)blocks_for(T * rows); });
    tq2_gemm_kernel<<<(unsigned)g.first_block[g.count], kWarpsPerBlock * kLanes, 0, stream>>>(g, cols, q, d, bsum, T);
  }
  void ternary_group(bool i2s, const TernaryGroup& g, int64_t cols, const int8_t* q, const float* scale,
                     const int32_t* sum, int64_t T) override {
    if (i2s) {
      i2s_group(g, cols, q, scale, sum, T, stream);
    } else {
      tq2_group(g, cols, q, scale, sum, T);
    }
    launched("ternary_group");
  }
  void float_gemm(const void* w, bool f16, int64_t rows, int64_t cols, const float* x, int64_t T, bool round_x,
                  float* y) override {
    auto run = [&](auto kernel, int64_t tb) {
      kernel<<<blocks_for((T + tb - 1) / tb * rows), kWarpsPerBlock * kLanes, 0, stream>>>(w, f16, rows, cols, x, T,
                                                                                           round_x, y);
    };
    if (T == 1) {
      run(float_gemm_kernel<1>, 1);
    } else if (T <= 8) {
      run(float_gemm_kernel<8>, 8);
    } else {
      run(float_gemm_kernel<16>, 16);
    }
    launched("float_gemm");
  }
  void scale(float* y, int64_t n, float s) override {
    scale_kernel<<<flat_blocks(n), 256, 0, stream>>>(y, n, s);
    launched("scale");
  }
  void rope(const float* x, const float* cos, const float* sin, int64_t T, int64_t heads, int64_t head_dim,
            int64_t n_rot, float* out) override {
    rope_kernel<<<blocks_for(T * heads), kWarpsPerBlock * kLanes, 0, stream>>>(x, cos, sin, T, heads, head_dim, n_rot,
                                                                               out);
    launched("rope");
  }
  void kv_store(const float* k, const float* v, uint16_t* const* kcache, uint16_t* const* vcache, const int32_t* pos,
                int64_t T, int64_t kv_width) override {
    kv_store_kernel<<<blocks_for(T), kWarpsPerBlock * kLanes, 0, stream>>>(k, v, kcache, vcache, pos, T, kv_width);
    launched("kv_store");
  }
  void attention(const float* q, const uint16_t* const* kcache, const uint16_t* const* vcache, const int32_t* pos,
                 int64_t T, int64_t n_head, int64_t n_head_kv, int64_t head_dim, float* scores, int64_t max_len,
                 float* out) override {
    const size_t shared = (size_t)head_dim * (1 + kAttnWarps) * sizeof(float);
    attention_kernel<<<(unsigned)(T * n_head), kAttnThreads, shared, stream>>>(q, kcache, vcache, pos, n_head,
                                                                                n_head_kv, head_dim, scores, max_len,
                                                                                out);
    launched("attention");
  }
  void add(const float* a, const float* b, int64_t n, float* out) override {
    add_kernel<<<flat_blocks(n), 256, 0, stream>>>(a, b, n, out);
    launched("add");
  }
  void glu(const float* gate, const float* up, int64_t n, Act act, float* out) override {
    glu_kernel<<<flat_blocks(n), 256, 0, stream>>>(gate, up, n, (int)act, out);
    launched("glu");
  }
  void gather_rows(const float* x, const int32_t* rows, int64_t n, int64_t width, float* out) override {
    gather_rows_kernel<<<blocks_for(n), kWarpsPerBlock * kLanes, 0, stream>>>(x, rows, n, width, out);
    launched("gather_rows");
  }
  void top_k(const float* logits, int64_t rows, int64_t vocab, const int32_t* row_k, int32_t* out, int kmax) override {
    top_k_kernel<<<(unsigned)rows, kTopKThreads, 0, stream>>>(logits, vocab, row_k, out, kmax);
    launched("top_k");
  }
};

}  // namespace

std::unique_ptr<Exec> make_cuda_exec(int device) { return std::make_unique<CudaExec>(device); }

Status top_k_device(const float* logits, int64_t rows, int64_t vocab, int k, int32_t* ids, float* values) {
  DeviceBuffer<float> d_logits;
  DeviceBuffer<int32_t> d_k, d_out;
  Status s;
  if (!(s = d_logits.alloc(rows * vocab, "cudaMalloc (logits)")).ok()) return s;
  if (!(s = d_k.alloc(rows, "cudaMalloc (k per row)")).ok()) return s;
  if (!(s = d_out.alloc(rows * 2 * kMaxDeviceTopK, "cudaMalloc (top-k)")).ok()) return s;
  if (!(s = check(cudaMemcpy(d_logits.ptr, logits, rows * vocab * sizeof(float), cudaMemcpyHostToDevice),
                  "copy logits")).ok()) {
    return s;
  }
  const std::vector<int32_t> row_k((size_t)rows, k);
  if (!(s = check(cudaMemcpy(d_k.ptr, row_k.data(), rows * sizeof(int32_t), cudaMemcpyHostToDevice), "copy k")).ok()) {
    return s;
  }
  top_k_kernel<<<(unsigned)rows, kTopKThreads>>>(d_logits.ptr, vocab, d_k.ptr, d_out.ptr, kMaxDeviceTopK);
  if (!(s = check(cudaGetLastError(), "top_k_kernel")).ok()) return s;
  std::vector<int32_t> out((size_t)(rows * 2 * kMaxDeviceTopK));
  if (!(s = check(cudaMemcpy(out.data(), d_out.ptr, out.size() * sizeof(int32_t), cudaMemcpyDeviceToHost),
                  "copy top-k")).ok()) {
    return s;
  }
  for (int64_t r = 0; r < rows; r++) {
    std::memcpy(ids + r * k, out.data() + r * 2 * kMaxDeviceTopK, (size_t)k * 4);
    std::memcpy(values + r * k, out.data() + r * 2 * kMaxDeviceTopK + kMaxDeviceTopK, (size_t)k * 4);
  }
  return s;
}

}  // namespace bitnet_cuda
