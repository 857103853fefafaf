// SPDX-License-Identifier: Apache-2.0
// A fixed set of worker threads woken per parallel_for; chunks are handed out by an atomic
// counter (dynamic scheduling: causal attention rows differ in cost), which changes which thread
// computes an item but never how.
#include "runtime/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace tidal {
namespace {

using Fn = std::function<void(int64_t, int64_t)>;

thread_local bool t_inside_parallel = false;

class Pool {
 public:
  ~Pool() { stop_workers(); }

  void set_threads(int n) {
    std::lock_guard<std::mutex> call(call_mu_);
    stop_workers();
    threads_ = n > 0 ? n : default_cpu_threads();
  }

  int threads() {
    std::lock_guard<std::mutex> call(call_mu_);
    return threads_ > 0 ? threads_ : default_cpu_threads();
  }

  void run(int64_t n, int64_t chunk, const Fn& fn) {
    std::lock_guard<std::mutex> call(call_mu_);
    if (threads_ <= 0) threads_ = default_cpu_threads();
    // A new worker starts at the current generation: the job it joins is the one published
    // below. (It started at 0 once: created after a thread-count change, it took the last job's
    // generation for a new job and ran, then ran the real one too, so `busy_` was decremented
    // twice and the caller could wait forever or return while a worker still ran its chunks.)
    // generation_ changes only here, under call_mu_, which this thread holds.
    while (int(workers_.size()) < threads_ - 1) {
      workers_.emplace_back([this, seen = generation_] { worker(seen); });
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      fn_ = &fn;
      n_ = n;
      chunk_ = chunk;
      num_chunks_ = (n + chunk - 1) / chunk;
      next_.store(0);
      busy_ = int(workers_.size());
      ++generation_;
    }
    wake_.notify_all();
    t_inside_parallel = true;
    drain();
    t_inside_parallel = false;
    std::unique_lock<std::mutex> lock(mu_);
    done_.wait(lock, [this] { return busy_ == 0; });
    fn_ = nullptr;
  }

 private:
  // Runs chunks until none is left.
  void drain() {
    for (int64_t c = next_.fetch_add(1); c < num_chunks_; c = next_.fetch_add(1)) {
      (*fn_)(c * chunk_, std::min(n_, (c + 1) * chunk_));
    }
  }

  void worker(uint64_t seen) {
    t_inside_parallel = true;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
        if (stopping_) return;
        seen = generation_;
      }
      drain();
      std::lock_guard<std::mutex> lock(mu_);
      if (--busy_ == 0) done_.notify_one();
    }
  }

  // Requires: call_mu_ held (or destruction).
  void stop_workers() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (std::thread& t : workers_) t.join();
    workers_.clear();
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = false;
  }

  std::mutex call_mu_;  // one parallel_for (or resize) at a time
  std::mutex mu_;       // guards the job fields below and the wake-ups
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  int threads_ = 0;  // 0: not set yet (the default)
  const Fn* fn_ = nullptr;
  int64_t n_ = 0, chunk_ = 1, num_chunks_ = 0;
  std::atomic<int64_t> next_{0};
  uint64_t generation_ = 0;
  int busy_ = 0;  // workers still draining the current job
  bool stopping_ = false;
};

Pool& pool() {
  static Pool p;
  return p;
}

}  // namespace

int default_cpu_threads() { return std::max(1, int(std::thread::hardware_concurrency())); }

void set_cpu_threads(int n) { pool().set_threads(n); }

int cpu_threads() { return pool().threads(); }

void parallel_for(int64_t n, int64_t grain, const Fn& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int threads = t_inside_parallel ? 1 : cpu_threads();
  if (threads <= 1 || n <= grain) {
    fn(0, n);
    return;
  }
  // About four chunks per thread balance uneven items; never below the grain.
  const int64_t chunk = std::max(grain, (n + 4 * threads - 1) / (4 * threads));
  pool().run(n, chunk, fn);
}

}  // namespace tidal
