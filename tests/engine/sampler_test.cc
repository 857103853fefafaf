// SPDX-License-Identifier: Apache-2.0
// Sampler: greedy, filtering, seeded determinism and validation.
#include "runtime/engine/sampler.h"

#include <map>

#include "tests/testing/testing.h"

namespace tidal::engine {
namespace {

TensorView row(std::vector<float>& v) {
  return make_view(v.data(), DType::kF32, {int64_t(v.size())});
}

TEST(Sampler, GreedyTakesTheLowestIdAmongTies) {
  std::vector<float> logits = {0.5f, 2.0f, -1.0f, 2.0f};
  SamplingParams p;
  p.temperature = 0;
  Sampler s(p);
  EXPECT_EQ(s.sample(row(logits)), 1);
}

TEST(Sampler, TopKOneIsGreedy) {
  std::vector<float> logits = {0.1f, 0.3f, 3.0f, 0.2f};
  SamplingParams p;
  p.top_k = 1;
  p.seed = 7;
  Sampler s(p);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(s.sample(row(logits)), 2);
}

TEST(Sampler, TopPKeepsTheSmallestSufficientSet) {
  // Probabilities ~ {0.665, 0.245, 0.09}: top_p 0.6 keeps only the first; 0.8 keeps two.
  std::vector<float> logits = {2.0f, 1.0f, 0.0f};
  SamplingParams p;
  p.top_p = 0.6f;
  Sampler s(p);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(s.sample(row(logits)), 0);
  p.top_p = 0.8f;
  Sampler s2(p);
  std::map<int, int> seen;
  for (int i = 0; i < 400; ++i) seen[s2.sample(row(logits))]++;
  EXPECT_GT(seen[1], 0);
  EXPECT_EQ(seen.count(2), 0u);
}

TEST(Sampler, MinPDropsUnlikelyTokens) {
  std::vector<float> logits = {3.0f, 2.9f, -5.0f};  // p2 / p0 = e^-8: below min_p 0.01
  SamplingParams p;
  p.min_p = 0.01f;
  Sampler s(p);
  for (int i = 0; i < 300; ++i) EXPECT_NE(s.sample(row(logits)), 2);
}

TEST(Sampler, SameSeedSameTokensAndFrequenciesFollowSoftmax) {
  std::vector<float> logits = {1.0f, 0.0f, 0.5f, -0.5f};
  SamplingParams p;
  p.seed = 42;
  p.temperature = 0.7f;
  Sampler a(p), b(p);
  std::vector<int> counts(4, 0);
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    const int32_t t = a.sample(row(logits));
    EXPECT_EQ(t, b.sample(row(logits)));
    counts[size_t(t)]++;
  }
  double z = 0;
  for (float l : logits) z += std::exp(l / 0.7);
  for (int i = 0; i < 4; ++i) {
    EXPECT_NEAR(double(counts[size_t(i)]) / n, std::exp(logits[size_t(i)] / 0.7) / z, 0.015);
  }
}

TEST(Sampler, RejectsInvalidSettings) {
  SamplingParams p;
  p.top_p = 0;
  EXPECT_NE(p.validate().message().find("top_p"), std::string::npos);
  p = SamplingParams();
  p.temperature = -1;
  EXPECT_NE(p.validate().message().find("temperature"), std::string::npos);
  p = SamplingParams();
  p.top_k = -3;
  EXPECT_NE(p.validate().message().find("top_k"), std::string::npos);
  p = SamplingParams();
  p.min_p = 1.5f;
  EXPECT_NE(p.validate().message().find("min_p"), std::string::npos);
  EXPECT_TRUE(SamplingParams().validate().ok());
}

}  // namespace
}  // namespace tidal::engine
