// SPDX-License-Identifier: Apache-2.0
#include "kernels/topk_per_row.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/dispatch.h"

namespace tidal::kernels {
namespace {

void check(const TopkPerRowParams& p) {
  const char* op = "topk_per_row";
  TIDAL_CHECK(p.scores.rank == 3 && p.scores.dtype == DType::kF32 && p.scores.stride[2] == 1,
              "topk_per_row: scores must be f32 [num_tokens, num_heads, max_len], dense rows");
  const int64_t tokens = p.scores.size(0);
  TIDAL_CHECK(p.indices.rank == 3 && p.indices.size(0) == tokens,
              "topk_per_row: indices must be [num_tokens, max_lists, max_budget]");
  check_shape(p.indices, {tokens, p.indices.size(1), p.indices.size(2)}, DType::kI32, op,
              "indices");
  check_shape(p.counts, {tokens, p.indices.size(1)}, DType::kI32, op, "counts");
  check_per_token(p.lengths, tokens, DType::kI32, op, "lengths");
  check_per_token(p.budgets, tokens, DType::kI32, op, "budgets");
  check_per_token(p.num_lists, tokens, DType::kI32, op, "num_lists");
  check_per_token(p.roles, tokens, DType::kU8, op, "roles");
}

}  // namespace

size_t topk_per_row_workspace_size(const TopkPerRowParams& p) {
  if (p.scores.device.kind != DeviceKind::kCuda) return 0;
#if TIDAL_WITH_CUDA
  return cuda::topk_per_row_workspace_size(p);
#else
  no_cuda_build("topk_per_row");
#endif
}

void topk_per_row(const TopkPerRowParams& p, TensorView workspace, [[maybe_unused]] Stream stream) {
  check(p);
  if (on_cuda("topk_per_row",
              {p.indices, p.counts, p.scores, p.lengths, p.budgets, p.num_lists, p.roles})) {
    TIDAL_CHECK(workspace.nbytes() >= topk_per_row_workspace_size(p),
                "topk_per_row: workspace too small");
    TIDAL_CUDA_CALL("topk_per_row", cuda::topk_per_row(p, workspace, stream));
    return;
  }
  ref::topk_per_row(p);
}

// Sort every candidate by (score descending, position ascending), take the first K - 1, add
// n - 1, sort ascending: slow and obviously right. A NaN score ranks below every number (-inf
// included), so a NaN is picked only when fewer than K - 1 numbers remain.
void ref::topk_per_row(const TopkPerRowParams& p) {
  const int64_t num_heads = p.scores.size(1), max_budget = p.indices.size(2);
  std::vector<int32_t> picked;
  for (int64_t t = 0; t < p.scores.size(0); ++t) {
    const auto role = TokenRole(p.roles.data_as<uint8_t>()[t]);
    if ((p.active_roles & role_bit(role)) == 0) continue;
    const int64_t n = p.lengths.data_as<int32_t>()[t];
    const int64_t budget = p.budgets.data_as<int32_t>()[t];
    const int64_t lists = p.num_lists.data_as<int32_t>()[t];
    TIDAL_CHECK(n >= 1 && n <= p.scores.size(2), "topk_per_row: length outside 1..max_len");
    TIDAL_CHECK(budget >= 1 && budget <= max_budget, "topk_per_row: budget outside 1..max_budget");
    TIDAL_CHECK(lists >= 1 && lists <= p.indices.size(1) && num_heads % lists == 0,
                "topk_per_row: num_lists must divide num_heads and fit max_lists");
    for (int64_t l = 0; l < lists; ++l) {
      const float* row = p.scores.data_as<float>() + t * p.scores.stride[0] +
                         l * (num_heads / lists) * p.scores.stride[1];
      picked.clear();
      if (n <= budget) {
        for (int32_t j = 0; j < n; ++j) picked.push_back(j);
      } else {
        for (int32_t j = 0; j < n - 1; ++j) picked.push_back(j);
        std::sort(picked.begin(), picked.end(), [&](int32_t a, int32_t b) {
          const float sa = row[a], sb = row[b];
          if (std::isnan(sa) != std::isnan(sb)) return std::isnan(sb);  // numbers first
          if (!std::isnan(sa) && sa != sb) return sa > sb;
          return a < b;
        });
        picked.resize(size_t(budget - 1));
        picked.push_back(int32_t(n - 1));
        std::sort(picked.begin(), picked.end());
      }
      p.counts.data_as<int32_t>()[t * p.counts.stride[0] + l] = int32_t(picked.size());
      int32_t* out = p.indices.data_as<int32_t>() + t * p.indices.stride[0] + l * p.indices.stride[1];
      for (int64_t i = 0; i < max_budget; ++i) {
        out[i] = i < int64_t(picked.size()) ? picked[size_t(i)] : -1;
      }
    }
  }
}

}  // namespace tidal::kernels
