// ---------------------------------------------------------------------------------------------
// A persistent thread pool for whole forward steps: the calling thread is worker 0, N−1 threads
// poll for the next step for a moment and then wait on a condition variable, and within a step
// ops are separated by a spin barrier (cheap: a step runs dozens of ops in a few milliseconds).
// ---------------------------------------------------------------------------------------------
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace bitnet {

class SpinBarrier {
 public:
  explicit SpinBarrier(int n) : n_(n) {}
  void wait() {
    wait([] { return false; });
  }
  // The same; while it waits for the others, the thread calls idle() (a small piece of useful
  // work, e.g. prefetching weights it will read next) until idle() returns false.
  template <typename Idle>
  void wait(Idle&& idle) {
    const int gen = generation_.load(std::memory_order_acquire);
    if (count_.fetch_add(1, std::memory_order_acq_rel) == n_ - 1) {
      count_.store(0, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_acq_rel);
      return;
    }
    bool busy = true;
    int spins = 0;
    while (generation_.load(std::memory_order_acquire) == gen) {
      if (busy) {
        busy = idle();
      } else if (++spins > 4096) {
        std::this_thread::yield();
      }
    }
  }
  int size() const { return n_; }

 private:
  const int n_;
  std::atomic<int> count_{0};
  std::atomic<int> generation_{0};
};

class ThreadPool {
 public:
  // `between(i)`, where given, is worker i's work between steps: while it polls for the next step
  // it calls between(i) (a small piece of work, e.g. asking L2 for the next step's first weights)
  // until it returns false. Worker 0 is the caller's thread, which has its own wait.
  explicit ThreadPool(int n, std::function<bool(int)> between = {})
      : n_(n < 1 ? 1 : n), barrier_(n_), between_(std::move(between)) {
    for (int i = 1; i < n_; i++) {
      threads_.emplace_back([this, i] { loop(i); });
    }
  }
  ~ThreadPool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
      job_id_++;
      posted_.store(job_id_, std::memory_order_release);
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  int size() const { return n_; }
  SpinBarrier& barrier() { return barrier_; }

  // Runs job(thread_index) on every worker (the caller is worker 0) and returns when all are done.
  void run(const std::function<void(int)>& job) {
    if (n_ == 1) {
      job(0);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &job;
      pending_.store(n_ - 1, std::memory_order_release);
      job_id_++;
      posted_.store(job_id_, std::memory_order_release);
    }
    cv_.notify_all();
    job(0);
    int spins = 0;
    while (pending_.load(std::memory_order_acquire) != 0) {
      if (++spins > 4096) std::this_thread::yield();
    }
  }

 private:
  void loop(int index) {
    uint64_t seen = 0;
    for (;;) {
      const std::function<void(int)>* job;
      // A generation loop posts its next step a fraction of a millisecond after the last, and a
      // worker asleep on the condition variable took 35-100 µs to wake (a VM; worker 0's wait at
      // a decode step's first barrier fell from 61 to 7 µs with the polling): a worker polls for
      // the next step for kSpinBeforeSleep first, yielding the core to any other thread that
      // wants it (another model's pool, say), and only then sleeps.
      const auto until = std::chrono::steady_clock::now() + kSpinBeforeSleep;
      bool busy = seen != 0 && static_cast<bool>(between_);
      for (int polls = 0; posted_.load(std::memory_order_acquire) == seen; polls++) {
        if (busy) {
          busy = between_(index);
          continue;
        }
        if ((polls & 255) == 255 && std::chrono::steady_clock::now() > until) break;
        std::this_thread::yield();
      }
      {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [&] { return job_id_ != seen; });
        seen = job_id_;
        if (stop_) return;
        job = job_;
      }
      (*job)(index);
      pending_.fetch_sub(1, std::memory_order_acq_rel);
    }
  }

  static constexpr std::chrono::milliseconds kSpinBeforeSleep{2};
  const int n_;
  SpinBarrier barrier_;
  const std::function<bool(int)> between_;
  std::vector<std::thread> threads_;
  std::mutex mutex_;
  std::condition_variable cv_;
  uint64_t job_id_ = 0;
  bool stop_ = false;
  const std::function<void(int)>* job_ = nullptr;
  std::atomic<int> pending_{0};
  std::atomic<uint64_t> posted_{0};  // job_id_, readable without the mutex
};

// The [begin, end) share of `n` items for worker `i` of `k`.
inline void share(int64_t n, int i, int k, int64_t& begin, int64_t& end) {
  const int64_t per = n / k, rest = n % k;
  begin = i * per + (i < rest ? i : rest);
  end = begin + per + (i < rest ? 1 : 0);
}

}  // namespace bitnet
