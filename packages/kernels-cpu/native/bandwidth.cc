// Memory read bandwidth, measured the way the kernels stream weights: every thread reads its
// contiguous share of the region, in parallel, between two barriers, and a thread that finishes
// first takes lines from the end of the other's share (work_steal.h, as the matrix ops do). Each
// repetition reads the region once in each of the ways Kernels::stream_read knows (plain loads,
// and two software-prefetch patterns) and keeps the fastest: which one wins depends on the CPU
// (on an AMD Zen 5, plain loads read 52-58 GB/s where the prefetching loop read 37-56; on a Xeon
// with AMX, one line per step 4 KiB ahead into L2 read 37 where the others read 32-35, and the
// F16 head, prefetching so, read 35), and a bound that decode can beat is no bound.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include "kernels.h"
#include "threadpool.h"
#include "work_steal.h"

namespace bitnet {

// The checksum of the last probe: stored so the compiler cannot drop the reads.
volatile uint64_t bandwidth_checksum = 0;

std::vector<double> measure_read_bandwidth(const Kernels& k, const uint8_t* p, int64_t bytes, int threads, int reps) {
  ThreadPool pool(threads);
  std::vector<double> rates;
  std::atomic<uint64_t> sink{0};
  const int64_t lines = bytes / 64;
  std::unique_ptr<RowSteal[]> steal(new RowSteal[(size_t)pool.size()]);
  auto read_once = [&](int variant) {
    row_steal_reset(steal.get(), pool.size(), lines, 64, 256);  // claims of whole 4 KiB pages, at least 16 KiB
    const auto started = std::chrono::steady_clock::now();
    pool.run([&](int tid) {
      uint64_t sum = 0;
      row_steal_run(steal.get(), tid, pool.size(), [&](int64_t b0, int64_t b1) { sum += k.stream_read(p + b0 * 64, (b1 - b0) * 64, variant); });
      sink.fetch_add(sum, std::memory_order_relaxed);
    });
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    return (double)(lines * 64) / seconds / 1e9;
  };
  for (int rep = 0; rep < reps; rep++) {
    double best = 0.0;
    for (int variant = kStreamReadVariants - 1; variant >= 0; variant--) best = std::max(best, read_once(variant));
    rates.push_back(best);
  }
  bandwidth_checksum = sink.load();
  return rates;
}

}  // namespace bitnet
