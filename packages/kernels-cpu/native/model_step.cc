// ---------------------------------------------------------------------------------------------
// Model execution: buffer planning, the per-op execution of a forward step, attention over the
// per-sequence f16 KV caches, and their management. (Loading is model_load.cc.)
// Op semantics and rounding points mirror packages/engine-core/src/reference/ops.ts ("ggml"
// numerics); with the scalar kernels a step is bit-exact with the reference backend except for
// libm transcendental rounding (exp, cos, sin, pow) in rare last-bit cases.
// ---------------------------------------------------------------------------------------------
#include "model.h"
#include "softmax.h"

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

// Fewest tokens for which a step with TQ1_0 weights read in place (tq1_direct) converts each row
// tile to TQ2_0 and runs the TQ2_0 kernels, instead of unpacking every block per token.
constexpr int64_t TQ1_TILE_MIN_TOKENS = 2;

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

namespace {

// ggml GROUP_MAX_EPS: sub-blocks of smaller magnitude quantize to zero.
constexpr float kGroupMaxEps = 1e-15f;

// ggml make_qx_quants(n, nmax, x, L, rmse_type = 1, NULL): a symmetric scale for one sub-block,
// refined over 18 trial scales to minimize the x²-weighted squared error; L gets l + nmax.
// f32 at every step, no FMA contraction (-ffp-contract=off), as ggml's C.
float make_qx_quants(const float* x, int n, int nmax, int8_t* L) {
  float max = 0.0f, amax = 0.0f;
  for (int i = 0; i < n; i++) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    for (int i = 0; i < n; i++) L[i] = 0;
    return 0.0f;
  }
  auto clamp = [nmax](int l) { return std::max(-nmax, std::min(nmax - 1, l)); };
  float iscale = -(float)nmax / max;
  float sumlx = 0.0f, suml2 = 0.0f;
  for (int i = 0; i < n; i++) {
    const int l = clamp(nearest_int(iscale * x[i]));
    L[i] = (int8_t)(l + nmax);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * (float)l;
    suml2 += w * (float)l * (float)l;
  }
  float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; is++) {
    if (is == 0) continue;
    iscale = -((float)nmax + 0.1f * (float)is) / max;
    sumlx = suml2 = 0.0f;
    for (int i = 0; i < n; i++) {
      const int l = clamp(nearest_int(iscale * x[i]));
      const float w = x[i] * x[i];
      sumlx += w * x[i] * (float)l;
      suml2 += w * (float)l * (float)l;
    }
    if (suml2 > 0.0f && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; i++) L[i] = (int8_t)(nmax + clamp(nearest_int(iscale * x[i])));
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

}  // namespace

void quantize_q6_k(const float* x, uint8_t* y, int64_t n) {
  int8_t L[256];
  float scales[16];
  for (int64_t b = 0; b < n / 256; b++, x += 256, y += kQ6KBlockBytes) {
    std::memset(y, 0, kQ6KBlockBytes);
    float max_scale = 0.0f, max_abs_scale = 0.0f;
    for (int ib = 0; ib < 16; ib++) {
      const float scale = make_qx_quants(x + 16 * ib, 16, 32, L + 16 * ib);
      scales[ib] = scale;
      if (std::fabs(scale) > max_abs_scale) {
        max_abs_scale = std::fabs(scale);
        max_scale = scale;
      }
    }
    if (max_abs_scale < kGroupMaxEps) continue;  // an all-zero block (d = 0)
    const float iscale = -128.0f / max_scale;
    const uint16_t d_bits = f32_to_f16(1.0f / iscale);
    y[208] = (uint8_t)(d_bits & 0xff);
    y[209] = (uint8_t)(d_bits >> 8);
    int8_t* sc = (int8_t*)(y + 192);
    for (int ib = 0; ib < 16; ib++) sc[ib] = (int8_t)std::min(127, nearest_int(iscale * scales[ib]));
    const float d0 = f16_to_f32(d_bits);
    for (int j = 0; j < 16; j++) {
      const float d = d0 * (float)sc[j];
      if (d == 0.0f) continue;
      for (int ii = 0; ii < 16; ii++) {
        const int l = std::max(-32, std::min(31, nearest_int(x[16 * j + ii] / d)));
        L[16 * j + ii] = (int8_t)(l + 32);
      }
    }
    for (int j = 0; j < 256; j += 128) {
      uint8_t* ql = y + 64 * (j / 128);
      uint8_t* qh = y + 128 + 32 * (j / 128);
      for (int l = 0; l < 32; l++) {
        const int q1 = L[j + l], q2 = L[j + l + 32], q3 = L[j + l + 64], q4 = L[j + l + 96];
        ql[l] = (uint8_t)((q1 & 0xf) | ((q3 & 0xf) << 4));
        ql[l + 32] = (uint8_t)((q2 & 0xf) | ((q4 & 0xf) << 4));
        qh[l] = (uint8_t)((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
      }
    }
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

// The execution state the load leaves ready: buffer slots, per-thread quantization and attention
// scratch. Per-token buffers are sized by the first steps (reserve_batch).
void Model::prepare_execution() {
  const char* fuse = std::getenv("BITNET_DECODE_FUSE");
  fuse_decode_ = fuse == nullptr || std::strcmp(fuse, "0") != 0;
  plan_decode_fusion();
  plan_buffers();
  quant_buffer_.assign((size_t)pool_->size(), -1);
  quant_kind_.assign((size_t)pool_->size(), -1);
  quant_tmp_.resize((size_t)pool_->size());
  int64_t widest = 0;
  for (int64_t w : cfg_.buffer_widths) widest = std::max(widest, w);
  for (auto& q : quant_tmp_) q.resize((size_t)widest);
  local_quant_.resize((size_t)pool_->size());
  for (auto& l : local_quant_) {
    l.q.resize((size_t)widest);
    l.scale.resize((size_t)(widest / 256 + 1));
    l.sum.resize((size_t)(widest / 256 + 1));
  }
  scratch_.resize((size_t)pool_->size());
  // Attention scores of one tile's tokens × one KV head's query heads (context each) and their
  // outputs, or a row of the head's work.
  const int64_t group = std::max<int64_t>(1, cfg_.n_head / std::max<int64_t>(1, cfg_.n_head_kv));
  // BITNET_ATTENTION_TILE=<tokens> (1-64; 1: one token at a time) for measurements.
  if (const char* tile = std::getenv("BITNET_ATTENTION_TILE")) attention_tile_tokens_ = std::clamp(std::atoi(tile), 1, 64);
  const int64_t tile_rows = attention_tile_tokens_ * group;
  // BITNET_ATTENTION_SPLIT=<positions> (0: never) for measurements and tests.
  if (const char* from = std::getenv("BITNET_ATTENTION_SPLIT")) split_attention_from_ = std::max(0, std::atoi(from));
  // Only a model with threads to split between uses it (attends_by_work).
  if (pool_->size() > 1 && split_attention_from_ > 0) split_scores_.resize((size_t)(cfg_.n_head * cfg_.context));
  for (auto& s : scratch_) {
    s.resize((size_t)std::max<int64_t>(std::max<int64_t>(tile_rows * (cfg_.context + cfg_.head_dim), cfg_.n_embd), 256) + 1024);
  }
  prologue_width_ = 0;
  for (size_t i = 0; i < cfg_.ops.size(); i++) {
    if (fusion_[i] == FUSE_NORM) prologue_width_ = std::max(prologue_width_, cfg_.buffer_widths[(size_t)cfg_.ops[i].out]);
  }
  prologue_.resize((size_t)pool_->size());
  for (auto& p : prologue_) p.resize((size_t)(2 * prologue_width_));
  // A row tile of the widest TQ1_0 matrix as TQ2_0 (for_row_tiles: ≤ 32 KiB, or two rows).
  int64_t tq1_blocks_per_row = 0;
  for (const Tensor& t : tensors_) {
    if (t.type == T_TQ1_0) tq1_blocks_per_row = std::max(tq1_blocks_per_row, t.ne0 / 256);
  }
  if (tq1_blocks_per_row > 0) {
    tq1_tile_.resize((size_t)pool_->size());
    const int64_t blocks = std::max<int64_t>(2 * tq1_blocks_per_row, 32 * 1024 / (int64_t)sizeof(BlockTQ2) + 1);
    for (auto& t : tq1_tile_) t.resize((size_t)blocks);
  }
  count_scratch();
}

// Bytes held by the activation buffers and scratch (capacities: what is allocated), for info().
void Model::count_scratch() {
  auto bytes = [](const auto& v) { return (uint64_t)v.capacity() * sizeof(v[0]); };
  uint64_t total = 0;
  for (const auto& s : slots_) total += bytes(s);
  for (const auto& q : quant_tmp_) total += bytes(q);
  for (const auto& l : local_quant_) total += bytes(l.q) + bytes(l.scale) + bytes(l.sum);
  for (const auto& s : scratch_) total += bytes(s);
  for (const auto& p : prologue_) total += bytes(p);
  total += bytes(q_) + bytes(q_scale_) + bytes(q_sum_) + bytes(q_tiles_) + bytes(head_x_) + bytes(head_q_);
  total += bytes(rope_cos_) + bytes(rope_sin_) + bytes(split_scores_);
  total += bytes(head_q8k_) + bytes(head_q8k_d_) + bytes(head_q8k_sum_) + bytes(head_q8k_bsum16_);
  for (const auto& t : tq1_tile_) total += bytes(t);
  scratch_bytes_.store(total, std::memory_order_relaxed);
}

// Which small ops a one-token step folds into their consumers (model.h, Fusion). A decoded token
// of a 2B-4T-shaped model ran ~15 ops per layer, each ending at a barrier, and eight of them
// (norms, RoPE, GLU, residual adds) moved a few kilobytes on one thread while the other waited
// and the memory bus idled: 33-42 µs per layer, ~1.1 ms of a ~17 ms token on a Zen 5. Fused,
// every thread computes the norm (and the GLU or residual sum before it) of the row it is about
// to quantize, and rotates the heads it attends with: the same operations on the same values,
// so the same bits, with six barriers per layer instead of fifteen. Measured on a Zen 5 (two
// threads, with and without alternating in one process): 1-4% less time a bench-i2s token.
// Steps of several tokens fuse the same ops, each thread running the prologue for the tokens
// it quantizes: the norms and the GLU then read and write one row in L1 instead of passing a
// whole batch (1.3-3.5 MB for 128 tokens) through memory between barriers. Measured on an
// Intel Xeon, alternating: a 128-token bench-i2s prompt step 1300-1312 against 1318-1330 ms on
// `avx2`, 257-259 against 260-265 ms on `amx`.
void Model::plan_decode_fusion() {
  const size_t nops = cfg_.ops.size();
  fusion_.assign(nops, FUSE_NONE);
  fused_until_.assign(nops, -1);
  epilogue_add_.assign(nops, -1);
  producer_.assign(cfg_.buffer_widths.size(), -1);
  std::vector<std::vector<size_t>> readers(cfg_.buffer_widths.size());
  for (size_t i = 0; i < nops; i++) {
    const OpSpec& op = cfg_.ops[i];
    if (op.out >= 0) producer_[(size_t)op.out] = (int32_t)i;
    for (int32_t b : {op.in0, op.in1, op.in2}) {
      if (b >= 0 && (readers[(size_t)b].empty() || readers[(size_t)b].back() != i)) readers[(size_t)b].push_back(i);
    }
  }
  if (!fuse_decode_) return;
  auto ternary = [&](const OpSpec& op) {
    if (op.kind != OP_LINEAR || op.in1 >= 0 || op.in2 >= 0) return false;
    const int32_t type = tensors_[(size_t)op.weight].type;
    return type == T_I2_S || type == T_TQ2_0 || type == T_TQ1_0;
  };
  for (size_t i = 0; i < nops; i++) {
    const OpSpec& op = cfg_.ops[i];
    if (op.out < 0) continue;
    const std::vector<size_t>& r = readers[(size_t)op.out];
    if (r.empty()) continue;
    if (op.kind == OP_RMS_NORM &&
        std::all_of(r.begin(), r.end(), [&](size_t j) { return ternary(cfg_.ops[j]) && cfg_.ops[j].in0 == op.out; })) {
      fusion_[i] = FUSE_NORM;
      fused_until_[i] = (int64_t)r.back();
    } else if (op.kind == OP_ROPE && std::all_of(r.begin(), r.end(), [&](size_t j) {
                 const OpSpec& a = cfg_.ops[j];
                 return a.kind == OP_ATTENTION && a.in2 != op.out && (a.in0 == op.out) != (a.in1 == op.out);
               })) {
      fusion_[i] = FUSE_ROPE;
      fused_until_[i] = (int64_t)r.back();
    }
  }
  // A residual add right after the projection that writes one of its inputs (o and down in the
  // 2B-4T graph): each thread adds the rows it has just computed while they are in cache, and
  // the add's own pass over the batch (T × n_embd floats read twice and written once, between
  // barriers, while the memory bus idled) goes. The same additions in the same operand order, so
  // the same bits. Measured in prompt steps, where that pass cost most: see BENCHMARKS.md.
  for (size_t i = 1; i < nops; i++) {
    const OpSpec& add = cfg_.ops[i];
    const OpSpec& proj = cfg_.ops[i - 1];
    if (add.kind != OP_ADD || proj.kind != OP_LINEAR || proj.out < 0) continue;
    if ((add.in0 == proj.out) == (add.in1 == proj.out)) continue;  // exactly one input is the projection's
    const int32_t other = add.in0 == proj.out ? add.in1 : add.in0;
    const int64_t width = cfg_.buffer_widths[(size_t)proj.out];
    if (cfg_.buffer_widths[(size_t)other] != width || cfg_.buffer_widths[(size_t)add.out] != width) continue;
    if (producer_[(size_t)other] >= (int32_t)(i - 1)) continue;  // the other input must be ready before
    epilogue_add_[i - 1] = (int32_t)i;
  }
  // A GLU or residual add whose result the next op, a fused norm, reads.
  for (size_t i = 0; i + 2 < nops; i++) {
    const OpSpec& op = cfg_.ops[i];
    const OpSpec& next = cfg_.ops[i + 1];
    if ((op.kind != OP_GLU && op.kind != OP_ADD) || fusion_[i + 1] != FUSE_NORM || next.in0 != op.out) continue;
    const std::vector<size_t>& r = readers[(size_t)op.out];
    const int64_t until = fused_until_[i + 1];
    // Only relu²: SiLU's exp (in double, as the reference) over a whole FFN row on every thread
    // cost more than the barrier it saved (bench-tq2 `avx2` 22.77 against 22.22 ms a token).
    if (op.kind == OP_GLU && op.act == 0 && r.size() == 1) {
      fusion_[i] = FUSE_GLU;
      fused_until_[i] = until;
    } else if (op.kind == OP_ADD) {
      // No barrier after the add: the norm's projections follow it directly (they read only the
      // norm's row), and every other reader of the sum comes after their closing barrier.
      bool direct = true;
      for (int64_t j = (int64_t)i + 2; j <= until; j++) {
        direct = direct && cfg_.ops[(size_t)j].in0 == next.out && ternary(cfg_.ops[(size_t)j]);
      }
      for (size_t j : r) direct = direct && (j == i + 1 || (int64_t)j > until);
      if (direct) {
        fusion_[i] = FUSE_ADD;
        fused_until_[i] = until;
      }
    }
  }
}

std::map<std::string, int64_t> Model::decode_fused_ops() const {
  static const char* const names[] = {"", "rms_norm", "glu", "add", "rope"};
  std::map<std::string, int64_t> out;
  for (uint8_t f : fusion_) {
    if (f != FUSE_NONE) out[names[f]]++;
  }
  for (int32_t e : epilogue_add_) {
    if (e >= 0) out["add_in_projection"]++;
  }
  return out;
}

// y = x / sqrt(mean(x²) + eps) · gain, for one row of n.
void Model::rms_norm_row(const OpSpec& op, const float* x, int64_t n, float* y) const {
  const Tensor& w = tensors_[(size_t)op.weight];
  const double sum = kernels_->sum_squares(x, n);
  const float mean = (float)(sum / (double)n);
  const float scale = 1.0f / std::sqrt(mean + cfg_.eps);
  if (w.type == T_F16) {
    const uint16_t* g = (const uint16_t*)w.data;
    for (int64_t i = 0; i < n; i++) y[i] = (x[i] * scale) * f16_to_f32(g[i]);
  } else {
    const float* g = (const float*)w.data;
    for (int64_t i = 0; i < n; i++) y[i] = (x[i] * scale) * g[i];
  }
}

void Model::glu_range(const OpSpec& op, const float* g, const float* u, float* y, int64_t n) const {
  if (op.act == 0) {
    kernels_->relu2_glu(g, u, y, n);
    return;
  }
  // silu(g)·u = g / (1 + exp(−g)) · u, with exp evaluated as the reference does.
  for (int64_t i = 0; i < n; i++) y[i] = -g[i];
  kernels_->exp(y, y, n);
  for (int64_t i = 0; i < n; i++) {
    const float sg = g[i] / (1.0f + y[i]);
    y[i] = sg * u[i];
  }
}

// One head (head_dim values) of token t rotated by the step's angles (NeoX halves).
void Model::rope_head(const float* x, float* y, int64_t t) const {
  const int64_t hd = cfg_.head_dim, n_rot = cfg_.n_rot, half = n_rot / 2;
  const float* cs = rope_cos_.data() + t * half;
  const float* sn = rope_sin_.data() + t * half;
  for (int64_t i = 0; i < half; i++) {
    const float x0 = x[i], x1 = x[i + half];
    y[i] = x0 * cs[i] - x1 * sn[i];
    y[i + half] = x0 * sn[i] + x1 * cs[i];
  }
  for (int64_t i = n_rot; i < hd; i++) y[i] = x[i];
}

// The fused norm that writes buffer `input` in this step, or −1 (not fused, or not a norm's).
int32_t Model::fused_norm(int32_t input) const {
  const int32_t p = producer_[(size_t)input];
  return fused_step_ && p >= 0 && fusion_[(size_t)p] == FUSE_NORM ? p : -1;
}

// Token t's row that a projection quantizes when its input is a fused norm's: the norm (and the
// GLU or residual sum before it, when fused too) computed on this thread, in its prologue_ rows.
const float* Model::fused_prologue(int32_t norm_op, int tid, int64_t t) {
  const OpSpec& norm = cfg_.ops[(size_t)norm_op];
  const int64_t n = cfg_.buffer_widths[(size_t)norm.out];
  float* in = prologue_[(size_t)tid].data();
  float* out = in + prologue_width_;
  const float* x = buf(norm.in0) + t * n;
  const int32_t p = producer_[(size_t)norm.in0];
  if (p >= 0 && fusion_[(size_t)p] == FUSE_GLU) {
    const OpSpec& glu = cfg_.ops[(size_t)p];
    glu_range(glu, buf(glu.in0) + t * n, buf(glu.in1) + t * n, in, n);
    x = in;
  } else if (p >= 0 && fusion_[(size_t)p] == FUSE_ADD && !in_epilogue(p)) {
    // (An add run in its projection's epilogue is complete by now, so its output is read as is.)
    const OpSpec& add = cfg_.ops[(size_t)p];
    const float* a = buf(add.in0) + t * n;
    const float* b = buf(add.in1) + t * n;
    for (int64_t i = 0; i < n; i++) in[i] = a[i] + b[i];
    x = in;
  }
  rms_norm_row(norm, x, n, out);
  return out;
}

// Buffers live from the op that writes them to their last reader; slots are reused once free.
void Model::plan_buffers() {
  const size_t nbuf = cfg_.buffer_widths.size();
  std::vector<int64_t> last(nbuf, -1);
  for (size_t i = 0; i < cfg_.ops.size(); i++) {
    const OpSpec& op = cfg_.ops[i];
    for (int32_t b : {op.in0, op.in1, op.in2, op.out}) {
      if (b >= 0) last[(size_t)b] = std::max(last[(size_t)b], (int64_t)i);
    }
    // A fused op's inputs are read where its consumers run (a later op, on any thread), so no
    // op before that may reuse their slots.
    if (fusion_[i] != FUSE_NONE) {
      for (int32_t b : {op.in0, op.in1, op.in2}) {
        if (b >= 0) last[(size_t)b] = std::max(last[(size_t)b], fused_until_[i]);
      }
    }
  }
  slot_of_.assign(nbuf, -1);
  std::vector<int64_t> slot_free_after;  // op index after which the slot is free
  std::vector<int64_t> slot_width;
  for (size_t i = 0; i < cfg_.ops.size(); i++) {
    const int32_t out = cfg_.ops[i].out;
    if (out < 0 || cfg_.ops[i].kind == OP_OUTPUT) continue;
    // An add computed in its projection's epilogue writes its output during that projection,
    // while other threads may still read the projection's inputs: its slot must be free before.
    const int64_t written_at = in_epilogue((int32_t)i) ? (int64_t)i - 1 : (int64_t)i;
    int32_t chosen = -1;
    for (size_t s = 0; s < slot_free_after.size(); s++) {
      if (slot_free_after[s] < written_at) {
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
  rope_cos_.resize((size_t)(cfg_.n_rot / 2 * cap));
  rope_sin_.resize((size_t)(cfg_.n_rot / 2 * cap));
  head_q_.resize((size_t)(cfg_.n_embd / 32 + 1) * cap);
  if (head_q6k_kernel_) {
    head_q8k_.resize((size_t)(cfg_.n_embd * cap));
    head_q8k_d_.resize((size_t)(cfg_.n_embd / 256 + 1) * cap);
    head_q8k_sum_.resize((size_t)(cfg_.n_embd / 256 + 1) * cap);
    head_q8k_bsum16_.resize((size_t)(cfg_.n_embd / 16 + 1) * cap);
  }
  if (use_amx_ && cap >= AMX_MIN_TOKENS) {
    const int64_t padded = (cap + 15) / 16 * 16;  // whole token tiles
    q_tiles_.resize((size_t)(max_width_ * padded));
  }
  batch_capacity_ = cap;
  count_scratch();
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

// Bytes of one weight row (one output) of a matrix op's tensor.
static int64_t weight_row_bytes(const Tensor& w) {
  return w.type == T_I2_S    ? w.ne0 / 4
         : w.type == T_TQ2_0 ? w.ne0 / 256 * (int64_t)sizeof(BlockTQ2)
         : w.type == T_TQ1_0 ? w.ne0 / 256 * (int64_t)sizeof(BlockTQ1)
         : w.type == T_Q6_K  ? w.ne0 / 256 * kQ6KBlockBytes
         : w.type == T_Q8_0  ? w.ne0 / 32 * (int64_t)sizeof(BlockQ8_0)
         : w.type == T_F32   ? w.ne0 * 4
                             : w.ne0 * 2;
}

// Calls f(start, bytes) for each run of weights in this thread's share of the matrix op group
// that starts at op j (its static share of the group's rows, which work stealing starts from,
// taken tensor by tensor in order), while f returns true.
template <typename F>
void Model::for_each_share_range(size_t j, int tid, int nth, F&& f) const {
  int64_t r0, r1;
  share(group_rows(j), tid, nth, r0, r1);
  for (size_t m = j; m < group_end_[j] && r0 < r1; m++) {
    const Tensor& w = tensors_[(size_t)cfg_.ops[m].weight];
    if (r0 < w.ne1) {
      const int64_t row_bytes = weight_row_bytes(w);
      if (!f(w.data + r0 * row_bytes, (std::min(r1, w.ne1) - r0) * row_bytes)) return;
      r0 = 0;
    } else {
      r0 -= w.ne1;
    }
    r1 -= w.ne1;
  }
}

// Matrix ops whose rows threads take by work stealing: every projection and head but the AMX
// tiles (whose kernels take whole 16-row groups, split by the static share).
bool Model::steals_rows(const OpSpec& op, int64_t T) const {
  if (op.kind == OP_OUTPUT) return true;
  return op.kind == OP_LINEAR && !amx_eligible(tensors_[(size_t)op.weight], T);
}

// How much of its next share a thread waiting at a barrier may ask L2 for (see warm_weights).
constexpr int64_t kWarmWindowBytes = 64 * 1024;

// Decode streams every weight once per token; within an op the kernels prefetch ahead, but each
// op's first kilobytes would start cold. Before the barrier, each thread asks L2 for the start
// of its share of the next matrix op's weights, and leaves the rest of a warm-up window to
// warm_weights.
void Model::prefetch_next_weights(size_t i, int tid, int nth) {
  WarmCursor& warm = warm_[(size_t)tid];
  warm.next = warm.end = nullptr;
  for (size_t j = i + 1; j < cfg_.ops.size() && j <= i + 4; j++) {
    const OpSpec& next = cfg_.ops[j];
    if (group_end_[j] == 0 || (next.kind != OP_LINEAR && next.kind != OP_OUTPUT)) continue;
    // The start of this thread's share of the next matrix op.
    for_each_share_range(j, tid, nth, [&](const uint8_t* start, int64_t bytes) {
      const int64_t n = std::min<int64_t>(8192, bytes);
      for (int64_t o = 0; o < n; o += 64) __builtin_prefetch(start + o, 0, 2);
      warm.next = start + n;
      warm.end = start + std::min<int64_t>(kWarmWindowBytes, bytes);
      return false;
    });
    return;
  }
}

// While a thread waits at a barrier (for a thread that runs a norm or quantizes the next input
// alone, or finishes its rows later), it asks L2 for more of its share of the next matrix op,
// 1 KiB per call, up to kWarmWindowBytes from the share's start: memory that would sit idle
// while one core computes streams the other's next weights. False when the window is done.
// 64 KiB stays well inside the smallest L2 of the x86 cores this runs on (256 KiB); on a Zen 5
// (two threads, old and new builds alternating, bench/ab-addons.mjs) the projections took
// 0-4% less time with it in four runs (64 and 256 KiB alike), and never more.
bool Model::warm_weights(int tid) {
  WarmCursor& warm = warm_[(size_t)tid];
  if (warm.next >= warm.end) return false;
  for (int o = 0; o < 1024; o += 64) __builtin_prefetch(warm.next + o, 0, 2);
  warm.next += 1024;
  return true;
}

// After a one-token step (or a few tokens'), between its end and the next step's start the memory
// sits idle: the main thread takes the result, samples and posts the next step (0.2-0.4 ms a
// token on a VM), and the workers poll. Each thread notes where its shares of the step's first
// matrix ops start (the static split work stealing starts from), up to between_bytes_ in all,
// and asks L2 for them while it waits (warm_between_steps), so the next step's first projections
// start on lines already on their way instead of from memory.
void Model::arm_between_steps(int tid, int nth) {
  BetweenCursor& c = between_[(size_t)tid];
  c.count = c.at = 0;
  c.next = nullptr;
  int64_t budget = between_bytes_ / nth;
  for (size_t j = 0; j < cfg_.ops.size() && budget > 0 && c.count < 8; j++) {
    if (group_end_[j] == 0 || cfg_.ops[j].kind != OP_LINEAR) continue;
    for_each_share_range(j, tid, nth, [&](const uint8_t* start, int64_t bytes) {
      bytes = std::min(bytes, budget);
      c.ranges[c.count++] = {start, start + bytes};
      budget -= bytes;
      return budget > 0 && c.count < 8;
    });
  }
  if (c.count > 0) c.next = c.ranges[0].begin;
}

bool Model::warm_between_steps(int tid) {
  BetweenCursor& c = between_[(size_t)tid];
  while (c.at < c.count && c.next >= c.ranges[c.at].end) {
    if (++c.at < c.count) c.next = c.ranges[c.at].begin;
  }
  if (c.at >= c.count) return false;
  const uint8_t* end = std::min(c.next + 4096, c.ranges[c.at].end);
  for (const uint8_t* p = c.next; p < end; p += 64) __builtin_prefetch(p, 0, 2);
  c.asked.store(c.asked.load(std::memory_order_relaxed) + (end - c.next), std::memory_order_relaxed);
  c.next = end;
  return true;
}

uint64_t Model::warmed_between_steps() const {
  uint64_t bytes = 0;
  for (const BetweenCursor& c : between_) bytes += (uint64_t)c.asked.load(std::memory_order_relaxed);
  return bytes;
}

// Output rows of the matrix ops of the group that starts at op i.
int64_t Model::group_rows(size_t i) const {
  int64_t rows = 0;
  for (size_t j = i; j < group_end_[i]; j++) rows += tensors_[(size_t)cfg_.ops[j].weight].ne1;
  return rows;
}

// With several tokens, a kernel called on all of a thread's rows would stream those weights
// once per token (or per 4 tokens). Calling it on tiles of rows that fit in L1/L2 reads each
// weight from memory once per step, whatever the batch: what makes batched decoding of many
// sequences nearly as cheap per step as decoding one. 32 KiB unless the caller says otherwise.
template <typename F>
inline void for_row_tiles(int64_t r0, int64_t r1, int64_t row_bytes, int64_t tokens, F&& kernel,
                          int64_t tile_bytes = 32 * 1024) {
  if (tokens <= 1) {
    kernel(r0, r1);
    return;
  }
  const int64_t tile = std::max<int64_t>(2, (tile_bytes / std::max<int64_t>(row_bytes, 1)) & ~(int64_t)1);
  for (int64_t a = r0; a < r1; a += tile) kernel(a, std::min(r1, a + tile));
}

// The row tile of the I2_S and TQ2_0 kernels for T tokens. From 16 tokens on (prompts) the
// kernels pass over a tile once per group of eight tokens, so it needs to stay in L2, not L1,
// and each tile costs a restart (its first rows' prefetches, the scratch sums flushed): an
// eighth of one core's L2, from 32 to 256 KiB, took a 128-token bench-i2s prompt step on an
// Intel Xeon (2 MiB L2, so 256 KiB) 2.5% less time on `avx2` (1253-1263 against 1281-1296 ms),
// 3-5% less on `avxvnni` and `avx512vnni`, and bench-tq2's 3-5% less. Fewer tokens keep 32 KiB
// (6 and 16 tokens measured the same either way). Unknown L2 (macOS): 128 KiB.
static int64_t ternary_tile_bytes(int64_t T) {
  static const int64_t prompt_tile = [] {
    const int64_t l2 = l2_cache_bytes();
    return l2 > 0 ? std::min<int64_t>(256 * 1024, std::max<int64_t>(32 * 1024, l2 / 8)) : 128 * 1024;
  }();
  return T >= 16 ? prompt_tile : 32 * 1024;
}

bool Model::amx_eligible(const Tensor& w, int64_t T) const {
  const int64_t min_tokens = w.type == T_I2_S ? AMX_MIN_TOKENS_I2S : AMX_MIN_TOKENS_TQ2;
  return use_amx_ && (w.type == T_I2_S || w.type == T_TQ2_0) && T >= min_tokens && w.ne1 % 16 == 0 && w.ne0 % 64 == 0;
}

void Model::create_sequence(int32_t id) {
  Sequence& slot = seqs_[id];
  kv_allocated_.fetch_sub((uint64_t)slot.capacity * kv_bytes_per_token(), std::memory_order_relaxed);
  slot = Sequence();
}

void Model::free_sequence(int32_t id) {
  auto it = seqs_.find(id);
  if (it == seqs_.end()) return;
  const uint64_t bytes = (uint64_t)it->second.capacity * kv_bytes_per_token();
  kv_allocated_.fetch_sub(bytes, std::memory_order_relaxed);
  const uint64_t limit = (uint64_t)round_up_blocks(cfg_.context) * kv_bytes_per_token();
  if (bytes > 0 && bytes <= limit) {
    uint64_t spare = kv_spare_.load(std::memory_order_relaxed);
    while (!spare_kv_.empty() && spare + bytes > limit) {  // the oldest go first
      spare -= (uint64_t)spare_kv_.front().capacity * kv_bytes_per_token();
      spare_kv_.erase(spare_kv_.begin());
    }
    it->second.length = 0;
    spare_kv_.push_back(std::move(it->second));
    kv_spare_.store(spare + bytes, std::memory_order_relaxed);
  }
  seqs_.erase(it);
}

// Gives an empty sequence the spare cache that best fits `needed` positions: the smallest that
// holds them, else the largest (whose capacity ensure_capacity then extends). Its old contents
// stay behind the new length, never read.
bool Model::adopt_spare_kv(Sequence& s, int64_t needed) {
  if (spare_kv_.empty() || s.kv.data() != nullptr) return false;
  size_t best = 0;
  for (size_t i = 1; i < spare_kv_.size(); i++) {
    const int64_t c = spare_kv_[i].capacity, b = spare_kv_[best].capacity;
    const bool fits = c >= needed, best_fits = b >= needed;
    if (fits != best_fits ? fits : (fits ? c < b : c > b)) best = i;
  }
  const uint64_t bytes = (uint64_t)spare_kv_[best].capacity * kv_bytes_per_token();
  s = std::move(spare_kv_[best]);
  s.length = 0;
  spare_kv_.erase(spare_kv_.begin() + (std::ptrdiff_t)best);
  kv_spare_.fetch_sub(bytes, std::memory_order_relaxed);
  kv_allocated_.fetch_add(bytes, std::memory_order_relaxed);
  return true;
}

void Model::fork_sequence(int32_t src, int32_t dst) {
  auto it = seqs_.find(src);
  if (it == seqs_.end()) throw std::runtime_error("unknown sequence");
  if (src == dst) return;
  const Sequence& source = it->second;  // references survive a rehash; iterators do not
  Sequence& target = seqs_[dst];
  // The copy holds the source's positions (its cache's pages past them are not touched).
  Sequence copy;
  copy.length = source.length;
  if (source.kv.data() != nullptr && source.length > 0) {
    copy.kv = reserve_kv();
    copy.capacity = round_up_blocks(source.length);
    const int64_t hd = cfg_.head_dim, stride = kv_stride();
    for (int64_t l = 0; l < cfg_.n_layer; l++) {
      for (int64_t kh = 0; kh < cfg_.n_head_kv; kh++) {
        std::memcpy(layer_keys(copy, l) + kh * hd * stride, layer_keys(source, l) + kh * hd * stride,
                    (size_t)(copy.capacity * hd) * 2);
        std::memcpy(layer_values(copy, l) + kh * stride * hd, layer_values(source, l) + kh * stride * hd,
                    (size_t)(source.length * hd) * 2);
      }
    }
  }
  kv_allocated_.fetch_sub((uint64_t)target.capacity * kv_bytes_per_token(), std::memory_order_relaxed);
  target = std::move(copy);
  kv_allocated_.fetch_add((uint64_t)target.capacity * kv_bytes_per_token(), std::memory_order_relaxed);
}

void Model::truncate_sequence(int32_t id, int64_t length) {
  auto it = seqs_.find(id);
  if (it == seqs_.end()) throw std::runtime_error("unknown sequence");
  it->second.length = std::min(it->second.length, length);
}

// Each KV head's keys are stored in blocks of kKeyBlock positions, each block transposed:
// [kv head][position / 32][head_dim][32] f16, so the scores of 32 consecutive positions are one
// SIMD row per dimension (one lane per position, the reference's order in every lane) and one
// head's keys for n positions are n / 32 runs of head_dim 64-byte lines, read front to back.
// Values are [kv head][position][head_dim]: each head's values for n positions are one run.
// (Keys as [head_dim][capacity] rows put a head's few positions per dimension on lines
// capacity × 2 bytes apart, and values as [position][kv width] one head's 256 bytes every kv
// width: with this layout a 2B-4T decode step's attention took 0.49 instead of 0.58 ms,
// avx512vnni, two threads.) Each KV head's keys and values span the whole context (kv_stride(),
// whole blocks) in one reservation per sequence (Sequence), of which a position's first write
// brings in the pages: the capacity only counts the positions asked for. The cache used to
// double into fresh vectors, copying the old: on a Zen 5 VM, where a new page's first touch
// costs ~13 µs, the first bench-i2s token past 2048 positions took 0.8-1.1 s instead of ~40 ms
// (315 MB of new cache zeroed and half of it copied, on the step's thread), and every doubling
// touched the whole cache again.
void Model::ensure_capacity(Sequence& s, int64_t needed) {
  if (needed <= s.capacity) return;
  if (needed > kv_stride()) throw std::runtime_error("position beyond the model's context");
  if (s.kv.data() == nullptr && !adopt_spare_kv(s, needed)) s.kv = reserve_kv();
  if (needed <= s.capacity) return;
  const int64_t cap = round_up_blocks(needed);
  kv_allocated_.fetch_add((uint64_t)(cap - s.capacity) * kv_bytes_per_token(), std::memory_order_relaxed);
  s.capacity = cap;
}

PageReservation Model::reserve_kv() const {
  const uint64_t bytes = (uint64_t)kv_stride() * kv_bytes_per_token();
  try {
    return PageReservation((size_t)bytes);
  } catch (const std::bad_alloc&) {
    throw std::runtime_error("could not reserve " + std::to_string(bytes >> 20) + " MiB of address space for a sequence's KV cache (" +
                             std::to_string(cfg_.context) + " positions)");
  }
}

// The reference's angles, in its order: θ_i = p · s^i by repeated f32 multiplication (s =
// base^(−2/n_rot)), each cos and sin taken in double and rounded to f32.
void Model::fill_rope_table(int64_t T) {
  const int64_t half = cfg_.n_rot / 2;
  if (half <= 0) return;
  const float theta_scale = (float)std::pow((double)cfg_.rope_base, (double)(-2.0f / (float)cfg_.n_rot));
  for (int64_t t = 0; t < T; t++) {
    float* cs = rope_cos_.data() + t * half;
    float* sn = rope_sin_.data() + t * half;
    float theta = (float)positions_[t];
    for (int64_t i = 0; i < half; i++) {
      cs[i] = (float)std::cos((double)theta);
      sn[i] = (float)std::sin((double)theta);
      theta = theta * theta_scale;
    }
  }
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
  fill_rope_table(T);
  owners_.assign((size_t)T, nullptr);
  logit_rows_.clear();
  for (int64_t t = 0; t < T; t++) {
    auto it = seqs_.find(seqs[t]);
    if (it == seqs_.end()) throw std::runtime_error("unknown sequence in step");
    owners_[(size_t)t] = &it->second;
    ensure_capacity(it->second, positions[t] + 1);
    if (want_logits[t]) logit_rows_.push_back(t);
  }
  // A prompt's attention in tiles of consecutive tokens (attend_token_tiles); below 8 tokens the
  // (token, head) pairs split more evenly across threads.
  attention_tiles_.clear();
  if (T >= 8 && attention_tile_tokens_ > 1) {
    for (int64_t t = 0; t < T; t++) {
      if (t == 0 || t - attention_tiles_.back() == attention_tile_tokens_ || owners_[(size_t)t] != owners_[(size_t)t - 1] ||
          positions[t] != positions[t - 1] + 1) {
        attention_tiles_.push_back(t);
      }
    }
    attention_tiles_.push_back(T);
  }
  std::fill(quant_buffer_.begin(), quant_buffer_.end(), -1);
  // Which kernel each op runs this step (AMX tiles only from AMX_MIN_TOKENS_I2S or _TQ2 tokens
  // on), and whether the barrier after it can be skipped: consecutive projections of the same
  // input (q/k/v, gate/up) share the quantized activations and write distinct buffers, so
  // threads may run straight on (not with AMX, whose packed activation tiles each op writes
  // anew, nor when buffers are copied in or out between ops).
  std::vector<uint8_t> barrier_after(cfg_.ops.size(), 1);
  fused_step_ = inject.empty() && capture.empty();
  for (size_t i = 0; i < cfg_.ops.size(); i++) {
    const OpSpec& op = cfg_.ops[i];
    // A fused op runs inside its consumer, an epilogue add before its projection's barrier.
    if (fused_step_ && (fusion_[i] != FUSE_NONE || in_epilogue((int32_t)i))) barrier_after[i] = 0;
    const bool amx = op.kind == OP_LINEAR && amx_eligible(tensors_[op.weight], T);
    kernel_calls_[(size_t)(amx                                           ? op_kernel_amx_[i]
                           : op.kind == OP_ATTENTION && attends_by_work(T) ? attention_split_kernel_
                                                                           : op_kernel_id_[i])]++;
    if (i + 1 < cfg_.ops.size() && inject.empty() && capture.empty() && !amx) {
      const OpSpec& next = cfg_.ops[i + 1];
      if (op.kind == OP_LINEAR && next.kind == OP_LINEAR && next.in0 == op.in0 &&
          tensors_[op.weight].type == tensors_[next.weight].type && !amx_eligible(tensors_[next.weight], T)) {
        barrier_after[i] = 0;
      }
    }
  }
  // Projections chained without a barrier (same input, same weight type) form a group whose
  // rows the threads share as one: each thread streams its part of q, k and v (or gate and up)
  // as one run of memory, and only the group ends with a barrier and a stolen tail. The first
  // op of a group runs all of it; the others do nothing.
  group_end_.assign(cfg_.ops.size(), 0);
  for (size_t i = 0; i < cfg_.ops.size();) {
    size_t e = i + 1;
    const OpSpec& first = cfg_.ops[i];
    if (first.kind == OP_LINEAR && steals_rows(first, T) && tensors_[(size_t)first.weight].type != T_F16 &&
        tensors_[(size_t)first.weight].type != T_F32) {
      while (e < cfg_.ops.size() && !barrier_after[e - 1] && steals_rows(cfg_.ops[e], T)) e++;
    }
    group_end_[i] = e;
    i = e;
  }
  // Matrix ops hand out their rows by work stealing (work_steal.h); each starts from the static split.
  const size_t nth_all = (size_t)pool_->size();
  if (row_steal_size_ < cfg_.ops.size() * nth_all) {
    row_steal_size_ = cfg_.ops.size() * nth_all;
    row_steal_.reset(new RowSteal[row_steal_size_]);
  }
  if (warm_.size() < (size_t)nth_all) warm_.resize((size_t)nth_all);
  for (WarmCursor& w : warm_) w.next = w.end = nullptr;
  std::vector<RowSteal*> steal(cfg_.ops.size(), nullptr);
  for (size_t i = 0; i < cfg_.ops.size(); i++) {
    const OpSpec& op = cfg_.ops[i];
    if (!steals_rows(op, T) || group_end_[i] == 0) continue;
    steal[i] = row_steal_of(i);
    const Tensor& w = tensors_[(size_t)op.weight];
    // Claims of at least 16 KiB of weights (and whole row tiles when several tokens share
    // them), in multiples of 16 rows: whole passes of every kernel's row blocking.
    const int64_t row_bytes = std::max<int64_t>(1, weight_row_bytes(w));
    const int64_t min_rows = std::max<int64_t>(16, 16 * 1024 / row_bytes);
    row_steal_reset(row_steal_of(i), (int)nth_all, group_rows(i), 16, min_rows);
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
      // 0: done by its group's first op; a fused op (but an add) runs inside its consumers.
      const bool skip = fused_step_ && ((fusion_[i] != FUSE_NONE && fusion_[i] != FUSE_ADD) ||
                                        in_epilogue((int32_t)i));
      if (group_end_[i] != 0 && !skip) run_op(op, tid, nth, T, steal[i]);
      if (T <= 4 && group_end_[i] != 0) prefetch_next_weights(i, tid, nth);
      if (barrier_after[i]) pool_->barrier().wait([&] { return warm_weights(tid); });
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
    if (T <= 4 && between_bytes_ > 0 && inject.empty()) arm_between_steps(tid, nth);
  });
  for (int64_t t = 0; t < T; t++) {
    Sequence* s = owners_[(size_t)t];
    s->length = std::max(s->length, (int64_t)positions[t] + 1);
  }
  for (size_t i = 0; i < cfg_.ops.size(); i++) op_ns_[(size_t)op_kind_id_[i]] += elapsed[i];
}

Model::QuantView Model::quant_view(int tid, int64_t T) const {
  if (T == 1) {
    const LocalQuant& l = local_quant_[(size_t)tid];
    return {l.q.data(), l.scale.data(), l.sum.data()};
  }
  return {q_.data(), q_scale_.data(), q_sum_.data()};
}

// Output rows [b0, b1) of a projection whose input is quantized (or, for F16, rounded into xr).
void Model::linear_rows(const OpSpec& op, int tid, int64_t T, int kind, const std::vector<float>& xr, int64_t b0,
                        int64_t b1) {
  const Tensor& w = tensors_[op.weight];
  const int64_t cols = w.ne0, rows = w.ne1;
  const float* x = buf(op.in0);
  float* y = buf(op.out);
  const QuantView qv = quant_view(tid, T);
  if (kind == 3) {
    float w_scale;
    std::memcpy(&w_scale, w.data + cols * rows / 4, 4);
    i2s_gemm_amx(w.data, cols, b0, b1, q_tiles_.data(), T, q_scale_.data(), q_sum_.data(), w_scale, y, rows);
  } else if (kind == 4) {
    tq2_gemm_amx((const BlockTQ2*)w.data, cols, b0, b1, q_tiles_.data(), T, q_scale_.data(), q_sum_.data(), y, rows);
  } else if (kind == 0) {
    float w_scale;
    std::memcpy(&w_scale, w.data + cols * rows / 4, 4);
    for_row_tiles(
        b0, b1, cols / 4, T,
        [&](int64_t a, int64_t b) { kernels_->i2s_gemm(w.data, cols, a, b, qv.q, qv.scale, qv.sum, w_scale, T, y, rows); },
        ternary_tile_bytes(T));
  } else if (kind == 1 && w.type == T_TQ1_0) {
    const BlockTQ1* w1 = (const BlockTQ1*)w.data;
    const int64_t nb = cols / 256;
    if (T < TQ1_TILE_MIN_TOKENS) {
      for_row_tiles(b0, b1, nb * (int64_t)sizeof(BlockTQ1), T, [&](int64_t a, int64_t b) {
        kernels_->tq1_gemm(w1, cols, a, b, qv.q, qv.scale, qv.sum, T, y, rows);
      });
    } else {
      // Enough tokens share each block: convert the tile to TQ2_0 once and run those kernels.
      BlockTQ2* tile = tq1_tile_[(size_t)tid].data();
      for_row_tiles(b0, b1, nb * (int64_t)sizeof(BlockTQ2), T, [&](int64_t a, int64_t b) {
        kernels_->tq1_to_tq2(w1 + a * nb, tile, (b - a) * nb);
        kernels_->tq2_gemm(tile, cols, 0, b - a, qv.q, qv.scale, qv.sum, T, y + a, rows);
      });
    }
  } else if (kind == 1) {
    for_row_tiles(b0, b1, cols / 256 * (int64_t)sizeof(BlockTQ2), T, [&](int64_t a, int64_t b) {
      kernels_->tq2_gemm((const BlockTQ2*)w.data, cols, a, b, qv.q, qv.scale, qv.sum, T, y, rows);
    }, ternary_tile_bytes(T));
  } else if (w.type == T_F16) {
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
  const int32_t e = epilogue_add_[(size_t)(&op - cfg_.ops.data())];
  if (fused_step_ && e >= 0) {
    // The residual add (plan_decode_fusion) of these rows, as the add op computes it; one of its
    // inputs is y.
    const OpSpec& add = cfg_.ops[(size_t)e];
    const float* a = buf(add.in0);
    const float* b = buf(add.in1);
    float* sum = buf(add.out);
    for (int64_t t = 0; t < T; t++) {
      for (int64_t r = b0; r < b1; r++) sum[t * rows + r] = a[t * rows + r] + b[t * rows + r];
    }
  }
}

// Thread tid's share [b0, b1) of `count` consecutive units of attention work, by their cost
// (cost(u): about the unit's key count plus a fixed part, growing along a prompt): equal counts
// of units gave the second of two threads three times the first's work on a 128-token prompt, so
// the threads take equal shares of the total cost instead.
template <typename Cost>
static void share_by_cost(int64_t count, Cost&& cost, int tid, int nth, int64_t& b0, int64_t& b1) {
  int64_t total = 0;
  for (int64_t u = 0; u < count; u++) total += cost(u);
  const int64_t lo = total * tid / nth, hi = total * (tid + 1) / nth;
  b0 = b1 = count;
  int64_t before = 0;  // the cost of the units before unit u
  bool started = false;
  for (int64_t u = 0; u < count; u++) {
    if (!started && before >= lo) {
      b0 = u;
      started = true;
    }
    if (before >= hi) {
      b1 = u;
      break;
    }
    before += cost(u);
  }
  if (!started) b0 = b1;
}

// Thread tid's share of a step's (token, head) attention pairs, token-major.
void Model::share_attention_pairs(int64_t T, int tid, int nth, int64_t& b0, int64_t& b1) const {
  const int64_t nh = cfg_.n_head;
  share_by_cost(T * nh, [&](int64_t p) { return positions_[p / nh] + 1 + 32; }, tid, nth, b0, b1);
}

// Query head h of token t as attention reads it: rotated here when RoPE is fused into it, then
// rounded to f16 values (dest: hd floats).
void Model::attention_query(const float* q, bool rotate_q, int64_t t, int64_t h, float* dest) const {
  const int64_t hd = cfg_.head_dim;
  const float* head = q + t * cfg_.n_embd + h * hd;
  if (rotate_q) {
    rope_head(head, dest, t);
    head = dest;
  }
  kernels_->round_f16(head, dest, hd);
}

// Scores of `rows` query rows (qh, hd apart) against one KV head's keys over positions [0, len),
// row r at scores + r × len, one 32-position key block at a time.
void Model::attention_scores(const float* qh, int64_t rows, const uint16_t* keys, int64_t len, float* scores) const {
  attention_scores(qh, rows, keys, 0, len, len, scores);
}

// The same for positions [j0, len) only (j0 a multiple of kKeyBlock), rows `stride` apart.
void Model::attention_scores(const float* qh, int64_t rows, const uint16_t* keys, int64_t j0, int64_t len,
                             int64_t stride, float* scores) const {
  const int64_t hd = cfg_.head_dim;
  for (int64_t j = j0; j < len; j += kKeyBlock) {
    // The next key block (kKeyBlock × hd f16, 8 KiB for 128-wide heads) into L1 while this one is
    // scored, for the paths whose kernel does not ask for its lines itself (key_prefetch_bytes:
    // the x86 ones do, a line at a time, which read the keys faster than this burst on a Zen 5).
    // A long context's keys come from memory: at 4000 positions of bench-i2s the burst took
    // scores from 14 to 10.5 ms a token per thread (`avx2`, Xeon with AMX).
    if (kernels_->key_prefetch_bytes == 0 && j + kKeyBlock < len) {
      const char* next = (const char*)(keys + (j + kKeyBlock) * hd);
      for (int64_t o = 0; o < kKeyBlock * hd * 2; o += 64) __builtin_prefetch(next + o, 0, 3);
    }
    kernels_->attn_scores(qh, rows, keys + j * hd, kKeyBlock, hd, std::min(kKeyBlock, len - j), scores + j, stride);
  }
}

// One token's attention, phase 2, split by its work instead of by its query heads. Split by heads
// (share_attention_pairs), each thread reads the keys and values of every KV head it has a query
// head of: with 2 threads and the 2B shape's 20 query heads on 5 KV heads, both read the middle
// KV head's whole cache (6 heads' bytes for 5), with 8 threads 8 heads' or more; deep in a
// context those bytes are most of attention's time. Here each byte is read by one thread:
//   scores    (KV head, key block) units: a thread scores all of a KV head's query heads over
//             its blocks, into split_scores_ (query head h's row at h × len);
//   softmax   by query head (rows);
//   values    (KV head, 64 output lanes) units: a thread sums its lanes of all of a KV head's
//             query heads over every position.
// Two barriers between the three. Every score is one dot product, every softmax one row and every
// output lane one sum over the positions in order, each computed as the head split computes it:
// the same bits for any thread count (src/attention-split.test.ts runs both ways).
void Model::attend_one_token(const OpSpec& op, const float* q, bool rotate_q, float* out, int tid, int nth) {
  const int64_t hd = cfg_.head_dim, nh = cfg_.n_head, nkv = cfg_.n_head_kv, group = nh / nkv;
  const int64_t len = positions_[0] + 1, blocks = (len + kKeyBlock - 1) / kKeyBlock;
  const Sequence* s = owners_[0];
  float* scores = split_scores_.data();
  float* mine = scratch_[(size_t)tid].data();  // a KV head's query heads, then their output lanes
  int64_t u0 = 0, u1 = 0;
  share(nkv * blocks, tid, nth, u0, u1);
  for (int64_t u = u0; u < u1;) {
    const int64_t kvh = u / blocks, first = u % blocks, last = std::min(blocks, first + (u1 - u));
    for (int64_t r = 0; r < group; r++) attention_query(q, rotate_q, 0, kvh * group + r, mine + r * hd);
    attention_scores(mine, group, layer_keys(*s, op.layer) + kvh * hd * kv_stride(), first * kKeyBlock,
                     std::min(len, last * kKeyBlock), len, scores + kvh * group * len);
    u += last - first;
  }
  pool_->barrier().wait();
  share(nh, tid, nth, u0, u1);
  if (u0 < u1) {
    softmax_rows(*kernels_, scores + u0 * len, u1 - u0, len, len, (float)(1.0 / std::sqrt((double)hd)));
    kernels_->round_f16(scores + u0 * len, scores + u0 * len, (u1 - u0) * len);
  }
  pool_->barrier().wait();
  // 64 lanes: the widest value pass a kernel makes for four query heads (kernels_avx512.cc).
  const int64_t lanes = hd % 64 == 0 ? 64 : hd, chunks = hd / lanes;
  share(nkv * chunks, tid, nth, u0, u1);
  for (int64_t u = u0; u < u1;) {
    const int64_t kvh = u / chunks, first = u % chunks, last = std::min(chunks, first + (u1 - u));
    const float* p = scores + kvh * group * len;
    const uint16_t* vals = layer_values(*s, op.layer) + kvh * kv_stride() * hd;
    if (first == 0 && last == chunks) {
      // A whole KV head: one pass over its values, as the head split makes it (its rows read in
      // full, tile by tile, rather than half a row in each of two passes over the cache).
      kernels_->attn_values(p, group, len, vals, hd, hd, len, out + kvh * group * hd, false);
    } else {
      // Part of a head's lanes: the kernel writes head r's lanes at mine + r × width; they
      // belong at r × hd of out.
      const int64_t lane0 = first * lanes, width = (last - first) * lanes;
      kernels_->attn_values(p, group, len, vals + lane0, hd, width, len, mine, false);
      for (int64_t r = 0; r < group; r++) {
        std::memcpy(out + (kvh * group + r) * hd + lane0, mine + r * width, (size_t)width * sizeof(float));
      }
    }
    u += last - first;
  }
}

// Whether this step's attention runs attend_one_token: one token, deep enough in its context
// (split_attention_from_ positions) that reading each KV byte once outweighs two more barriers
// (bench-i2s, `avx512vnni`, Zen 5: attention 0.62 / 0.64 ms a token at 16-48 positions, 0.92 /
// 0.93 at 100-132, 1.60 / 1.44 at 300-332, 9.40 / 8.40 at 3000-3024).
bool Model::attends_by_work(int64_t T) const {
  return T == 1 && pool_->size() > 1 && split_attention_from_ > 0 && positions_[0] + 1 >= split_attention_from_;
}

// A prompt's attention, phase 2: each unit is one tile of consecutive tokens (attention_tiles_)
// against one KV head, its tokens' query heads scored together. Deep in a context a token's keys
// and values (~10 MB a layer at 4096 positions of the 2B shape) come from memory or L3; a tile
// reads each key block and value tile once for all its tokens (the kernels' passes over four or
// eight heads at a time reread it from L1). The scores run to the tile's last position (each
// token's softmax takes its own length, the rest unused); the values run over the first token's
// length for every row, then each later token's own few positions continue its sums (attn_values
// with carry), so every lane sums in position order: the bits of one token at a time.
void Model::attend_token_tiles(const OpSpec& op, const float* q, bool rotate_q, float* out, int tid, int nth) {
  const int64_t hd = cfg_.head_dim, nh = cfg_.n_head, nkv = cfg_.n_head_kv, d = cfg_.n_embd, group = nh / nkv;
  const float scale = (float)(1.0 / std::sqrt((double)hd));
  const int64_t tiles = (int64_t)attention_tiles_.size() - 1, units = tiles * nkv;
  // Units split across threads by their cost (a unit's positions), as the pairs are.
  int64_t u0, u1;
  share_by_cost(
      units,
      [&](int64_t u) {
        const int64_t t0 = attention_tiles_[(size_t)(u / nkv)], t1 = attention_tiles_[(size_t)(u / nkv) + 1];
        return (t1 - t0) * (positions_[t1 - 1] + 1 + 32);
      },
      tid, nth, u0, u1);
  float* scores = scratch_[(size_t)tid].data();
  float* sums = scores + attention_tile_tokens_ * group * cfg_.context;
  std::vector<float> qh((size_t)(attention_tile_tokens_ * group * hd));
  for (int64_t u = u0; u < u1; u++) {
    const int64_t t0 = attention_tiles_[(size_t)(u / nkv)], n = attention_tiles_[(size_t)(u / nkv) + 1] - t0;
    const int64_t kvh = u % nkv, rows = n * group;
    const int64_t first_len = positions_[t0] + 1, last_len = positions_[t0 + n - 1] + 1;
    const Sequence* s = owners_[(size_t)t0];
    const uint16_t* keys = layer_keys(*s, op.layer) + kvh * hd * kv_stride();
    const uint16_t* vals = layer_values(*s, op.layer) + kvh * kv_stride() * hd;
    for (int64_t r = 0; r < rows; r++) attention_query(q, rotate_q, t0 + r / group, kvh * group + r % group, qh.data() + r * hd);
    attention_scores(qh.data(), rows, keys, last_len, scores);
    auto row_length = [&](int64_t r) { return positions_[t0 + r / group] + 1; };
    softmax_ragged_rows(*kernels_, scores, rows, last_len, scale, row_length);
    for (int64_t r = 0; r < rows; r++) kernels_->round_f16(scores + r * last_len, scores + r * last_len, row_length(r));
    kernels_->attn_values(scores, rows, last_len, vals, hd, hd, first_len, sums, false);
    for (int64_t k = 1; k < n; k++) {
      const int64_t len = positions_[t0 + k] + 1;
      kernels_->attn_values(scores + k * group * last_len + first_len, group, last_len, vals + first_len * hd, hd, hd,
                            len - first_len, sums + k * group * hd, true);
    }
    for (int64_t k = 0; k < n; k++) {
      std::memcpy(out + (t0 + k) * d + kvh * group * hd, sums + k * group * hd, (size_t)(group * hd) * sizeof(float));
    }
  }
}

void Model::run_op(const OpSpec& op, int tid, int nth, int64_t T, RowSteal* steal) {
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
      share(T, tid, nth, b0, b1);
      for (int64_t t = b0; t < b1; t++) rms_norm_row(op, x + t * n, n, y + t * n);
      return;
    }
    case OP_LINEAR: {
      const Tensor& w = tensors_[op.weight];
      const int64_t cols = w.ne0, rows = w.ne1;
      const float* x = buf(op.in0);
      const bool amx = amx_eligible(w, T);
      // 0: int8 per token (kernel layout), 3: the same for AMX tiles, 1: Q8_K, 4: Q8_K for AMX, 2: float.
      const int kind = w.type == T_I2_S ? (amx ? 3 : 0) : (w.type == T_TQ2_0 || w.type == T_TQ1_0) ? (amx ? 4 : 1) : 2;
      // Phase 1: quantize the input once; q/k/v (and gate/up) reuse it. Every thread sees the
      // same quant_buffer_ value, so all take the same branch.
      if ((kind == 0 || kind == 1) && T == 1 && !(quant_buffer_[(size_t)tid] == op.in0 && quant_kind_[(size_t)tid] == kind)) {
        const int32_t norm = fused_norm(op.in0);
        if (norm >= 0) x = fused_prologue(norm, tid);
        // One token: each thread quantizes it into its own copy (the same bits on every thread)
        // and starts on its rows at once; one thread quantizing while the others waited at a
        // barrier took 0.3-1.1 ms of a 2B-4T token's ~11 ms of projections on a Zen 5.
        LocalQuant& l = local_quant_[(size_t)tid];
        // Straight into place where the kernels read activations in their natural order.
        const bool natural = kernels_->layout == LAYOUT_NATURAL;
        int8_t* tmp = natural ? l.q.data() : quant_tmp_[(size_t)tid].data();
        if (kind == 0) {
          kernels_->quantize_i8(x, cols, tmp, l.scale.data(), l.sum.data());
        } else {
          kernels_->quantize_q8k(x, cols, tmp, l.scale.data(), l.sum.data());
        }
        if (!natural) permute_activations(tmp, l.q.data(), cols, kernels_->layout);
        quant_buffer_[(size_t)tid] = op.in0;
        quant_kind_[(size_t)tid] = kind;
      } else if (kind != 2 && !(quant_buffer_[(size_t)tid] == op.in0 && quant_kind_[(size_t)tid] == kind)) {
        share(T, tid, nth, b0, b1);
        const ActLayout layout = kind >= 3 ? LAYOUT_NATURAL : kernels_->layout;
        const int32_t norm = fused_norm(op.in0);
        for (int64_t t = b0; t < b1; t++) {
          const float* xt = norm >= 0 ? fused_prologue(norm, tid, t) : x + t * cols;
          int8_t* tmp = layout == LAYOUT_NATURAL ? q_.data() + t * cols : quant_tmp_[(size_t)tid].data();
          if (kind == 0 || kind == 3) {
            kernels_->quantize_i8(xt, cols, tmp, &q_scale_[(size_t)t], &q_sum_[(size_t)t]);
          } else {
            const int64_t nb = cols / 256;
            kernels_->quantize_q8k(xt, cols, tmp, &q_scale_[(size_t)(t * nb)], &q_sum_[(size_t)(t * nb)]);
          }
          if (layout != LAYOUT_NATURAL) permute_activations(tmp, q_.data() + t * cols, cols, layout);
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
        pool_->barrier().wait([&] { return warm_weights(tid); });
      }
      // Phase 2: output rows split across threads (taken by work stealing but on AMX). An F16
      // projection (rare) multiplies the input rounded to f16, once per thread.
      std::vector<float> xr;
      if (w.type == T_F16) {
        xr.resize((size_t)(T * cols));
        kernels_->round_f16(x, xr.data(), T * cols);
      }
      auto rows_of = [&](int64_t a, int64_t b) { linear_rows(op, tid, T, kind, xr, a, b); };
      const size_t index = (size_t)(&op - cfg_.ops.data());
      if (steal != nullptr && group_end_[index] > index + 1) {
        // A group of projections of this input (q/k/v, gate/up): one stream of rows over all of
        // them, mapped back to each op's own.
        const size_t first = index, last = group_end_[first];
        row_steal_run(steal, tid, nth, [&](int64_t a, int64_t b) {
          int64_t offset = 0;
          for (size_t j = first; j < last && offset < b; j++) {
            const OpSpec& member = cfg_.ops[j];
            const int64_t n = tensors_[(size_t)member.weight].ne1;
            const int64_t lo = std::max(a, offset), hi = std::min(b, offset + n);
            if (lo < hi) linear_rows(member, tid, T, kind, xr, lo - offset, hi - offset);
            offset += n;
          }
        });
      } else if (steal != nullptr) {
        row_steal_run(steal, tid, nth, rows_of);
      } else {
        if (kind >= 3) {
          share(rows / 16, tid, nth, b0, b1);
          b0 *= 16;
          b1 *= 16;
        } else {
          share(rows, tid, nth, b0, b1);
        }
        if (b0 < b1) rows_of(b0, b1);
      }
      return;
    }
    case OP_ROPE: {
      const int64_t width = op.heads * cfg_.head_dim;
      const float* x = buf(op.in0);
      float* y = buf(op.out);
      share(T, tid, nth, b0, b1);
      for (int64_t t = b0; t < b1; t++) {
        for (int64_t h = 0; h < op.heads; h++) rope_head(x + t * width + h * cfg_.head_dim, y + t * width + h * cfg_.head_dim, t);
      }
      return;
    }
    case OP_ATTENTION: {
      const int64_t hd = cfg_.head_dim, nh = cfg_.n_head, nkv = cfg_.n_head_kv, kvw = hd * nkv;
      // A fused RoPE (one-token steps): the unrotated heads, rotated here as they are read.
      const int32_t rope_q = producer_[(size_t)op.in0], rope_k = producer_[(size_t)op.in1];
      const bool rotate_q = fused_step_ && rope_q >= 0 && fusion_[(size_t)rope_q] == FUSE_ROPE;
      const bool rotate_k = fused_step_ && rope_k >= 0 && fusion_[(size_t)rope_k] == FUSE_ROPE;
      const float* q = rotate_q ? buf(cfg_.ops[(size_t)rope_q].in0) : buf(op.in0);
      const float* k = rotate_k ? buf(cfg_.ops[(size_t)rope_k].in0) : buf(op.in1);
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
        const float* kh_row = k + t * kvw + kh * hd;
        if (rotate_k) {
          float* rotated = scratch_[(size_t)tid].data() + hd;
          rope_head(kh_row, rotated, t);
          kh_row = rotated;
        }
        kernels_->to_f16(kh_row, k16, hd);
        uint16_t* kd = layer_keys(*s, op.layer) + kh * hd * kv_stride() + (pos / kKeyBlock) * hd * kKeyBlock + pos % kKeyBlock;
        for (int64_t j = 0; j < hd; j++) kd[j * kKeyBlock] = k16[j];
        kernels_->to_f16(v + t * kvw + kh * hd, layer_values(*s, op.layer) + (kh * kv_stride() + pos) * hd, hd);
      }
      pool_->barrier().wait();
      if (!attention_tiles_.empty()) {
        attend_token_tiles(op, q, rotate_q, out, tid, nth);
        return;
      }
      if (attends_by_work(T)) {
        attend_one_token(op, q, rotate_q, out, tid, nth);
        return;
      }
      // Phase 2: (token, head) pairs split across threads. A thread's consecutive heads of one
      // token that share a KV head are scored together, each key row read once for all of them.
      const int64_t group = nh / nkv;
      const float scale = (float)(1.0 / std::sqrt((double)hd));
      float* scores = scratch_[(size_t)tid].data();
      std::vector<float> qh((size_t)(group * hd));
      share_attention_pairs(T, tid, nth, b0, b1);
      for (int64_t p = b0; p < b1;) {
        const int64_t t = p / nh, h = p % nh, kvh = h / group;
        const int64_t heads = std::min(b1 - p, (kvh + 1) * group - h);
        const int64_t len = positions_[t] + 1;
        const Sequence* s = owners_[(size_t)t];
        const uint16_t* keys = layer_keys(*s, op.layer) + kvh * hd * kv_stride();
        const uint16_t* vals = layer_values(*s, op.layer) + kvh * kv_stride() * hd;
        for (int64_t r = 0; r < heads; r++) attention_query(q, rotate_q, t, h + r, qh.data() + r * hd);
        attention_scores(qh.data(), heads, keys, len, scores);
        softmax_rows(*kernels_, scores, heads, len, len, scale);
        kernels_->round_f16(scores, scores, heads * len);
        kernels_->attn_values(scores, heads, len, vals, hd, hd, len, out + t * d + h * hd, false);
        p += heads;
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
      glu_range(op, g + b0, u + b0, y + b0, b1 - b0);
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
        } else if (head_q6k_kernel_) {
          int8_t* q = head_q8k_.data() + r * cols;
          kernels_->quantize_q8k(xt, cols, q, head_q8k_d_.data() + r * (cols / 256), head_q8k_sum_.data() + r * (cols / 256));
          q8k_bsums16(q, cols, head_q8k_bsum16_.data() + r * (cols / 16));
        } else {
          if (w.type == T_F16) {
            kernels_->round_f16(xt, head_x_.data() + r * cols, cols);
          } else {
            std::memcpy(head_x_.data() + r * cols, xt, (size_t)cols * 4);
          }
        }
      }
      pool_->barrier().wait();
      // Phase 2: vocabulary rows split across threads, by work stealing.
      auto vocab_rows = [&](int64_t b0, int64_t b1) {
        if (w.type == T_F16) {
          for_row_tiles(b0, b1, cols * 2, rows, [&](int64_t a, int64_t b) {
            kernels_->f16_gemm((const uint16_t*)w.data, cols, a, b, head_x_.data(), rows, logits_, vocab);
          });
        } else if (w.type == T_Q8_0) {
          for_row_tiles(b0, b1, cols / 32 * (int64_t)sizeof(BlockQ8_0), rows, [&](int64_t a, int64_t b) {
            kernels_->q8_0_gemm((const BlockQ8_0*)w.data, cols, a, b, head_q_.data(), rows, logits_, vocab);
          });
        } else if (head_q6k_kernel_) {
          for_row_tiles(b0, b1, cols / 256 * kQ6KBlockBytes, rows, [&](int64_t a, int64_t b) {
            kernels_->q6_k_gemm(w.data, cols, a, b, head_q8k_.data(), head_q8k_d_.data(), head_q8k_bsum16_.data(), rows,
                                logits_, vocab);
          });
        } else {
          // F32 and BF16 heads (and Q6_K rows that are not whole blocks): dequantize one
          // vocabulary row at a time and take f32 dot products, each product exact in double and
          // the sum rounded once per step (the reference backend's order). Slow, but exact to the
          // reference.
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
      };
      if (steal != nullptr) {
        row_steal_run(steal, tid, nth, vocab_rows);
      } else {
        share(vocab, tid, nth, b0, b1);
        if (b0 < b1) vocab_rows(b0, b1);
      }
      return;
    }
    default:
      return;
  }
}

}  // namespace bitnet
