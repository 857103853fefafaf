// SPDX-License-Identifier: Apache-2.0
#include "kernels/list_agreement.h"

#include <limits>

#include "kernels/dispatch.h"

namespace tidal::kernels {
namespace {

bool takes_part(const TensorView& roles, const TensorView& agreement, uint8_t match, int64_t t) {
  return is_selecting(TokenRole(roles.data_as<uint8_t>()[t])) &&
         agreement.data_as<uint8_t>()[t] == match;
}

void check_scores(const TensorView& scores, int64_t tokens, const char* op) {
  TIDAL_CHECK(scores.rank == 3,
              std::string(op) + ": scores must be [num_tokens, num_heads, max_len]");
  check_shape(scores, {tokens, scores.size(1), scores.size(2)}, DType::kF32, op, "scores");
}

// [num_ranks, num_tokens, max_candidates] of `dtype`.
void check_gathered(const TensorView& v, int64_t tokens, DType dtype, const char* op,
                    const char* name) {
  TIDAL_CHECK(v.rank == 3 && v.size(1) == tokens,
              std::string(op) + ": " + name + " must be [num_ranks, num_tokens, max_candidates]");
  check_shape(v, {v.size(0), tokens, v.size(2)}, dtype, op, name);
}

}  // namespace

void list_candidates(const ListCandidatesParams& p, [[maybe_unused]] Stream stream) {
  const char* op = "list_candidates";
  TIDAL_CHECK(p.candidates.rank == 2 && p.lists.rank == 3,
              "list_candidates: candidates [num_tokens, max_candidates], lists 3-D");
  const int64_t tokens = p.candidates.size(0);
  check_shape(p.candidates, {tokens, p.candidates.size(1)}, DType::kI32, op, "candidates");
  check_shape(p.lists, {tokens, p.lists.size(1), p.lists.size(2)}, DType::kI32, op, "lists");
  check_shape(p.counts, {tokens, p.lists.size(1)}, DType::kI32, op, "counts");
  check_per_token(p.roles, tokens, DType::kU8, op, "roles");
  check_per_token(p.agreement, tokens, DType::kU8, op, "agreement");
  if (on_cuda(op, {p.candidates, p.lists, p.counts, p.roles, p.agreement})) {
    TIDAL_CUDA_CALL(op, cuda::list_candidates(p, stream));
    return;
  }
  ref::list_candidates(p);
}

void candidate_scores(const CandidateScoresParams& p, [[maybe_unused]] Stream stream) {
  const char* op = "candidate_scores";
  check_scores(p.scores, p.scores.size(0), op);
  check_gathered(p.candidates, p.scores.size(0), DType::kI32, op, "candidates");
  check_shape(p.out, {p.candidates.size(0), p.candidates.size(1), p.candidates.size(2)},
              DType::kF32, op, "out");
  if (on_cuda(op, {p.out, p.candidates, p.scores})) {
    TIDAL_CUDA_CALL(op, cuda::candidate_scores(p, stream));
    return;
  }
  ref::candidate_scores(p);
}

void merge_candidates(const MergeCandidatesParams& p, [[maybe_unused]] Stream stream) {
  const char* op = "merge_candidates";
  const int64_t tokens = p.scores.size(0);
  check_scores(p.scores, tokens, op);
  check_gathered(p.candidates, tokens, DType::kI32, op, "candidates");
  check_shape(p.totals, {p.candidates.size(0), tokens, p.candidates.size(2)}, DType::kF32, op,
              "totals");
  check_per_token(p.lengths, tokens, DType::kI32, op, "lengths");
  check_per_token(p.roles, tokens, DType::kU8, op, "roles");
  check_per_token(p.agreement, tokens, DType::kU8, op, "agreement");
  check_per_token(p.merged_roles, tokens, DType::kU8, op, "merged_roles");
  if (on_cuda(op, {p.scores, p.candidates, p.totals, p.lengths, p.roles, p.agreement,
                   p.merged_roles})) {
    TIDAL_CUDA_CALL(op, cuda::merge_candidates(p, stream));
    return;
  }
  ref::merge_candidates(p);
}

void ref::list_candidates(const ListCandidatesParams& p) {
  const int64_t max_candidates = p.candidates.size(1);
  const int64_t max_lists = p.lists.size(1), budget = p.lists.size(2);
  for (int64_t t = 0; t < p.candidates.size(0); ++t) {
    int64_t count = 0;
    if (takes_part(p.roles, p.agreement, p.match, t)) {
      count = p.counts.data_as<int32_t>()[t * max_lists];
      TIDAL_CHECK(count >= 0 && count <= max_candidates && count <= budget,
                  "list_candidates: a list is longer than max_candidates");
    }
    const int32_t* list = p.lists.data_as<int32_t>() + t * max_lists * budget;
    int32_t* out = p.candidates.data_as<int32_t>() + t * max_candidates;
    for (int64_t k = 0; k < max_candidates; ++k) out[k] = k < count ? list[k] : -1;
  }
}

void ref::candidate_scores(const CandidateScoresParams& p) {
  const int64_t ranks = p.candidates.size(0), tokens = p.candidates.size(1);
  const int64_t max_candidates = p.candidates.size(2);
  const int64_t heads = p.scores.size(1), max_len = p.scores.size(2);
  for (int64_t r = 0; r < ranks; ++r) {
    for (int64_t t = 0; t < tokens; ++t) {
      const int64_t at = (r * tokens + t) * max_candidates;
      const float* row = p.scores.data_as<float>() + t * heads * max_len;
      for (int64_t k = 0; k < max_candidates; ++k) {
        const int32_t pos = p.candidates.data_as<int32_t>()[at + k];
        TIDAL_CHECK(pos < max_len, "candidate_scores: a candidate outside the scores");
        p.out.data_as<float>()[at + k] = pos >= 0 ? row[pos] : 0.0f;
      }
    }
  }
}

void ref::merge_candidates(const MergeCandidatesParams& p) {
  const int64_t ranks = p.candidates.size(0), tokens = p.scores.size(0);
  const int64_t max_candidates = p.candidates.size(2);
  const int64_t heads = p.scores.size(1), max_len = p.scores.size(2);
  for (int64_t t = 0; t < tokens; ++t) {
    const bool merged = takes_part(p.roles, p.agreement, p.match, t);
    p.merged_roles.data_as<uint8_t>()[t] =
        merged ? p.roles.data_as<uint8_t>()[t] : uint8_t(TokenRole::kDense);
    if (!merged) continue;
    const int64_t n = p.lengths.data_as<int32_t>()[t];
    TIDAL_CHECK(n >= 1 && n <= max_len, "merge_candidates: length outside 1..max_len");
    float* row = p.scores.data_as<float>() + t * heads * max_len;
    for (int64_t j = 0; j < n; ++j) row[j] = -std::numeric_limits<float>::infinity();
    // A position several ranks proposed has the same total in each of its slots.
    for (int64_t r = 0; r < ranks; ++r) {
      const int64_t at = (r * tokens + t) * max_candidates;
      for (int64_t k = 0; k < max_candidates; ++k) {
        const int32_t pos = p.candidates.data_as<int32_t>()[at + k];
        if (pos >= 0 && pos < n) row[pos] = p.totals.data_as<float>()[at + k];
      }
    }
  }
}

}  // namespace tidal::kernels
