// SPDX-License-Identifier: Apache-2.0
#include "kernels/head_group_probs.h"

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "runtime/tensor_access.h"
#include "tests/testing/testing.h"

namespace tidal::kernels {
namespace {

TEST(HeadGroupProbsRef, KnownValues) {
  // One token, 2 heads, max_len 3, n = 2.
  // Head 0 logits {0, ln 3}: softmax {1/4, 3/4}. Head 1 logits {5, 5}: softmax {1/2, 1/2}.
  // Logits past n (1000) are never read; out past n keeps its sentinel 7.
  const float ln3 = float(std::log(3.0));
  const HostTensor logits = HostTensor::from({1, 2, 3}, {0, ln3, 1000, 5, 5, 1000});
  int32_t len[1] = {2};
  const TensorView lengths = make_view(len, DType::kI32, {1});

  HostTensor per_head = HostTensor::from({1, 2, 3}, {7, 7, 7, 7, 7, 7});
  head_group_probs(per_head.view(), logits.view(), lengths, 1);
  EXPECT_TRUE(testing::all_close(testing::to_vector(per_head.view()),
                                 {0.25f, 0.75f, 7, 0.5f, 0.5f, 7}, 1e-7f, 1e-6f));

  // One group of both heads: {1/4 + 1/2, 3/4 + 1/2} = {0.75, 1.25}.
  HostTensor shared = HostTensor::from({1, 1, 3}, {7, 7, 7});
  head_group_probs(shared.view(), logits.view(), lengths, 2);
  EXPECT_TRUE(
      testing::all_close(testing::to_vector(shared.view()), {0.75f, 1.25f, 7}, 1e-7f, 1e-6f));
}

TEST(HeadGroupProbsRef, BadShapesAreBugs) {
  const HostTensor logits({1, 6, 4}, DType::kF32);
  int32_t len[1] = {4};
  const TensorView lengths = make_view(len, DType::kI32, {1});
  HostTensor out({1, 1, 4}, DType::kF32);
  EXPECT_DEATH(head_group_probs(out.view(), logits.view(), lengths, 4), "multiple");
  EXPECT_DEATH(head_group_probs(out.view(), logits.view(), lengths, 3), "head_group_probs: out");
  len[0] = 5;
  HostTensor out2({1, 2, 4}, DType::kF32);
  EXPECT_DEATH(head_group_probs(out2.view(), logits.view(), lengths, 3), "length");
}

struct Case {
  std::string name;
  int64_t num_tokens, num_heads, max_len, heads_per_group;
};

class HeadGroupProbsProperty : public ::testing::TestWithParam<Case> {};

TEST_P(HeadGroupProbsProperty, GroupsSumToTheirSizeAndMatchADirectSoftmax) {
  const Case& c = GetParam();
  const HostTensor logits = testing::random_tensor({c.num_tokens, c.num_heads, c.max_len}, 7, 3);
  std::mt19937 rng(99);
  std::uniform_int_distribution<int32_t> len_dist(1, int32_t(c.max_len));
  std::vector<int32_t> len(size_t(c.num_tokens));
  for (int32_t& n : len) n = len_dist(rng);
  len[0] = int32_t(c.max_len);
  const int64_t groups = c.num_heads / c.heads_per_group;
  HostTensor out({c.num_tokens, groups, c.max_len}, DType::kF32);
  head_group_probs(out.view(), logits.view(), make_view(len.data(), DType::kI32, {c.num_tokens}),
                   c.heads_per_group);
  for (int64_t t = 0; t < c.num_tokens; ++t) {
    const int64_t n = len[size_t(t)];
    std::vector<float> got, want(size_t(n), 0.0f);
    for (int64_t g = 0; g < groups; ++g) {
      got.clear();
      std::vector<double> sum(size_t(n), 0.0);
      for (int64_t h = g * c.heads_per_group; h < (g + 1) * c.heads_per_group; ++h) {
        double z = 0;  // logits are O(10): exp without max-shift is exact enough in double
        for (int64_t j = 0; j < n; ++j) z += std::exp(double(get_f32(logits.view(), t, h, j)));
        for (int64_t j = 0; j < n; ++j) {
          sum[size_t(j)] += std::exp(double(get_f32(logits.view(), t, h, j))) / z;
        }
      }
      double total = 0;
      for (int64_t j = 0; j < n; ++j) {
        got.push_back(get_f32(out.view(), t, g, j));
        want[size_t(j)] = float(sum[size_t(j)]);
        total += got.back();
      }
      EXPECT_NEAR(total, double(c.heads_per_group), 1e-5 * c.heads_per_group)
          << "token " << t << " group " << g;
      EXPECT_TRUE(testing::all_close(got, want, 1e-7f, 1e-6f)) << "token " << t << " group " << g;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, HeadGroupProbsProperty,
    ::testing::Values(Case{"single", 1, 1, 1, 1}, Case{"per_head", 3, 8, 37, 1},
                      Case{"per_kv_head_gqa4", 3, 8, 37, 4}, Case{"shared", 2, 8, 733, 8},
                      Case{"odd_groups", 2, 15, 7, 5}),
    [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

}  // namespace
}  // namespace tidal::kernels
