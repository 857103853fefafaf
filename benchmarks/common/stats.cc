// SPDX-License-Identifier: Apache-2.0
#include "benchmarks/common/stats.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "runtime/check.h"

namespace tidal::bench {

double quantile_sorted(const std::vector<double>& sorted, double q) {
  TIDAL_CHECK(!sorted.empty(), "quantile_sorted: no samples");
  const double rank = std::clamp(q, 0.0, 1.0) * double(sorted.size() - 1);
  const size_t lo = size_t(std::floor(rank));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (rank - double(lo)) * (sorted[hi] - sorted[lo]);
}

SampleStats summarize(std::vector<double> samples) {
  TIDAL_CHECK(!samples.empty(), "summarize: no samples");
  std::sort(samples.begin(), samples.end());
  SampleStats s;
  s.n = int64_t(samples.size());
  s.median = quantile_sorted(samples, 0.5);
  s.min = samples.front();
  s.max = samples.back();
  s.mean = std::accumulate(samples.begin(), samples.end(), 0.0) / double(samples.size());
  s.p90 = quantile_sorted(samples, 0.9);
  return s;
}

}  // namespace tidal::bench
