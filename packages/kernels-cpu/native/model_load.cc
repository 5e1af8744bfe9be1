// ---------------------------------------------------------------------------------------------
// Model loading: the file mapped read-only (or its tensors read into huge-page memory), TQ1_0
// and BF16 tensors repacked into the layouts the kernels read, the optional Q8_0 output head, and
// the checks of every tensor the ops use (bytes, type, shape). Runs off the JS thread (the
// addon's load worker) and reports its progress in bytes.
// ---------------------------------------------------------------------------------------------
#include "model.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <stdexcept>

#include "platform.h"

namespace bitnet {

namespace {

std::string type_tag(int32_t type) {
  switch (type) {
    case T_F32: return "f32";
    case T_F16: return "f16";
    case T_BF16: return "bf16";
    case T_Q4_0: return "q4_0";
    case T_Q8_0: return "q8_0";
    case T_Q6_K: return "q6_k";
    case T_TQ1_0: return "tq1_0";
    case T_TQ2_0: return "tq2_0";
    case T_I2_S: return "i2_s";
    default: return "t" + std::to_string(type);
  }
}

// Fewest bytes a tensor of `type` with n elements occupies (0: not checked here).
uint64_t min_bytes(int32_t type, int64_t n) {
  switch (type) {
    case T_F32: return (uint64_t)n * 4;
    case T_F16:
    case T_BF16: return (uint64_t)n * 2;
    case T_Q8_0: return (uint64_t)(n / 32) * sizeof(BlockQ8_0);
    case T_Q6_K: return (uint64_t)(n / 256) * 210;
    case T_TQ1_0: return (uint64_t)(n / 256) * sizeof(BlockTQ1);
    case T_TQ2_0: return (uint64_t)(n / 256) * sizeof(BlockTQ2);
    case T_I2_S: return (uint64_t)n / 4 + 4;  // 2-bit codes, then the f32 scale
    default: return 0;
  }
}

// "blk.0.attn_q.weight (i2_s, 2560×2560)", for messages.
std::string describe(const TensorSpec& spec) {
  return spec.name + " (" + type_tag(spec.type) + ", " + std::to_string(spec.ne0) + "×" + std::to_string(spec.ne1) + ")";
}

// BF16 projections run as F32 (converted once at load); the BF16 embedding table stays BF16.
bool bf16_projection(const TensorSpec& spec) {
  return spec.type == T_BF16 && spec.ne1 > 1 && spec.name.find("token_embd") == std::string::npos;
}

// Heads the requantization at load can read (dequant_row's types).
bool requantizable_head(int32_t type) {
  return type == T_F32 || type == T_F16 || type == T_BF16 || type == T_Q8_0 || type == T_Q6_K;
}

// Whether a head of `type` with rows of `cols` values is requantized to `target` at load.
bool requantizes_head(int32_t type, int64_t cols, int32_t target) {
  if (target < 0 || type == target || !requantizable_head(type)) return false;
  return cols % (target == T_Q6_K ? 256 : 32) == 0;
}

// Progress of one phase, in bytes: reports the start, then each further tenth of the total, then
// the end. add() may be called from any pool worker; reports are serialized and never go back.
class PhaseMeter {
 public:
  PhaseMeter(const LoadProgress& progress, const char* phase, uint64_t total)
      : progress_(progress), phase_(phase), total_(total) {
    if (progress_ && total_ > 0) progress_(phase_, 0, total_);
  }
  void add(uint64_t bytes) {
    if (!progress_ || total_ == 0) return;
    const uint64_t done = done_.fetch_add(bytes, std::memory_order_relaxed) + bytes;
    const int step = (int)std::min<uint64_t>(kSteps, done / (total_ / kSteps + 1));
    if (step <= step_.load(std::memory_order_relaxed)) return;
    std::lock_guard<std::mutex> lock(mutex_);
    if (step <= step_.load(std::memory_order_relaxed)) return;
    step_.store(step, std::memory_order_relaxed);
    report(std::min(done_.load(std::memory_order_relaxed), total_));
  }
  void finish() {
    if (!progress_ || total_ == 0) return;
    std::lock_guard<std::mutex> lock(mutex_);
    step_.store(kSteps, std::memory_order_relaxed);
    report(total_);
  }

 private:
  void report(uint64_t done) {  // under mutex_
    if (done <= reported_) return;
    reported_ = done;
    progress_(phase_, done, total_);
  }
  static constexpr int kSteps = 10;
  const LoadProgress& progress_;
  const char* const phase_;
  const uint64_t total_;
  std::atomic<uint64_t> done_{0};
  std::atomic<int> step_{0};
  std::mutex mutex_;
  uint64_t reported_ = 0;
};

// Bytes per pread call when reading tensors (mmap: false), so progress moves within big tensors.
constexpr uint64_t kReadChunk = 32u << 20;

// A file descriptor closed on every way out.
struct OpenFile {
  int fd;
  ~OpenFile() { close(); }
  void close() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};

}  // namespace

Model::Model(ModelConfig config, const LoadProgress& progress) : cfg_(std::move(config)) {
  const char* stage = "starting";  // what load() is doing, for "out of memory while <stage> <path>"
  // On a throw, release() frees what load() took outside the members (the mapping or the loaded
  // copy, the pool's threads); the members free the rest (repacked tensors, buffers).
  try {
    load(progress, stage);
  } catch (const std::bad_alloc&) {
    release();
    throw std::runtime_error(std::string("out of memory while ") + stage + " " + cfg_.path);
  } catch (...) {
    release();
    throw;
  }
}

Model::~Model() { release(); }

void Model::release() {
  pool_.reset();
  unmap_file(file_map_);
  map_ = nullptr;
  std::free(loaded_);
  loaded_ = nullptr;
}

void Model::load(const LoadProgress& progress, const char*& stage) {
  // "amx" is the AVX-512 VNNI kernels plus the AMX prefill GEMM; "auto" picks it when usable.
  const bool want_amx = cfg_.kernel_path == "amx";
  kernels_ = select_kernels(want_amx ? "avx512vnni" : cfg_.kernel_path.c_str());
  if (kernels_ == nullptr || (want_amx && !amx_available())) {
    throw std::runtime_error("kernel path \"" + cfg_.kernel_path + "\" is not available on this CPU");
  }
  use_amx_ = (want_amx || cfg_.kernel_path == "auto") && std::strcmp(kernels_->name, "avx512vnni") == 0 && amx_available();
  stage = "starting the thread pool for";
  // Before the pool: its workers read their cursors between any two jobs.
  between_ = std::vector<BetweenCursor>((size_t)std::max(1, cfg_.threads));
  between_bytes_ = kBetweenStepsBytes;
  // BITNET_DECODE_WARM_BETWEEN_BYTES=<bytes per thread> (0: off) for measurements.
  if (const char* bytes = std::getenv("BITNET_DECODE_WARM_BETWEEN_BYTES")) between_bytes_ = std::max<int64_t>(0, std::atoll(bytes));
  pool_ = std::make_unique<ThreadPool>(cfg_.threads, [this](int tid) { return warm_between_steps(tid); });
  OpenFile file{::open(cfg_.path.c_str(), O_RDONLY)};
  if (file.fd < 0) throw std::runtime_error("could not open " + cfg_.path + ": " + std::strerror(errno));
  struct stat st;
  if (::fstat(file.fd, &st) != 0) throw std::runtime_error("could not stat " + cfg_.path + ": " + std::strerror(errno));
  map_size_ = (uint64_t)st.st_size;

  // ---- check every tensor lies in the file and holds the bytes its shape needs, before any I/O ----
  for (const TensorSpec& spec : cfg_.tensors) {
    if (spec.offset + spec.bytes > map_size_) {
      throw std::runtime_error("tensor " + describe(spec) + " is outside " + cfg_.path + ": bytes " +
                               std::to_string(spec.offset) + "-" + std::to_string(spec.offset + spec.bytes) + " of a " +
                               std::to_string(map_size_) + "-byte file (truncated, or changed since it was read?)");
    }
    const uint64_t need = min_bytes(spec.type, spec.ne0 * spec.ne1);
    if (spec.bytes < need) {
      throw std::runtime_error("tensor " + describe(spec) + " in " + cfg_.path + " has " + std::to_string(spec.bytes) +
                               " bytes; its shape needs " + std::to_string(need));
    }
  }

  // File offset → address of the bytes, whichever way the tensors are held.
  std::vector<uint8_t*> data_of(cfg_.tensors.size(), nullptr);
  if (cfg_.use_mmap) {
    // ---- map the file read-only; tensor data is used in place ----
    stage = "mapping";
    PhaseMeter mapping(progress, "map", map_size_);
    std::unique_ptr<PhaseMeter> prefault;
    const std::string failure = map_file(file.fd, 0, (size_t)map_size_, file_map_, [&](uint64_t bytes) {
      if (!prefault) {
        mapping.finish();
        prefault = std::make_unique<PhaseMeter>(progress, "prefault", map_size_);
      }
      prefault->add(bytes);
    });
    file.close();
    if (!failure.empty()) throw std::runtime_error("could not map " + cfg_.path + ": " + failure);
    if (prefault) prefault->finish();
    map_ = file_map_.data;
    for (size_t i = 0; i < cfg_.tensors.size(); i++) data_of[i] = map_ + cfg_.tensors[i].offset;
  } else {
    // ---- read the tensors into anonymous huge-page memory (llama.cpp's --no-mmap) ----
    stage = "reading";
    const uint64_t huge = 2u << 20;
    uint64_t total = 0, tensor_bytes = 0;
    std::vector<uint64_t> at(cfg_.tensors.size());
    for (size_t i = 0; i < cfg_.tensors.size(); i++) {
      at[i] = total;
      total += (cfg_.tensors[i].bytes + 63) & ~(uint64_t)63;
      tensor_bytes += cfg_.tensors[i].bytes;
    }
    loaded_size_ = (total + huge - 1) / huge * huge;
    loaded_ = alloc_aligned(huge, loaded_size_);
    if (loaded_ == nullptr) {
      throw std::runtime_error("could not allocate " + std::to_string(loaded_size_) + " bytes for the weights of " + cfg_.path);
    }
    advise_huge_pages(loaded_, loaded_size_);
    PhaseMeter reading(progress, "read", tensor_bytes);
    std::string failure;
    std::mutex failure_mutex;
    const int fd = file.fd;
    pool_->run([&](int tid) {
      int64_t b0, b1;
      share((int64_t)cfg_.tensors.size(), tid, pool_->size(), b0, b1);
      for (int64_t i = b0; i < b1; i++) {
        const TensorSpec& spec = cfg_.tensors[(size_t)i];
        uint64_t done = 0;
        while (done < spec.bytes) {
          const uint64_t want = std::min<uint64_t>(spec.bytes - done, kReadChunk);
          const ssize_t n = ::pread(fd, loaded_ + at[(size_t)i] + done, (size_t)want, (off_t)(spec.offset + done));
          if (n < 0 && errno == EINTR) continue;
          if (n <= 0) {
            const std::string why = n < 0 ? std::strerror(errno) : "unexpected end of file";
            std::lock_guard<std::mutex> lock(failure_mutex);
            if (failure.empty()) failure = "could not read tensor " + spec.name + " from " + cfg_.path + ": " + why;
            return;
          }
          done += (uint64_t)n;
          reading.add((uint64_t)n);
        }
      }
    });
    file.close();
    if (!failure.empty()) throw std::runtime_error(failure);
    reading.finish();
    for (size_t i = 0; i < cfg_.tensors.size(); i++) data_of[i] = loaded_ + at[i];
  }

  // ---- bind tensors, repacking only where a kernel needs another layout ----
  stage = "repacking the tensors of";
  uint64_t repack_total = 0;
  for (const TensorSpec& spec : cfg_.tensors) {
    if ((spec.type == T_TQ1_0 && !cfg_.tq1_direct) || bf16_projection(spec)) repack_total += spec.bytes;
  }
  for (const OpSpec& op : cfg_.ops) {
    if (op.kind != OP_OUTPUT || op.weight < 0 || (size_t)op.weight >= cfg_.tensors.size()) continue;
    const TensorSpec& head = cfg_.tensors[(size_t)op.weight];
    const int32_t type = bf16_projection(head) ? T_F32 : head.type;
    if (requantizes_head(type, head.ne0, cfg_.head_type)) repack_total += head.bytes;
  }
  PhaseMeter repacking(progress, "repack", repack_total);
  for (size_t ti = 0; ti < cfg_.tensors.size(); ti++) {
    const TensorSpec& spec = cfg_.tensors[ti];
    Tensor t{spec.type, spec.ne0, spec.ne1, data_of[ti], 0.0f};
    if (spec.type == T_TQ1_0 && !cfg_.tq1_direct) {
      // TQ1_0 (base-3) is decoded once into the TQ2_0 layout the kernels read.
      const int64_t nb = spec.ne0 * spec.ne1 / 256;
      owned_.emplace_back((size_t)nb * sizeof(BlockTQ2));
      BlockTQ2* dst = (BlockTQ2*)owned_.back().data();
      const BlockTQ1* src = (const BlockTQ1*)t.data;
      pool_->run([&](int tid) {
        int64_t b0, b1;
        share(nb, tid, pool_->size(), b0, b1);
        kernels_->tq1_to_tq2(src + b0, dst + b0, b1 - b0);
      });
      repacked_bytes_ += owned_.back().size();
      t.type = T_TQ2_0;
      t.data = owned_.back().data();
      repacking.add(spec.bytes);
    } else if (bf16_projection(spec)) {
      // BF16 projections run as F32.
      owned_.emplace_back((size_t)spec.ne0 * spec.ne1 * 4);
      float* dst = (float*)owned_.back().data();
      const uint16_t* src = (const uint16_t*)t.data;
      for (int64_t i = 0; i < spec.ne0 * spec.ne1; i++) dst[i] = bf16_to_f32(src[i]);
      repacked_bytes_ += owned_.back().size();
      t.type = T_F32;
      t.data = owned_.back().data();
      repacking.add(spec.bytes);
    }
    if (spec.ne0 * spec.ne1 == 1 && spec.type == T_F32) {
      std::memcpy(&t.scalar, t.data, 4);
    }
    tensors_.push_back(t);
  }

  // ---- the optional quantized output head (Q8_0 or Q6_K, requantized once at load) ----
  stage = "requantizing the output head of";
  for (OpSpec& op : cfg_.ops) {
    if (op.kind != OP_OUTPUT || op.weight < 0 || (size_t)op.weight >= tensors_.size()) continue;
    Tensor& head = tensors_[op.weight];
    if (requantizes_head(head.type, head.ne0, cfg_.head_type)) {
      const int64_t rows = head.ne1, cols = head.ne0;
      const bool q6k = cfg_.head_type == T_Q6_K;
      const size_t row_bytes = q6k ? (size_t)(cols / 256 * kQ6KBlockBytes) : (size_t)(cols / 32) * sizeof(BlockQ8_0);
      owned_.emplace_back((size_t)rows * row_bytes);
      uint8_t* dst = owned_.back().data();
      const Tensor src = head;
      // One row of scratch per worker, allocated here: nothing in a pool job may throw.
      std::vector<std::vector<float>> row_of((size_t)pool_->size(), std::vector<float>((size_t)cols));
      pool_->run([&](int tid) {
        int64_t r0, r1;
        share(rows, tid, pool_->size(), r0, r1);
        float* row = row_of[(size_t)tid].data();
        for (int64_t r = r0; r < r1; r++) {
          dequant_row(src, r, row);
          if (q6k) {
            quantize_q6_k(row, dst + r * row_bytes, cols);
          } else {
            quantize_q8_0(row, (BlockQ8_0*)(dst + r * row_bytes), cols);
          }
        }
      });
      repacked_bytes_ += owned_.back().size();
      repacking.add(cfg_.tensors[(size_t)op.weight].bytes);
      // A separate tensor, so the embedding lookup keeps reading the file's rows.
      tensors_.push_back(Tensor{cfg_.head_type, cols, rows, owned_.back().data(), 0.0f});
      op.weight = (int32_t)tensors_.size() - 1;
      if (cfg_.use_mmap && (src.type == T_F16 || src.type == T_F32 || src.type == T_BF16)) {
        // The file's head rows are no longer read for logits; let the kernel drop them from RSS.
        advise_dont_need(src.data, (size_t)(src.ne0 * src.ne1 * (src.type == T_F32 ? 4 : 2)));
      }
    }
    // A Q6_K head, the file's or requantized, runs on the Q6_K × Q8_K kernel, as llama.cpp runs
    // it. That is what mainline llama-quantize writes for TQ1_0/TQ2_0 BitNet models (the tied
    // token_embd as Q6_K), and the reference's f32 dot it used to take by default decoded such a
    // 2B-4T-shaped file at 1.5 tokens/s instead of 34 (AMD Zen 5, 2 threads): 654 ms per token
    // in the head. A file's Q8_0 head takes llama.cpp's Q8_0 × Q8_0 dot the same way.
    const Tensor& used = tensors_[op.weight];  // `head` may dangle after the push_back
    head_q6k_kernel_ = used.type == T_Q6_K && used.ne0 % 256 == 0;
  }
  repacking.finish();

  // ---- validate the shapes the kernels rely on, and name each op's kernel ----
  stage = "checking";
  const std::string path = kernels_->name;
  const int64_t nbuf = (int64_t)cfg_.buffer_widths.size();
  auto tensor_name = [this](int32_t i) {
    return (size_t)i < cfg_.tensors.size() ? cfg_.tensors[(size_t)i].name : std::string("the Q8_0 output head");
  };
  for (size_t oi = 0; oi < cfg_.ops.size(); oi++) {
    const OpSpec& op = cfg_.ops[oi];
    for (int32_t b : {op.in0, op.in1, op.in2, op.out}) {
      if (b >= nbuf) {
        throw std::runtime_error("op " + std::to_string(oi) + " uses buffer " + std::to_string(b) + " of " + std::to_string(nbuf));
      }
    }
    const bool weighted = op.kind == OP_EMBED || op.kind == OP_RMS_NORM || op.kind == OP_LINEAR || op.kind == OP_OUTPUT;
    if ((weighted && op.weight < 0) || op.weight >= (int32_t)tensors_.size() || op.scale >= (int32_t)tensors_.size()) {
      throw std::runtime_error("op " + std::to_string(oi) + " uses tensor " + std::to_string(op.weight) + " of " +
                               std::to_string(tensors_.size()));
    }
    std::string id;
    switch (op.kind) {
      case OP_EMBED: {
        const int32_t type = tensors_[op.weight].type;
        if (type != T_F32 && type != T_F16 && type != T_BF16 && type != T_Q8_0 && type != T_Q6_K) {
          throw std::runtime_error("embedding " + tensor_name(op.weight) + ": type " + type_tag(type) +
                                   " is not supported by the CPU backend");
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
          if (w.ne0 % 128 != 0) {
            throw std::runtime_error("tensor " + tensor_name(op.weight) + ": I2_S rows must be multiples of 128 (it has " +
                                     std::to_string(w.ne0) + ")");
          }
          id = "linear.i2_s.i8";
        } else if (w.type == T_TQ1_0) {
          if (w.ne0 % 256 != 0) {
            throw std::runtime_error("tensor " + tensor_name(op.weight) + ": TQ rows must be multiples of 256 (it has " +
                                     std::to_string(w.ne0) + ")");
          }
          id = "linear.tq1_0.q8_k";
        } else if (w.type == T_TQ2_0) {
          if (w.ne0 % 256 != 0) {
            throw std::runtime_error("tensor " + tensor_name(op.weight) + ": TQ rows must be multiples of 256 (it has " +
                                     std::to_string(w.ne0) + ")");
          }
          // TQ1_0 runs on the TQ2_0 kernels after a lossless repack at load: name both.
          id = cfg_.tensors[(size_t)op.weight].type == T_TQ1_0 ? "linear.tq1_0_as_tq2_0.q8_k" : "linear.tq2_0.q8_k";
        } else if (w.type == T_F16) {
          id = "linear.f16";
        } else if (w.type == T_F32) {
          id = "linear.f32";
        } else {
          throw std::runtime_error("tensor " + tensor_name(op.weight) + ": type " + type_tag(w.type) +
                                   " is not supported for projections by the CPU backend");
        }
        break;
      }
      case OP_OUTPUT: {
        const Tensor& w = tensors_[op.weight];
        if (w.type != T_F16 && w.type != T_Q8_0 && w.type != T_F32 && w.type != T_BF16 && w.type != T_Q6_K) {
          throw std::runtime_error("output head " + tensor_name(op.weight) + ": type " + type_tag(w.type) +
                                   " is not supported by the CPU backend");
        }
        id = "output." + type_tag(w.type) + (head_q6k_kernel_ ? ".q8_k" : "");
        break;
      }
      default:
        throw std::runtime_error("op " + std::to_string(oi) + ": unknown op kind " + std::to_string(op.kind));
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
    // One token's attention split by its work (attend_one_token) counts as its own kernel.
    if (op.kind == OP_ATTENTION) attention_split_kernel_ = intern("cpu." + path + "." + id + ".split");
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
  stage = "allocating the buffers of";
  prepare_execution();
}

}  // namespace bitnet
