// SPDX-License-Identifier: Apache-2.0
#include "kernels/head_group_probs.h"

#include <cmath>
#include <vector>

#include "kernels/dispatch.h"
#include "runtime/tensor_access.h"

namespace tidal::kernels {

void head_group_probs(const HeadGroupProbsParams& p, [[maybe_unused]] Stream stream) {
  const char* op = "head_group_probs";
  TIDAL_CHECK(p.scores.rank == 3 && p.scores.dtype == DType::kF32 && p.scores.is_contiguous(),
              "head_group_probs: scores must be contiguous f32 [num_tokens, num_heads, max_len]");
  const int64_t tokens = p.scores.size(0);
  check_shape(p.lse, {tokens, p.scores.size(1)}, DType::kF32, op, "lse");
  check_per_token(p.lengths, tokens, DType::kI32, op, "lengths");
  check_per_token(p.num_lists, tokens, DType::kI32, op, "num_lists");
  check_per_token(p.roles, tokens, DType::kU8, op, "roles");
  if (p.agreement.data != nullptr)
    check_per_token(p.agreement, tokens, DType::kU8, op, "agreement");
  if (p.logits16.data != nullptr) {
    check_shape(p.logits16, {tokens, p.scores.size(1), p.scores.size(2)}, DType::kF16, op,
                "logits16");
  }
  if (on_cuda(op, {p.scores, p.logits16, p.lse, p.lengths, p.num_lists, p.roles, p.agreement})) {
    TIDAL_CUDA_CALL(op, cuda::head_group_probs(p, stream));
    return;
  }
  ref::head_group_probs(p);
}

void ref::head_group_probs(const HeadGroupProbsParams& p) {
  const int64_t num_heads = p.scores.size(1), max_len = p.scores.size(2);
  std::vector<double> sum;
  for (int64_t t = 0; t < p.scores.size(0); ++t) {
    if (!is_selecting(TokenRole(p.roles.data_as<uint8_t>()[t]))) continue;
    const int64_t n = p.lengths.data_as<int32_t>()[t];
    const int64_t lists = p.num_lists.data_as<int32_t>()[t];
    TIDAL_CHECK(n >= 1 && n <= max_len, "head_group_probs: length outside 1..max_len");
    TIDAL_CHECK(lists >= 1 && num_heads % lists == 0, "head_group_probs: lists must divide heads");
    const bool agreed = p.agreement.data != nullptr && p.agreement.data_as<uint8_t>()[t] != 0;
    // Per-query-head: the logits are the scores (unless other ranks' heads join the list).
    if (lists == num_heads && !(agreed && lists == 1)) continue;
    const int64_t group = num_heads / lists;
    float* scores = p.scores.data_as<float>() + t * num_heads * max_len;
    const float* lse = p.lse.data_as<float>() + t * num_heads;
    // The logits: f16 ones where decode attention wrote them there (DecodeAttentionParams).
    const bool from16 =
        p.logits16.data != nullptr && has_group_lists(int32_t(lists), int32_t(num_heads));
    const auto logit = [&](int64_t h, int64_t j) {
      return from16 ? get_f32(p.logits16, t, h, j) : scores[h * max_len + j];
    };
    for (int64_t l = 0; l < lists; ++l) {
      sum.assign(size_t(n), 0.0);
      for (int64_t h = l * group; h < (l + 1) * group; ++h) {
        for (int64_t j = 0; j < n; ++j) {
          sum[size_t(j)] += std::exp(double(logit(h, j)) - double(lse[h]));
        }
      }
      for (int64_t j = 0; j < n; ++j) scores[l * group * max_len + j] = float(sum[size_t(j)]);
    }
  }
}

}  // namespace tidal::kernels
