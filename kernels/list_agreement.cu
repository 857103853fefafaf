// SPDX-License-Identifier: Apache-2.0
// list_candidates and merge_candidates on the GPU: one block per token. The merge adds the ranks'
// candidates one rank at a time (a barrier between ranks; a rank's positions are distinct), so
// every rank rounds the sums identically.
#include "kernels/cuda_common.cuh"
#include "kernels/list_agreement.h"

namespace tidal::kernels::cuda {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ bool takes_part(const uint8_t* roles, const uint8_t* agreement,
                                           uint8_t match, int t) {
  return is_selecting(TokenRole(roles[t])) && agreement[t] == match;
}

__global__ void __launch_bounds__(kThreads)
    list_candidates_kernel(int32_t* candidates,     // [num_tokens, max_candidates, 2]
                           const int32_t* lists,    // [num_tokens, max_lists, budget]
                           const int32_t* counts,   // [num_tokens, max_lists]
                           const float* scores,     // [num_tokens, num_heads, max_len]
                           const uint8_t* roles,    // [num_tokens]
                           const uint8_t* agreement,  // [num_tokens]
                           uint8_t match, int64_t max_candidates, int64_t max_lists,
                           int64_t budget, int64_t heads, int64_t max_len) {
  const int t = blockIdx.x;
  const int64_t count = takes_part(roles, agreement, match, t)
                            ? min(int64_t(counts[t * max_lists]), max_candidates)
                            : 0;
  const int32_t* list = lists + t * max_lists * budget;
  const float* row = scores + t * heads * max_len;
  int32_t* out = candidates + t * max_candidates * 2;
  for (int64_t k = threadIdx.x; k < max_candidates; k += blockDim.x) {
    int32_t pos = -1, bits = 0;
    if (k < count) {
      pos = list[k];
      bits = __float_as_int(row[pos]);
    }
    out[2 * k] = pos;
    out[2 * k + 1] = bits;
  }
}

__global__ void __launch_bounds__(kThreads)
    merge_candidates_kernel(float* scores,               // [num_tokens, num_heads, max_len]
                            const int32_t* candidates,   // [ranks, num_tokens, max_candidates, 2]
                            const int32_t* lengths,      // [num_tokens]
                            const uint8_t* roles,        // [num_tokens]
                            const uint8_t* agreement,    // [num_tokens]
                            uint8_t* merged_roles,       // [num_tokens]
                            uint8_t match, int64_t ranks, int64_t tokens, int64_t max_candidates,
                            int64_t heads, int64_t max_len) {
  const int t = blockIdx.x;
  const bool merged = takes_part(roles, agreement, match, t);
  if (threadIdx.x == 0) merged_roles[t] = merged ? roles[t] : uint8_t(TokenRole::kDense);
  if (!merged) return;
  const int64_t n = min(int64_t(lengths[t]), max_len);
  float* row = scores + t * heads * max_len;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) row[j] = -INFINITY;
  __syncthreads();
  for (int64_t r = 0; r < ranks; ++r) {
    const int32_t* c = candidates + (r * tokens + t) * max_candidates * 2;
    for (int64_t k = threadIdx.x; k < max_candidates; k += blockDim.x) {
      const int32_t pos = c[2 * k];
      if (pos < 0 || pos >= n) continue;
      const float v = __int_as_float(c[2 * k + 1]);
      const float cur = row[pos];
      row[pos] = cur == -INFINITY ? v : cur + v;
    }
    __syncthreads();
  }
}

}  // namespace

void list_candidates(const ListCandidatesParams& p, Stream stream) {
  TIDAL_NVTX_SCOPE("list_candidates");
  const int64_t tokens = p.candidates.size(0);
  if (tokens == 0) return;
  list_candidates_kernel<<<unsigned(tokens), kThreads, 0, raw_stream(stream)>>>(
      p.candidates.data_as<int32_t>(), p.lists.data_as<int32_t>(), p.counts.data_as<int32_t>(),
      p.scores.data_as<float>(), p.roles.data_as<uint8_t>(), p.agreement.data_as<uint8_t>(),
      p.match, p.candidates.size(1), p.lists.size(1), p.lists.size(2), p.scores.size(1),
      p.scores.size(2));
  check_launch("list_candidates_kernel", stream);
}

void merge_candidates(const MergeCandidatesParams& p, Stream stream) {
  TIDAL_NVTX_SCOPE("merge_candidates");
  const int64_t tokens = p.scores.size(0);
  if (tokens == 0) return;
  merge_candidates_kernel<<<unsigned(tokens), kThreads, 0, raw_stream(stream)>>>(
      p.scores.data_as<float>(), p.candidates.data_as<int32_t>(), p.lengths.data_as<int32_t>(),
      p.roles.data_as<uint8_t>(), p.agreement.data_as<uint8_t>(),
      p.merged_roles.data_as<uint8_t>(), p.match, p.candidates.size(0), tokens,
      p.candidates.size(2), p.scores.size(1), p.scores.size(2));
  check_launch("merge_candidates_kernel", stream);
}

}  // namespace tidal::kernels::cuda
