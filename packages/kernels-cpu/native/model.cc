// ---------------------------------------------------------------------------------------------
// Model: mapping, repacking, buffer planning and the per-op execution of a forward step.
// Op semantics and rounding points mirror packages/engine-core/src/reference/ops.ts ("ggml"
// numerics); with the scalar kernels a step is bit-exact with the reference backend except for
// libm transcendental rounding (exp, cos, sin, pow) in rare last-bit cases.
// ---------------------------------------------------------------------------------------------
#include "model.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <chrono>
#include <cmath>
#include <cstring>
#include <stdexcept>

namespace bitnet {

// Fewest tokens a step needs for the AMX GEMM, per weight type. AMX pays a fixed cost to unpack
// ternary codes into int8 tiles, whatever the token count up to a tile; the VNNI kernels pay per
// token. Measured per step of the bench models' linears (2 threads, ms, VNNI vs AMX):
// I2_S T=2 24 vs 51, T=4 29 vs 53, T=8 48 vs 56, T=12 74 vs 59; TQ2_0 T=2 45 vs 64, T=4 78 vs
// 80, T=8 151 vs 101. At I2_S T=8 the two are close in isolation, and the server's 8-stream
// throughput was no better with VNNI, so AMX keeps T ≥ 8.
constexpr int64_t AMX_MIN_TOKENS_I2S = 8;
constexpr int64_t AMX_MIN_TOKENS_TQ2 = 4;
constexpr int64_t AMX_MIN_TOKENS = std::min(AMX_MIN_TOKENS_I2S, AMX_MIN_TOKENS_TQ2);

namespace {

// Decodes one TQ1_0 block into a TQ2_0 block with the same scale (lossless).
void tq1_to_tq2(const BlockTQ1& in, BlockTQ2& out) {
  static const uint8_t pow3[6] = {1, 3, 9, 27, 81, 243};
  int8_t v[256];
  for (int n = 0; n < 5; n++) {
    for (int m = 0; m < 32; m++) v[32 * n + m] = (int8_t)((((uint16_t)(uint8_t)(in.qs[m] * pow3[n])) * 3) >> 8);
    for (int m = 0; m < 16; m++) v[160 + 16 * n + m] = (int8_t)((((uint16_t)(uint8_t)(in.qs[32 + m] * pow3[n])) * 3) >> 8);
  }
  for (int n = 0; n < 4; n++)
    for (int j = 0; j < 4; j++) v[240 + 4 * n + j] = (int8_t)((((uint16_t)(uint8_t)(in.qh[j] * pow3[n])) * 3) >> 8);
  std::memset(out.qs, 0, 64);
  for (int c = 0; c < 2; c++)
    for (int l = 0; l < 4; l++)
      for (int m = 0; m < 32; m++) out.qs[32 * c + m] |= (uint8_t)(v[128 * c + 32 * l + m] << (2 * l));
  out.d = in.d;
}

// ggml quantize_row_q8_0_ref for one row.
void quantize_q8_0(const float* x, BlockQ8_0* y, int64_t n) {
  for (int64_t b = 0; b < n / 32; b++) {
    float amax = 0.0f;
    for (int j = 0; j < 32; j++) amax = std::max(amax, std::fabs(x[32 * b + j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = f32_to_f16(d);
    for (int j = 0; j < 32; j++) y[b].qs[j] = (int8_t)std::lround(x[32 * b + j] * id);
  }
}

// Dequantizes one row of an embedding table into f32.
void dequant_row(const Tensor& t, int64_t row, float* out) {
  const int64_t n = t.ne0;
  switch (t.type) {
    case T_F32:
      std::memcpy(out, t.data + row * n * 4, (size_t)n * 4);
      return;
    case T_F16: {
      const uint16_t* p = (const uint16_t*)t.data + row * n;
      for (int64_t i = 0; i < n; i++) out[i] = f16_to_f32(p[i]);
      return;
    }
    case T_BF16: {
      const uint16_t* p = (const uint16_t*)t.data + row * n;
      for (int64_t i = 0; i < n; i++) out[i] = bf16_to_f32(p[i]);
      return;
    }
    case T_Q8_0: {
      const BlockQ8_0* p = (const BlockQ8_0*)t.data + row * (n / 32);
      for (int64_t b = 0; b < n / 32; b++) {
        const float d = f16_to_f32(p[b].d);
        for (int j = 0; j < 32; j++) out[32 * b + j] = (float)p[b].qs[j] * d;
      }
      return;
    }
    case T_Q6_K: {
      const uint8_t* base = t.data + row * (n / 256) * 210;
      for (int64_t b = 0; b < n / 256; b++) {
        const uint8_t* blk = base + 210 * b;
        const float d = f16_to_f32((uint16_t)(blk[208] | (blk[209] << 8)));
        for (int half = 0; half < 2; half++) {
          const uint8_t* ql = blk + 64 * half;
          const uint8_t* qh = blk + 128 + 32 * half;
          const int8_t* sc = (const int8_t*)(blk + 192 + 8 * half);
          float* y = out + 256 * b + 128 * half;
          for (int l = 0; l < 32; l++) {
            const int is = l / 16;
            const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l] = d * sc[is + 0] * q1;
            y[l + 32] = d * sc[is + 2] * q2;
            y[l + 64] = d * sc[is + 4] * q3;
            y[l + 96] = d * sc[is + 6] * q4;
          }
        }
      }
      return;
    }
    default:
      throw std::runtime_error("unsupported embedding type");
  }
}

std::string type_tag(int32_t type) {
  switch (type) {
    case T_F32: return "f32";
    case T_F16: return "f16";
    case T_BF16: return "bf16";
    case T_Q8_0: return "q8_0";
    case T_Q6_K: return "q6_k";
    case T_TQ1_0: return "tq1_0";
    case T_TQ2_0: return "tq2_0";
    case T_I2_S: return "i2_s";
    default: return "t" + std::to_string(type);
  }
}

}  // namespace

Model::Model(ModelConfig config) : cfg_(std::move(config)) {
  // "amx" is the AVX-512 VNNI kernels plus the AMX prefill GEMM; "auto" picks it when usable.
  const bool want_amx = cfg_.kernel_path == "amx";
  kernels_ = select_kernels(want_amx ? "avx512vnni" : cfg_.kernel_path.c_str());
  if (kernels_ == nullptr || (want_amx && !amx_available())) {
    throw std::runtime_error("kernel path \"" + cfg_.kernel_path + "\" is not available on this CPU");
  }
  use_amx_ = (want_amx || cfg_.kernel_path == "auto") && std::strcmp(kernels_->name, "avx512vnni") == 0 && amx_available();
  pool_ = std::make_unique<ThreadPool>(cfg_.threads);
  const int fd = ::open(cfg_.path.c_str(), O_RDONLY);
  if (fd < 0) throw std::runtime_error("could not open " + cfg_.path + ": " + std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    throw std::runtime_error("could not stat " + cfg_.path);
  }
  map_size_ = (uint64_t)st.st_size;
  // File offset → address of the bytes, whichever way the tensors are held.
  std::vector<uint8_t*> data_of(cfg_.tensors.size(), nullptr);
  if (cfg_.use_mmap) {
    // ---- map the file read-only; tensor data is used in place ----
    const std::string failure = map_file(fd, 0, (size_t)map_size_, file_map_);
    ::close(fd);
    if (!failure.empty()) throw std::runtime_error("could not map " + cfg_.path + ": " + failure);
    map_ = file_map_.data;
    for (size_t i = 0; i < cfg_.tensors.size(); i++) data_of[i] = map_ + cfg_.tensors[i].offset;
  } else {
    // ---- read the tensors into anonymous huge-page memory (llama.cpp's --no-mmap) ----
    const uint64_t huge = 2u << 20;
    uint64_t total = 0;
    std::vector<uint64_t> at(cfg_.tensors.size());
    for (size_t i = 0; i < cfg_.tensors.size(); i++) {
      at[i] = total;
      total += (cfg_.tensors[i].bytes + 63) & ~(uint64_t)63;
    }
    loaded_size_ = (total + huge - 1) / huge * huge;
    loaded_ = (uint8_t*)std::aligned_alloc(huge, loaded_size_);
    if (loaded_ == nullptr) {
      ::close(fd);
      throw std::runtime_error("could not allocate " + std::to_string(loaded_size_) + " bytes for the weights");
    }
    ::madvise(loaded_, loaded_size_, MADV_HUGEPAGE);
    std::string failure;
    pool_->run([&](int tid) {
      int64_t b0, b1;
      share((int64_t)cfg_.tensors.size(), tid, pool_->size(), b0, b1);
      for (int64_t i = b0; i < b1; i++) {
        const TensorSpec& spec = cfg_.tensors[(size_t)i];
        uint64_t done = 0;
        while (done < spec.bytes) {
          const ssize_t n = ::pread(fd, loaded_ + at[(size_t)i] + done, spec.bytes - done, (off_t)(spec.offset + done));
          if (n <= 0) {
            failure = "could not read " + spec.name;
            return;
          }
          done += (uint64_t)n;
        }
      }
    });
    ::close(fd);
    if (!failure.empty()) throw std::runtime_error(failure);
    for (size_t i = 0; i < cfg_.tensors.size(); i++) data_of[i] = loaded_ + at[i];
  }

  // ---- bind tensors, repacking only where a kernel needs another layout ----
  for (size_t ti = 0; ti < cfg_.tensors.size(); ti++) {
    const TensorSpec& spec = cfg_.tensors[ti];
    if (spec.offset + spec.bytes > map_size_) throw std::runtime_error("tensor " + spec.name + " is outside the file");
    Tensor t{spec.type, spec.ne0, spec.ne1, data_of[ti], 0.0f};
    if (spec.type == T_TQ1_0) {
      // TQ1_0 (base-3) is decoded once into the TQ2_0 layout the kernels read.
      const int64_t nb = spec.ne0 * spec.ne1 / 256;
      owned_.emplace_back((size_t)nb * sizeof(BlockTQ2));
      BlockTQ2* dst = (BlockTQ2*)owned_.back().data();
      const BlockTQ1* src = (const BlockTQ1*)t.data;
      pool_->run([&](int tid) {
        int64_t b0, b1;
        share(nb, tid, pool_->size(), b0, b1);
        for (int64_t b = b0; b < b1; b++) tq1_to_tq2(src[b], dst[b]);
      });
      repacked_bytes_ += owned_.back().size();
      t.type = T_TQ2_0;
      t.data = owned_.back().data();
    } else if (spec.type == T_BF16 && spec.ne1 > 1 && spec.name.find("token_embd") == std::string::npos) {
      // BF16 projections run as F32.
      owned_.emplace_back((size_t)spec.ne0 * spec.ne1 * 4);
      float* dst = (float*)owned_.back().data();
      const uint16_t* src = (const uint16_t*)t.data;
      for (int64_t i = 0; i < spec.ne0 * spec.ne1; i++) dst[i] = bf16_to_f32(src[i]);
      repacked_bytes_ += owned_.back().size();
      t.type = T_F32;
      t.data = owned_.back().data();
    }
    if (spec.ne0 * spec.ne1 == 1 && spec.type == T_F32) {
      std::memcpy(&t.scalar, t.data, 4);
    }
    tensors_.push_back(t);
  }

  // ---- the optional Q8_0 output head (requantized once at load) ----
  for (const OpSpec& op : cfg_.ops) {
    if (op.kind == OP_OUTPUT && cfg_.head_q8_0) {
      Tensor& head = tensors_[op.weight];
      if (head.type != T_Q8_0 && head.ne0 % 32 == 0) {
        const int64_t rows = head.ne1, cols = head.ne0;
        owned_.emplace_back((size_t)rows * (cols / 32) * sizeof(BlockQ8_0));
        BlockQ8_0* dst = (BlockQ8_0*)owned_.back().data();
        const Tensor src = head;
        pool_->run([&](int tid) {
          int64_t r0, r1;
          share(rows, tid, pool_->size(), r0, r1);
          std::vector<float> row((size_t)cols);
          for (int64_t r = r0; r < r1; r++) {
            dequant_row(src, r, row.data());
            quantize_q8_0(row.data(), dst + r * (cols / 32), cols);
          }
        });
        repacked_bytes_ += owned_.back().size();
        // A separate tensor, so the embedding lookup keeps reading the file's rows.
        tensors_.push_back(Tensor{T_Q8_0, cols, rows, owned_.back().data(), 0.0f});
        const_cast<OpSpec&>(op).weight = (int32_t)tensors_.size() - 1;
        if (cfg_.use_mmap && (src.type == T_F16 || src.type == T_F32 || src.type == T_BF16)) {
          // The file's head rows are no longer read for logits; let the kernel drop them from RSS.
          ::madvise((void*)((uintptr_t)src.data & ~(uintptr_t)4095), (size_t)(src.ne0 * src.ne1 * (src.type == T_F32 ? 4 : 2)), MADV_DONTNEED);
        }
      }
    }
  }

  // ---- validate the shapes the kernels rely on, and name each op's kernel ----
  const std::string path = kernels_->name;
  for (const OpSpec& op : cfg_.ops) {
    std::string id;
    switch (op.kind) {
      case OP_EMBED: {
        const int32_t type = tensors_[op.weight].type;
        if (type != T_F32 && type != T_F16 && type != T_BF16 && type != T_Q8_0 && type != T_Q6_K) {
          throw std::runtime_error("embedding type " + type_tag(type) + " is not supported by the CPU backend");
        }
        id = "embed." + type_tag(type);
        break;
      }
      case OP_RMS_NORM: id = "rms_norm.f32"; break;
      case OP_ROPE: id = "rope.neox"; break;
      case OP_ATTENTION: id = "attention.gqa.f16kv"; break;
      case OP_ADD: id = "add.f32"; break;
      case OP_GLU: id = op.act == 0 ? "glu.relu2" : "glu.silu"; break;
      case OP_LINEAR: {
        const Tensor& w = tensors_[op.weight];
        if (w.type == T_I2_S) {
          if (w.ne0 % 128 != 0) throw std::runtime_error("I2_S rows must be multiples of 128");
          id = "linear.i2_s.i8";
        } else if (w.type == T_TQ2_0) {
          if (w.ne0 % 256 != 0) throw std::runtime_error("TQ rows must be multiples of 256");
          // TQ1_0 runs on the TQ2_0 kernels after a lossless repack at load: name both.
          id = cfg_.tensors[(size_t)op.weight].type == T_TQ1_0 ? "linear.tq1_0_as_tq2_0.q8_k" : "linear.tq2_0.q8_k";
        } else if (w.type == T_F16) {
          id = "linear.f16";
        } else if (w.type == T_F32) {
          id = "linear.f32";
        } else {
          throw std::runtime_error("tensor type " + type_tag(w.type) + " is not supported for projections by the CPU backend");
        }
        break;
      }
      case OP_OUTPUT: {
        const Tensor& w = tensors_[op.weight];
        if (w.type != T_F16 && w.type != T_Q8_0 && w.type != T_F32 && w.type != T_BF16 && w.type != T_Q6_K) {
          throw std::runtime_error("output head type " + type_tag(w.type) + " is not supported by the CPU backend");
        }
        id = "output." + type_tag(w.type);
        break;
      }
      default:
        throw std::runtime_error("unknown op kind");
    }
    auto intern = [this](const std::string& name) {
      for (size_t k = 0; k < kernel_names_.size(); k++) {
        if (kernel_names_[k] == name) return (int32_t)k;
      }
      kernel_names_.push_back(name);
      kernel_calls_.push_back(0);
      return (int32_t)(kernel_names_.size() - 1);
    };
    op_kernel_id_.push_back(intern("cpu." + path + "." + id));
    op_kernel_amx_.push_back(intern("cpu.amx." + id));
    int32_t kind_id = -1;
    for (size_t k = 0; k < op_kind_names_.size(); k++) {
      if (op_kind_names_[k] == id) kind_id = (int32_t)k;
    }
    if (kind_id < 0) {
      op_kind_names_.push_back(id);
      op_ns_.push_back(0);
      kind_id = (int32_t)(op_kind_names_.size() - 1);
    }
    op_kind_id_.push_back(kind_id);
  }
  plan_buffers();
  quant_buffer_.assign((size_t)pool_->size(), -1);
  quant_kind_.assign((size_t)pool_->size(), -1);
  quant_tmp_.resize((size_t)pool_->size());
  int64_t widest = 0;
  for (int64_t w : cfg_.buffer_widths) widest = std::max(widest, w);
  for (auto& q : quant_tmp_) q.resize((size_t)widest);
  scratch_.resize((size_t)pool_->size());
  for (auto& s : scratch_) s.resize((size_t)std::max<int64_t>(std::max<int64_t>(cfg_.context, cfg_.n_embd), 256) + 1024);
}

Model::~Model() {
  pool_.reset();
  unmap_file(file_map_);
  std::free(loaded_);
}

// Buffers live from the op that writes them to their last reader; slots are reused once free.
void Model::plan_buffers() {
  const size_t nbuf = cfg_.buffer_widths.size();
  std::vector<int64_t> last(nbuf, -1);
  for (size_t i = 0; i < cfg_.ops.size(); i++) {
    const OpSpec& op = cfg_.ops[i];
    for (int32_t b : {op.in0, op.in1, op.in2, op.out}) {
      if (b >= 0) last[(size_t)b] = (int64_t)i;
    }
  }
  slot_of_.assign(nbuf, -1);
  std::vector<int64_t> slot_free_after;  // op index after which the slot is free
  std::vector<int64_t> slot_width;
  for (size_t i = 0; i < cfg_.ops.size(); i++) {
    const int32_t out = cfg_.ops[i].out;
    if (out < 0 || cfg_.ops[i].kind == OP_OUTPUT) continue;
    int32_t chosen = -1;
    for (size_t s = 0; s < slot_free_after.size(); s++) {
      if (slot_free_after[s] < (int64_t)i) {
        chosen = (int32_t)s;
        break;
      }
    }
    if (chosen < 0) {
      chosen = (int32_t)slot_free_after.size();
      slot_free_after.push_back(0);
      slot_width.push_back(0);
    }
    slot_of_[(size_t)out] = chosen;
    slot_free_after[(size_t)chosen] = last[(size_t)out];
    slot_width[(size_t)chosen] = std::max(slot_width[(size_t)chosen], cfg_.buffer_widths[(size_t)out]);
  }
  slot_width_ = slot_width;
  slots_.resize(slot_width.size());
  // The quantized-activation scratch holds linear inputs only (at most n_ff wide), not the
  // vocab-wide logits buffer: sizing it by the widest buffer cost 32 MiB at a 128-token step.
  for (const OpSpec& op : cfg_.ops) {
    if (op.kind == OP_LINEAR) max_width_ = std::max(max_width_, cfg_.buffer_widths[(size_t)op.in0]);
  }
  for (const Tensor& t : tensors_) {
    if (t.type == T_I2_S || t.type == T_TQ2_0) max_rows_ = std::max(max_rows_, t.ne1);
  }
}

// Per-token buffers grow with the largest step seen (to a power of two, at most max_batch), so
// a process that only decodes holds a few kilobytes of activations, not max_batch rows.
void Model::reserve_batch(int64_t T) {
  if (T <= batch_capacity_) return;
  int64_t cap = 1;
  while (cap < T) cap *= 2;
  cap = std::min<int64_t>(cap, cfg_.max_batch);
  for (size_t s = 0; s < slots_.size(); s++) slots_[s].resize((size_t)(slot_width_[s] * cap));
  q_.resize((size_t)(max_width_ * cap));
  q_scale_.resize((size_t)(max_width_ / 256 + 1) * cap);
  q_sum_.resize((size_t)(max_width_ / 256 + 1) * cap);
  head_x_.resize((size_t)(cfg_.n_embd * cap));
  head_q_.resize((size_t)(cfg_.n_embd / 32 + 1) * cap);
  if (use_amx_ && cap >= AMX_MIN_TOKENS) {
    const int64_t padded = (cap + 15) / 16 * 16;  // whole token tiles
    q_tiles_.resize((size_t)(max_width_ * padded));
    acc_i32_.resize((size_t)(max_rows_ * padded));
  }
  batch_capacity_ = cap;
}

std::map<std::string, int64_t> Model::kernel_counts() const {
  std::map<std::string, int64_t> out;
  for (size_t k = 0; k < kernel_names_.size(); k++) {
    if (kernel_calls_[k] > 0) out[kernel_names_[k]] += kernel_calls_[k];
  }
  return out;
}

std::map<std::string, int64_t> Model::op_times() const {
  std::map<std::string, int64_t> out;
  for (size_t k = 0; k < op_kind_names_.size(); k++) out[op_kind_names_[k]] += op_ns_[k];
  return out;
}

// Decode streams every weight once per token; within an op the kernels prefetch ahead, but each
// op's first kilobytes would start cold. Before the barrier, each thread asks L2 for the start
// of its share of the next matrix op's weights.
void Model::prefetch_next_weights(size_t i, int tid, int nth) const {
  for (size_t j = i + 1; j < cfg_.ops.size() && j <= i + 4; j++) {
    const OpSpec& next = cfg_.ops[j];
    if (next.kind != OP_LINEAR && next.kind != OP_OUTPUT) continue;
    const Tensor& w = tensors_[(size_t)next.weight];
    const int64_t row_bytes = w.type == T_I2_S    ? w.ne0 / 4
                              : w.type == T_TQ2_0 ? w.ne0 / 256 * (int64_t)sizeof(BlockTQ2)
                              : w.type == T_Q8_0  ? w.ne0 / 32 * (int64_t)sizeof(BlockQ8_0)
                              : w.type == T_F32   ? w.ne0 * 4
                                                  : w.ne0 * 2;
    int64_t r0, r1;
    share(w.ne1, tid, nth, r0, r1);
    const uint8_t* start = w.data + r0 * row_bytes;
    const int64_t n = std::min<int64_t>(8192, (r1 - r0) * row_bytes);
    for (int64_t o = 0; o < n; o += 64) __builtin_prefetch(start + o, 0, 2);
    return;
  }
}

// With several tokens, a kernel called on all of a thread's rows would stream those weights
// once per token (or per 4 tokens). Calling it on tiles of rows that fit in L1/L2 reads each
// weight from memory once per step, whatever the batch: what makes batched decoding of many
// sequences nearly as cheap per step as decoding one.
template <typename F>
inline void for_row_tiles(int64_t r0, int64_t r1, int64_t row_bytes, int64_t tokens, F&& kernel) {
  if (tokens <= 1) {
    kernel(r0, r1);
    return;
  }
  const int64_t tile = std::max<int64_t>(2, (32 * 1024 / std::max<int64_t>(row_bytes, 1)) & ~(int64_t)1);
  for (int64_t a = r0; a < r1; a += tile) kernel(a, std::min(r1, a + tile));
}

bool Model::amx_eligible(const Tensor& w, int64_t T) const {
  const int64_t min_tokens = w.type == T_I2_S ? AMX_MIN_TOKENS_I2S : AMX_MIN_TOKENS_TQ2;
  return use_amx_ && (w.type == T_I2_S || w.type == T_TQ2_0) && T >= min_tokens && w.ne1 % 16 == 0 && w.ne0 % 64 == 0;
}

void Model::create_sequence(int32_t id) {
  Sequence s;
  s.k.resize((size_t)cfg_.n_layer);
  s.v.resize((size_t)cfg_.n_layer);
  seqs_[id] = std::move(s);
}

void Model::free_sequence(int32_t id) { seqs_.erase(id); }

void Model::fork_sequence(int32_t src, int32_t dst) {
  auto it = seqs_.find(src);
  if (it == seqs_.end()) throw std::runtime_error("unknown sequence");
  seqs_[dst] = it->second;
}

void Model::truncate_sequence(int32_t id, int64_t length) {
  auto it = seqs_.find(id);
  if (it == seqs_.end()) throw std::runtime_error("unknown sequence");
  it->second.length = std::min(it->second.length, length);
}

// K is stored transposed per head, [kv_width][capacity], so attention scores for consecutive
// positions are contiguous (one SIMD lane per position); V stays [capacity][kv_width].
void Model::ensure_capacity(Sequence& s, int64_t needed) {
  if (needed <= s.capacity) return;
  const int64_t kvw = cfg_.head_dim * cfg_.n_head_kv;
  int64_t cap = std::max<int64_t>(64, s.capacity * 2);
  while (cap < needed) cap *= 2;
  cap = std::min(cap, cfg_.context);
  for (int64_t l = 0; l < cfg_.n_layer; l++) {
    std::vector<uint16_t> k((size_t)(cap * kvw));
    for (int64_t i = 0; i < kvw && s.capacity > 0; i++) {
      std::memcpy(k.data() + i * cap, s.k[(size_t)l].data() + i * s.capacity, (size_t)s.length * 2);
    }
    s.k[(size_t)l] = std::move(k);
    s.v[(size_t)l].resize((size_t)(cap * kvw));
  }
  s.capacity = cap;
}

void Model::step(const int32_t* tokens, const int32_t* seqs, const int32_t* positions, int64_t T, const uint8_t* want_logits,
                 float* logits, const std::vector<int32_t>& capture, const std::vector<float*>& capture_out,
                 const std::vector<int32_t>& inject, const std::vector<const float*>& inject_data) {
  if (T <= 0) return;
  if (T > cfg_.max_batch) throw std::runtime_error("batch larger than the compiled maximum");
  reserve_batch(T);
  tokens_ = tokens;
  seq_ids_ = seqs;
  positions_ = positions;
  want_ = want_logits;
  logits_ = logits;
  owners_.assign((size_t)T, nullptr);
  logit_rows_.clear();
  for (int64_t t = 0; t < T; t++) {
    auto it = seqs_.find(seqs[t]);
    if (it == seqs_.end()) throw std::runtime_error("unknown sequence in step");
    owners_[(size_t)t] = &it->second;
    ensure_capacity(it->second, positions[t] + 1);
    if (want_logits[t]) logit_rows_.push_back(t);
  }
  std::fill(quant_buffer_.begin(), quant_buffer_.end(), -1);
  // Which kernel each op runs this step (AMX tiles only from 16 tokens on), and whether the
  // barrier after it can be skipped: consecutive projections of the same input (q/k/v,
  // gate/up) share the quantized activations and write distinct buffers, so threads may run
  // straight on (not with AMX, whose integer scratch is shared, nor when buffers are copied in
  // or out between ops).
  std::vector<uint8_t> barrier_after(cfg_.ops.size(), 1);
  for (size_t i = 0; i < cfg_.ops.size(); i++) {
    const OpSpec& op = cfg_.ops[i];
    const bool amx = op.kind == OP_LINEAR && amx_eligible(tensors_[op.weight], T);
    kernel_calls_[(size_t)(amx ? op_kernel_amx_[i] : op_kernel_id_[i])]++;
    if (i + 1 < cfg_.ops.size() && inject.empty() && capture.empty() && !amx) {
      const OpSpec& next = cfg_.ops[i + 1];
      if (op.kind == OP_LINEAR && next.kind == OP_LINEAR && next.in0 == op.in0 &&
          tensors_[op.weight].type == tensors_[next.weight].type && !amx_eligible(tensors_[next.weight], T)) {
        barrier_after[i] = 0;
      }
    }
  }
  std::vector<int64_t> elapsed(cfg_.ops.size(), 0);
  pool_->run([&](int tid) {
    const int nth = pool_->size();
    for (size_t i = 0; i < cfg_.ops.size(); i++) {
      const OpSpec& op = cfg_.ops[i];
      if (!inject.empty()) {
        if (tid == 0) {
          for (size_t c = 0; c < inject.size(); c++) {
            if (inject[c] >= 0 && (inject[c] == op.in0 || inject[c] == op.in1 || inject[c] == op.in2)) {
              std::memcpy(buf(inject[c]), inject_data[c], (size_t)(T * cfg_.buffer_widths[(size_t)inject[c]]) * 4);
              // Its quantized copy is stale now (the other threads wait at the barrier below).
              for (int32_t& qb : quant_buffer_) {
                if (qb == inject[c]) qb = -1;
              }
            }
          }
        }
        pool_->barrier().wait();
      }
      const auto started = std::chrono::steady_clock::now();
      run_op(op, tid, nth, T);
      if (T <= 4) prefetch_next_weights(i, tid, nth);
      if (barrier_after[i]) pool_->barrier().wait();
      if (tid == 0) {
        elapsed[i] = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - started).count();
      }
      // Copying a buffer out must finish before the next op may overwrite its slot.
      if (!capture.empty()) {
        if (tid == 0) {
          for (size_t c = 0; c < capture.size(); c++) {
            if (capture[c] == op.out && op.kind != OP_OUTPUT) {
              std::memcpy(capture_out[c], buf(op.out), (size_t)(T * cfg_.buffer_widths[(size_t)op.out]) * 4);
            }
          }
        }
        pool_->barrier().wait();
      }
    }
  });
  for (int64_t t = 0; t < T; t++) {
    Sequence* s = owners_[(size_t)t];
    s->length = std::max(s->length, (int64_t)positions[t] + 1);
  }
  for (size_t i = 0; i < cfg_.ops.size(); i++) op_ns_[(size_t)op_kind_id_[i]] += elapsed[i];
}

void Model::run_op(const OpSpec& op, int tid, int nth, int64_t T) {
  const int64_t d = cfg_.n_embd;
  int64_t b0, b1;
  switch (op.kind) {
    case OP_EMBED: {
      const Tensor& table = tensors_[op.weight];
      share(T, tid, nth, b0, b1);
      for (int64_t t = b0; t < b1; t++) dequant_row(table, tokens_[t], buf(op.out) + t * d);
      return;
    }
    case OP_RMS_NORM: {
      const int64_t n = cfg_.buffer_widths[(size_t)op.out];
      const float* x = buf(op.in0);
      float* y = buf(op.out);
      const Tensor& w = tensors_[op.weight];
      std::vector<float> gain;
      const float* g = (const float*)w.data;
      if (w.type == T_F16) {
        gain.resize((size_t)n);
        for (int64_t i = 0; i < n; i++) gain[(size_t)i] = f16_to_f32(((const uint16_t*)w.data)[i]);
        g = gain.data();
      }
      share(T, tid, nth, b0, b1);
      for (int64_t t = b0; t < b1; t++) {
        const float* xt = x + t * n;
        const double sum = kernels_->sum_squares(xt, n);
        const float mean = (float)(sum / (double)n);
        const float scale = 1.0f / std::sqrt(mean + cfg_.eps);
        for (int64_t i = 0; i < n; i++) y[t * n + i] = (xt[i] * scale) * g[i];
      }
      return;
    }
    case OP_LINEAR: {
      const Tensor& w = tensors_[op.weight];
      const int64_t cols = w.ne0, rows = w.ne1;
      const float* x = buf(op.in0);
      float* y = buf(op.out);
      const bool amx = amx_eligible(w, T);
      // 0: int8 per token (kernel layout), 3: the same for AMX tiles, 1: Q8_K, 4: Q8_K for AMX, 2: float.
      const int kind = w.type == T_I2_S ? (amx ? 3 : 0) : w.type == T_TQ2_0 ? (amx ? 4 : 1) : 2;
      // Phase 1: quantize the input once; q/k/v (and gate/up) reuse it. Every thread sees the
      // same quant_buffer_ value, so all take the same branch.
      if (kind != 2 && !(quant_buffer_[(size_t)tid] == op.in0 && quant_kind_[(size_t)tid] == kind)) {
        share(T, tid, nth, b0, b1);
        int8_t* tmp = quant_tmp_[(size_t)tid].data();
        for (int64_t t = b0; t < b1; t++) {
          const float* xt = x + t * cols;
          if (kind == 0 || kind == 3) {
            kernels_->quantize_i8(xt, cols, tmp, &q_scale_[(size_t)t], &q_sum_[(size_t)t]);
          } else {
            const int64_t nb = cols / 256;
            kernels_->quantize_q8k(xt, cols, tmp, &q_scale_[(size_t)(t * nb)], &q_sum_[(size_t)(t * nb)]);
          }
          permute_activations(tmp, q_.data() + t * cols, cols, kind >= 3 ? LAYOUT_NATURAL : kernels_->layout);
        }
        if (kind >= 3) {
          pool_->barrier().wait();
          // Pack the token tiles for AMX, split by token tile.
          const int64_t ttiles = (T + 15) / 16;
          share(ttiles, tid, nth, b0, b1);
          for (int64_t tt = b0; tt < b1; tt++) {
            const int64_t n = std::min<int64_t>(16, T - 16 * tt);
            pack_amx_activations(q_.data() + 16 * tt * cols, cols, n, q_tiles_.data() + tt * (cols / 64) * 1024);
          }
        }
        quant_buffer_[(size_t)tid] = op.in0;
        quant_kind_[(size_t)tid] = kind;
        pool_->barrier().wait();
      }
      // Phase 2: output rows split across threads.
      if (kind >= 3) {
        share(rows / 16, tid, nth, b0, b1);
        b0 *= 16;
        b1 *= 16;
      } else {
        share(rows, tid, nth, b0, b1);
      }
      if (b0 < b1) {
        if (kind == 3) {
          float w_scale;
          std::memcpy(&w_scale, w.data + cols * rows / 4, 4);
          i2s_gemm_amx(w.data, cols, b0, b1, q_tiles_.data(), T, acc_i32_.data(), rows);
          for (int64_t t = 0; t < T; t++) {
            for (int64_t r = b0; r < b1; r++) {
              const float v = (float)(acc_i32_[(size_t)(t * rows + r)] - q_sum_[(size_t)t]) / q_scale_[(size_t)t];
              y[t * rows + r] = v * w_scale;
            }
          }
        } else if (kind == 4) {
          tq2_gemm_amx((const BlockTQ2*)w.data, cols, b0, b1, q_tiles_.data(), T, q_scale_.data(), q_sum_.data(), y, rows);
        } else if (kind == 0) {
          float w_scale;
          std::memcpy(&w_scale, w.data + cols * rows / 4, 4);
          for_row_tiles(b0, b1, cols / 4, T, [&](int64_t a, int64_t b) {
            kernels_->i2s_gemm(w.data, cols, a, b, q_.data(), q_scale_.data(), q_sum_.data(), w_scale, T, y, rows);
          });
        } else if (kind == 1) {
          for_row_tiles(b0, b1, cols / 256 * (int64_t)sizeof(BlockTQ2), T, [&](int64_t a, int64_t b) {
            kernels_->tq2_gemm((const BlockTQ2*)w.data, cols, a, b, q_.data(), q_scale_.data(), q_sum_.data(), T, y, rows);
          });
        } else if (w.type == T_F16) {
          std::vector<float> xr((size_t)(T * cols));
          kernels_->round_f16(x, xr.data(), T * cols);
          for_row_tiles(b0, b1, cols * 2, T, [&](int64_t a, int64_t b) {
            kernels_->f16_gemm((const uint16_t*)w.data, cols, a, b, xr.data(), T, y, rows);
          });
        } else {
          // F32 projections (rare): each product exact in double, the sum rounded per step, as the reference.
          const float* f = (const float*)w.data;
          for (int64_t r = b0; r < b1; r++)
            for (int64_t t = 0; t < T; t++) {
              float acc = 0.0f;
              for (int64_t c = 0; c < cols; c++) acc = (float)((double)acc + (double)f[r * cols + c] * (double)x[t * cols + c]);
              y[t * rows + r] = acc;
            }
        }
        if (op.scale >= 0) {
          const float s = tensors_[op.scale].scalar;
          for (int64_t t = 0; t < T; t++)
            for (int64_t r = b0; r < b1; r++) y[t * rows + r] *= s;
        }
      }
      return;
    }
    case OP_ROPE: {
      const int64_t hd = cfg_.head_dim, n_rot = cfg_.n_rot, half = n_rot / 2;
      const int64_t width = op.heads * hd;
      const float* x = buf(op.in0);
      float* y = buf(op.out);
      share(T, tid, nth, b0, b1);
      std::vector<float> cs((size_t)half), sn((size_t)half);
      const float theta_scale = (float)std::pow((double)cfg_.rope_base, (double)(-2.0f / (float)n_rot));
      for (int64_t t = b0; t < b1; t++) {
        float theta = (float)positions_[t];
        for (int64_t i = 0; i < half; i++) {
          cs[(size_t)i] = (float)std::cos((double)theta);
          sn[(size_t)i] = (float)std::sin((double)theta);
          theta = theta * theta_scale;
        }
        for (int64_t h = 0; h < op.heads; h++) {
          const float* xi = x + t * width + h * hd;
          float* yo = y + t * width + h * hd;
          for (int64_t i = 0; i < half; i++) {
            const float x0 = xi[i], x1 = xi[i + half];
            yo[i] = x0 * cs[(size_t)i] - x1 * sn[(size_t)i];
            yo[i + half] = x0 * sn[(size_t)i] + x1 * cs[(size_t)i];
          }
          for (int64_t i = n_rot; i < hd; i++) yo[i] = xi[i];
        }
      }
      return;
    }
    case OP_ATTENTION: {
      const int64_t hd = cfg_.head_dim, nh = cfg_.n_head, nkv = cfg_.n_head_kv, kvw = hd * nkv;
      const float* q = buf(op.in0);
      const float* k = buf(op.in1);
      const float* v = buf(op.in2);
      float* out = buf(op.out);
      // Phase 1: store the batch's keys and values (f16, like llama.cpp's default cache), split
      // by (token, kv head) so a single decoded token is still shared across threads.
      share(T * nkv, tid, nth, b0, b1);
      uint16_t* k16 = (uint16_t*)scratch_[(size_t)tid].data();
      for (int64_t p = b0; p < b1; p++) {
        const int64_t t = p / nkv, kh = p % nkv;
        Sequence* s = owners_[(size_t)t];
        const int64_t pos = positions_[t];
        kernels_->to_f16(k + t * kvw + kh * hd, k16, hd);
        uint16_t* kd = s->k[(size_t)op.layer].data() + kh * hd * s->capacity + pos;
        for (int64_t j = 0; j < hd; j++) kd[j * s->capacity] = k16[j];
        kernels_->to_f16(v + t * kvw + kh * hd, s->v[(size_t)op.layer].data() + pos * kvw + kh * hd, hd);
      }
      pool_->barrier().wait();
      // Phase 2: (token, head) pairs split across threads.
      const int64_t group = nh / nkv;
      const float scale = (float)(1.0 / std::sqrt((double)hd));
      float* scores = scratch_[(size_t)tid].data();
      std::vector<float> qh((size_t)hd);
      share(T * nh, tid, nth, b0, b1);
      for (int64_t p = b0; p < b1; p++) {
        const int64_t t = p / nh, h = p % nh, kvh = h / group;
        const int64_t len = positions_[t] + 1;
        const Sequence* s = owners_[(size_t)t];
        const uint16_t* keys = s->k[(size_t)op.layer].data();
        const uint16_t* vals = s->v[(size_t)op.layer].data();
        kernels_->round_f16(q + t * d + h * hd, qh.data(), hd);
        kernels_->attn_scores(qh.data(), keys + kvh * hd * s->capacity, s->capacity, hd, len, scores);
        float max = -INFINITY;
        for (int64_t j = 0; j < len; j++) {
          scores[j] = scores[j] * scale;
          max = std::max(max, scores[j]);
        }
        for (int64_t j = 0; j < len; j++) scores[j] = scores[j] - max;
        kernels_->exp(scores, scores, len);
        double sum = 0.0;
        for (int64_t j = 0; j < len; j++) sum += (double)scores[j];
        const float inv = (float)(1.0 / sum);
        for (int64_t j = 0; j < len; j++) scores[j] = scores[j] * inv;
        kernels_->round_f16(scores, scores, len);
        kernels_->attn_values(scores, vals + kvh * hd, kvw, hd, len, out + t * d + h * hd);
      }
      return;
    }
    case OP_ADD: {
      const int64_t n = T * cfg_.buffer_widths[(size_t)op.out];
      const float* a = buf(op.in0);
      const float* b = buf(op.in1);
      float* y = buf(op.out);
      share(n, tid, nth, b0, b1);
      for (int64_t i = b0; i < b1; i++) y[i] = a[i] + b[i];
      return;
    }
    case OP_GLU: {
      const int64_t n = T * cfg_.buffer_widths[(size_t)op.out];
      const float* g = buf(op.in0);
      const float* u = buf(op.in1);
      float* y = buf(op.out);
      share(n, tid, nth, b0, b1);
      if (op.act == 0) {
        kernels_->relu2_glu(g + b0, u + b0, y + b0, b1 - b0);
      } else {
        // silu(g)·u = g / (1 + exp(−g)) · u, with exp evaluated as the reference does.
        for (int64_t i = b0; i < b1; i++) y[i] = -g[i];
        kernels_->exp(y + b0, y + b0, b1 - b0);
        for (int64_t i = b0; i < b1; i++) {
          const float sg = g[i] / (1.0f + y[i]);
          y[i] = sg * u[i];
        }
      }
      return;
    }
    case OP_OUTPUT: {
      const Tensor& w = tensors_[op.weight];
      const int64_t rows = (int64_t)logit_rows_.size();
      if (rows == 0) return;
      const float* x = buf(op.in0);
      const int64_t vocab = w.ne1, cols = w.ne0;
      // Phase 1: the activation rows that need logits, in the head's dot type.
      share(rows, tid, nth, b0, b1);
      for (int64_t r = b0; r < b1; r++) {
        const float* xt = x + logit_rows_[(size_t)r] * cols;
        if (w.type == T_Q8_0) {
          quantize_q8_0(xt, head_q_.data() + r * (cols / 32), cols);
        } else {
          if (w.type == T_F16) {
            kernels_->round_f16(xt, head_x_.data() + r * cols, cols);
          } else {
            std::memcpy(head_x_.data() + r * cols, xt, (size_t)cols * 4);
          }
        }
      }
      pool_->barrier().wait();
      // Phase 2: vocabulary rows split across threads.
      share(vocab, tid, nth, b0, b1);
      if (b0 < b1) {
        if (w.type == T_F16) {
          for_row_tiles(b0, b1, cols * 2, rows, [&](int64_t a, int64_t b) {
            kernels_->f16_gemm((const uint16_t*)w.data, cols, a, b, head_x_.data(), rows, logits_, vocab);
          });
        } else if (w.type == T_Q8_0) {
          for_row_tiles(b0, b1, cols / 32 * (int64_t)sizeof(BlockQ8_0), rows, [&](int64_t a, int64_t b) {
            kernels_->q8_0_gemm((const BlockQ8_0*)w.data, cols, a, b, head_q_.data(), rows, logits_, vocab);
          });
        } else {
          // F32, BF16 and Q6_K heads: dequantize one vocabulary row at a time and take f32 dot
          // products, each product exact in double and the sum rounded once per step (the
          // reference backend's order). Slower than a quantized dot, but exact to the reference.
          float* row = scratch_[(size_t)tid].data();
          for (int64_t v = b0; v < b1; v++) {
            dequant_row(w, v, row);
            for (int64_t r = 0; r < rows; r++) {
              const float* xr = head_x_.data() + r * cols;
              float acc = 0.0f;
              for (int64_t c = 0; c < cols; c++) acc = (float)((double)acc + (double)row[c] * (double)xr[c]);
              logits_[r * vocab + v] = acc;
            }
          }
        }
      }
      return;
    }
    default:
      return;
  }
}

}  // namespace bitnet
