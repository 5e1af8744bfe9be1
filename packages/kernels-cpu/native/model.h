// ---------------------------------------------------------------------------------------------
// The native model: the GGUF file mapped read-only, the forward graph compiled to an execution
// plan over reusable buffer slots, per-sequence f16 KV caches, and a thread pool that runs a
// whole step (all ops of all layers for a batch of tokens) per call.
//
// model_load.cc builds it (mapping or reading the file, repacking, validating tensor shapes and
// types, naming each op's kernel); model_step.cc runs it (buffers, the step, every op, the KV
// caches). This header is what the two share.
// ---------------------------------------------------------------------------------------------
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <unordered_map>
#include <vector>
#include "file_map.h"
#include "kernels.h"
#include "platform.h"
#include "threadpool.h"
#include "work_steal.h"

namespace bitnet {

enum OpKind : int32_t { OP_EMBED = 0, OP_RMS_NORM = 1, OP_LINEAR = 2, OP_ROPE = 3, OP_ATTENTION = 4, OP_ADD = 5, OP_GLU = 6, OP_OUTPUT = 7 };

struct TensorSpec {
  std::string name;
  int32_t type;
  int64_t ne0, ne1;
  uint64_t offset;  // absolute offset in the file
  uint64_t bytes;
};

struct OpSpec {
  int32_t kind;
  int32_t in0 = -1, in1 = -1, in2 = -1;  // buffer ids
  int32_t out = -1;
  int32_t weight = -1;  // tensor index
  int32_t scale = -1;   // tensor index of an optional [1] scale
  int32_t heads = 0;
  int32_t layer = 0;
  int32_t act = 0;  // 0 relu2, 1 silu
};

struct ModelConfig {
  std::string path;
  int64_t n_embd, n_layer, n_ff, n_head, n_head_kv, head_dim, n_rot, vocab, context;
  float rope_base, eps;
  std::vector<TensorSpec> tensors;
  std::vector<OpSpec> ops;
  std::vector<int64_t> buffer_widths;  // per buffer id
  int threads = 1;
  int max_batch = 256;
  std::string kernel_path = "auto";
  // The output head requantized at load to this type (T_Q8_0 or T_Q6_K) and run on its quantized
  // kernel; -1 keeps the file's head.
  int32_t head_type = -1;
  // TQ1_0 weights read as they are (1.69 bits per weight; decode unpacks them in registers,
  // multi-token steps convert a row tile at a time) instead of repacked to TQ2_0 at load.
  bool tq1_direct = false;
  // true: tensor data is read in place from the read-only mapping of the file (default).
  // false: tensor data is read into anonymous memory backed by transparent huge pages
  // (llama.cpp's --no-mmap): more resident memory for the process, faster streaming reads.
  bool use_mmap = true;
};

// Memory of a tensor converted at load (repacked TQ1_0, BF16 as F32, a requantized head): 2 MiB
// aligned and advised for transparent huge pages before it is first written. (A std::vector's
// zero-fill faulted it in 4 KiB pages: prefill over the repacked TQ1_0 weights of bench-tq1 ran
// at 67 t/s against 95-100 t/s from the file's own mapping, TLB misses on every tile.)
class OwnedBuffer {
 public:
  explicit OwnedBuffer(size_t bytes) : bytes_(bytes) {
    constexpr size_t kHuge = (size_t)2 << 20;
    data_ = alloc_aligned(kHuge, (bytes + kHuge - 1) / kHuge * kHuge);
    if (data_ == nullptr) throw std::bad_alloc();
    advise_huge_pages(data_, bytes);
  }
  OwnedBuffer(OwnedBuffer&& o) noexcept : data_(o.data_), bytes_(o.bytes_) { o.data_ = nullptr; }
  OwnedBuffer(const OwnedBuffer&) = delete;
  OwnedBuffer& operator=(const OwnedBuffer&) = delete;
  OwnedBuffer& operator=(OwnedBuffer&&) = delete;
  ~OwnedBuffer() { std::free(data_); }
  uint8_t* data() const { return data_; }
  size_t size() const { return bytes_; }

 private:
  uint8_t* data_ = nullptr;
  size_t bytes_ = 0;
};

struct Tensor {
  int32_t type;  // after repacking
  int64_t ne0, ne1;
  const uint8_t* data;
  float scalar;  // value of [1]-shaped F32 tensors
};

// Load progress: the phase ("map", "prefault", "read", "repack") and bytes done of total. Called
// from the loading thread and the pool's workers (one at a time), at most a dozen times a phase.
using LoadProgress = std::function<void(const char* phase, uint64_t done, uint64_t total)>;

// Shared by loading (the Q8_0 head requantization) and execution (embedding lookup, output head).
// ggml quantize_row_q8_0_ref for one row of n (a multiple of 32) values.
void quantize_q8_0(const float* x, BlockQ8_0* y, int64_t n);
// ggml quantize_row_q6_K_ref for one row of n (a multiple of 256) values (kQ6KBlockBytes per 256).
void quantize_q6_k(const float* x, uint8_t* y, int64_t n);
// Dequantizes row `row` of an embedding-like table (F32, F16, BF16, Q8_0, Q6_K) into f32.
void dequant_row(const Tensor& t, int64_t row, float* out);

// Positions per block of the key cache (Model::ensure_capacity says how the cache is laid out).
constexpr int64_t kKeyBlock = 32;
inline int64_t round_up_blocks(int64_t positions) { return (positions + kKeyBlock - 1) / kKeyBlock * kKeyBlock; }
// A one-token step attends with Model::attend_one_token from this many positions (where it
// starts to gain with 2 threads: Model::attends_by_work).
constexpr int64_t kSplitAttentionFrom = 256;
// Bytes of the next one-token step's first weights the threads ask L2 for while they wait for
// that step, shared between them (Model::warm_between_steps; BITNET_DECODE_WARM_BETWEEN_BYTES
// overrides). On a Zen 5 VM, two threads, bench-i2s: the step's first three projection groups
// (11 MiB of weights) took 296 and 284 µs a token with none, 271 and 216 with 8 MiB, 224 and 203
// with 16 MiB, 274 and 219 with 32 MiB (runs alternating).
constexpr int64_t kBetweenStepsBytes = 16 << 20;

// A sequence's KV cache lies in one reservation of address space for the whole context (laid out
// as Model::ensure_capacity says), whose pages the OS backs as positions are first written: the
// cache never moves, so reaching a longer context copies nothing and stalls no step.
struct Sequence {
  int64_t length = 0;
  int64_t capacity = 0;  // positions the cache has been asked to hold: whole key blocks, the high-water mark
  PageReservation kv;    // per layer: keys, then values, each n_head_kv × kv_stride positions × head_dim f16
};

class Model {
 public:
  // Builds the model (the slow part: mapping and prefaulting or reading the file, repacking).
  // Throws std::runtime_error saying what failed and where; a throw leaves nothing allocated.
  explicit Model(ModelConfig config, const LoadProgress& progress = {});
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  void create_sequence(int32_t id);
  void free_sequence(int32_t id);
  void fork_sequence(int32_t src, int32_t dst);
  void truncate_sequence(int32_t id, int64_t length);

  // One forward step. tokens/seqs/positions: T entries; want_logits: T flags; logits: rows × vocab.
  // capture: buffer ids to copy out (each into capture_out[i], T × width floats).
  // inject: buffer ids whose values are replaced (from inject_data[i], T × width floats) right
  // before each op that reads them — op-by-op checks against another backend's intermediates.
  void step(const int32_t* tokens, const int32_t* seqs, const int32_t* positions, int64_t T, const uint8_t* want_logits,
            float* logits, const std::vector<int32_t>& capture, const std::vector<float*>& capture_out,
            const std::vector<int32_t>& inject = {}, const std::vector<const float*>& inject_data = {});

  const char* kernel_name() const { return use_amx_ ? "amx" : kernels_->name; }
  // Kernel ids executed so far and how often.
  std::map<std::string, int64_t> kernel_counts() const;
  // Wall time per op kind (ns, measured on worker 0), for profiling.
  std::map<std::string, int64_t> op_times() const;
  uint64_t mapped_bytes() const { return map_ != nullptr ? map_size_ : 0; }
  // Bytes of the mapping held in 2 MiB page-table entries (see file_map.h).
  uint64_t huge_mapped_bytes() const { return pmd_mapped_bytes(file_map_); }
  // Cached bytes the load dropped so that partly cached 2 MiB ranges came back in 2 MiB folios.
  uint64_t reread_bytes() const { return file_map_.reread_bytes; }
  uint64_t loaded_bytes() const { return loaded_size_; }
  uint64_t repacked_bytes() const { return repacked_bytes_; }
  int threads() const { return pool_->size(); }
  // KV cache bytes per token of one sequence: n_layer × (K and V) × n_head_kv × head_dim × f16.
  uint64_t kv_bytes_per_token() const { return (uint64_t)(cfg_.n_layer * 2 * cfg_.n_head_kv * cfg_.head_dim * 2); }
  // KV cache bytes held for all sequences (their capacities, not their lengths): what their pages
  // take once written.
  uint64_t kv_allocated_bytes() const { return kv_allocated_.load(std::memory_order_relaxed); }
  // KV cache memory of freed sequences kept for the next new one (not in kv_allocated_bytes).
  uint64_t kv_spare_bytes() const { return kv_spare_.load(std::memory_order_relaxed); }
  // Activation buffers, quantization and attention scratch, as allocated now (grows with the
  // largest step seen).
  uint64_t scratch_bytes() const { return scratch_bytes_.load(std::memory_order_relaxed); }
  // Ops a step runs inside their consumers (one token or several), by kind ("rms_norm", "glu",
  // "add", "rope"; see plan_decode_fusion); empty with BITNET_DECODE_FUSE=0.
  std::map<std::string, int64_t> decode_fused_ops() const;

 private:
  // model_load.cc
  void load(const LoadProgress& progress, const char*& stage);
  void release();
  // model_step.cc
  void prepare_execution();
  void count_scratch();
  void plan_buffers();
  void reserve_batch(int64_t T);
  void run_op(const OpSpec& op, int tid, int nth, int64_t T, RowSteal* steal);
  bool amx_eligible(const Tensor& w, int64_t T) const;
  void prefetch_next_weights(size_t i, int tid, int nth);
  // The element-wise work of the small ops, shared by run_op and the fused one-token prologue.
  void rms_norm_row(const OpSpec& op, const float* x, int64_t n, float* y) const;
  void glu_range(const OpSpec& op, const float* g, const float* u, float* y, int64_t n) const;
  void rope_head(const float* x, float* y, int64_t t) const;
  void plan_decode_fusion();
  // Token t's row of a fused norm's output (the norm, and the fused GLU or add before it,
  // computed on this thread).
  const float* fused_prologue(int32_t norm_op, int tid, int64_t t = 0);
  int32_t fused_norm(int32_t input) const;
  void share_attention_pairs(int64_t T, int tid, int nth, int64_t& b0, int64_t& b1) const;
  void attention_query(const float* q, bool rotate_q, int64_t t, int64_t h, float* dest) const;
  void attention_scores(const float* qh, int64_t rows, const uint16_t* keys, int64_t len, float* scores) const;
  void attention_scores(const float* qh, int64_t rows, const uint16_t* keys, int64_t j0, int64_t len, int64_t stride,
                        float* scores) const;
  // One token's attention split across threads by its work rather than by its heads (decode deep
  // in a context): see attend_one_token in model_step.cc.
  void attend_one_token(const OpSpec& op, const float* q, bool rotate_q, float* out, int tid, int nth);
  bool attends_by_work(int64_t T) const;
  // Attention of a prompt's tokens in tiles (attention_tiles_), each against one KV head at a time.
  void attend_token_tiles(const OpSpec& op, const float* q, bool rotate_q, float* out, int tid, int nth);
  bool warm_weights(int tid);
  // Per thread: the weights it will stream next that it may still ask L2 for while it waits at
  // a barrier (see warm_weights), [next, end).
  struct alignas(64) WarmCursor {
    const uint8_t* next = nullptr;
    const uint8_t* end = nullptr;
  };
  std::vector<WarmCursor> warm_;

 public:
  // Between one-token steps (called by each thread of the pool while it waits for the next step):
  // asks L2 for 4 KiB more of the weights this thread will stream first in the next step. False
  // when there is nothing (more) to ask for.
  bool warm_between_steps(int tid);
  // Bytes of weights all threads have asked L2 for between steps since the load.
  uint64_t warmed_between_steps() const;

 private:
  // Per thread: the starts of its shares of the first matrix ops of a one-token step, armed at the
  // end of each such step (arm_between_steps) and asked for by warm_between_steps. Each entry is
  // touched by its own thread only.
  struct alignas(64) BetweenCursor {
    struct Range {
      const uint8_t* begin;
      const uint8_t* end;
    };
    Range ranges[8];
    int count = 0, at = 0;
    const uint8_t* next = nullptr;
    std::atomic<int64_t> asked{0};  // bytes asked for so far (warmed_between_steps)
    BetweenCursor() = default;
    BetweenCursor(const BetweenCursor&) : BetweenCursor() {}
  };
  std::vector<BetweenCursor> between_;
  int64_t between_bytes_ = 0;
  void arm_between_steps(int tid, int nth);
  template <typename F>
  void for_each_share_range(size_t j, int tid, int nth, F&& f) const;
  int64_t group_rows(size_t i) const;
  void linear_rows(const OpSpec& op, int tid, int64_t T, int kind, const std::vector<float>& xr, int64_t b0, int64_t b1);
  float* buf(int32_t id) { return slots_[slot_of_[id]].data(); }
  void ensure_capacity(Sequence& s, int64_t needed);
  bool adopt_spare_kv(Sequence& s, int64_t needed);
  // A fresh KV cache reservation for one sequence (throws std::runtime_error when refused).
  PageReservation reserve_kv() const;
  // Positions between one KV head's keys (or values) and the next: the context in whole key blocks.
  int64_t kv_stride() const { return round_up_blocks(cfg_.context); }
  // Layer `layer`'s keys (n_head_kv × kv_stride() × head_dim, blocked) and values of sequence s.
  uint16_t* layer_keys(const Sequence& s, int64_t layer) const {
    return (uint16_t*)s.kv.data() + layer * 2 * cfg_.n_head_kv * cfg_.head_dim * kv_stride();
  }
  uint16_t* layer_values(const Sequence& s, int64_t layer) const {
    return layer_keys(s, layer) + cfg_.n_head_kv * cfg_.head_dim * kv_stride();
  }

  ModelConfig cfg_;
  const Kernels* kernels_;
  std::unique_ptr<ThreadPool> pool_;
  FileMap file_map_;
  uint8_t* map_ = nullptr;  // file_map_.data: the file's bytes (use_mmap)
  uint64_t map_size_ = 0;
  uint8_t* loaded_ = nullptr;  // anonymous copy of the tensors (use_mmap = false)
  uint64_t loaded_size_ = 0;
  std::vector<Tensor> tensors_;
  std::vector<OwnedBuffer> owned_;  // repacked tensors
  uint64_t repacked_bytes_ = 0;
  std::vector<int32_t> slot_of_;
  std::vector<AlignedVector<float>> slots_;
  std::vector<int64_t> slot_width_;
  int64_t max_width_ = 0;  // widest linear input
  int64_t batch_capacity_ = 0;  // tokens the per-token buffers hold now
  std::unordered_map<int32_t, Sequence> seqs_;
  // Caches of freed sequences, newest last, at most one full-context sequence's bytes in all:
  // a new sequence takes one over instead of asking the OS for fresh pages, whose first touch
  // costs ~13 µs per 4 KiB page in a VM that hands freed memory back to its host (17-21 ms for
  // the 4.9 MB of a 64-token cache of the 2B-4T shape, charged to a new sequence's first step).
  std::vector<Sequence> spare_kv_;
  // Read by info() on the JS thread while a step may grow a cache or a buffer on a worker.
  std::atomic<uint64_t> kv_allocated_{0};
  std::atomic<uint64_t> kv_spare_{0};
  std::atomic<uint64_t> scratch_bytes_{0};
  // Kernel ids (interned) and their call counts; per op the id of its vector-path kernel and of
  // its AMX variant; per op kind the accumulated wall time.
  std::vector<std::string> kernel_names_;
  std::vector<int64_t> kernel_calls_;
  int32_t attention_split_kernel_ = 0;  // kernel_names_' id of attend_one_token
  std::vector<int32_t> op_kernel_id_, op_kernel_amx_;
  std::vector<std::string> op_kind_names_;
  std::vector<int64_t> op_ns_;
  std::vector<int32_t> op_kind_id_;

  // Per-step state.
  const int32_t* tokens_ = nullptr;
  const int32_t* seq_ids_ = nullptr;
  const int32_t* positions_ = nullptr;
  const uint8_t* want_ = nullptr;
  float* logits_ = nullptr;
  std::vector<Sequence*> owners_;
  std::vector<int64_t> logit_rows_;
  // This step's attention tiles: runs of up to attention_tile_tokens_ consecutive tokens of one
  // sequence at consecutive positions, as their first tokens and then T (empty: one token at a
  // time, as a short step splits its heads across threads).
  std::vector<int64_t> attention_tiles_;
  int64_t attention_tile_tokens_ = 4;
  // One-token steps attend to this many positions or more with attend_one_token (0: never), and
  // its query heads' scores, shared by the threads (n_head × context).
  int64_t split_attention_from_ = kSplitAttentionFrom;
  AlignedVector<float> split_scores_;
  // Quantized activations of the last quantized buffer (shared by q/k/v and gate/up).
  // Each thread tracks which buffer q_ holds (the same value on every thread, kept per thread so
  // no thread reads it while another updates it).
  std::vector<int32_t> quant_buffer_;
  std::vector<int32_t> quant_kind_;
  std::vector<AlignedVector<int8_t>> quant_tmp_;  // per thread, one row in natural order
  AlignedVector<int8_t> q_;
  std::vector<float> q_scale_;
  std::vector<int32_t> q_sum_;
  // One token (decode): every thread quantizes the input itself into its own copy, so no thread
  // waits at a barrier for another to quantize it (see run_op).
  struct LocalQuant {
    AlignedVector<int8_t> q;
    std::vector<float> scale;
    std::vector<int32_t> sum;
  };
  std::vector<LocalQuant> local_quant_;
  // Steps run the small ops between two projections inside their consumers, on every thread,
  // instead of between barriers of their own (see plan_decode_fusion; a step of several tokens
  // runs a prologue per token, on the thread that quantizes that token):
  //   FUSE_NORM  an RMS norm read only by projections: each thread normalizes the row itself
  //              before it quantizes it (fused_prologue); the op does nothing.
  //   FUSE_GLU   a relu² GLU read only by such a norm: computed in the same prologue.
  //   FUSE_ADD   a residual add read next by such a norm: still run, but no barrier follows;
  //              the prologue adds the two rows itself (the same bits), or, where the
  //              projection before the add ran it (epilogue_add_), reads its sum.
  //   FUSE_ROPE  a RoPE read only by attention: each thread rotates the heads it reads there.
  // The fused ops' inputs stay allocated until their consumers run (plan_buffers).
  enum Fusion : uint8_t { FUSE_NONE = 0, FUSE_NORM, FUSE_GLU, FUSE_ADD, FUSE_ROPE };
  std::vector<uint8_t> fusion_;     // per op
  std::vector<int64_t> fused_until_;  // per op: the last op that reads its inputs when fused
  std::vector<int32_t> producer_;   // per buffer id: the op that writes it, −1 for none
  // Per op: the residual add (its op index) that a projection computes on the rows it has just
  // written, instead of a pass of its own after the barrier; −1 for none (see plan_decode_fusion).
  std::vector<int32_t> epilogue_add_;
  // Whether op i is an add that its projection (op i − 1) runs in its epilogue.
  bool in_epilogue(int32_t i) const { return i > 0 && epilogue_add_[(size_t)i - 1] == i; }
  bool fuse_decode_ = true;         // BITNET_DECODE_FUSE=0 turns the fusion off
  bool fused_step_ = false;         // this step runs fused (nothing copied in or out)
  std::vector<AlignedVector<float>> prologue_;  // per thread: a fused norm's input and output rows
  int64_t prologue_width_ = 0;
  // The quantized input the kernels of a projection read on thread tid.
  struct QuantView {
    const int8_t* q;
    const float* scale;
    const int32_t* sum;
  };
  QuantView quant_view(int tid, int64_t T) const;
  // AMX prefill: activations packed into B tiles.
  bool use_amx_ = false;
  AlignedVector<int8_t> q_tiles_;
  AlignedVector<float> head_x_;
  // RoPE's cos and sin for each token of the step, [T][n_rot / 2] each: every layer rotates by
  // the same angles, so they are computed once per step (fill_rope_table), not once per op.
  std::vector<float> rope_cos_, rope_sin_;
  void fill_rope_table(int64_t T);
  std::vector<BlockQ8_0> head_q_;
  // A Q6_K head on its Q6_K × Q8_K kernel (head_type Q6_K): the logit rows as Q8_K.
  bool head_q6k_kernel_ = false;
  AlignedVector<int8_t> head_q8k_;
  std::vector<float> head_q8k_d_;
  std::vector<int32_t> head_q8k_sum_;
  std::vector<int16_t> head_q8k_bsum16_;
  std::vector<AlignedVector<float>> scratch_;  // per thread
  std::vector<AlignedVector<BlockTQ2>> tq1_tile_;  // per thread: a TQ1_0 row tile as TQ2_0 (tq1_direct)
  // Per (op, thread): the rows of a matrix op not yet claimed (work_steal.h), set each step.
  std::unique_ptr<RowSteal[]> row_steal_;
  // Per op, this step: one past the last op of the group it starts (a lone op: i + 1); 0 for an
  // op run by its group's first (see Model::step).
  std::vector<size_t> group_end_;
  size_t row_steal_size_ = 0;
  bool steals_rows(const OpSpec& op, int64_t T) const;
  RowSteal* row_steal_of(size_t op_index) { return &row_steal_[op_index * (size_t)pool_->size()]; }
};

}  // namespace bitnet
