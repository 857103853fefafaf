// SPDX-License-Identifier: Apache-2.0
// The list-agreement ops on the GPU: one block per token for the candidates and the merge (the
// merge clears the row, then writes the candidates' totals; a position proposed by several ranks
// gets the same value from each), one thread per gathered candidate for the partial scores.
#include "kernels/cuda_common.cuh"
#include "kernels/list_agreement.h"

namespace tidal::kernels::cuda {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ bool takes_part(const uint8_t* roles, const uint8_t* agreement,
                                           uint8_t match, int64_t t) {
  return is_selecting(TokenRole(roles[t])) && agreement[t] == match;
}

__global__ void __launch_bounds__(kThreads)
    list_candidates_kernel(int32_t* candidates,       // [num_tokens, max_candidates]
                           const int32_t* lists,      // [num_tokens, max_lists, budget]
                           const int32_t* counts,     // [num_tokens, max_lists]
                           const uint8_t* roles,      // [num_tokens]
                           const uint8_t* agreement,  // [num_tokens]
                           uint8_t match, int64_t max_candidates, int64_t max_lists,
                           int64_t budget) {
  const int64_t t = blockIdx.x;
  const int64_t count = takes_part(roles, agreement, match, t)
                            ? min(int64_t(counts[t * max_lists]), max_candidates)
                            : 0;
  const int32_t* list = lists + t * max_lists * budget;
  int32_t* out = candidates + t * max_candidates;
  for (int64_t k = threadIdx.x; k < max_candidates; k += blockDim.x) {
    out[k] = k < count ? list[k] : -1;
  }
}

__global__ void candidate_scores_kernel(float* out,                 // [ranks, tokens, max_cand]
                                        const int32_t* candidates,  // [ranks, tokens, max_cand]
                                        const float* scores,        // [tokens, heads, max_len]
                                        int64_t total, int64_t tokens, int64_t max_candidates,
                                        int64_t heads, int64_t max_len) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const int64_t t = (i / max_candidates) % tokens;
  const int32_t pos = candidates[i];
  out[i] = pos >= 0 && pos < max_len ? scores[t * heads * max_len + pos] : 0.0f;
}

__global__ void __launch_bounds__(kThreads)
    merge_candidates_kernel(float* scores,              // [num_tokens, num_heads, max_len]
                            const int32_t* candidates,  // [ranks, num_tokens, max_candidates]
                            const float* totals,        // [ranks, num_tokens, max_candidates]
                            const int32_t* lengths,     // [num_tokens]
                            const uint8_t* roles,       // [num_tokens]
                            const uint8_t* agreement,   // [num_tokens]
                            uint8_t* merged_roles,      // [num_tokens]
                            uint8_t match, int64_t ranks, int64_t tokens, int64_t max_candidates,
                            int64_t heads, int64_t max_len) {
  const int64_t t = blockIdx.x;
  const bool merged = takes_part(roles, agreement, match, t);
  if (threadIdx.x == 0) merged_roles[t] = merged ? roles[t] : uint8_t(TokenRole::kDense);
  if (!merged) return;
  const int64_t n = min(int64_t(lengths[t]), max_len);
  float* row = scores + t * heads * max_len;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) row[j] = -INFINITY;
  __syncthreads();
  for (int64_t i = threadIdx.x; i < ranks * max_candidates; i += blockDim.x) {
    const int64_t r = i / max_candidates, k = i % max_candidates;
    const int64_t at = (r * tokens + t) * max_candidates + k;
    const int32_t pos = candidates[at];
    if (pos >= 0 && pos < n) row[pos] = totals[at];
  }
}

}  // namespace

void list_candidates(const ListCandidatesParams& p, Stream stream) {
  TIDAL_NVTX_SCOPE("list_candidates");
  const int64_t tokens = p.candidates.size(0);
  if (tokens == 0) return;
  list_candidates_kernel<<<unsigned(tokens), kThreads, 0, raw_stream(stream)>>>(
      p.candidates.data_as<int32_t>(), p.lists.data_as<int32_t>(), p.counts.data_as<int32_t>(),
      p.roles.data_as<uint8_t>(), p.agreement.data_as<uint8_t>(), p.match, p.candidates.size(1),
      p.lists.size(1), p.lists.size(2));
  check_launch("list_candidates_kernel", stream);
}

void candidate_scores(const CandidateScoresParams& p, Stream stream) {
  TIDAL_NVTX_SCOPE("candidate_scores");
  const int64_t total = p.candidates.numel();
  if (total == 0) return;
  candidate_scores_kernel<<<unsigned(ceil_div<int64_t>(total, kThreads)), kThreads, 0,
                            raw_stream(stream)>>>(
      p.out.data_as<float>(), p.candidates.data_as<int32_t>(), p.scores.data_as<float>(), total,
      p.candidates.size(1), p.candidates.size(2), p.scores.size(1), p.scores.size(2));
  check_launch("candidate_scores_kernel", stream);
}

void merge_candidates(const MergeCandidatesParams& p, Stream stream) {
  TIDAL_NVTX_SCOPE("merge_candidates");
  const int64_t tokens = p.scores.size(0);
  if (tokens == 0) return;
  merge_candidates_kernel<<<unsigned(tokens), kThreads, 0, raw_stream(stream)>>>(
      p.scores.data_as<float>(), p.candidates.data_as<int32_t>(), p.totals.data_as<float>(),
      p.lengths.data_as<int32_t>(), p.roles.data_as<uint8_t>(), p.agreement.data_as<uint8_t>(),
      p.merged_roles.data_as<uint8_t>(), p.match, p.candidates.size(0), tokens,
      p.candidates.size(2), p.scores.size(1), p.scores.size(2));
  check_launch("merge_candidates_kernel", stream);
}

}  // namespace tidal::kernels::cuda
