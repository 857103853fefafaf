// SPDX-License-Identifier: Apache-2.0
// ref::sample_tokens: greedy ties, top-k / top-p / min-p exclusions (ties at a cut kept), the
// draw as a pure function of (seed, counter), and draw frequencies against the probabilities.
#include "kernels/sample_tokens.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <vector>

#include "tests/kernels/sample_tokens_batch.h"
#include "tests/testing/testing.h"

namespace tidal::kernels {
namespace {

using sample_testing::Rows;
using sample_testing::Setting;

// Draws `n` tokens of one row with counters 0..n-1 and returns how often each id came up.
std::vector<int64_t> histogram(const std::vector<float>& logits, const Setting& s, int64_t n,
                               int64_t seed = 7) {
  Rows r(1, int64_t(logits.size()));
  r.logits = logits;
  r.set(0, s);
  r.seeds[0] = seed;
  std::vector<int64_t> hits(logits.size());
  for (int64_t c = 0; c < n; ++c) {
    r.counters[0] = c;
    const int32_t tok = r.sample_ref()[0];
    EXPECT_TRUE(tok >= 0 && tok < int32_t(logits.size()));
    hits[size_t(tok)] += 1;
  }
  return hits;
}

std::vector<float> log_probs(const std::vector<double>& p) {
  std::vector<float> l;
  for (double x : p) l.push_back(float(std::log(x)));
  return l;
}

// Pearson's statistic of `hits` against probabilities `p`.
double chi_square(const std::vector<int64_t>& hits, const std::vector<double>& p) {
  int64_t n = 0;
  for (int64_t h : hits) n += h;
  double chi = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    const double e = p[i] * double(n);
    chi += (double(hits[i]) - e) * (double(hits[i]) - e) / e;
  }
  return chi;
}

TEST(SampleTokensRef, GreedyTakesTheLowestOfEqualMaxima) {
  Rows r(3, 5);
  r.logits = {1,  5,  3,  5,  5,  //
              2,  2,  2,  2,  2,  //
              -9, -3, -7, -3, -4};
  for (int64_t i = 0; i < 3; ++i) r.set(i, Setting{0.0f, 0, 1.0f, 0.0f});
  EXPECT_EQ(r.sample_ref(), (std::vector<int32_t>{1, 0, 1}));
}

// Rows with a NaN, +inf or -inf (greedy or sampled, filters on or off) get kNonFiniteLogits; a
// finite row beside them is sampled as if alone.
Rows non_finite_rows(int64_t vocab) {
  Rows r(5, vocab);
  r.logits = testing::to_vector(testing::random_tensor({5, vocab}, 9, 2.0f).view());
  r.logits[size_t(0 * vocab + 3)] = std::nanf("");
  r.logits[size_t(1 * vocab + vocab - 1)] = INFINITY;
  r.logits[size_t(2 * vocab + 0)] = -INFINITY;
  r.logits[size_t(3 * vocab + vocab / 2)] = std::nanf("");
  r.set(0, Setting{0.0f, 0, 1.0f, 0.0f});
  r.set(1, Setting{1.0f, 0, 1.0f, 0.0f});
  r.set(2, Setting{0.7f, 5, 0.9f, 0.05f});
  r.set(3, Setting{1.0f, 0, 0.5f, 0.0f});
  r.set(4, Setting{1.0f, 0, 1.0f, 0.0f});
  return r;
}

TEST(SampleTokensRef, NonFiniteRowsGetTheMarker) {
  Rows r = non_finite_rows(733);
  const std::vector<int32_t> got = r.sample_ref();
  for (int64_t i = 0; i < 4; ++i) EXPECT_EQ(got[size_t(i)], kNonFiniteLogits) << "row " << i;
  Rows alone(1, 733);
  alone.logits.assign(r.logits.begin() + 4 * 733, r.logits.end());
  EXPECT_EQ(got[4], alone.sample_ref()[0]);
  EXPECT_GE(got[4], 0);
}

TEST(SampleTokensRef, TopKOneIsGreedy) {
  const HostTensor x = testing::random_tensor({6, 733}, 3, 4.0f);  // distinct values
  Rows r(6, 733);
  r.logits = testing::to_vector(x.view());
  for (int64_t i = 0; i < 6; ++i) r.set(i, Setting{0.0f, 0, 1.0f, 0.0f});
  const std::vector<int32_t> greedy = r.sample_ref();
  for (int64_t i = 0; i < 6; ++i) {
    r.set(i, Setting{1.5f, 1, 1.0f, 0.0f});
    r.seeds[size_t(i)] = 100 + i;
    r.counters[size_t(i)] = 3 * i;
  }
  EXPECT_EQ(r.sample_ref(), greedy);
}

TEST(SampleTokensRef, SameSeedAndCounterSameToken) {
  // Four copies of one row: seeds {1, 1, 2, 2}, counters {5, 5, 5, 6}.
  const std::vector<float> row = testing::to_vector(testing::random_tensor({1000}, 5, 2.0f).view());
  Rows r(4, 1000);
  r.logits.clear();
  for (int i = 0; i < 4; ++i) r.logits.insert(r.logits.end(), row.begin(), row.end());
  r.seeds = {1, 1, 2, 2};
  r.counters = {5, 5, 5, 6};
  const std::vector<int32_t> first = r.sample_ref();
  EXPECT_EQ(first[0], first[1]);  // same row, seed and counter
  EXPECT_EQ(r.sample_ref(), first);
  // Many counters of one seed are not all the same token (1000 flat-ish choices).
  std::map<int32_t, int> seen;
  for (int64_t c = 0; c < 50; ++c) {
    r.counters[0] = c;
    seen[r.sample_ref()[0]] += 1;
  }
  EXPECT_GT(seen.size(), 10u);
}

TEST(SampleTokensRef, DrawsFollowTheProbabilities) {
  const std::vector<double> p = {0.1, 0.2, 0.3, 0.25, 0.15};
  // Pearson chi-square, 4 degrees of freedom: P(chi > 25) ~ 5e-5 under the null.
  EXPECT_LT(chi_square(histogram(log_probs(p), Setting{1.0f, 0, 1.0f, 0.0f}, 20000), p), 25.0);
  // Temperature 2 flattens: p_i ~ sqrt(p_i).
  std::vector<double> flat;
  double z = 0;
  for (double x : p) z += std::sqrt(x);
  for (double x : p) flat.push_back(std::sqrt(x) / z);
  EXPECT_LT(chi_square(histogram(log_probs(p), Setting{2.0f, 0, 1.0f, 0.0f}, 20000), flat), 25.0);
}

TEST(SampleTokensRef, TopKKeepsTiesAtTheCut) {
  // top_k 2 over {3, 2, 2, 1, 0}: the 2nd largest is 2, so ids 0, 1, 2 stay.
  const std::vector<int64_t> hits = histogram({3, 2, 2, 1, 0}, Setting{1.0f, 2, 1.0f, 0.0f}, 3000);
  EXPECT_GT(hits[0], 0);
  EXPECT_GT(hits[1], 0);
  EXPECT_GT(hits[2], 0);
  EXPECT_EQ(hits[3] + hits[4], 0);
}

TEST(SampleTokensRef, TopPKeepsTheSmallestHeadOfMassAndItsTies) {
  const std::vector<float> l = log_probs({0.5, 0.3, 0.15, 0.05});
  // 0.5 < 0.75 <= 0.5 + 0.3: ids 0 and 1, in proportion 5 : 3.
  const std::vector<int64_t> hits = histogram(l, Setting{1.0f, 0, 0.75f, 0.0f}, 8000);
  EXPECT_EQ(hits[2] + hits[3], 0);
  EXPECT_LT(chi_square({hits[0], hits[1]}, {0.625, 0.375}), 20.0);
  // Ties at tau all stay: {0.4, 0.2, 0.2, 0.2} at top_p 0.5 keeps every id.
  const std::vector<int64_t> ties =
      histogram(log_probs({0.4, 0.2, 0.2, 0.2}), Setting{1.0f, 0, 0.5f, 0.0f}, 2000);
  for (int64_t h : ties) EXPECT_GT(h, 0);
  // With top-k first, top-p works on the kept mass only: top_k 3 leaves {0.5, 0.3, 0.15}
  // (mass 0.95); top_p 0.8 needs 0.76 > 0.5, so ids 0 and 1.
  const std::vector<int64_t> both = histogram(l, Setting{1.0f, 3, 0.8f, 0.0f}, 2000);
  EXPECT_EQ(both[2] + both[3], 0);
  EXPECT_GT(both[1], 0);
}

TEST(SampleTokensRef, MinPDropsWeightsBelowItsShareOfTheTop) {
  // Weights relative to the top: {1, 0.6, 0.3, 0.1}; min_p 0.35 keeps ids 0 and 1.
  const std::vector<int64_t> hits =
      histogram(log_probs({0.5, 0.3, 0.15, 0.05}), Setting{1.0f, 0, 1.0f, 0.35f}, 4000);
  EXPECT_GT(hits[1], 0);
  EXPECT_EQ(hits[2] + hits[3], 0);
}

}  // namespace
}  // namespace tidal::kernels
