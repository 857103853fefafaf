// SPDX-License-Identifier: Apache-2.0
#include "kernels/list_agreement.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/dispatch.h"

namespace tidal::kernels {
namespace {

bool takes_part(const TensorView& roles, const TensorView& agreement, uint8_t match, int64_t t) {
  return is_selecting(TokenRole(roles.data_as<uint8_t>()[t])) &&
         agreement.data_as<uint8_t>()[t] == match;
}

}  // namespace

void list_candidates(const ListCandidatesParams& p, [[maybe_unused]] Stream stream) {
  const char* op = "list_candidates";
  TIDAL_CHECK(p.candidates.rank == 3 && p.lists.rank == 3 && p.scores.rank == 3,
              "list_candidates: candidates [num_tokens, max_candidates, 2], lists and scores 3-D");
  const int64_t tokens = p.candidates.size(0);
  check_shape(p.candidates, {tokens, p.candidates.size(1), 2}, DType::kI32, op, "candidates");
  check_shape(p.lists, {tokens, p.lists.size(1), p.lists.size(2)}, DType::kI32, op, "lists");
  check_shape(p.counts, {tokens, p.lists.size(1)}, DType::kI32, op, "counts");
  check_shape(p.scores, {tokens, p.scores.size(1), p.scores.size(2)}, DType::kF32, op, "scores");
  check_per_token(p.roles, tokens, DType::kU8, op, "roles");
  check_per_token(p.agreement, tokens, DType::kU8, op, "agreement");
  if (on_cuda(op, {p.candidates, p.lists, p.counts, p.scores, p.roles, p.agreement})) {
    TIDAL_CUDA_CALL(op, cuda::list_candidates(p, stream));
    return;
  }
  ref::list_candidates(p);
}

void merge_candidates(const MergeCandidatesParams& p, [[maybe_unused]] Stream stream) {
  const char* op = "merge_candidates";
  TIDAL_CHECK(p.candidates.rank == 4 && p.scores.rank == 3,
              "merge_candidates: candidates [num_ranks, num_tokens, max_candidates, 2], "
              "scores [num_tokens, num_heads, max_len]");
  const int64_t tokens = p.scores.size(0);
  check_shape(p.candidates, {p.candidates.size(0), tokens, p.candidates.size(2), 2}, DType::kI32,
              op, "candidates");
  check_shape(p.scores, {tokens, p.scores.size(1), p.scores.size(2)}, DType::kF32, op, "scores");
  check_per_token(p.lengths, tokens, DType::kI32, op, "lengths");
  check_per_token(p.roles, tokens, DType::kU8, op, "roles");
  check_per_token(p.agreement, tokens, DType::kU8, op, "agreement");
  check_per_token(p.merged_roles, tokens, DType::kU8, op, "merged_roles");
  if (on_cuda(op, {p.scores, p.candidates, p.lengths, p.roles, p.agreement, p.merged_roles})) {
    TIDAL_CUDA_CALL(op, cuda::merge_candidates(p, stream));
    return;
  }
  ref::merge_candidates(p);
}

void ref::list_candidates(const ListCandidatesParams& p) {
  const int64_t max_candidates = p.candidates.size(1);
  const int64_t max_lists = p.lists.size(1), budget = p.lists.size(2);
  const int64_t heads = p.scores.size(1), max_len = p.scores.size(2);
  for (int64_t t = 0; t < p.candidates.size(0); ++t) {
    int32_t* out = p.candidates.data_as<int32_t>() + t * max_candidates * 2;
    int64_t count = 0;
    if (takes_part(p.roles, p.agreement, p.match, t)) {
      count = p.counts.data_as<int32_t>()[t * max_lists];
      TIDAL_CHECK(count >= 0 && count <= max_candidates && count <= budget,
                  "list_candidates: a list is longer than max_candidates");
    }
    const int32_t* list = p.lists.data_as<int32_t>() + t * max_lists * budget;
    const float* row = p.scores.data_as<float>() + t * heads * max_len;
    for (int64_t k = 0; k < max_candidates; ++k) {
      int32_t pos = -1, bits = 0;
      if (k < count) {
        pos = list[k];
        TIDAL_CHECK(pos >= 0 && pos < max_len, "list_candidates: position outside the scores");
        std::memcpy(&bits, &row[pos], 4);
      }
      out[2 * k] = pos;
      out[2 * k + 1] = bits;
    }
  }
}

void ref::merge_candidates(const MergeCandidatesParams& p) {
  const int64_t ranks = p.candidates.size(0), tokens = p.scores.size(0);
  const int64_t max_candidates = p.candidates.size(2);
  const int64_t heads = p.scores.size(1), max_len = p.scores.size(2);
  const float neg_inf = -std::numeric_limits<float>::infinity();
  for (int64_t t = 0; t < tokens; ++t) {
    const bool merged = takes_part(p.roles, p.agreement, p.match, t);
    p.merged_roles.data_as<uint8_t>()[t] =
        merged ? p.roles.data_as<uint8_t>()[t] : uint8_t(TokenRole::kDense);
    if (!merged) continue;
    const int64_t n = p.lengths.data_as<int32_t>()[t];
    TIDAL_CHECK(n >= 1 && n <= max_len, "merge_candidates: length outside 1..max_len");
    float* row = p.scores.data_as<float>() + t * heads * max_len;
    for (int64_t j = 0; j < n; ++j) row[j] = neg_inf;
    // Rank by rank, in order: the sum rounds the same way on every rank.
    for (int64_t r = 0; r < ranks; ++r) {
      const int32_t* c = p.candidates.data_as<int32_t>() + (r * tokens + t) * max_candidates * 2;
      for (int64_t k = 0; k < max_candidates; ++k) {
        const int32_t pos = c[2 * k];
        if (pos < 0 || pos >= n) continue;
        float v;
        std::memcpy(&v, &c[2 * k + 1], 4);
        row[pos] = row[pos] == neg_inf ? v : row[pos] + v;
      }
    }
  }
}

}  // namespace tidal::kernels
