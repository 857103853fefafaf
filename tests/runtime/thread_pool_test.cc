// SPDX-License-Identifier: Apache-2.0
// The CPU path's thread pool: every item is visited exactly once, the work really spreads over
// threads, nested calls run inline, and the thread count can be changed between calls.
#include "runtime/thread_pool.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

namespace tidal {
namespace {

// Restores the default thread count when a test ends.
struct ThreadCount {
  explicit ThreadCount(int n) { set_cpu_threads(n); }
  ~ThreadCount() { set_cpu_threads(0); }
};

TEST(ThreadPool, EveryItemOnceForEveryThreadCountAndGrain) {
  for (int threads : {1, 2, 3, 8}) {
    ThreadCount tc(threads);
    EXPECT_EQ(cpu_threads(), threads);
    for (int64_t n : {0, 1, 7, 100, 1001}) {
      for (int64_t grain : {1, 3, 64, 5000}) {
        std::vector<std::atomic<int>> seen(static_cast<size_t>(n));
        parallel_for(n, grain, [&](int64_t begin, int64_t end) {
          EXPECT_LT(begin, end);
          if (end < n) {
            EXPECT_GE(end - begin, grain);
          }
          for (int64_t i = begin; i < end; ++i) seen[size_t(i)] += 1;
        });
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(seen[size_t(i)].load(), 1) << i;
      }
    }
  }
}

// Workers created by a thread-count change join the next call only: they once started at
// generation 0, took the previous call's generation for a new job, and were counted out twice
// (a hang in EveryItemOnceForEveryThreadCountAndGrain; this test hung in 3 of 5 runs before the
// fix). Many changes, each followed by calls, with every item checked; a hang fails by ctest's
// timeout.
TEST(ThreadPool, NewWorkersJoinOnlyTheNextCall) {
  for (int round = 0; round < 400; ++round) {
    ThreadCount tc(2 + round % 4);
    for (int call = 0; call < 3; ++call) {
      const int64_t n = 1 + (round * 7 + call) % 97;
      std::vector<std::atomic<int>> seen(static_cast<size_t>(n));
      parallel_for(n, 1, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) seen[size_t(i)] += 1;
      });
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(seen[size_t(i)].load(), 1) << round << " " << i;
    }
  }
}

TEST(ThreadPool, WorkSpreadsOverThreads) {
  ThreadCount tc(4);
  std::mutex mu;
  std::set<std::thread::id> ids;
  parallel_for(64, 1, [&](int64_t, int64_t) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    std::lock_guard<std::mutex> lock(mu);
    ids.insert(std::this_thread::get_id());
  });
  EXPECT_GT(ids.size(), 1u);
  EXPECT_LE(ids.size(), 4u);
}

TEST(ThreadPool, NestedCallsRunInline) {
  ThreadCount tc(3);
  std::atomic<int64_t> total{0};
  parallel_for(10, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const std::thread::id outer = std::this_thread::get_id();
      parallel_for(50, 1, [&](int64_t b, int64_t e) {
        EXPECT_EQ(std::this_thread::get_id(), outer);
        total += e - b;
      });
    }
  });
  EXPECT_EQ(total.load(), 500);
}

TEST(ThreadPool, CallersOnSeveralThreadsTakeTurns) {
  ThreadCount tc(2);
  std::atomic<int64_t> total{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < 4; ++c) {
    callers.emplace_back([&] {
      for (int rep = 0; rep < 50; ++rep) {
        parallel_for(100, 1, [&](int64_t b, int64_t e) { total += e - b; });
      }
    });
  }
  for (std::thread& t : callers) t.join();
  EXPECT_EQ(total.load(), 4 * 50 * 100);
}

TEST(ThreadPool, DefaultIsTheMachinesCores) {
  // The machine's count, independently of the pool's own default (at least one thread).
  const int cores = std::max(1, int(std::thread::hardware_concurrency()));
  set_cpu_threads(0);
  EXPECT_EQ(default_cpu_threads(), cores);
  EXPECT_EQ(cpu_threads(), cores);
  set_cpu_threads(3);
  EXPECT_EQ(cpu_threads(), 3);
  set_cpu_threads(0);  // back to the default
  EXPECT_EQ(cpu_threads(), cores);
}

}  // namespace
}  // namespace tidal
