// SPDX-License-Identifier: Apache-2.0
#include "kernels/topk_per_row.h"

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "tests/testing/testing.h"

namespace tidal::kernels {
namespace {

HostTensor i32_tensor(std::vector<int64_t> shape, const std::vector<int32_t>& values) {
  HostTensor t(std::move(shape), DType::kI32);
  EXPECT_EQ(size_t(t.view().numel()), values.size());
  std::memcpy(t.view().data, values.data(), values.size() * sizeof(int32_t));
  return t;
}

std::vector<int32_t> ints(const HostTensor& t) {
  const int32_t* p = t.view().data_as<int32_t>();
  return std::vector<int32_t>(p, p + t.view().numel());
}

struct Result {
  std::vector<int32_t> indices, counts;
};

Result run(const TensorView& scores, const std::vector<int32_t>& lengths, int64_t budget) {
  const int64_t rows = scores.size(0);
  HostTensor indices({rows, budget}, DType::kI32), counts({rows}, DType::kI32);
  const HostTensor len = i32_tensor({rows}, lengths);
  TopkPerRowParams p;
  p.indices = indices.view();
  p.counts = counts.view();
  p.scores = scores;
  p.lengths = len.view();
  p.budget = budget;
  topk_per_row(p);
  return {ints(indices), ints(counts)};
}

TEST(TopkPerRowRef, KnownValuesWithTiesAndShortRows) {
  // Row 0: n = 6, budget 3. Candidates 0..4 score {0.5, 3, -1, 3, 3}: the three 3s tie and the
  // two lower positions (1, 3) win; position 5 (score -9) is the current token, always kept.
  // Row 1: n = 2 <= budget: both positions, the rest -1; scores past n (100) are never read.
  const HostTensor scores = HostTensor::from({2, 6}, {0.5f, 3, -1, 3, 3, -9,  //
                                                      1, 2, 100, 100, 100, 100});
  const Result r = run(scores.view(), {6, 2}, 3);
  EXPECT_EQ(r.indices, (std::vector<int32_t>{1, 3, 5, 0, 1, -1}));
  EXPECT_EQ(r.counts, (std::vector<int32_t>{3, 2}));
}

TEST(TopkPerRowRef, BudgetOneKeepsOnlyTheCurrentPosition) {
  const HostTensor scores = HostTensor::from({2, 4}, {9, 8, 7, -5, 1, 0, 0, 0});
  const Result r = run(scores.view(), {4, 1}, 1);
  EXPECT_EQ(r.indices, (std::vector<int32_t>{3, 0}));
  EXPECT_EQ(r.counts, (std::vector<int32_t>{1, 1}));
}

TEST(TopkPerRowRef, NanRanksBelowEveryNumber) {
  // Candidates {NaN, -inf, 2, NaN}, budget 3 -> the two numbers (1: -inf, 2: 2), then 4.
  const float nan = std::nanf("");
  const HostTensor scores = HostTensor::from({1, 5}, {nan, -INFINITY, 2, nan, 0});
  const Result r = run(scores.view(), {5}, 3);
  EXPECT_EQ(r.indices, (std::vector<int32_t>{1, 2, 4}));
  // Budget 4 needs one NaN: the lower position, 0.
  EXPECT_EQ(run(scores.view(), {5}, 4).indices, (std::vector<int32_t>{0, 1, 2, 4}));
}

TEST(TopkPerRowRef, BadShapesAreBugs) {
  const HostTensor scores = HostTensor::from({1, 3}, {0, 1, 2});
  const HostTensor len = i32_tensor({1}, {3});
  HostTensor indices({1, 2}, DType::kI32), counts({1}, DType::kI32);
  TopkPerRowParams p;
  p.indices = indices.view();
  p.counts = counts.view();
  p.scores = scores.view();
  p.lengths = len.view();
  p.budget = 3;  // indices has 2 columns
  EXPECT_DEATH(topk_per_row(p), "topk_per_row: indices");
  p.budget = 0;
  EXPECT_DEATH(topk_per_row(p), "topk_per_row: budget");
  const HostTensor long_len = i32_tensor({1}, {4});
  p.budget = 2;
  p.lengths = long_len.view();
  EXPECT_DEATH(topk_per_row(p), "topk_per_row: length");
}

struct Case {
  std::string name;
  int64_t rows, max_len, budget;
  int score_levels;  // scores drawn from this many integers: few levels -> many ties
};

class TopkPerRowProperty : public ::testing::TestWithParam<Case> {};

// Brute force, independent of the sort: candidate j < n - 1 is kept iff fewer than budget - 1
// candidates beat it (higher score, or equal score and lower position).
std::vector<int32_t> brute_force(const std::vector<float>& row, int64_t n, int64_t budget) {
  std::vector<int32_t> keep;
  if (n <= budget) {
    for (int32_t j = 0; j < n; ++j) keep.push_back(j);
    return keep;
  }
  for (int32_t j = 0; j < n - 1; ++j) {
    int64_t beaten_by = 0;
    for (int32_t i = 0; i < n - 1; ++i) {
      if (row[size_t(i)] > row[size_t(j)] || (row[size_t(i)] == row[size_t(j)] && i < j)) {
        ++beaten_by;
      }
    }
    if (beaten_by < budget - 1) keep.push_back(j);
  }
  keep.push_back(int32_t(n - 1));
  return keep;
}

TEST_P(TopkPerRowProperty, MatchesBruteForce) {
  const Case& c = GetParam();
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int64_t> len_dist(1, c.max_len);
  std::uniform_int_distribution<int> level(0, c.score_levels - 1);
  // Scores live in every other column of a wider buffer: a non-contiguous view.
  HostTensor storage({c.rows, 2 * c.max_len}, DType::kF32);
  TensorView scores = storage.view();
  scores.shape[1] = c.max_len;
  scores.stride[1] = 2;
  std::vector<std::vector<float>> rows(size_t(c.rows), std::vector<float>(size_t(c.max_len)));
  std::vector<int32_t> lengths;
  for (int64_t r = 0; r < c.rows; ++r) {
    for (int64_t j = 0; j < c.max_len; ++j) {
      rows[size_t(r)][size_t(j)] = float(level(rng)) * 0.25f - 3.0f;
      scores.data_as<float>()[r * scores.stride[0] + j * 2] = rows[size_t(r)][size_t(j)];
    }
    lengths.push_back(int32_t(r == 0 ? c.max_len : len_dist(rng)));  // row 0: longest
  }
  const Result got = run(scores, lengths, c.budget);
  for (int64_t r = 0; r < c.rows; ++r) {
    const int64_t n = lengths[size_t(r)];
    const std::vector<int32_t> want = brute_force(rows[size_t(r)], n, c.budget);
    const int32_t count = got.counts[size_t(r)];
    ASSERT_EQ(count, std::min<int64_t>(n, c.budget)) << "row " << r;
    const auto begin = got.indices.begin() + r * c.budget;
    const std::vector<int32_t> kept(begin, begin + count);
    EXPECT_EQ(kept, want) << "row " << r << " n " << n;
    EXPECT_EQ(kept.back(), n - 1) << "row " << r << ": current position missing";
    for (int32_t i = 1; i < count; ++i) EXPECT_LT(kept[size_t(i - 1)], kept[size_t(i)]);
    for (int64_t i = count; i < c.budget; ++i) EXPECT_EQ(*(begin + i), -1);
    if (n <= c.budget) {
      for (int32_t i = 0; i < count; ++i) EXPECT_EQ(kept[size_t(i)], i);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, TopkPerRowProperty,
    ::testing::Values(Case{"one_row_len1", 1, 1, 1, 4}, Case{"budget1", 7, 37, 1, 100},
                      Case{"many_ties", 37, 37, 7, 3}, Case{"distinct", 16, 733, 64, 100000},
                      Case{"budget_over_len", 5, 7, 9, 5}, Case{"budget_eq_len", 5, 8, 8, 5}),
    [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

}  // namespace
}  // namespace tidal::kernels
