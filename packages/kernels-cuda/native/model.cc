#include "model.h"
#include "top_k.cuh"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>

namespace bitnet_cuda {

namespace {
ExecError bad(const std::string& what) { return ExecError(what); }
}  // namespace

Model::Model(std::unique_ptr<Exec> exec, HParams hp, std::vector<OpSpec> ops, std::vector<int64_t> widths,
             int n_weights)
    : exec_(std::move(exec)), hp_(hp), ops_(std::move(ops)), widths_(std::move(widths)) {
  weights_.resize((size_t)n_weights);
}

Model::~Model() {
  try {
    exec_->bind();
  } catch (const std::exception&) {
    // The device is gone: the frees below fail quietly, as they would anyway.
  }
  for (auto& [id, s] : seqs_) {
    for (auto* p : s.k) exec_->release(p);
    for (auto* p : s.v) exec_->release(p);
  }
  for (void* p : owned_) exec_->release(p);
  exec_->release_host(staging_);
}

void* Model::take(size_t bytes, const char* what) {
  void* p = exec_->alloc(bytes, what);
  owned_.push_back(p);
  return p;
}

void Model::set_weight(int index, WeightKind kind, int64_t rows, int64_t cols, const void* bytes, uint64_t n_bytes,
                       const float* scales, int64_t n_scales, float scalar) {
  exec_->bind();
  if (index < 0 || index >= (int)weights_.size()) throw bad("weight index out of range");
  Weight& w = weights_[index];
  w.kind = kind;
  w.rows = rows;
  w.cols = cols;
  w.scalar = scalar;
  uint64_t expected = 0;
  switch (kind) {
    case WeightKind::I2S: expected = (uint64_t)(rows * cols / 4); break;
    case WeightKind::TQ2: expected = (uint64_t)(rows * cols / 4); break;
    case WeightKind::F16: expected = (uint64_t)(rows * cols * 2); break;
    case WeightKind::F32: expected = (uint64_t)(rows * cols * 4); break;
    case WeightKind::Scalar: expected = 0; break;
  }
  if (n_bytes != expected) {
    throw bad("weight " + std::to_string(index) + " has " + std::to_string(n_bytes) + " bytes, expected " +
              std::to_string(expected));
  }
  if ((kind == WeightKind::I2S && cols % 128 != 0) || (kind == WeightKind::TQ2 && cols % 256 != 0)) {
    throw bad("ternary rows of " + std::to_string(cols) + " values are not whole blocks");
  }
  if (kind == WeightKind::TQ2 && n_scales != rows * cols / 256) throw bad("TQ2 block scales do not match the shape");
  if (expected > 0) {
    w.data = take(expected, "weights");
    exec_->to_device(w.data, bytes, expected);
    w.bytes = expected;
    weight_bytes_ += expected;
  }
  if (kind == WeightKind::TQ2) {
    w.scales = (float*)take((size_t)n_scales * 4, "weight scales");
    exec_->to_device(w.scales, scales, (size_t)n_scales * 4);
    weight_bytes_ += (uint64_t)n_scales * 4;
  }
}

void Model::finish() {
  if (finished_) throw bad("finish() was already called");
  exec_->bind();
  const int64_t B = hp_.max_batch;
  const int n_buffers = (int)widths_.size();
  // Each buffer's last reader; buffers share a slot of the same width once the last is done.
  std::vector<int> last(n_buffers, -1);
  inputs_of_.assign(ops_.size(), {});
  for (size_t i = 0; i < ops_.size(); i++) {
    for (int b : {ops_[i].in0, ops_[i].in1, ops_[i].in2}) {
      if (b >= 0) {
        if (b >= n_buffers) throw bad("op reads a buffer that does not exist");
        last[b] = (int)i;
        inputs_of_[i].push_back(b);
      }
    }
    if (ops_[i].out < 0 || ops_[i].out >= n_buffers) throw bad("op writes a buffer that does not exist");
  }
  slot_of_.assign(n_buffers, -1);
  std::vector<int64_t> slot_width;
  std::vector<bool> slot_free;
  for (size_t i = 0; i < ops_.size(); i++) {
    const OpSpec& op = ops_[i];
    if (op.kind != OpKind::Output) {
      const int64_t w = widths_[op.out];
      // A k rope right after a q rope keeps out of the q rope's input slot: the two run in one
      // launch (rope_attention_ below), whose warps write the roped k while others read q.
      const int avoid = op.kind == OpKind::Rope && i > 0 && ops_[i - 1].kind == OpKind::Rope && ops_[i - 1].in0 >= 0
                            ? slot_of_[ops_[i - 1].in0]
                            : -1;
      int slot = -1;
      for (size_t s = 0; s < slot_width.size(); s++) {
        if (slot_free[s] && slot_width[s] == w && (int)s != avoid) {
          slot = (int)s;
          break;
        }
      }
      if (slot < 0) {
        slot = (int)slot_width.size();
        slot_width.push_back(w);
        slot_free.push_back(false);
      }
      slot_free[slot] = false;
      slot_of_[op.out] = slot;
    }
    for (int b : inputs_of_[i]) {
      if (last[b] == (int)i && slot_of_[b] >= 0) slot_free[slot_of_[b]] = true;
    }
  }
  for (int64_t w : slot_width) {
    slots_.push_back((float*)take((size_t)(B * w * 4), "activation buffers"));
    scratch_bytes_ += (uint64_t)(B * w * 4);
  }
  // Check the weights each op uses, and find the widest quantized input.
  for (const OpSpec& op : ops_) {
    if (op.weight >= 0 && (op.weight >= (int)weights_.size() || (weights_[op.weight].data == nullptr &&
                                                                   weights_[op.weight].kind != WeightKind::Scalar))) {
      throw bad("an op uses a weight that was not uploaded");
    }
    if (op.kind == OpKind::Linear) max_cols_ = std::max(max_cols_, weights_[op.weight].cols);
  }
  // Ternary projections of one input, one after another (q, k, v; gate, up), run as one launch:
  // group_size_ at the first is how many, 0 at the others (1: alone).
  group_size_.assign(ops_.size(), 1);
  for (size_t i = 0; i < ops_.size();) {
    const OpSpec& head = ops_[i];
    auto groupable = [&](const OpSpec& op) {
      if (op.kind != OpKind::Linear || op.scale >= 0) return false;
      const WeightKind k = weights_[op.weight].kind;
      return (k == WeightKind::I2S || k == WeightKind::TQ2) && op.in0 == head.in0 && k == weights_[head.weight].kind &&
             weights_[op.weight].cols == weights_[head.weight].cols;
    };
    size_t j = i + 1;
    if (groupable(head)) {
      while (j < ops_.size() && (int)(j - i) < kMaxGroup && groupable(ops_[j])) j++;
    }
    group_size_[i] = (int)(j - i);
    for (size_t m = i + 1; m < j; m++) group_size_[m] = 0;
    i = j;
  }
  // For each norm, the op that reads its output first when that is a ternary projection of the
  // same width (whose quantization the norm then does), else -1.
  quantized_reader_.assign(ops_.size(), -1);
  for (size_t i = 0; i < ops_.size(); i++) {
    if (ops_[i].kind != OpKind::RmsNorm) continue;
    for (size_t j = i + 1; j < ops_.size(); j++) {
      const OpSpec& r = ops_[j];
      if (r.in0 != ops_[i].out && r.in1 != ops_[i].out && r.in2 != ops_[i].out) continue;
      const bool ternary = r.kind == OpKind::Linear && r.in0 == ops_[i].out &&
                           (weights_[r.weight].kind == WeightKind::I2S || weights_[r.weight].kind == WeightKind::TQ2) &&
                           weights_[r.weight].cols == widths_[ops_[i].out];
      if (ternary) quantized_reader_[i] = (int)j;
      break;
    }
  }
  // Adds whose next op is a norm of their sum that quantizes for a ternary projection.
  add_then_norm_.assign(ops_.size(), false);
  for (size_t i = 0; i + 1 < ops_.size(); i++) {
    const OpSpec& add = ops_[i];
    const OpSpec& norm = ops_[i + 1];
    add_then_norm_[i] = add.kind == OpKind::Add && norm.kind == OpKind::RmsNorm && norm.in0 == add.out &&
                        quantized_reader_[i + 1] >= 0 && widths_[add.in0] == widths_[add.out] &&
                        widths_[add.in1] == widths_[add.out];
  }
  // GLUs whose output is normalized next for a ternary projection, and nothing else reads.
  glu_then_norm_.assign(ops_.size(), false);
  for (size_t i = 0; i + 1 < ops_.size(); i++) {
    const OpSpec& glu = ops_[i];
    const OpSpec& norm = ops_[i + 1];
    glu_then_norm_[i] = glu.kind == OpKind::Glu && norm.kind == OpKind::RmsNorm && norm.in0 == glu.out &&
                        last[glu.out] == (int)(i + 1) && quantized_reader_[i + 1] >= 0 &&
                        widths_[glu.in0] == widths_[glu.out] && widths_[glu.in1] == widths_[glu.out];
  }
  // A layer's RoPE of q and of k right before its attention, whose outputs only the attention
  // reads: the two ropes and the k/v stores in one launch. Its warps write the roped k while
  // others read q, so never where the roped k shares q's slot (the planner above avoids it).
  rope_attention_.assign(ops_.size(), -1);
  for (size_t i = 0; i + 2 < ops_.size(); i++) {
    const OpSpec& rq = ops_[i];
    const OpSpec& rk = ops_[i + 1];
    const OpSpec& at = ops_[i + 2];
    const int64_t kvw = hp_.n_head_kv * hp_.head_dim;
    if (rq.kind == OpKind::Rope && rk.kind == OpKind::Rope && at.kind == OpKind::Attention && at.in0 == rq.out &&
        at.in1 == rk.out && rq.heads == hp_.n_head && rk.heads == hp_.n_head_kv &&
        widths_[rq.in0] == hp_.n_head * hp_.head_dim && widths_[rk.in0] == kvw && widths_[at.in2] == kvw &&
        last[rk.out] == (int)(i + 2) && slot_of_[rk.out] != slot_of_[rq.in0]) {
      rope_attention_[i] = (int)(i + 2);
    }
  }
  const int64_t half = hp_.n_rot / 2;
  const int64_t blocks = std::max<int64_t>(1, max_cols_ / 128);
  auto scratch = [&](size_t bytes, const char* what) {
    scratch_bytes_ += bytes;
    return take(bytes, what);
  };
  q_ = (int8_t*)scratch((size_t)(B * std::max<int64_t>(max_cols_, 1)), "int8 activations");
  act_scale_ = (float*)scratch((size_t)(B * blocks * 4), "activation scales");
  act_sum_ = (int32_t*)scratch((size_t)(B * blocks * 4), "activation sums");
  tokens_ = (int32_t*)scratch((size_t)(B * 4), "tokens");
  positions_ = (int32_t*)scratch((size_t)(B * 4), "positions");
  rows_ = (int32_t*)scratch((size_t)(B * 4), "logit rows");
  row_k_ = (int32_t*)scratch((size_t)(B * 4), "top-k per logit row");
  top_out_ = (int32_t*)scratch((size_t)(kHeadRowsPerPass * 2 * kMaxDeviceTopK * 4), "top-k results");
  cos_ = (float*)scratch((size_t)(B * std::max<int64_t>(half, 1) * 4), "rope table");
  sin_ = (float*)scratch((size_t)(B * std::max<int64_t>(half, 1) * 4), "rope table");
  kptr_ = (uint16_t**)scratch((size_t)(hp_.n_layer * B * sizeof(void*)), "KV pointers");
  vptr_ = (uint16_t**)scratch((size_t)(hp_.n_layer * B * sizeof(void*)), "KV pointers");
  scores_ = (float*)scratch((size_t)(B * hp_.n_head * hp_.context * 4), "attention scores");
  head_in_ = (float*)scratch((size_t)(kHeadRowsPerPass * hp_.n_embd * 4), "head input");
  head_out_ = (float*)scratch((size_t)(kHeadRowsPerPass * hp_.vocab * 4), "logits");
  // The page-locked twin of the step's inputs above (step: stage), each part 16-byte aligned.
  size_t at = 0;
  auto part = [&](size_t bytes) {
    const size_t offset = at;
    at += (bytes + 15) / 16 * 16;
    return offset;
  };
  staged_.tokens = part((size_t)(B * 4));
  staged_.positions = part((size_t)(B * 4));
  staged_.rows = part((size_t)(B * 4));
  staged_.row_k = part((size_t)(B * 4));
  staged_.cos = part((size_t)(B * std::max<int64_t>(half, 1) * 4));
  staged_.sin = part((size_t)(B * std::max<int64_t>(half, 1) * 4));
  staged_.kptr = part((size_t)(hp_.n_layer * B * sizeof(void*)));
  staged_.vptr = part((size_t)(hp_.n_layer * B * sizeof(void*)));
  staging_ = (uint8_t*)exec_->alloc_host(at, "the step's inputs");
  finished_ = true;
}

std::vector<uint8_t> Model::fused_ops() const {
  std::vector<uint8_t> fused(ops_.size(), 0);
  if (!finished_) return fused;
  for (size_t i = 0; i < ops_.size(); i++) {
    if (add_then_norm_[i] || glu_then_norm_[i]) fused[i] = 1;
    if (rope_attention_[i] >= 0) fused[i] = fused[i + 1] = 1;
  }
  return fused;
}

void Model::create_sequence(int id) {
  if (seqs_.count(id) != 0) throw bad("sequence " + std::to_string(id) + " exists");
  Sequence s;
  s.k.assign((size_t)hp_.n_layer, nullptr);
  s.v.assign((size_t)hp_.n_layer, nullptr);
  seqs_[id] = std::move(s);
}

void Model::ensure_capacity(Sequence& s, int64_t positions) {
  if (positions <= s.capacity) return;
  const int64_t cap = std::min(hp_.context, std::max({positions, 2 * s.capacity, (int64_t)64}));
  const int64_t kvw = hp_.n_head_kv * hp_.head_dim;
  const size_t bytes = (size_t)(cap * kvw * 2);
  for (int64_t l = 0; l < hp_.n_layer; l++) {
    for (auto* cache : {&s.k, &s.v}) {
      uint16_t* grown = (uint16_t*)exec_->alloc(bytes, "the KV cache");
      if ((*cache)[l] != nullptr) {
        exec_->copy(grown, (*cache)[l], (size_t)(s.capacity * kvw * 2));
        exec_->release((*cache)[l]);
      }
      (*cache)[l] = grown;
    }
  }
  kv_bytes_ += (uint64_t)(cap - s.capacity) * (uint64_t)kvw * 2 * 2 * (uint64_t)hp_.n_layer;
  s.capacity = cap;
}

void Model::fork_sequence(int from, int to) {
  exec_->bind();
  auto it = seqs_.find(from);
  if (it == seqs_.end()) throw bad("sequence " + std::to_string(from) + " does not exist");
  create_sequence(to);
  Sequence& dst = seqs_[to];
  Sequence& src = seqs_[from];
  ensure_capacity(dst, src.capacity);
  const size_t bytes = (size_t)(src.capacity * hp_.n_head_kv * hp_.head_dim * 2);
  for (int64_t l = 0; l < hp_.n_layer; l++) {
    if (src.k[l] != nullptr) {
      exec_->copy(dst.k[l], src.k[l], bytes);
      exec_->copy(dst.v[l], src.v[l], bytes);
    }
  }
}

void Model::free_sequence(int id) {
  auto it = seqs_.find(id);
  if (it == seqs_.end()) return;
  exec_->bind();
  for (auto* p : it->second.k) exec_->release(p);
  for (auto* p : it->second.v) exec_->release(p);
  kv_bytes_ -= (uint64_t)it->second.capacity * (uint64_t)(hp_.n_head_kv * hp_.head_dim) * 2 * 2 *
               (uint64_t)hp_.n_layer;
  seqs_.erase(it);
}

MemoryInfo Model::memory() const {
  MemoryInfo m;
  m.weight_bytes = weight_bytes_;
  m.scratch_bytes = scratch_bytes_;
  m.kv_bytes = kv_bytes_;
  exec_->bind();
  exec_->memory(&m.free_bytes, &m.total_bytes);
  return m;
}

void Model::step(const int32_t* tokens, const int32_t* seqs, const int32_t* positions, const uint8_t* want, int64_t T,
                 float* logits, const int32_t* row_k, int32_t* top, const std::vector<int>& capture,
                 const std::vector<float*>& captured, const std::vector<int>& inject,
                 const std::vector<const float*>& injected) {
  if (!finished_) throw bad("the model's weights are not all uploaded");
  exec_->bind();
  if (T < 1 || T > hp_.max_batch) throw bad("a step takes 1 to " + std::to_string(hp_.max_batch) + " tokens");
  // Sequences, positions and caches first: nothing runs unless the whole step is valid.
  std::vector<Sequence*> owner((size_t)T);
  for (int64_t t = 0; t < T; t++) {
    auto it = seqs_.find(seqs[t]);
    if (it == seqs_.end()) throw bad("sequence " + std::to_string(seqs[t]) + " does not exist");
    if (positions[t] < 0 || positions[t] >= hp_.context) {
      throw bad("position " + std::to_string(positions[t]) + " is outside the context of " +
                std::to_string(hp_.context));
    }
    if (tokens[t] < 0 || tokens[t] >= hp_.vocab) throw bad("token " + std::to_string(tokens[t]) + " is not in the vocabulary");
    owner[t] = &it->second;
  }
  for (int64_t t = 0; t < T; t++) ensure_capacity(*owner[t], positions[t] + 1);
  std::vector<int32_t> rows;
  for (int64_t t = 0; t < T; t++) {
    if (want[t] != 0) rows.push_back((int32_t)t);
  }
  // Each logit row's top-k, 0 for the whole row (read by the top-k kernel, replays included).
  std::vector<int32_t> ks(rows.size(), 0);
  for (size_t r = 0; r < rows.size(); r++) {
    const int32_t k = row_k == nullptr ? 0 : row_k[r];
    if (k > kMaxDeviceTopK || k > hp_.vocab) throw bad("a top-k of " + std::to_string(k) + " is more than the step can reduce");
    ks[r] = std::max<int32_t>(k, 0);
  }
  // The step's inputs are written into the page-locked staging buffer and copied without waiting
  // (one synchronous copy from pageable memory each cost a decode step ~10-20 µs); the step's
  // final sync (or the one below, if it fails) ends them before the buffer is written again.
  // A step that fails from here on may leave copies from the staging buffer in flight: it waits
  // for them before its error goes out, so the next step may write the buffer.
  struct SyncOnThrow {
    Exec* exec;
    ~SyncOnThrow() {
      if (std::uncaught_exceptions() > 0) {
        try {
          exec->sync();
        } catch (const std::exception&) {
          // The step's own error is the one that goes out.
        }
      }
    }
  } sync_on_throw{exec_.get()};
  auto stage = [&](size_t offset, void* dst, const void* src, size_t bytes) {
    if (bytes == 0) return;
    std::memcpy(staging_ + offset, src, bytes);
    exec_->to_device_async(dst, staging_ + offset, bytes);
  };
  stage(staged_.tokens, tokens_, tokens, (size_t)T * 4);
  stage(staged_.positions, positions_, positions, (size_t)T * 4);
  {
    uint16_t** kp = (uint16_t**)(staging_ + staged_.kptr);
    uint16_t** vp = (uint16_t**)(staging_ + staged_.vptr);
    for (int64_t l = 0; l < hp_.n_layer; l++) {
      for (int64_t t = 0; t < T; t++) {
        kp[l * T + t] = owner[t]->k[l];
        vp[l * T + t] = owner[t]->v[l];
      }
    }
    const size_t bytes = (size_t)(hp_.n_layer * T) * sizeof(void*);
    exec_->to_device_async(kptr_, kp, bytes);
    exec_->to_device_async(vptr_, vp, bytes);
  }
  // RoPE angles as ggml computes them (rope_cache_init): theta starts at the position and is
  // multiplied by base^(−2/n_rot) in f32 for each pair; cos and sin of the f32 theta.
  const int64_t half = hp_.n_rot / 2;
  if (half > 0) {
    float* c = (float*)(staging_ + staged_.cos);
    float* sn = (float*)(staging_ + staged_.sin);
    const float theta_scale = (float)std::pow(hp_.rope_base, (double)(float)(-2.0 / (double)hp_.n_rot));
    for (int64_t t = 0; t < T; t++) {
      float theta = (float)positions[t];
      for (int64_t i = 0; i < half; i++) {
        c[t * half + i] = (float)std::cos((double)theta);
        sn[t * half + i] = (float)std::sin((double)theta);
        theta = (float)((double)theta * (double)theta_scale);
      }
    }
    exec_->to_device_async(cos_, c, (size_t)(T * half) * 4);
    exec_->to_device_async(sin_, sn, (size_t)(T * half) * 4);
  }
  stage(staged_.rows, rows_, rows.data(), rows.size() * 4);
  stage(staged_.row_k, row_k_, ks.data(), ks.size() * 4);
  // A decode step (one token, its logits, nothing captured or injected) runs as one CUDA graph:
  // recorded the first time, replayed after. Everything a step changes is in device memory the
  // graph reads (tokens, positions, KV pointers, the RoPE table), uploaded above.
  const bool decode_shape = T == 1 && rows.size() == 1 && capture.empty() && inject.empty();
  auto copy_decode_row = [&] {
    if (ks[0] > 0) {
      exec_->to_host(top, top_out_, (size_t)(2 * kMaxDeviceTopK * 4));
    } else {
      exec_->to_host(logits, head_out_, (size_t)(hp_.vocab * 4));
    }
  };
  if (decode_shape && decode_graph_) {
    exec_->replay();
    copy_decode_row();
    return;
  }
  if (decode_shape && !graphs_failed_) {
    // Recording runs nothing, so a recording that fails (CUDA invalidates a capture when another
    // thread synchronizes the device meanwhile, e.g. another model freeing memory) leaves no trace:
    // this step and every later one run op by op instead, and the reason is said once.
    try {
      if (exec_->begin_capture()) {
        run_ops(T, logits, top, rows, ks, true, capture, captured, inject, injected);
        exec_->end_capture();
        decode_graph_ = true;
      }
    } catch (const std::exception& e) {
      exec_->abort_capture();
      graphs_failed_ = true;
      std::fprintf(stderr, "bitnet-ts cuda: recording the decode step as a CUDA graph failed (%s); decode steps run op by op\n",
                   e.what());
    }
    if (decode_graph_) {
      exec_->replay();
      copy_decode_row();
      exec_->sync();
      return;
    }
  }
  run_ops(T, logits, top, rows, ks, false, capture, captured, inject, injected);
  exec_->sync();
}

void Model::run_ops(int64_t T, float* logits, int32_t* top, const std::vector<int32_t>& rows,
                    const std::vector<int32_t>& ks, bool recording,
                    const std::vector<int>& capture, const std::vector<float*>& captured,
                    const std::vector<int>& inject, const std::vector<const float*>& injected) {
  int quantized = -1;  // the buffer whose quantization q_ holds (q, k, v share one input)
  int norm_done = -1;  // a norm already run by the residual add or the GLU before it
  int rope_done = -1;    // a k rope already run with the q rope before it
  int stored_done = -1;  // an attention whose k and v that launch stored
  WeightKind quantized_as = WeightKind::F32;
  for (size_t i = 0; i < ops_.size(); i++) {
    const OpSpec& op = ops_[i];
    for (size_t j = 0; j < inject.size(); j++) {
      for (int b : inputs_of_[i]) {
        if (b == inject[j]) {
          exec_->to_device(buffer(b), injected[j], (size_t)(T * widths_[b] * 4));
          if (b == quantized) quantized = -1;
        }
      }
    }
    float* out = op.kind == OpKind::Output ? nullptr : buffer(op.out);
    const Weight* w = op.weight >= 0 ? &weights_[op.weight] : nullptr;
    switch (op.kind) {
      case OpKind::Embed:
        exec_->embed(w->data, w->kind == WeightKind::F16, tokens_, T, w->cols, out);
        break;
      case OpKind::RmsNorm: {
        if ((int)i == norm_done) break;  // run with the add before it
        // A norm whose next reader is a ternary projection quantizes for it in the same pass.
        const Weight* next = quantized_reader_[i] >= 0 ? &weights_[ops_[quantized_reader_[i]].weight] : nullptr;
        if (next != nullptr) {
          exec_->rms_norm_quantize(buffer(op.in0), (const float*)w->data, T, widths_[op.in0], hp_.rms_eps, out,
                                   next->kind == WeightKind::TQ2, q_, act_scale_, act_sum_);
          quantized = op.out;
          quantized_as = next->kind;
        } else {
          exec_->rms_norm(buffer(op.in0), (const float*)w->data, T, widths_[op.in0], hp_.rms_eps, out);
        }
        break;
      }
      case OpKind::Linear: {
        if (group_size_[i] == 0) break;  // run by the first projection of its group
        const float* x = buffer(op.in0);
        if (w->kind == WeightKind::I2S || w->kind == WeightKind::TQ2) {
          if (quantized != op.in0 || quantized_as != w->kind) {
            if (w->kind == WeightKind::I2S) {
              exec_->quantize_i8(x, T, w->cols, q_, act_scale_, act_sum_);
            } else {
              exec_->quantize_q8k(x, T, w->cols, q_, act_scale_, act_sum_);
            }
            quantized = op.in0;
            quantized_as = w->kind;
          }
          if (group_size_[i] > 1) {
            // This projection and the next ones of the same input, in one launch.
            TernaryGroup g;
            g.count = group_size_[i];
            for (int m = 0; m < g.count; m++) {
              const OpSpec& member = ops_[i + m];
              const Weight& mw = weights_[member.weight];
              g.m[m] = TernaryMatrix{(const uint8_t*)mw.data, mw.scales, mw.rows, mw.scalar, buffer(member.out)};
            }
            exec_->ternary_group(w->kind == WeightKind::I2S, g, w->cols, q_, act_scale_, act_sum_, T);
          } else if (w->kind == WeightKind::I2S) {
            exec_->i2s_gemm((const uint8_t*)w->data, w->rows, w->cols, w->scalar, q_, act_scale_, act_sum_, T, out);
          } else {
            exec_->tq2_gemm((const uint8_t*)w->data, w->scales, w->rows, w->cols, q_, act_scale_, act_sum_, T, out);
          }
        } else {
          exec_->float_gemm(w->data, w->kind == WeightKind::F16, w->rows, w->cols, x, T, w->kind == WeightKind::F16,
                            out);
        }
        if (op.scale >= 0) exec_->scale(out, T * w->rows, weights_[op.scale].scalar);
        break;
      }
      case OpKind::Rope: {
        if ((int)i == rope_done) break;  // run with the q rope before it
        // Not in steps that inject buffers (which may replace the k rope's input in between).
        const int at = rope_attention_[i];
        if (at >= 0 && inject.empty()) {
          const OpSpec& rk = ops_[i + 1];
          const OpSpec& attn = ops_[(size_t)at];
          exec_->rope_kv_store(buffer(op.in0), buffer(rk.in0), buffer(attn.in2), cos_, sin_, T, hp_.n_head,
                               hp_.n_head_kv, hp_.head_dim, hp_.n_rot, out, buffer(rk.out), kptr_ + attn.layer * T,
                               vptr_ + attn.layer * T, positions_);
          rope_done = (int)(i + 1);
          stored_done = at;
          break;
        }
        exec_->rope(buffer(op.in0), cos_, sin_, T, op.heads, hp_.head_dim, hp_.n_rot, out);
        break;
      }
      case OpKind::Attention: {
        uint16_t* const* kp = kptr_ + op.layer * T;
        uint16_t* const* vp = vptr_ + op.layer * T;
        if ((int)i != stored_done) {
          exec_->kv_store(buffer(op.in1), buffer(op.in2), kp, vp, positions_, T, hp_.n_head_kv * hp_.head_dim);
        }
        exec_->attention(buffer(op.in0), kp, vp, positions_, T, hp_.n_head, hp_.n_head_kv, hp_.head_dim, scores_,
                         hp_.context, out);
        break;
      }
      case OpKind::Add: {
        // A residual add whose sum the next op normalizes for a ternary projection: the add, the
        // norm and the quantization in one pass (not in steps that inject buffers, which may
        // replace the norm's input between the two ops).
        if (inject.empty() && add_then_norm_[i]) {
          const OpSpec& norm = ops_[i + 1];
          const Weight& reader = weights_[ops_[quantized_reader_[i + 1]].weight];
          exec_->add_rms_norm_quantize(buffer(op.in0), buffer(op.in1), out, (const float*)weights_[norm.weight].data, T,
                                       widths_[op.out], hp_.rms_eps, buffer(norm.out),
                                       reader.kind == WeightKind::TQ2, q_, act_scale_, act_sum_);
          quantized = norm.out;
          quantized_as = reader.kind;
          norm_done = (int)(i + 1);
        } else {
          exec_->add(buffer(op.in0), buffer(op.in1), T * widths_[op.out], out);
        }
        break;
      }
      case OpKind::Glu: {
        // A GLU whose output the next op normalizes for a ternary projection: computed inside that
        // norm (not in steps that inject buffers, which may replace the norm's input in between).
        if (inject.empty() && glu_then_norm_[i]) {
          const OpSpec& norm = ops_[i + 1];
          const Weight& reader = weights_[ops_[quantized_reader_[i + 1]].weight];
          exec_->glu_rms_norm_quantize(buffer(op.in0), buffer(op.in1), op.act, out,
                                       (const float*)weights_[norm.weight].data, T, widths_[op.out], hp_.rms_eps,
                                       buffer(norm.out), reader.kind == WeightKind::TQ2, q_, act_scale_, act_sum_);
          quantized = norm.out;
          quantized_as = reader.kind;
          norm_done = (int)(i + 1);
          break;
        }
        exec_->glu(buffer(op.in0), buffer(op.in1), T * widths_[op.out], op.act, out);
        break;
      }
      case OpKind::Output: {
        const float* x = buffer(op.in0);
        for (size_t r0 = 0; r0 < rows.size(); r0 += kHeadRowsPerPass) {
          const int64_t n = std::min<int64_t>(kHeadRowsPerPass, (int64_t)(rows.size() - r0));
          exec_->gather_rows(x, rows_ + r0, n, hp_.n_embd, head_in_);
          exec_->float_gemm(w->data, w->kind == WeightKind::F16, w->rows, w->cols, head_in_, n,
                            w->kind == WeightKind::F16, head_out_);
          bool any_full = false, any_top = false;
          for (int64_t r = 0; r < n; r++) (ks[r0 + r] > 0 ? any_top : any_full) = true;
          // A recording keeps the kernel whatever this step asks: a replay's row may want top-k.
          if (any_top || recording) exec_->top_k(head_out_, n, hp_.vocab, row_k_ + r0, top_out_, kMaxDeviceTopK);
          // A recording cannot copy to the host: the replay's caller does.
          if (!recording && any_full) {
            exec_->to_host(logits + r0 * hp_.vocab, head_out_, (size_t)(n * hp_.vocab * 4));
          }
          if (!recording && any_top) {
            exec_->to_host(top + r0 * 2 * kMaxDeviceTopK, top_out_, (size_t)(n * 2 * kMaxDeviceTopK * 4));
          }
        }
        break;
      }
    }
    for (size_t j = 0; j < capture.size(); j++) {
      if (capture[j] == op.out && op.kind != OpKind::Output) {
        exec_->to_host(captured[j], out, (size_t)(T * widths_[op.out] * 4));
      }
    }
  }
}

}  // namespace bitnet_cuda
