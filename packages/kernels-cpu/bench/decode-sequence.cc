// Decode's weight stream outside the model: one token through the I2_S projections of the
// 2B-4T shape (q, k, v, o, gate, up, down per layer), split across threads by rows as
// model_step does, with the same ThreadPool and spin barrier. Each layout isolates one cost:
//   ops         a barrier after every projection (the model's schedule, less its other ops)
//   steal       the same, rows handed out in chunks: a thread that finishes its share takes
//               chunks from the end of the other's (what uneven threads cost at barriers)
//   free        no barriers (what the barriers cost)
//   contiguous  barriers, but each thread's rows of all projections copied back to back (what
//               restarting the prefetch stream at each projection costs)
//   one         one matrix of the same size (the ceiling for this kernel and thread count)
//   wide        the same bytes as one matrix of 6912-column rows (the down projection's shape:
//               what a kernel's row length costs it from memory)
//   probe       the bandwidth probe's plain loads over the same bytes, shared as it shares them
//               (what `bitnet bench` divides by)
//   head        the F16 output head instead (128256 × 2560, the 2B-4T vocabulary), rows taken by
//               work stealing as the model takes them
//   headprobe   the probe's loads over the head's bytes
// Weights lie in 2 MiB pages, each projection on a 64-byte boundary (GGUF_PAD=1: 32 bytes apart,
// as a GGUF file lays them out, so every other one starts halfway into a cache line), in
// anonymous memory, or with WEIGHTS_FILE=<file> in the page cache: the file's bytes from
// WEIGHTS_OFFSET mapped as the model loader maps a GGUF (only timing is read, so any file with 530
// MB from there will do). HEAD_FILE=<file> maps the head's bytes from HEAD_OFFSET (default: the
// file's last 657 MB). For a GGUF, decode-sequence.sh sets both offsets from its tensor table: the
// first ternary tensor, and output.weight (or token_embd.weight, a tied head), so each layout
// reads the pages a model's weights really lie in.
// The layouts named (comma-separated, default all) take turns
// repetition by repetition, so a change in the machine's speed (a VM's neighbours) hits all of
// them alike; each prints its median and range of GB/s over the repetitions.
//   bash packages/kernels-cpu/bench/decode-sequence.sh <path> [threads=2] [layers=30] [layouts] [reps=12]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <sstream>
#include <string>
#include <vector>
#include <sys/stat.h>

#include "../native/file_map.h"
#include "../native/kernels.h"
#include "../native/platform.h"
#include "../native/threadpool.h"
#include "../native/work_steal.h"
using namespace bitnet;

static double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

static uint8_t* huge_alloc(size_t n) {
  const size_t huge = (size_t)2 << 20;
  n = (n + huge - 1) / huge * huge;
  auto* p = (uint8_t*)aligned_alloc(huge, n);
  advise_huge_pages(p, n);
  return p;
}

// A byte offset from the environment, rounded down to a page (a mapping starts on one); 0 if unset.
static int64_t env_offset(const char* name) {
  const char* v = getenv(name);
  return v == nullptr ? 0 : std::max<int64_t>(0, strtoll(v, nullptr, 10)) / 4096 * 4096;
}

struct Proj {
  int64_t rows, cols;
  const uint8_t* w;
};

// Projections with pseudo-random weights in one arena, each followed by its scale.
static std::vector<Proj> make_projections(const std::vector<std::pair<int64_t, int64_t>>& shapes, uint32_t& x) {
  size_t bytes = 0;
  for (const auto& [rows, cols] : shapes) bytes += (size_t)(rows * cols / 4 + 64);
  uint8_t* arena = nullptr;
  const char* file = getenv("WEIGHTS_FILE");
  const bool from_file = file != nullptr && *file != '\0';
  if (from_file) {
    // A real file's bytes from WEIGHTS_OFFSET (decode-sequence.sh sets it to a GGUF's first
    // ternary tensor; 0 otherwise), mapped as the model loader maps weights (their values do not
    // matter to the timing): streaming from the page cache against anonymous memory, and from
    // the pages a model's projections really lie in (a VM's memory can read at different speeds
    // in different places).
    const int fd = ::open(file, O_RDONLY);
    struct stat st {};
    FileMap map;
    const int64_t off = env_offset("WEIGHTS_OFFSET");
    if (fd < 0 || ::fstat(fd, &st) != 0 || (size_t)(st.st_size - off) < bytes || !map_file(fd, off, bytes, map).empty()) {
      fprintf(stderr, "could not map %zu bytes of %s from byte %lld (a file at least that large is needed)\n", bytes, file,
              (long long)off);
      exit(1);
    }
    ::close(fd);
    arena = map.data;
    fprintf(stderr, "weights from %s at byte %lld, %.0f%% in 2 MiB pages\n", file, (long long)off,
            100.0 * (double)pmd_mapped_bytes(map) / (double)bytes);
  } else {
    arena = huge_alloc(bytes);
  }
  std::vector<Proj> projs;
  size_t off = 0;
  for (const auto& [rows, cols] : shapes) {
    uint8_t* w = arena + off;
    const size_t n = (size_t)(rows * cols / 4);
    if (!from_file) {
      for (size_t i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        w[i] = (uint8_t)(x >> 24);
      }
      const float scale = 0.01f;
      memcpy(w + n, &scale, 4);
    }
    projs.push_back({rows, cols, w});
    off += n + (getenv("GGUF_PAD") ? 32 : 64);
  }
  return projs;
}

int main(int argc, char** argv) {
  const char* path = argc > 1 ? argv[1] : "avx2";
  const int nth = argc > 2 ? atoi(argv[2]) : 2;
  const int layers = argc > 3 ? atoi(argv[3]) : 30;
  std::vector<std::string> modes;
  {
    std::stringstream list(argc > 4 ? argv[4] : "ops,steal,free,contiguous,one,probe");
    for (std::string m; std::getline(list, m, ',');) modes.push_back(m);
  }
  const int reps = argc > 5 ? atoi(argv[5]) : 12;
  const Kernels* k = select_kernels(path);
  bool known = !modes.empty();
  for (const auto& m : modes)
    known = known && (m == "ops" || m == "steal" || m == "free" || m == "contiguous" || m == "one" || m == "wide" ||
                     m == "probe" || m == "head" || m == "headprobe");
  if (!k || nth < 1 || layers < 1 || reps < 1 || !known) {
    fprintf(stderr, "usage: decode-sequence <path> [threads] [layers] [ops,steal,free,contiguous,one,wide,probe,head,headprobe] [reps]\n");
    return 1;
  }
  auto wants = [&](const char* m) { return std::find(modes.begin(), modes.end(), m) != modes.end(); };
  std::vector<std::pair<int64_t, int64_t>> shapes;
  const int64_t layer_shapes[7][2] = {{2560, 2560}, {640, 2560}, {640, 2560}, {2560, 2560}, {6912, 2560}, {6912, 2560}, {2560, 6912}};
  int64_t weights = 0;
  for (int l = 0; l < layers; l++)
    for (const auto& s : layer_shapes) {
      shapes.push_back({s[0], s[1]});
      weights += s[0] * s[1];
    }
  uint32_t x = 1;
  const std::vector<Proj> projs = make_projections(shapes, x);
  const size_t streamed = (size_t)(weights / 4);
  std::vector<Proj> one;
  if (wants("one")) one = make_projections({{weights / 2560, 2560}}, x);
  std::vector<Proj> wide;
  if (wants("wide")) wide = make_projections({{weights / 6912, 6912}}, x);
  // contiguous: thread t's rows of every projection, in order, in its own region.
  std::vector<std::vector<const uint8_t*>> own((size_t)nth);
  if (wants("contiguous")) {
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
  // The head: F16 values in [-1, 1) (no NaN, infinity or subnormal to slow a lane down).
  const int64_t head_rows = 128256, head_cols = 2560;
  const size_t head_bytes = (size_t)(head_rows * head_cols * 2);
  uint16_t* head = nullptr;
  const char* head_file = getenv("HEAD_FILE");
  if ((wants("head") || wants("headprobe")) && head_file != nullptr && *head_file != '\0') {
    // head_bytes of a real file from HEAD_OFFSET (decode-sequence.sh: a GGUF's head tensor;
    // otherwise the file's last bytes), mapped as the model loader maps weights.
    const int fd = ::open(head_file, O_RDONLY);
    struct stat st {};
    FileMap map;
    const int64_t off = fd < 0 || ::fstat(fd, &st) != 0 ? -1
                        : getenv("HEAD_OFFSET") != nullptr ? env_offset("HEAD_OFFSET")
                                                           : ((int64_t)st.st_size - (int64_t)head_bytes) / 4096 * 4096;
    if (off < 0 || !map_file(fd, off, head_bytes, map).empty()) {
      fprintf(stderr, "could not map %zu bytes of %s\n", head_bytes, head_file);
      return 1;
    }
    ::close(fd);
    head = (uint16_t*)map.data;
    fprintf(stderr, "head from %s at byte %lld, %.0f%% in 2 MiB pages\n", head_file, (long long)off,
            100.0 * (double)pmd_mapped_bytes(map) / (double)head_bytes);
  } else if (wants("head") || wants("headprobe")) {
    head = (uint16_t*)huge_alloc(head_bytes);
    for (size_t i = 0; i < head_bytes / 2; i++) {
      x = x * 1664525u + 1013904223u;
      head[i] = (uint16_t)(((x >> 31) << 15) | (0x2000 + ((x >> 8) & 0x1fff)));  // ±[2^-7, 1)
    }
  }
  AlignedVector<float> head_x((size_t)head_cols), logits((size_t)head_rows);
  for (auto& v : head_x) {
    x = x * 1664525u + 1013904223u;
    v = (float)((int)(x >> 16) % 2001 - 1000) / 1000.0f;
  }
  AlignedVector<int8_t> q(6912);
  for (auto& v : q) {
    x = x * 1664525u + 1013904223u;
    v = (int8_t)((int)(x >> 24) % 255 - 127);
  }
  float act_scale = 1.0f;
  int32_t act_sum = 0;
  AlignedVector<float> out((size_t)std::max<int64_t>(6912, weights / 2560));
  ThreadPool pool(nth);
  std::vector<RowSteal> steal(projs.size() * (size_t)nth), probe_steal((size_t)nth);
  std::atomic<uint64_t> sink{0};
  printf("%s, %d threads, %d layers: %.1f MB per token, %d repetitions per layout\n", k->name, nth, layers, streamed / 1e6, reps);
  std::map<std::string, std::vector<double>> rates;
  std::map<std::string, double> waited_ms;
  for (int rep = 0; rep < reps + 1; rep++) {  // the first round warms caches, TLBs and pages
    for (const std::string& mode : modes) {
      const std::vector<Proj>& set = mode == "one" ? one : mode == "wide" ? wide : projs;
      if (mode == "probe") row_steal_reset(probe_steal.data(), nth, (int64_t)streamed / 64, 64, 256);
      if (mode == "headprobe") row_steal_reset(probe_steal.data(), nth, (int64_t)head_bytes / 64, 64, 256);
      if (mode == "head") row_steal_reset(probe_steal.data(), nth, head_rows, 16);
      if (mode == "steal") {
        for (size_t i = 0; i < projs.size(); i++) row_steal_reset(&steal[i * (size_t)nth], nth, projs[i].rows, 16);
      }
      std::vector<double> waited((size_t)nth, 0.0);
      const double t0 = now();
      pool.run([&](int tid) {
        if (mode == "probe") {
          uint64_t sum = 0;
          row_steal_run(probe_steal.data(), tid, nth, [&](int64_t b0, int64_t b1) { sum += k->stream_read(projs[0].w + b0 * 64, (b1 - b0) * 64, 0); });
          sink.fetch_add(sum, std::memory_order_relaxed);
          return;
        }
        if (mode == "headprobe") {
          uint64_t sum = 0;
          row_steal_run(probe_steal.data(), tid, nth, [&](int64_t b0, int64_t b1) { sum += k->stream_read((const uint8_t*)head + b0 * 64, (b1 - b0) * 64, 0); });
          sink.fetch_add(sum, std::memory_order_relaxed);
          return;
        }
        if (mode == "head") {
          row_steal_run(probe_steal.data(), tid, nth, [&](int64_t r0, int64_t r1) {
            k->f16_gemm(head, head_cols, r0, r1, head_x.data(), 1, logits.data(), head_rows);
          });
          return;
        }
        for (size_t i = 0; i < set.size(); i++) {
          const Proj& p = set[i];
          float w_scale;
          memcpy(&w_scale, p.w + p.rows * p.cols / 4, 4);
          if (mode == "probe") row_steal_reset(probe_steal.data(), nth, (int64_t)streamed / 64, 64, 256);
      if (mode == "steal") {
            row_steal_run(&steal[i * (size_t)nth], tid, nth, [&](int64_t r0, int64_t r1) {
              k->i2s_gemm(p.w, p.cols, r0, r1, q.data(), &act_scale, &act_sum, w_scale, 1, out.data(), p.rows);
            });
          } else if (mode == "contiguous") {
            int64_t r0, r1;
            share(p.rows, tid, nth, r0, r1);
            k->i2s_gemm(own[(size_t)tid][i], p.cols, 0, r1 - r0, q.data(), &act_scale, &act_sum, w_scale, 1, out.data() + r0, p.rows);
          } else {
            int64_t r0, r1;
            share(p.rows, tid, nth, r0, r1);
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
      if (rep == 0) continue;
      rates[mode].push_back((mode == "head" || mode == "headprobe" ? head_bytes : streamed) / dt / 1e9);
      for (double w : waited) waited_ms[mode] += w * 1e3 / reps;
    }
  }
  for (const std::string& mode : modes) {
    std::vector<double>& r = rates[mode];
    std::sort(r.begin(), r.end());
    printf("  %-10s  median %5.1f GB/s  (%4.1f-%4.1f)", mode.c_str(), r[r.size() / 2], r.front(), r.back());
    if (mode != "free" && mode != "probe" && mode != "head" && mode != "headprobe") printf("  threads waiting at barriers: %.2f ms per token", waited_ms[mode]);
    printf("\n");
  }
  if (sink.load() == 42) printf("\n");
}
