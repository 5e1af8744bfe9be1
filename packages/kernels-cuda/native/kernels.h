// The CUDA kernels' host-side entry points (kernels.cu) and their host twins, for addon.cc.
#pragma once
#include <cstdint>
#include <string>

namespace bitnet_cuda {

// A CUDA failure: which call, the error's name and its description. Empty when none.
struct Status {
  std::string error;
  bool ok() const { return error.empty(); }
};

struct DeviceInfo {
  std::string name;
  int major = 0, minor = 0;
  int sm_count = 0;
  uint64_t total_memory = 0;
  int memory_bus_bits = 0;
  int memory_clock_khz = 0;
};

// The CUDA runtime this addon was built with (e.g. 13000), and the devices the driver reports.
int runtime_version();
Status devices(int* count);
Status device_info(int index, DeviceInfo* info);

// Per-token int8 quantization (bitnet.cpp's quantize_row_i8_s) of T rows of `cols` floats, then
// the I2_S GEMM y[t·rows + r] = Σ_c w[r, c]·x[t, c] with the tensor's scale, on the GPU: every
// buffer is host memory, copied in and out (an op-level entry for tests and the kernel bench).
Status i2s_linear_device(const uint8_t* codes, int64_t rows, int64_t cols, float w_scale, const float* x, int64_t T,
                         float* y, int8_t* q, float* act_scale, int32_t* act_sum);
// The same arithmetic on the CPU through the same per-chunk functions and the same lane split.
void i2s_linear_host(const uint8_t* codes, int64_t rows, int64_t cols, float w_scale, const float* x, int64_t T,
                     float* y, int8_t* q, float* act_scale, int32_t* act_sum);

// The k best entries of each of `rows` rows of `vocab` logits (k ≤ kMaxDeviceTopK), ranked as
// engine-core's topKRows: ids [rows × k] and their values. On the GPU (the kernel a step runs) and
// on the CPU through the same selection (its host twin).
Status top_k_device(const float* logits, int64_t rows, int64_t vocab, int k, int32_t* ids, float* values);
void top_k_host(const float* logits, int64_t rows, int64_t vocab, int k, int32_t* ids, float* values);

// y[t·rows + r] = Σ_c f16(w[r, c])·x[t, c] in f32, on the GPU (the output head's GEMV).
Status f16_linear_device(const uint16_t* w, int64_t rows, int64_t cols, const float* x, int64_t T, float* y);

// Timings on the GPU, for the kernel bench: the I2_S GEMV on a rows × cols matrix of random
// codes (one token, the matrix larger than L2 is the caller's choice), and a device-to-device
// copy of `bytes`. Each gives the median of `reps` runs in milliseconds.
// kernel: 0 as a step picks it (by T), 1 the dp4a passes, 2 the tensor-core tiles.
Status time_i2s_gemv(int64_t rows, int64_t cols, int64_t T, int kernel, int reps, double* median_ms);
Status time_copy(int64_t bytes, int reps, double* median_ms);
// cuBLAS's bf16 GEMV (cublasGemmEx, bf16 in and out, f32 compute) on a rows × cols matrix, for
// the kernel table: cuBLAS is loaded at run time (dlopen: `library`, else libcublas.so.13, .12,
// .so), so the addon neither needs nor links it. `loaded` names the library that ran.
Status time_cublas_bf16_gemv(const char* library, int64_t rows, int64_t cols, int reps, double* median_ms,
                             std::string* loaded);

}  // namespace bitnet_cuda
