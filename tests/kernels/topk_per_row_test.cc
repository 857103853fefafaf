// SPDX-License-Identifier: Apache-2.0
// ref::topk_per_row: hand-computed cases, per-token lengths / budgets / list counts and roles in
// one call, and a brute-force property check.
#include "kernels/topk_per_row.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "tests/kernels/topk_batch.h"

namespace tidal::kernels {
namespace {

using topk_testing::Batch;
using topk_testing::kUntouched;
using topk_testing::Result;
using topk_testing::run_ref;

TEST(TopkPerRowRef, KnownValuesWithTiesAndShortRows) {
  // Token 0: n = 6, budget 3. Candidates 0..4 score {0.5, 3, -1, 3, 3}: the three 3s tie and the
  // two lower positions (1, 3) win; position 5 (score -9) is the current token, always kept.
  // Token 1: n = 2 <= budget: both positions, the rest -1; scores past n (100) are never read.
  Batch b(2, 1, 6, 1, 3);
  b.scores = {0.5f, 3, -1, 3, 3, -9, 1, 2, 100, 100, 100, 100};
  b.lengths = {6, 2};
  const Result r = run_ref(b);
  EXPECT_EQ(r.indices, (std::vector<int32_t>{1, 3, 5, 0, 1, -1}));
  EXPECT_EQ(r.counts, (std::vector<int32_t>{3, 2}));
}

TEST(TopkPerRowRef, BudgetOneKeepsOnlyTheCurrentPosition) {
  Batch b(2, 1, 4, 1, 1);
  b.scores = {9, 8, 7, -5, 1, 0, 0, 0};
  b.lengths = {4, 1};
  const Result r = run_ref(b);
  EXPECT_EQ(r.indices, (std::vector<int32_t>{3, 0}));
  EXPECT_EQ(r.counts, (std::vector<int32_t>{1, 1}));
}

TEST(TopkPerRowRef, NanRanksBelowEveryNumberAndZerosTie) {
  // Candidates {NaN, -inf, 2, NaN}, budget 3 -> the two numbers (1: -inf, 2: 2), then 4.
  const float nan = std::nanf("");
  Batch b(1, 1, 5, 1, 3);
  b.scores = {nan, -INFINITY, 2, nan, 0};
  EXPECT_EQ(run_ref(b).indices, (std::vector<int32_t>{1, 2, 4}));
  // Budget 4 needs one NaN: the lower position, 0.
  Batch c(1, 1, 5, 1, 4);
  c.scores = b.scores;
  EXPECT_EQ(run_ref(c).indices, (std::vector<int32_t>{0, 1, 2, 4}));
  // -0 == +0: a tie, so the lower position wins whichever zero it holds.
  Batch z(1, 1, 4, 1, 2);
  z.scores = {-1, 0.0f, -0.0f, 5};
  EXPECT_EQ(run_ref(z).indices, (std::vector<int32_t>{1, 3}));
  z.scores = {-1, -0.0f, 0.0f, 5};
  EXPECT_EQ(run_ref(z).indices, (std::vector<int32_t>{1, 3}));
}

// Tokens with their own n, K and L in one call; list l of a token reads head l * (H / L);
// tokens whose role is not active, and lists l >= L, are left untouched.
TEST(TopkPerRowRef, PerTokenLengthsBudgetsListsAndRoles) {
  const int64_t heads = 4, len = 6;
  Batch b(3, heads, len, /*max_lists=*/4, /*max_budget=*/3);
  for (int64_t t = 0; t < 3; ++t) {
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t j = 0; j < len; ++j) b.score(t, h, j) = float((j * (h + 1) + t) % 5);
    }
  }
  b.lengths = {6, 5, 6};
  b.budgets = {3, 2, 3};
  b.lists = {2, 4, 1};  // token 0 reads heads 0, 2; token 1 heads 0..3
  b.roles = {uint8_t(TokenRole::kSelect), uint8_t(TokenRole::kReselect),
             uint8_t(TokenRole::kSparse)};
  const Result r = run_ref(b);
  const int32_t u = kUntouched, x = -1;
  // Token 0, head 0: scores j % 5 = {0,1,2,3,4,0}: top-2 of 0..4 = {3, 4}, + 5.
  // Token 0, head 2: 3j % 5 = {0,3,1,4,2,0}: {1, 3} + 5.
  // Token 1 (n 5, K 2): head h: (j(h+1)+1) % 5 over j < 4, best one + 4.
  //   h0 {1,2,3,4} -> 3; h1 {1,3,0,2} -> 1; h2 {1,4,2,0} -> 1; h3 {1,0,4,3} -> 2.
  EXPECT_EQ(r.indices, (std::vector<int32_t>{3, 4, 5, 1, 3, 5, u, u, u, u, u, u,  //
                                             3, 4, x, 1, 4, x, 1, 4, x, 2, 4, x,  //
                                             u, u, u, u, u, u, u, u, u, u, u, u}));
  EXPECT_EQ(r.counts, (std::vector<int32_t>{3, 3, u, u, 2, 2, 2, 2, u, u, u, u}));
}

TEST(TopkPerRowRef, BadArgumentsAreBugs) {
  Batch b(1, 2, 3, 2, 2);
  b.lengths = {4};
  EXPECT_DEATH(run_ref(b), "topk_per_row: length");
  b.lengths = {3};
  b.budgets = {0};
  EXPECT_DEATH(run_ref(b), "topk_per_row: budget");
  b.budgets = {3};
  EXPECT_DEATH(run_ref(b), "topk_per_row: budget");
  b.budgets = {2};
  b.lists = {3};
  EXPECT_DEATH(run_ref(b), "topk_per_row: num_lists");
  b.roles = {uint8_t(TokenRole::kDense)};  // inactive tokens are not checked: nothing to do
  EXPECT_EQ(run_ref(b).counts, (std::vector<int32_t>{kUntouched, kUntouched}));
}

struct Case {
  std::string name;
  int64_t tokens, heads, max_len, max_budget;
  int score_levels;  // scores drawn from this many integers: few levels -> many ties
};

class TopkPerRowProperty : public ::testing::TestWithParam<Case> {};

TEST_P(TopkPerRowProperty, MatchesBruteForce) {
  const Case& c = GetParam();
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int> level(0, c.score_levels - 1);
  Batch b(c.tokens, c.heads, c.max_len, c.heads, c.max_budget);
  for (float& s : b.scores) s = float(level(rng)) * 0.25f - 3.0f;
  std::vector<int32_t> divisors;
  for (int32_t d = 1; d <= c.heads; ++d) {
    if (c.heads % d == 0) divisors.push_back(d);
  }
  for (int64_t t = 0; t < c.tokens; ++t) {
    b.lengths[size_t(t)] = int32_t(t == 0 ? c.max_len : 1 + rng() % c.max_len);
    b.budgets[size_t(t)] = int32_t(1 + rng() % c.max_budget);
    b.lists[size_t(t)] = divisors[rng() % divisors.size()];
  }
  const Result got = run_ref(b);
  for (int64_t t = 0; t < c.tokens; ++t) {
    const int64_t n = b.lengths[size_t(t)], k = b.budgets[size_t(t)];
    for (int64_t l = 0; l < c.heads; ++l) {
      const size_t row = size_t(t * c.heads + l);
      if (l >= b.lists[size_t(t)]) {
        EXPECT_EQ(got.counts[row], kUntouched);
        continue;
      }
      const std::vector<int32_t> want = topk_testing::brute_force(b.row(t, l), n, k);
      ASSERT_EQ(got.counts[row], int32_t(want.size())) << "token " << t << " list " << l;
      ASSERT_EQ(int64_t(want.size()), std::min(n, k));
      for (int64_t i = 0; i < c.max_budget; ++i) {
        const int32_t expect = i < int64_t(want.size()) ? want[size_t(i)] : -1;
        ASSERT_EQ(got.indices[row * size_t(c.max_budget) + size_t(i)], expect)
            << "token " << t << " list " << l << " slot " << i;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, TopkPerRowProperty,
    ::testing::Values(Case{"one_row_len1", 1, 1, 1, 1, 4}, Case{"budget1", 7, 1, 37, 1, 100},
                      Case{"many_ties", 5, 4, 37, 7, 3}, Case{"distinct", 4, 4, 733, 64, 100000},
                      Case{"budget_over_len", 5, 2, 7, 9, 5}, Case{"budget_eq_len", 5, 1, 8, 8, 5}),
    [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

}  // namespace
}  // namespace tidal::kernels
