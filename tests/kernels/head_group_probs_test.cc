// SPDX-License-Identifier: Apache-2.0
#include "kernels/head_group_probs.h"

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernels/decode_attention.h"
#include "runtime/tensor_access.h"
#include "tests/kernels/attention_batch.h"
#include "tests/testing/testing.h"

namespace tidal::kernels {
namespace {

struct Plan {
  std::vector<int32_t> lengths, num_lists;
  std::vector<uint8_t> roles;
  HeadGroupProbsParams params(const HostTensor& scores, const HostTensor& lse) {
    const int64_t n = int64_t(lengths.size());
    HeadGroupProbsParams p;
    p.scores = scores.view();
    p.lse = lse.view();
    p.lengths = make_view(lengths.data(), DType::kI32, {n});
    p.num_lists = make_view(num_lists.data(), DType::kI32, {n});
    p.roles = make_view(roles.data(), DType::kU8, {n});
    return p;
  }
};

TEST(HeadGroupProbsRef, KnownValues) {
  // Token 0 selects with one shared list over 2 heads, n = 2, max_len 3.
  //   Head 0 logits {0, ln 3}: softmax {1/4, 3/4} (lse ln 4). Head 1 {5, 5}: {1/2, 1/2}
  //   (lse 5 + ln 2). Row 0 becomes {3/4, 5/4}; position 2 (past n) and row 1 stay.
  // Token 1 is the same but per-query-head (L = 2): untouched. Token 2 is dense: untouched.
  const float ln3 = float(std::log(3.0));
  std::vector<float> values = {0, ln3, 1000, 5, 5, 1000};
  std::vector<float> all;
  for (int t = 0; t < 3; ++t) all.insert(all.end(), values.begin(), values.end());
  HostTensor scores = HostTensor::from({3, 2, 3}, all);
  const float lse_row[2] = {float(std::log(4.0)), float(5 + std::log(2.0))};
  const HostTensor lse =
      HostTensor::from({3, 2}, {lse_row[0], lse_row[1], lse_row[0], lse_row[1], 0, 0});
  Plan plan{
      {2, 2, 2},
      {1, 2, 1},
      {uint8_t(TokenRole::kReselect), uint8_t(TokenRole::kSelect), uint8_t(TokenRole::kDense)}};
  head_group_probs(plan.params(scores, lse), Stream{});
  std::vector<float> want = {0.75f, 1.25f, 1000, 5, 5, 1000};
  for (int t = 1; t < 3; ++t) want.insert(want.end(), values.begin(), values.end());
  EXPECT_TRUE(testing::all_close(testing::to_vector(scores.view()), want, 1e-6f, 1e-6f));
}

// With logits16, a group-list token's logits are read there (decode attention wrote them as f16)
// and its sums still go to the scores; per-query-head tokens keep theirs in the scores.
TEST(HeadGroupProbsRef, GroupListTokensReadLogits16) {
  // f16-exact logits: head 0 {0, 2}, head 1 {5, 5}; token 0 shared (L = 1), token 1 L = 2.
  const std::vector<float> values = {0, 2, 1000, 5, 5, 1000};
  std::vector<float> all = values;
  all.insert(all.end(), values.begin(), values.end());
  HostTensor logits16({2, 2, 3}, DType::kF16);
  for (size_t i = 0; i < all.size(); ++i) {
    static_cast<f16*>(logits16.view().data)[i] = f32_to_f16(all[i]);
  }
  // The scores: token 0's hold other values (to be overwritten in row 0 only), token 1's logits.
  std::vector<float> scores_v = {-9, -9, -9, -9, -9, -9};
  scores_v.insert(scores_v.end(), values.begin(), values.end());
  HostTensor scores = HostTensor::from({2, 2, 3}, scores_v);
  const float lse0 = float(std::log(1 + std::exp(2.0))), lse1 = float(5 + std::log(2.0));
  const HostTensor lse = HostTensor::from({2, 2}, {lse0, lse1, lse0, lse1});
  Plan plan{{2, 2}, {1, 2}, {uint8_t(TokenRole::kSelect), uint8_t(TokenRole::kSelect)}};
  HeadGroupProbsParams p = plan.params(scores, lse);
  p.logits16 = logits16.view();
  head_group_probs(p, Stream{});
  const float p0 = float(1 / (1 + std::exp(2.0))), p1 = float(std::exp(2.0) / (1 + std::exp(2.0)));
  std::vector<float> want = {p0 + 0.5f, p1 + 0.5f, -9, -9, -9, -9};
  want.insert(want.end(), values.begin(), values.end());
  EXPECT_TRUE(testing::all_close(testing::to_vector(scores.view()), want, 1e-6f, 1e-6f));
}

// A rank holding one head of a list that spans ranks (shared lists under tensor parallelism)
// turns its logits into probabilities too, since the ranks sum them; without agreement a
// one-head list keeps its logits (they order the same way).
TEST(HeadGroupProbsRef, OneHeadListsOfAgreeingTokensBecomeProbabilities) {
  const float ln3 = float(std::log(3.0));
  HostTensor scores = HostTensor::from({2, 1, 3}, {0, ln3, 1000, 0, ln3, 1000});
  const float lse4 = float(std::log(4.0));
  const HostTensor lse = HostTensor::from({2, 1}, {lse4, lse4});
  Plan plan{{2, 2}, {1, 1}, {uint8_t(TokenRole::kSelect), uint8_t(TokenRole::kSelect)}};
  std::vector<uint8_t> agreement = {1, 0};
  HeadGroupProbsParams p = plan.params(scores, lse);
  p.agreement = make_view(agreement.data(), DType::kU8, {2});
  head_group_probs(p, Stream{});
  EXPECT_TRUE(testing::all_close(testing::to_vector(scores.view()),
                                 {0.25f, 0.75f, 1000, 0, ln3, 1000}, 1e-6f, 1e-6f));
}

TEST(HeadGroupProbsRef, BadPlansAreBugs) {
  HostTensor scores({1, 6, 4}, DType::kF32);
  const HostTensor lse({1, 6}, DType::kF32);
  Plan plan{{4}, {4}, {uint8_t(TokenRole::kSelect)}};
  EXPECT_DEATH(head_group_probs(plan.params(scores, lse), Stream{}), "lists must divide");
  plan.num_lists[0] = 3;
  plan.lengths[0] = 5;
  EXPECT_DEATH(head_group_probs(plan.params(scores, lse), Stream{}), "length");
  const HostTensor bad_lse({1, 5}, DType::kF32);
  EXPECT_DEATH(head_group_probs(plan.params(scores, bad_lse), Stream{}), "lse");
}

struct Case {
  std::string name;
  int64_t num_heads, num_kv_heads, max_len;
};

class HeadGroupProbsProperty : public ::testing::TestWithParam<Case> {};

// From a real selection pass (decode_attention's logits and lse): every list's row sums to its
// group size over positions 0..n-1 and equals the group's summed softmax.
TEST_P(HeadGroupProbsProperty, RowsSumToGroupSizeFromAnAttentionPass) {
  const Case& c = GetParam();
  using testing_attention::AttentionBatch;
  const int32_t h = int32_t(c.num_heads), kvh = int32_t(c.num_kv_heads);
  const int32_t n = int32_t(c.max_len);
  const AttentionBatch b({c.num_heads, c.num_kv_heads, 16, 16},
                         {{TokenRole::kSelect, n},
                          {TokenRole::kReselect, std::max(1, n / 3)},
                          {TokenRole::kSelect, std::max(1, n - 1)},
                          {TokenRole::kDense, n}},
                         5);
  HostTensor out({b.num_tokens, c.num_heads, 16}, DType::kF32);
  HostTensor logits({b.num_tokens, c.num_heads, b.max_len}, DType::kF32);
  HostTensor lse({b.num_tokens, c.num_heads}, DType::kF32);
  DecodeAttentionParams a = b.params(0, b.num_tokens);
  a.out = out.view();
  a.logits = logits.view();
  a.lse = lse.view();
  decode_attention(a, TensorView{}, Stream{});
  const std::vector<float> before = testing::to_vector(logits.view());
  // Lists per token: shared, per KV head, per query head (untouched), dense (untouched).
  Plan plan{{b.lengths}, {1, kvh, h, 1}, {b.roles}};
  head_group_probs(plan.params(logits, lse), Stream{});
  const std::vector<float> after = testing::to_vector(logits.view());
  for (int64_t t = 0; t < b.num_tokens; ++t) {
    const int64_t lists = plan.num_lists[size_t(t)], len = b.lengths[size_t(t)];
    const bool touched = is_selecting(TokenRole(b.roles[size_t(t)])) && lists < c.num_heads;
    const int64_t group = c.num_heads / lists;
    for (int64_t hh = 0; hh < c.num_heads; ++hh) {
      const bool head_row = touched && hh % group == 0;
      double total = 0;
      for (int64_t j = 0; j < b.max_len; ++j) {
        const size_t at = size_t((t * c.num_heads + hh) * b.max_len + j);
        if (!head_row || j >= len) {
          ASSERT_EQ(after[at], before[at]) << "token " << t << " head " << hh << " pos " << j;
          continue;
        }
        double want = 0;
        for (int64_t g = hh; g < hh + group; ++g) {
          want += std::exp(double(before[size_t((t * c.num_heads + g) * b.max_len + j)]) -
                           double(get_f32(lse.view(), t, g)));
        }
        EXPECT_NEAR(after[at], want, 1e-6 + 1e-5 * want) << "token " << t << " pos " << j;
        total += after[at];
      }
      if (head_row) {
        EXPECT_NEAR(total, double(group), 1e-4 * group) << "token " << t;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, HeadGroupProbsProperty,
                         ::testing::Values(Case{"single_head", 1, 1, 1}, Case{"gqa8x4", 8, 4, 37},
                                           Case{"gqa8x2", 8, 2, 733}, Case{"odd_groups", 15, 3, 7}),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return info.param.name;
                         });

}  // namespace
}  // namespace tidal::kernels
