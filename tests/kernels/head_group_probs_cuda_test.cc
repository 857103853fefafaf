// SPDX-License-Identifier: Apache-2.0
// head_group_probs on the GPU against ref:: over named shapes: mixed roles and granularities,
// n = 1 .. 32K; rows the op must not touch are compared bit for bit. Each shape twice: logits in
// the f32 scores, and (`_f16`) group-list tokens' logits in logits16 as decode attention leaves
// them, the scores' own values then only read for the other tokens.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/head_group_probs.h"
#include "tests/testing/device_tensor.h"
#include "tests/testing/testing.h"

namespace tidal::kernels {
namespace {

struct Token {
  TokenRole role;
  int32_t n, lists;
};

struct Case {
  std::string name;
  int64_t num_heads;
  std::vector<Token> tokens;
  std::vector<uint8_t> agreement;  // per token (tensor parallel); empty: none
  bool f16 = false;                // logits16 given
};

class HeadGroupProbsCuda : public ::testing::TestWithParam<Case> {};

TEST_P(HeadGroupProbsCuda, MatchesReference) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const Case& c = GetParam();
  const int64_t tokens = int64_t(c.tokens.size());
  int64_t max_len = 1;
  for (const Token& t : c.tokens) max_len = std::max<int64_t>(max_len, t.n);
  // Logits of scale 3 and each row's true log-sum-exp over 0..n-1 (as decode_attention writes).
  HostTensor scores = testing::random_tensor({tokens, c.num_heads, max_len}, 17, 3.0f);
  HostTensor lse({tokens, c.num_heads}, DType::kF32);
  std::vector<int32_t> lengths, num_lists;
  std::vector<uint8_t> roles;
  float* sc = scores.view().data_as<float>();
  for (int64_t t = 0; t < tokens; ++t) {
    const Token& tk = c.tokens[size_t(t)];
    lengths.push_back(tk.n);
    num_lists.push_back(tk.lists);
    roles.push_back(uint8_t(tk.role));
    for (int64_t h = 0; h < c.num_heads; ++h) {
      const float* row = sc + (t * c.num_heads + h) * max_len;
      double mx = -INFINITY, sum = 0;
      for (int64_t j = 0; j < tk.n; ++j) mx = std::max(mx, double(row[j]));
      for (int64_t j = 0; j < tk.n; ++j) sum += std::exp(double(row[j]) - mx);
      lse.view().data_as<float>()[t * c.num_heads + h] = float(mx + std::log(sum));
    }
  }
  // logits16: the same logits as f16; the scores of the tokens that read them there then hold
  // other values (a sum taken from the wrong buffer differs).
  HostTensor logits16;
  testing::DeviceTensor logits16_d;
  if (c.f16) {
    logits16 = testing::convert(scores.view(), DType::kF16);
    const HostTensor other = testing::random_tensor({tokens, c.num_heads, max_len}, 18, 3.0f);
    for (int64_t t = 0; t < tokens; ++t) {
      if (!has_group_lists(c.tokens[size_t(t)].lists, int32_t(c.num_heads))) continue;
      const int64_t at = t * c.num_heads * max_len, count = c.num_heads * max_len;
      std::copy(other.view().data_as<float>() + at, other.view().data_as<float>() + at + count,
                sc + at);
    }
    logits16_d = testing::DeviceTensor::from_host(logits16.view());
  }
  const testing::DeviceTensor scores_d = testing::DeviceTensor::from_host(scores.view());
  const testing::DeviceTensor lse_d = testing::DeviceTensor::from_host(lse.view());
  const testing::DeviceTensor len_d =
      testing::DeviceTensor::from_host(make_view(lengths.data(), DType::kI32, {tokens}));
  const testing::DeviceTensor lists_d =
      testing::DeviceTensor::from_host(make_view(num_lists.data(), DType::kI32, {tokens}));
  const testing::DeviceTensor roles_d =
      testing::DeviceTensor::from_host(make_view(roles.data(), DType::kU8, {tokens}));

  std::vector<uint8_t> agreement = c.agreement;
  testing::DeviceTensor agreement_d;
  if (!agreement.empty()) {
    agreement_d =
        testing::DeviceTensor::from_host(make_view(agreement.data(), DType::kU8, {tokens}));
  }
  HeadGroupProbsParams r;
  if (!agreement.empty()) r.agreement = make_view(agreement.data(), DType::kU8, {tokens});
  r.scores = scores.view();
  r.lse = lse.view();
  r.lengths = make_view(lengths.data(), DType::kI32, {tokens});
  r.num_lists = make_view(num_lists.data(), DType::kI32, {tokens});
  r.roles = make_view(roles.data(), DType::kU8, {tokens});
  if (c.f16) r.logits16 = logits16.view();
  ref::head_group_probs(r);

  HeadGroupProbsParams p;
  p.agreement = agreement_d.view();
  p.scores = scores_d.view();
  p.lse = lse_d.view();
  p.lengths = len_d.view();
  p.num_lists = lists_d.view();
  p.roles = roles_d.view();
  if (c.f16) p.logits16 = logits16_d.view();
  head_group_probs(p, Stream{});
  stream_synchronize(Stream{});
  // Untouched entries are equal exactly (diff 0); written sums to f32 rounding of the exps.
  EXPECT_TRUE(
      testing::all_close(scores_d.to_floats(), testing::to_vector(scores.view()), 1e-6f, 1e-5f));
}

constexpr TokenRole kDense = TokenRole::kDense, kSelect = TokenRole::kSelect,
                    kReselect = TokenRole::kReselect, kSparse = TokenRole::kSparse;

// 24 tokens of 8 heads, longest max_n: the grid then has fewer position chunks than a row (at
// most 44 on 132 SMs, fewer on smaller GPUs), so blocks walk several chunks each. Selecting
// tokens of 1, 2 and 4 lists, with dense and sparse ones between; lengths off the chunk size.
std::vector<Token> many_long_tokens(int32_t max_n) {
  std::vector<Token> tokens;
  const TokenRole roles[] = {TokenRole::kSelect, TokenRole::kReselect, TokenRole::kDense,
                             TokenRole::kSelect, TokenRole::kSparse, TokenRole::kReselect};
  const int32_t lists[] = {1, 2, 4, 2, 1, 4};
  for (int i = 0; i < 24; ++i) {
    const int32_t n = i == 0 ? max_n : max_n - 1 - 997 * i;
    tokens.push_back({roles[i % 6], n, lists[(i / 6 + i) % 6]});
  }
  return tokens;
}

// Every shape with f32 logits, then with logits16.
std::vector<Case> with_f16(std::vector<Case> cases) {
  const size_t n = cases.size();
  for (size_t i = 0; i < n; ++i) {
    Case c = cases[i];
    c.name += "_f16";
    c.f16 = true;
    cases.push_back(c);
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, HeadGroupProbsCuda,
    ::testing::ValuesIn(with_f16({
        Case{"n1_shared", 8, {{kSelect, 1, 1}}, {}},
        Case{"stories_8x4_mixed",
             8,
             {{kSelect, 7, 4},
              {kReselect, 733, 1},
              {kSelect, 16, 8},
              {kDense, 733, 1},
              {kSparse, 17, 4},
              {kReselect, 17, 2}},
             {}},
        Case{"odd_15_heads", 15, {{kSelect, 37, 5}, {kReselect, 1025, 3}, {kSelect, 4100, 1}}, {}},
        // One head per rank (tp = num_heads): agreeing one-head lists become probabilities.
        Case{"tp_one_head_agreed",
             1,
             {{kSelect, 733, 1}, {kSelect, 37, 1}, {kReselect, 5000, 1}, {kSparse, 9, 1}},
             {1, 0, 2, 1}},
        Case{
            "llama3_32x8_32k",
            32,
            {{kSelect, 32768, 8}, {kReselect, 32768, 1}, {kSelect, 4100, 32}, {kReselect, 1023, 8}},
            {}},
        Case{"chunk_loop_24x8_vec", 8, many_long_tokens(90000), {}},
        Case{"chunk_loop_24x8_odd", 8, many_long_tokens(90001), {}}})),
    [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

}  // namespace
}  // namespace tidal::kernels
