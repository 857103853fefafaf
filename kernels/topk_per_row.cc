// SPDX-License-Identifier: Apache-2.0
#include "kernels/topk_per_row.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/dispatch.h"

namespace tidal::kernels {

void topk_per_row(const TopkPerRowParams& p) {
  TIDAL_CHECK(p.budget >= 1, "topk_per_row: budget must be >= 1");
  TIDAL_CHECK(p.scores.rank == 2 && p.scores.dtype == DType::kF32,
              "topk_per_row: scores must be f32 [rows, max_len]");
  const int64_t rows = p.scores.size(0);
  TIDAL_CHECK(p.indices.rank == 2 && p.indices.dtype == DType::kI32 && p.indices.size(0) == rows &&
                  p.indices.size(1) == p.budget,
              "topk_per_row: indices must be i32 [rows, budget]");
  TIDAL_CHECK(p.counts.rank == 1 && p.counts.dtype == DType::kI32 && p.counts.size(0) == rows,
              "topk_per_row: counts must be i32 [rows]");
  TIDAL_CHECK(p.lengths.rank == 1 && p.lengths.dtype == DType::kI32 && p.lengths.size(0) == rows,
              "topk_per_row: lengths must be i32 [rows]");
  require_cpu("topk_per_row", {p.indices, p.counts, p.scores, p.lengths});
  ref::topk_per_row(p);
}

// Sort every candidate by (score descending, position ascending), take the first budget - 1,
// add n - 1, sort ascending: slow and obviously right. A NaN score ranks below every number
// (-inf included), so a NaN is picked only when fewer than budget - 1 numbers remain.
void ref::topk_per_row(const TopkPerRowParams& p) {
  const float* scores = p.scores.data_as<float>();
  int32_t* indices = p.indices.data_as<int32_t>();
  int32_t* counts = p.counts.data_as<int32_t>();
  const int32_t* lengths = p.lengths.data_as<int32_t>();
  std::vector<int32_t> picked;
  for (int64_t r = 0; r < p.scores.size(0); ++r) {
    const int64_t n = lengths[r * p.lengths.stride[0]];
    TIDAL_CHECK(n >= 1 && n <= p.scores.size(1), "topk_per_row: length outside 1..max_len");
    const float* row = scores + r * p.scores.stride[0];
    auto score = [&](int32_t j) { return row[j * p.scores.stride[1]]; };
    picked.clear();
    if (n <= p.budget) {
      for (int32_t j = 0; j < n; ++j) picked.push_back(j);
    } else {
      for (int32_t j = 0; j < n - 1; ++j) picked.push_back(j);
      std::sort(picked.begin(), picked.end(), [&](int32_t a, int32_t b) {
        const float sa = score(a), sb = score(b);
        if (std::isnan(sa) != std::isnan(sb)) return std::isnan(sb);  // numbers first
        if (!std::isnan(sa) && sa != sb) return sa > sb;
        return a < b;
      });
      picked.resize(size_t(p.budget - 1));
      picked.push_back(int32_t(n - 1));
      std::sort(picked.begin(), picked.end());
    }
    counts[r * p.counts.stride[0]] = int32_t(picked.size());
    for (int64_t i = 0; i < p.budget; ++i) {
      const int32_t v = i < int64_t(picked.size()) ? picked[size_t(i)] : -1;
      indices[r * p.indices.stride[0] + i * p.indices.stride[1]] = v;
    }
  }
}

}  // namespace tidal::kernels
