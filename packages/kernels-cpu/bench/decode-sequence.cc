// Decode's weight stream outside the model: one token through the I2_S projections of the
// 2B-4T shape (q, k, v, o, gate, up, down per layer), split across threads by rows as
// model_step does, with the same ThreadPool and spin barrier. Each layout isolates one cost:
//   ops         a barrier after every projection (the model's schedule, less its other ops)
//   free        no barriers (what the barriers cost)
//   contiguous  barriers, but each thread's rows of all projections copied back to back (what
//               restarting the prefetch stream at each projection costs)
//   one         one matrix of the same size (the ceiling for this kernel and thread count)
// Weights lie in 2 MiB pages. Prints GB/s per repetition (8 of them).
//   bash packages/kernels-cpu/bench/decode-sequence.sh <path> [threads=2] [layers=30] [ops|free|contiguous|one]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>
#include "../native/kernels.h"
#include "../native/platform.h"
#include "../native/threadpool.h"
using namespace bitnet;

static double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

static uint8_t* huge_alloc(size_t n) {
  const size_t huge = (size_t)2 << 20;
  n = (n + huge - 1) / huge * huge;
  auto* p = (uint8_t*)aligned_alloc(huge, n);
  advise_huge_pages(p, n);
  return p;
}

int main(int argc, char** argv) {
  const char* path = argc > 1 ? argv[1] : "avx2";
  const int nth = argc > 2 ? atoi(argv[2]) : 2;
  const int layers = argc > 3 ? atoi(argv[3]) : 30;
  const std::string mode = argc > 4 ? argv[4] : "ops";
  const Kernels* k = select_kernels(path);
  if (!k || nth < 1 || layers < 1 || (mode != "ops" && mode != "free" && mode != "contiguous" && mode != "one")) {
    fprintf(stderr, "usage: decode-sequence <path> [threads] [layers] [ops|free|contiguous|one]\n");
    return 1;
  }
  struct Proj { int64_t rows, cols; const uint8_t* w; };
  std::vector<std::pair<int64_t, int64_t>> shapes;
  const int64_t layer_shapes[7][2] = {{2560, 2560}, {640, 2560}, {640, 2560}, {2560, 2560}, {6912, 2560}, {6912, 2560}, {2560, 6912}};
  int64_t weights = 0;
  for (int l = 0; l < layers; l++)
    for (const auto& s : layer_shapes) {
      shapes.push_back({s[0], s[1]});
      weights += s[0] * s[1];
    }
  if (mode == "one") shapes.assign(1, {weights / 2560, 2560});
  size_t bytes = 0;
  for (const auto& [rows, cols] : shapes) bytes += (size_t)(rows * cols / 4 + 64);
  uint8_t* arena = huge_alloc(bytes);
  std::vector<Proj> projs;
  size_t off = 0, streamed = 0;
  uint32_t x = 1;
  for (const auto& [rows, cols] : shapes) {
    uint8_t* w = arena + off;
    const size_t n = (size_t)(rows * cols / 4);
    for (size_t i = 0; i < n; i++) {
      x = x * 1664525u + 1013904223u;
      w[i] = (uint8_t)(x >> 24);
    }
    const float scale = 0.01f;
    memcpy(w + n, &scale, 4);
    projs.push_back({rows, cols, w});
    off += n + 64;
    streamed += n;
  }
  // contiguous: thread t's rows of every projection, in order, in its own region.
  std::vector<std::vector<const uint8_t*>> own((size_t)nth);
  if (mode == "contiguous") {
    for (int t = 0; t < nth; t++) {
      uint8_t* region = huge_alloc(streamed / nth + (64 << 20));
      size_t o = 0;
      for (const Proj& p : projs) {
        int64_t r0, r1;
        share(p.rows, t, nth, r0, r1);
        memcpy(region + o, p.w + r0 * p.cols / 4, (size_t)((r1 - r0) * p.cols / 4));
        own[(size_t)t].push_back(region + o);
        o += (size_t)((r1 - r0) * p.cols / 4);
      }
    }
  }
  AlignedVector<int8_t> q(6912);
  for (auto& v : q) {
    x = x * 1664525u + 1013904223u;
    v = (int8_t)((int)(x >> 24) % 255 - 127);
  }
  float act_scale = 1.0f;
  int32_t act_sum = 0;
  int64_t max_rows = 0;
  for (const Proj& p : projs) max_rows = std::max(max_rows, p.rows);
  AlignedVector<float> out((size_t)max_rows);
  ThreadPool pool(nth);
  printf("%s, %d threads, %d layers, %s: %.1f MB per token\n", k->name, nth, layers, mode.c_str(), streamed / 1e6);
  for (int rep = 0; rep < 8; rep++) {
    std::vector<double> waited((size_t)nth, 0.0);
    const double t0 = now();
    pool.run([&](int tid) {
      for (size_t i = 0; i < projs.size(); i++) {
        const Proj& p = projs[i];
        int64_t r0, r1;
        share(p.rows, tid, nth, r0, r1);
        float w_scale;
        memcpy(&w_scale, p.w + p.rows * p.cols / 4, 4);
        if (mode == "contiguous") {
          k->i2s_gemm(own[(size_t)tid][i], p.cols, 0, r1 - r0, q.data(), &act_scale, &act_sum, w_scale, 1, out.data() + r0, p.rows);
        } else {
          k->i2s_gemm(p.w, p.cols, r0, r1, q.data(), &act_scale, &act_sum, w_scale, 1, out.data(), p.rows);
        }
        if (mode != "free") {
          const double b = now();
          pool.barrier().wait();
          waited[(size_t)tid] += now() - b;
        }
      }
    });
    const double dt = now() - t0;
    printf("  %.2f ms  %.1f GB/s  (waiting at barriers: thread 0 %.2f ms)\n", dt * 1e3, streamed / dt / 1e9, waited[0] * 1e3);
  }
}
