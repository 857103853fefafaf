// SPDX-License-Identifier: Apache-2.0
// A batch for topk_per_row tests, shared by the CPU (ref::) and GPU suites: per-token lengths,
// budgets, list counts and roles over one scores tensor, run through the ref into outputs that
// start as a sentinel (so rows the op must not touch show), plus an independent brute force.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/topk_per_row.h"
#include "runtime/tensor.h"

namespace tidal::kernels::topk_testing {

constexpr int32_t kUntouched = 0x7F7F7F7F;  // what DeviceTensor::filled(..., 0x7F) holds

struct Batch {
  int64_t tokens = 1, heads = 1, max_len = 1, max_lists = 1, max_budget = 1;
  std::vector<float> scores;  // [tokens, heads, max_len]
  std::vector<int32_t> lengths, budgets, lists;
  std::vector<uint8_t> roles;
  uint32_t active = kSelectingRoles;

  Batch(int64_t t, int64_t h, int64_t len, int64_t lists_cap, int64_t budget_cap)
      : tokens(t),
        heads(h),
        max_len(len),
        max_lists(lists_cap),
        max_budget(budget_cap),
        scores(size_t(t * h * len)),
        lengths(size_t(t), int32_t(len)),
        budgets(size_t(t), int32_t(budget_cap)),
        lists(size_t(t), 1),
        roles(size_t(t), uint8_t(TokenRole::kSelect)) {}
  float& score(int64_t t, int64_t h, int64_t j) {
    return scores[size_t((t * heads + h) * max_len + j)];
  }
  // The row list l of token t reads: head l * (heads / L).
  std::vector<float> row(int64_t t, int64_t l) const {
    const int64_t h = l * (heads / lists[size_t(t)]);
    const float* p = scores.data() + (t * heads + h) * max_len;
    return std::vector<float>(p, p + max_len);
  }
};

struct Result {
  std::vector<int32_t> indices, counts;  // [tokens, max_lists, max_budget], [tokens, max_lists]
};

template <typename T>
HostTensor host_tensor(std::vector<int64_t> shape, DType dtype, const std::vector<T>& values) {
  HostTensor t(std::move(shape), dtype);
  std::memcpy(t.view().data, values.data(), values.size() * sizeof(T));
  return t;
}

inline std::vector<int32_t> ints(const HostTensor& t) {
  const int32_t* p = t.view().data_as<int32_t>();
  return std::vector<int32_t>(p, p + t.view().numel());
}

inline Result run_ref(const Batch& b) {
  const HostTensor scores = host_tensor({b.tokens, b.heads, b.max_len}, DType::kF32, b.scores);
  const HostTensor lengths = host_tensor({b.tokens}, DType::kI32, b.lengths);
  const HostTensor budgets = host_tensor({b.tokens}, DType::kI32, b.budgets);
  const HostTensor lists = host_tensor({b.tokens}, DType::kI32, b.lists);
  const HostTensor roles = host_tensor({b.tokens}, DType::kU8, b.roles);
  HostTensor indices =
      host_tensor({b.tokens, b.max_lists, b.max_budget}, DType::kI32,
                  std::vector<int32_t>(size_t(b.tokens * b.max_lists * b.max_budget), kUntouched));
  HostTensor counts = host_tensor({b.tokens, b.max_lists}, DType::kI32,
                                  std::vector<int32_t>(size_t(b.tokens * b.max_lists), kUntouched));
  TopkPerRowParams p;
  p.indices = indices.view();
  p.counts = counts.view();
  p.scores = scores.view();
  p.lengths = lengths.view();
  p.budgets = budgets.view();
  p.num_lists = lists.view();
  p.roles = roles.view();
  p.active_roles = b.active;
  topk_per_row(p, TensorView{}, Stream{});
  return {ints(indices), ints(counts)};
}

// Independent of the ref's sort: candidate j < n - 1 is kept iff fewer than K - 1 candidates
// beat it (higher score, or equal score and lower position); NaN loses to every number.
inline std::vector<int32_t> brute_force(const std::vector<float>& row, int64_t n, int64_t k) {
  std::vector<int32_t> keep;
  if (n <= k) {
    for (int32_t j = 0; j < n; ++j) keep.push_back(j);
    return keep;
  }
  auto beats = [&](int32_t i, int32_t j) {
    const float a = row[size_t(i)], b = row[size_t(j)];
    if ((a != a) || (b != b)) return (a == a) || ((a != a) && (b != b) && i < j);
    return a > b || (a == b && i < j);
  };
  for (int32_t j = 0; j < n - 1; ++j) {
    int64_t beaten_by = 0;
    for (int32_t i = 0; i < n - 1; ++i) beaten_by += beats(i, j);
    if (beaten_by < k - 1) keep.push_back(j);
  }
  keep.push_back(int32_t(n - 1));
  return keep;
}

}  // namespace tidal::kernels::topk_testing
