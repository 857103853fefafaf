// SPDX-License-Identifier: Apache-2.0
// Sampling settings: validation, and the host argmax. The draws themselves are
// kernels::sample_tokens (tests/kernels/sample_tokens_test.cc).
#include "runtime/engine/sampler.h"

#include "tests/testing/testing.h"

namespace tidal::engine {
namespace {

TEST(SamplingParams, ArgmaxTakesTheLowestIdAmongTies) {
  std::vector<float> logits = {0.5f, 2.0f, -1.0f, 2.0f};
  EXPECT_EQ(argmax(make_view(logits.data(), DType::kF32, {4})), 1);
}

TEST(SamplingParams, RejectsInvalidSettings) {
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
  EXPECT_TRUE(p.greedy() == false);
}

TEST(SamplingParams, TemperaturesTooSmallToDivideByAreGreedy) {
  SamplingParams p;
  for (float t : {0.0f, 1e-40f, 1e-20f, 0.5f * kGreedyTemperature}) {
    p.temperature = t;
    EXPECT_TRUE(p.validate().ok()) << t;
    EXPECT_TRUE(p.greedy()) << t;
  }
  for (float t : {kGreedyTemperature, 0.01f, 1.0f}) {
    p.temperature = t;
    EXPECT_FALSE(p.greedy()) << t;
  }
}

}  // namespace
}  // namespace tidal::engine
