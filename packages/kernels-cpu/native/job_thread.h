// ---------------------------------------------------------------------------------------------
// A persistent thread that runs posted jobs in order: a model's forward steps. After a job it
// polls for the next one for a moment before it sleeps, because a generation loop posts its next
// step a fraction of a millisecond after the last one finishes, and a thread asleep on a
// condition variable (as libuv's pool threads are) took 50-120 µs to start it on a VM.
// ---------------------------------------------------------------------------------------------
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>

namespace bitnet {

class JobThread {
 public:
  // `between()`, where given, runs while the thread polls for its next job, until it returns false
  // (a small piece of work at a time: a job posted meanwhile waits for at most one piece).
  explicit JobThread(std::function<bool()> between = {}) : between_(std::move(between)), thread_([this] { loop(); }) {}
  JobThread(const JobThread&) = delete;
  JobThread& operator=(const JobThread&) = delete;
  ~JobThread() { stop(); }

  // Queues job; it runs on this thread after the jobs posted before it.
  void post(std::function<void()> job) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      jobs_.push_back(std::move(job));
      posted_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_one();  // no system call while the thread polls (nobody waits)
  }

  // Runs the jobs already posted, then ends the thread. Idempotent.
  void stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopping_) return;
      stopping_ = true;
      posted_.fetch_add(1, std::memory_order_release);  // ends a poll
    }
    cv_.notify_one();
    thread_.join();
  }

 private:
  void loop() {
    uint64_t seen = 0;
    for (;;) {
      // Poll first (yielding the core to any thread that wants it), then sleep.
      const auto until = std::chrono::steady_clock::now() + kPollBeforeSleep;
      bool busy = seen != 0 && static_cast<bool>(between_);
      for (int polls = 0; posted_.load(std::memory_order_acquire) == seen; polls++) {
        if (busy) {
          busy = between_();
          continue;
        }
        if ((polls & 255) == 255 && std::chrono::steady_clock::now() > until) break;
        std::this_thread::yield();
      }
      std::function<void()> job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [&] { return !jobs_.empty() || stopping_; });
        seen = posted_.load(std::memory_order_relaxed);
        if (jobs_.empty()) return;  // stopping, and nothing is left to run
        job = std::move(jobs_.front());
        jobs_.pop_front();
        if (!jobs_.empty()) seen--;  // more to take without waiting
      }
      job();
    }
  }

  static constexpr std::chrono::milliseconds kPollBeforeSleep{2};
  const std::function<bool()> between_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  std::atomic<uint64_t> posted_{0};
  bool stopping_ = false;
  std::thread thread_;  // last: starts after the members above exist
};

}  // namespace bitnet
