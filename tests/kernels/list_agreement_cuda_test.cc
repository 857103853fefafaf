// SPDX-License-Identifier: Apache-2.0
// The list-agreement ops on the GPU against ref:: over named shapes: mixed roles and agreement
// codes, candidates of several ranks with repeated positions and -1 padding, long rows. Positions
// and merged scores compared exactly (the ops only move values).
#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kernels/list_agreement.h"
#include "tests/testing/device_tensor.h"
#include "tests/testing/testing.h"

namespace tidal::kernels {
namespace {

struct Case {
  std::string name;
  int64_t tokens, ranks, heads, max_len, budget;
};

class ListAgreementCuda : public ::testing::TestWithParam<Case> {};

template <typename T>
std::vector<T> host_of(const testing::DeviceTensor& d) {
  const HostTensor h = d.to_host();
  const T* p = h.view().data_as<T>();
  return std::vector<T>(p, p + h.view().numel());
}

TEST_P(ListAgreementCuda, MatchesReference) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const Case& c = GetParam();
  std::mt19937 rng(uint32_t(c.tokens * 7 + c.budget));
  const int64_t t_ = c.tokens, k_ = c.budget;
  std::vector<int32_t> lengths, lists(size_t(t_ * 2 * k_)), counts(size_t(t_ * 2));
  std::vector<uint8_t> roles, agreement;
  const TokenRole cycle[] = {TokenRole::kSelect, TokenRole::kReselect, TokenRole::kSparse,
                             TokenRole::kSelect, TokenRole::kDense};
  for (int64_t t = 0; t < t_; ++t) {
    const int32_t n = int32_t(std::max<int64_t>(1, c.max_len - int64_t(rng() % 97)));
    lengths.push_back(n);
    roles.push_back(uint8_t(cycle[t % 5]));
    agreement.push_back(uint8_t(1 + t % 2));
    const int32_t count = std::min<int32_t>(n, int32_t(k_));
    counts[size_t(2 * t)] = count;
    for (int64_t k = 0; k < k_; ++k) {
      lists[size_t(2 * t * k_ + k)] = k < count ? int32_t(rng() % uint32_t(n)) : -1;
    }
  }
  const HostTensor scores = testing::random_tensor({t_, c.heads, c.max_len}, 5, 1.0f);
  // Gathered candidates of every rank: this rank's, then others drawn from the same positions.
  std::vector<int32_t> gathered(size_t(c.ranks * t_ * k_));
  for (size_t i = 0; i < gathered.size(); ++i) {
    const int64_t t = int64_t(i / size_t(k_)) % t_;
    gathered[i] = rng() % 5 == 0 ? -1 : int32_t(rng() % uint32_t(lengths[size_t(t)]));
  }
  // Totals as the all-reduce leaves them: one value per (token, position), whichever rank's slot
  // holds the position (the merge may write a repeated position from any of its slots).
  std::vector<float> totals(gathered.size());
  for (size_t i = 0; i < gathered.size(); ++i) {
    const int64_t t = int64_t(i / size_t(k_)) % t_;
    totals[i] = 0.25f * float(gathered[i]) - float(t);
  }
  const uint8_t match = 1;

  auto dev = [](void* data, DType dtype, std::vector<int64_t> shape) {
    return testing::DeviceTensor::from_host(make_view(data, dtype, shape));
  };
  const auto d_lists = dev(lists.data(), DType::kI32, {t_, 2, k_});
  const auto d_counts = dev(counts.data(), DType::kI32, {t_, 2});
  const auto d_roles = dev(roles.data(), DType::kU8, {t_});
  const auto d_agree = dev(agreement.data(), DType::kU8, {t_});
  const auto d_len = dev(lengths.data(), DType::kI32, {t_});
  const auto d_gathered = dev(gathered.data(), DType::kI32, {c.ranks, t_, k_});
  const auto d_totals = dev(totals.data(), DType::kF32, {c.ranks, t_, k_});
  const auto d_scores = testing::DeviceTensor::from_host(scores.view());
  const auto d_cand = testing::DeviceTensor::filled({t_, k_}, DType::kI32, 0xFF);
  const auto d_partial = testing::DeviceTensor::filled({c.ranks, t_, k_}, DType::kF32, 0xFF);
  const auto d_merged = testing::DeviceTensor::filled({t_}, DType::kU8, 0xFF);

  // Reference on the host.
  std::vector<int32_t> cand(static_cast<size_t>(t_ * k_));
  std::vector<float> partial(gathered.size());
  std::vector<uint8_t> merged(static_cast<size_t>(t_));
  HostTensor merged_scores =
      HostTensor::from({t_, c.heads, c.max_len}, testing::to_vector(scores.view()));
  ref::list_candidates({make_view(cand.data(), DType::kI32, {t_, k_}),
                        make_view(lists.data(), DType::kI32, {t_, 2, k_}),
                        make_view(counts.data(), DType::kI32, {t_, 2}),
                        make_view(roles.data(), DType::kU8, {t_}),
                        make_view(agreement.data(), DType::kU8, {t_}), match});
  ref::candidate_scores({make_view(partial.data(), DType::kF32, {c.ranks, t_, k_}),
                         make_view(gathered.data(), DType::kI32, {c.ranks, t_, k_}),
                         scores.view()});
  ref::merge_candidates(
      {merged_scores.view(), make_view(gathered.data(), DType::kI32, {c.ranks, t_, k_}),
       make_view(totals.data(), DType::kF32, {c.ranks, t_, k_}),
       make_view(lengths.data(), DType::kI32, {t_}), make_view(roles.data(), DType::kU8, {t_}),
       make_view(agreement.data(), DType::kU8, {t_}), match,
       make_view(merged.data(), DType::kU8, {t_})});

  list_candidates(
      {d_cand.view(), d_lists.view(), d_counts.view(), d_roles.view(), d_agree.view(), match},
      Stream{});
  candidate_scores({d_partial.view(), d_gathered.view(), d_scores.view()}, Stream{});
  merge_candidates({d_scores.view(), d_gathered.view(), d_totals.view(), d_len.view(),
                    d_roles.view(), d_agree.view(), match, d_merged.view()},
                   Stream{});
  stream_synchronize(Stream{});
  EXPECT_EQ(host_of<int32_t>(d_cand), cand);
  EXPECT_EQ(host_of<float>(d_partial), partial);
  EXPECT_EQ(host_of<uint8_t>(d_merged), merged);
  EXPECT_EQ(d_scores.to_floats(), testing::to_vector(merged_scores.view()));
}

INSTANTIATE_TEST_SUITE_P(Shapes, ListAgreementCuda,
                         ::testing::Values(Case{"one_token", 1, 2, 1, 5, 4},
                                           Case{"odd_7_tokens_k37", 7, 3, 4, 733, 37},
                                           Case{"tp8_k2048_32k", 4, 8, 4, 32768, 2048},
                                           Case{"batch64_tp2_k256", 64, 2, 8, 4100, 256}),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return info.param.name;
                         });

}  // namespace
}  // namespace tidal::kernels
