// A compiled model on an executor (exec.h): its weights in executor memory, the graph's ops,
// the per-sequence KV caches, and one forward step per call. Written once for the GPU and the
// host twins.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "exec.h"

namespace bitnet_cuda {

enum class WeightKind : int { I2S = 0, TQ2 = 1, F16 = 2, F32 = 3, Scalar = 4 };
enum class OpKind : int { Embed = 0, RmsNorm = 1, Linear = 2, Rope = 3, Attention = 4, Add = 5, Glu = 6, Output = 7 };

struct HParams {
  int64_t n_embd = 0, n_layer = 0, n_head = 0, n_head_kv = 0, head_dim = 0, n_rot = 0, vocab = 0;
  int64_t context = 0, max_batch = 0;
  double rope_base = 10000;
  float rms_eps = 1e-5f;
};

struct OpSpec {
  OpKind kind;
  int in0 = -1, in1 = -1, in2 = -1, out = -1, weight = -1, scale = -1, heads = 0, layer = 0;
  Act act = Act::Relu2;
};

struct Weight {
  WeightKind kind = WeightKind::F32;
  int64_t rows = 0, cols = 0;
  void* data = nullptr;      // codes (I2S, TQ2) or values (F16, F32)
  float* scales = nullptr;   // TQ2: rows × cols/256 block scales
  float scalar = 1.0f;       // I2S: the tensor scale; Scalar: the value
  uint64_t bytes = 0;
};

struct Sequence {
  int64_t capacity = 0;
  std::vector<uint16_t*> k, v;  // per layer, capacity × kv_width f16
};

struct MemoryInfo {
  uint64_t weight_bytes = 0, scratch_bytes = 0, kv_bytes = 0, free_bytes = 0, total_bytes = 0;
};

class Model {
 public:
  Model(std::unique_ptr<Exec> exec, HParams hp, std::vector<OpSpec> ops, std::vector<int64_t> widths, int n_weights);
  ~Model();
  // Uploads weight `index` (bytes: the codes or values; scales: TQ2 block scales).
  void set_weight(int index, WeightKind kind, int64_t rows, int64_t cols, const void* bytes, uint64_t n_bytes,
                  const float* scales, int64_t n_scales, float scalar);
  // Checks every op's weights and allocates the step's scratch; call once after the weights.
  void finish();

  void create_sequence(int id);
  void fork_sequence(int from, int to);
  void free_sequence(int id);
  // One forward step over T tokens. Each token with want[t] != 0 has a logit row r (in order):
  // with row_k[r] > 0 (at most kMaxDeviceTopK) its top-k is selected on the executor and only the
  // ids and values come back, into top[r·2·kMaxDeviceTopK …] (ids, then values as f32 bits);
  // otherwise (or row_k null) the whole row comes back into logits[r·vocab …], which then must
  // hold every row. capture: buffer ids whose T × width values are copied into `captured` (in
  // order); inject: buffer ids overwritten with the given values right before the first op that
  // reads them.
  void step(const int32_t* tokens, const int32_t* seqs, const int32_t* positions, const uint8_t* want, int64_t T,
            float* logits, const int32_t* row_k, int32_t* top, const std::vector<int>& capture,
            const std::vector<float*>& captured, const std::vector<int>& inject,
            const std::vector<const float*>& injected);

  MemoryInfo memory() const;
  // Per op, 1 where the op runs inside another's launch in steps that inject no buffers: residual
  // adds and GLUs inside the norm after them, a layer's two RoPEs with its k/v stores (after
  // finish()).
  std::vector<uint8_t> fused_ops() const;
  // Values per token of buffer `id`, or −1 when there is no such buffer.
  int64_t buffer_width(int id) const { return id >= 0 && (size_t)id < widths_.size() ? widths_[(size_t)id] : -1; }
  int64_t kv_bytes_per_token() const { return 2 * hp_.n_layer * hp_.n_head_kv * hp_.head_dim * 2; }
  const char* exec_name() const { return exec_->name(); }

 private:
  void* take(size_t bytes, const char* what);
  // The graph's ops in order (recorded instead of run when `recording`).
  void run_ops(int64_t T, float* logits, int32_t* top, const std::vector<int32_t>& rows,
               const std::vector<int32_t>& ks, bool recording,
               const std::vector<int>& capture, const std::vector<float*>& captured, const std::vector<int>& inject,
               const std::vector<const float*>& injected);
  void ensure_capacity(Sequence& s, int64_t positions);
  float* buffer(int id) { return slots_[slot_of_[id]]; }

  std::unique_ptr<Exec> exec_;
  HParams hp_;
  std::vector<OpSpec> ops_;
  std::vector<int64_t> widths_;
  std::vector<Weight> weights_;
  std::map<int, Sequence> seqs_;
  // Buffers share slots where their lives do not overlap (assigned in finish()).
  std::vector<int> slot_of_;
  std::vector<float*> slots_;
  std::vector<std::vector<int>> inputs_of_;
  std::vector<int> group_size_;  // per op: projections launched with it (1: alone; 0: run by an earlier one)
  std::vector<int> quantized_reader_;  // per op: for a norm, the ternary projection it quantizes for
  std::vector<bool> add_then_norm_;    // per op: an add run together with the norm after it
  std::vector<bool> glu_then_norm_;    // per op: a GLU run inside the norm after it
  // Per op: for the first of a layer's two RoPE ops (q, then k), the attention op after them, whose
  // k and v stores run in the same launch (rope_kv_store); -1 otherwise.
  std::vector<int> rope_attention_;
  // Step scratch.
  int8_t* q_ = nullptr;
  float* act_scale_ = nullptr;
  int32_t* act_sum_ = nullptr;
  int32_t* tokens_ = nullptr;
  int32_t* positions_ = nullptr;
  int32_t* rows_ = nullptr;
  int32_t* row_k_ = nullptr;    // per logit row: its top-k on the executor, 0 for the whole row
  int32_t* top_out_ = nullptr;  // kHeadRowsPerPass × 2 × kMaxDeviceTopK: ids, then values
  float* cos_ = nullptr;
  float* sin_ = nullptr;
  uint16_t** kptr_ = nullptr;  // n_layer × max_batch
  uint16_t** vptr_ = nullptr;
  float* scores_ = nullptr;
  float* head_in_ = nullptr;
  float* head_out_ = nullptr;
  int64_t max_cols_ = 0;
  uint64_t weight_bytes_ = 0, scratch_bytes_ = 0, kv_bytes_ = 0;
  std::vector<void*> owned_;
  // Page-locked host memory the step's inputs are copied from, and where each lies in it.
  uint8_t* staging_ = nullptr;
  struct {
    size_t tokens = 0, positions = 0, rows = 0, row_k = 0, cos = 0, sin = 0, kptr = 0, vptr = 0;
  } staged_;
  bool finished_ = false;
  bool decode_graph_ = false;  // the executor holds the recorded decode step
  bool graphs_failed_ = false;  // recording failed once: decode runs op by op
};

// Rows of logits the head computes per pass (its output scratch is this × vocab floats).
constexpr int64_t kHeadRowsPerPass = 16;

}  // namespace bitnet_cuda
