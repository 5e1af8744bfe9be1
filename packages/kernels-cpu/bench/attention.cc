// Attention kernels microbenchmark: one path's scores and values on one thread, as the model
// runs them for one KV head (keys in 32-position blocks, transposed within a block; values one
// row a position), for `rows` query rows (4: one token's heads of the 2B shape; 16: a prompt's
// tile of four tokens) over `len` positions. Prints GFLOP/s (2 per multiply-add) of each half
// and the softmax's time per score, best of 7, and checks all three against the scalar path bit
// for bit.
// COPIES=<n> spreads the keys and values over n copies taken in turn, so they come from memory
// (a model reads 30 layers × its KV heads' caches) instead of staying in cache.
//   bash packages/kernels-cpu/bench/build-run.sh attention <path> [rows len hd]
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <random>
#include <vector>
#include "../native/kernels.h"
#include "../native/softmax.h"
using namespace bitnet;
static double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
int main(int argc, char** argv) {
  const char* path = argc > 1 ? argv[1] : "avx2";
  const int64_t rows = argc > 2 ? atoll(argv[2]) : 4, len = argc > 3 ? atoll(argv[3]) : 1024, hd = argc > 4 ? atoll(argv[4]) : 128;
  const Kernels* k = select_kernels(path);
  const Kernels* ref = &kernels_scalar();
  if (!k) {
    printf("no path %s\n", path);
    return 1;
  }
  constexpr int64_t kBlock = 32;
  const int64_t blocks = (len + kBlock - 1) / kBlock;
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  const int64_t copies = getenv("COPIES") ? std::max(1, atoi(getenv("COPIES"))) : 1, per = blocks * kBlock * hd;
  std::vector<uint16_t> key_copies((size_t)(copies * per)), value_copies((size_t)(copies * per));
  for (auto& x : key_copies) x = f32_to_f16(u(rng));
  for (int64_t c = 1; c < copies; c++) std::copy(key_copies.begin(), key_copies.begin() + per, key_copies.begin() + c * per);
  for (auto& x : value_copies) x = f32_to_f16(u(rng));
  for (int64_t c = 1; c < copies; c++) std::copy(value_copies.begin(), value_copies.begin() + per, value_copies.begin() + c * per);
  int64_t copy = 0;
  const uint16_t* keys_at = key_copies.data();
  const uint16_t* values_at = value_copies.data();
  auto next_copy = [&] {
    copy = (copy + 1) % copies;
    keys_at = key_copies.data() + copy * per;
    values_at = value_copies.data() + copy * per;
  };
  std::vector<float> q((size_t)(rows * hd));
  for (auto& x : q) x = f16_to_f32(f32_to_f16(u(rng)));
  std::vector<float> scores((size_t)(rows * len)), want((size_t)(rows * len)), p((size_t)(rows * len));
  for (auto& x : p) x = f16_to_f32(f32_to_f16((u(rng) + 1.0f) / 2.0f));
  std::vector<float> out((size_t)(rows * hd)), out_ref((size_t)(rows * hd));
  // As Model::attention_scores calls it: block by block, the next block asked for first where the
  // path's kernel does not ask for its key lines itself (Kernels::key_prefetch_bytes).
  auto run_scores = [&](const Kernels* kk, float* s) {
    for (int64_t j = 0; j < len; j += kBlock) {
      if (kk->key_prefetch_bytes == 0 && j + kBlock < len) {
        const char* next = (const char*)(keys_at + (j + kBlock) * hd);
        for (int64_t o = 0; o < kBlock * hd * 2; o += 64) __builtin_prefetch(next + o, 0, 3);
      }
      kk->attn_scores(q.data(), rows, keys_at + j * hd, kBlock, hd, std::min(kBlock, len - j), s + j, len);
    }
  };
  const double flops = 2.0 * (double)rows * (double)len * (double)hd;
  double best_s = 1e9, best_v = 1e9, best_x = 1e9;
  std::vector<float> raw((size_t)(rows * len)), probs((size_t)(rows * len)), probs_ref((size_t)(rows * len));
  for (auto& x : raw) x = u(rng) * 40.0f;
  const float scale = 1.0f / std::sqrt((float)hd);
  for (int rep = 0; rep < 7; rep++) {
    const int inner = std::max<int64_t>(1, (int64_t)(2e8 / flops));
    double t0 = now();
    for (int i = 0; i < inner; i++) {
      run_scores(k, scores.data());
      next_copy();
    }
    best_s = std::min(best_s, (now() - t0) / inner);
    t0 = now();
    for (int i = 0; i < inner; i++) {
      k->attn_values(p.data(), rows, len, values_at, hd, hd, len, out.data(), false);
      next_copy();
    }
    best_v = std::min(best_v, (now() - t0) / inner);
    double spent = 0;
    for (int i = 0; i < inner; i++) {
      probs = raw;
      t0 = now();
      softmax_rows(*k, probs.data(), rows, len, len, scale);
      spent += now() - t0;
    }
    best_x = std::min(best_x, spent / inner);
  }
  probs_ref = raw;
  softmax_rows(*ref, probs_ref.data(), rows, len, len, scale);
  copy = copies - 1;
  next_copy();
  run_scores(k, scores.data());
  k->attn_values(p.data(), rows, len, values_at, hd, hd, len, out.data(), false);
  run_scores(ref, want.data());
  ref->attn_values(p.data(), rows, len, values_at, hd, hd, len, out_ref.data(), false);
  const bool same = memcmp(scores.data(), want.data(), scores.size() * 4) == 0 && memcmp(out.data(), out_ref.data(), out.size() * 4) == 0 &&
                    memcmp(probs.data(), probs_ref.data(), probs.size() * 4) == 0;
  printf("%s rows %lld len %lld hd %lld: scores %.1f GFLOP/s (%.1f us), values %.1f GFLOP/s (%.1f us), softmax %.2f ns a score%s\n",
         path, (long long)rows, (long long)len, (long long)hd, flops / best_s * 1e-9, best_s * 1e6, flops / best_v * 1e-9,
         best_v * 1e6, best_x * 1e9 / (double)(rows * len), same ? "" : "  MISMATCH against scalar");
  return same ? 0 : 1;
}
