// SPDX-License-Identifier: Apache-2.0
#include "benchmarks/common/parallel.h"

#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

namespace tidal::bench {

void parallel_for(int64_t n, const std::function<void(int64_t)>& fn) {
  if (n <= 0) return;
  const int64_t threads =
      std::min<int64_t>(n, std::max<unsigned>(1u, std::thread::hardware_concurrency()));
  if (threads == 1) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  // Work stealing by a shared counter: pieces can differ a lot in cost (a 100K-position head
  // beside a 300-position one), so a static split would leave cores idle.
  std::atomic<int64_t> next{0};
  std::vector<std::thread> pool;
  pool.reserve(size_t(threads));
  for (int64_t t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (int64_t i = next++; i < n; i = next++) fn(i);
    });
  }
  for (std::thread& th : pool) th.join();
}

int64_t parallel_sum(int64_t n, const std::function<int64_t(int64_t)>& fn) {
  std::atomic<int64_t> total{0};
  parallel_for(n, [&](int64_t i) { total += fn(i); });
  return total;
}

}  // namespace tidal::bench
