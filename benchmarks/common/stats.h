// SPDX-License-Identifier: Apache-2.0
// Summary statistics over timing samples. Benchmarks report median and min (STYLE.md rule 31):
// the median resists outliers from other processes, the min shows what the code can do.
#pragma once

#include <cstdint>
#include <vector>

namespace tidal::bench {

struct SampleStats {
  int64_t n = 0;
  double median = 0.0;
  double min = 0.0;
  double max = 0.0;
  double mean = 0.0;
  double p90 = 0.0;  // linear interpolation between closest ranks
};

// Requires: samples non-empty.
SampleStats summarize(std::vector<double> samples);

// The q-quantile (q in [0, 1]) of sorted samples, interpolating linearly between ranks.
double quantile_sorted(const std::vector<double>& sorted, double q);

}  // namespace tidal::bench
