// Memory read bandwidth, measured the way the kernels stream weights: every thread reads its
// contiguous share of the region, in parallel, between two barriers. Each repetition reads the
// region twice, once with the multi-token kernels' software prefetch and once with plain loads
// (as the one-token kernels read), and keeps the faster: which one wins depends on the CPU (on
// an AMD Zen 5, plain loads read 52-58 GB/s where the prefetching loop read 37-56), and a bound
// that decode can beat is no bound.
#include <algorithm>
#include <atomic>
#include <chrono>
#include "kernels.h"
#include "threadpool.h"

namespace bitnet {

// The checksum of the last probe: stored so the compiler cannot drop the reads.
volatile uint64_t bandwidth_checksum = 0;

std::vector<double> measure_read_bandwidth(const Kernels& k, const uint8_t* p, int64_t bytes, int threads, int reps) {
  ThreadPool pool(threads);
  std::vector<double> rates;
  std::atomic<uint64_t> sink{0};
  const int64_t lines = bytes / 64;
  auto read_once = [&](bool prefetch) {
    const auto started = std::chrono::steady_clock::now();
    pool.run([&](int tid) {
      int64_t b0, b1;
      share(lines, tid, pool.size(), b0, b1);
      sink.fetch_add(k.stream_read(p + b0 * 64, (b1 - b0) * 64, prefetch), std::memory_order_relaxed);
    });
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    return (double)(lines * 64) / seconds / 1e9;
  };
  for (int rep = 0; rep < reps; rep++) {
    const double with_prefetch = read_once(true);
    const double plain = read_once(false);
    rates.push_back(std::max(with_prefetch, plain));
  }
  bandwidth_checksum = sink.load();
  return rates;
}

}  // namespace bitnet
