// Ternary GEMM microbenchmark: one kernel path's I2_S and TQ2_0 multi-token kernels on one
// thread, over random weights and activations, in the row tiles model_step uses (32 KiB of
// weights; TILE=<KiB> overrides), checked bit for bit against the scalar kernels. Best of 5.
// Activations start on a cache line, as the model's do; QOFF=<bytes> shifts them off it. Weights
// lie in 2 MiB pages, as the model maps them (HUGE=0: 4 KiB pages), from a 2 MiB boundary
// (WOFF=<bytes> shifts them: a GGUF file aligns tensors to 32 bytes, not 64).
//   bash packages/kernels-cpu/bench/gemm.sh <path> [rows cols tokens] [i2s|tq2|both]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#include <random>
#include "../native/kernels.h"
#include "../native/platform.h"
using namespace bitnet;
// A copy of v in memory that asks for transparent huge pages before its first touch.
template <class T>
static T* weights_copy(const std::vector<T>& v) {
  const size_t huge = (size_t)2 << 20, n = (v.size() * sizeof(T) + huge - 1) / huge * huge + huge;
  uint8_t* base = (uint8_t*)aligned_alloc(huge, n);
  if (!getenv("HUGE") || atoi(getenv("HUGE")) != 0) advise_huge_pages(base, n);
  T* p = (T*)(base + (getenv("WOFF") ? atoll(getenv("WOFF")) : 0));
  memcpy(p, v.data(), v.size() * sizeof(T));
  return p;
}
static double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
int main(int argc, char** argv) {
  const char* path = argc > 1 ? argv[1] : "avx2";
  int64_t rows = argc > 2 ? atoll(argv[2]) : 6912, cols = argc > 3 ? atoll(argv[3]) : 2560, T = argc > 4 ? atoll(argv[4]) : 128;
  const char* which = argc > 5 ? argv[5] : "both";
  const Kernels* k = select_kernels(path);
  const Kernels* ref = &kernels_scalar();
  if (!k) { printf("no path\n"); return 1; }
  std::mt19937 rng(1);
  std::vector<uint8_t> wi((size_t)(rows * cols / 4));
  for (auto& b : wi) { uint8_t v = 0; for (int j = 0; j < 4; j++) v |= (rng() % 3) << (2 * j); b = v; }
  int64_t nb = cols / 256;
  std::vector<BlockTQ2> wt((size_t)(rows * nb));
  for (auto& b : wt) { for (auto& x : b.qs) { uint8_t v = 0; for (int j = 0; j < 4; j++) v |= (rng() % 3) << (2 * j); x = v; } b.d = f32_to_f16(0.01f + (rng() % 100) * 1e-4f); }
  const uint8_t* wi_p = weights_copy(wi);
  const BlockTQ2* wt_p = weights_copy(wt);
  std::vector<int8_t> q((size_t)(T * cols));
  const int64_t qoff = getenv("QOFF") ? atoll(getenv("QOFF")) : 0;
  AlignedVector<int8_t> qp_store((size_t)(T * cols + qoff));
  int8_t* qp = qp_store.data() + qoff;
  for (auto& x : q) x = (int8_t)((int)(rng() % 255) - 127);
  for (int64_t t = 0; t < T; t++) permute_activations(q.data() + t * cols, qp + t * cols, cols, k->layout);
  std::vector<float> scale(T), d((size_t)(T * nb));
  std::vector<int32_t> sum(T), bsum((size_t)(T * nb));
  for (int64_t t = 0; t < T; t++) { scale[t] = 1.0f + t * 0.01f; int s = 0; for (int64_t c = 0; c < cols; c++) s += q[t * cols + c]; sum[t] = s;
    for (int64_t b = 0; b < nb; b++) { int bs = 0; for (int c = 0; c < 256; c++) bs += q[t * cols + b * 256 + c]; bsum[t * nb + b] = bs; d[t * nb + b] = 0.001f * (1 + (t + b) % 7); } }
  std::vector<float> out((size_t)(T * rows)), outr((size_t)(T * rows));
  auto tiles = [&](int64_t row_bytes, auto&& f) { int64_t tile = std::max<int64_t>(2, ((getenv("TILE") ? atoll(getenv("TILE")) : 32) * 1024 / row_bytes) & ~1LL); if (T <= 1) { f(0, rows); return; } for (int64_t a = 0; a < rows; a += tile) f(a, std::min(rows, a + tile)); };
  double macs = (double)rows * cols * T;
  if (strcmp(which, "tq2") != 0) {
    ref->i2s_gemm(wi.data(), cols, 0, rows, q.data(), scale.data(), sum.data(), 0.5f, T, outr.data(), rows);
    double best = 1e9;
    for (int rep = 0; rep < 5; rep++) { double t0 = now(); tiles(cols / 4, [&](int64_t a, int64_t b) { k->i2s_gemm(wi_p, cols, a, b, qp, scale.data(), sum.data(), 0.5f, T, out.data(), rows); }); best = std::min(best, now() - t0); }
    printf("%s i2s %lldx%lld T=%lld: %.2f ms  %.1f GMAC/s  exact=%d\n", k->name, (long long)rows, (long long)cols, (long long)T, best * 1e3, macs / best / 1e9, memcmp(out.data(), outr.data(), out.size() * 4) == 0);
  }
  if (strcmp(which, "i2s") != 0) {
    ref->tq2_gemm(wt.data(), cols, 0, rows, q.data(), d.data(), bsum.data(), T, outr.data(), rows);
    double best = 1e9;
    for (int rep = 0; rep < 5; rep++) { double t0 = now(); tiles(nb * 66, [&](int64_t a, int64_t b) { k->tq2_gemm(wt_p, cols, a, b, qp, d.data(), bsum.data(), T, out.data(), rows); }); best = std::min(best, now() - t0); }
    printf("%s tq2 %lldx%lld T=%lld: %.2f ms  %.1f GMAC/s  exact=%d\n", k->name, (long long)rows, (long long)cols, (long long)T, best * 1e3, macs / best / 1e9, memcmp(out.data(), outr.data(), out.size() * 4) == 0);
  }
}
