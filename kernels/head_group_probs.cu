// SPDX-License-Identifier: Apache-2.0
// head_group_probs on the GPU: one block per (position chunk, list, token); each thread sums
// exp(s_hj - lse_h) over the list's heads for kPerThread positions and writes the sum over the
// first head's row. Reads each logit once, writes one row per list: bandwidth-bound. Rows that
// are 16-byte aligned are read as float4, four heads' loads in flight before any exp (with one
// 4-byte load per head in flight the kernel reached 31% of the copy bandwidth at 100K positions,
// 8 lists of 4 heads, on an H200; at 2^20 positions that is ~0.1 ms per selection layer).
#include <algorithm>

#include "kernels/cuda_common.cuh"
#include "kernels/head_group_probs.h"

namespace tidal::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kPerThread = 4;
constexpr int kChunk = kThreads * kPerThread;  // positions per block
constexpr int kHeadsInFlight = 4;              // vector path: float4 loads issued before the exps

// Grid (ceil(max_len / kChunk), max(1, num_heads / 2), num_tokens): a list index per y (a token
// with L < num_heads lists has L <= num_heads / 2), blocks past L or past n exit at once, so the
// grid is fixed for any plan.
__global__ void __launch_bounds__(kThreads)
    head_group_probs_kernel(float* scores,             // [num_tokens, num_heads, max_len]
                            const float* lse,          // [num_tokens, num_heads]
                            const int32_t* lengths,    // [num_tokens]
                            const int32_t* num_lists,  // [num_tokens]
                            const uint8_t* roles,      // [num_tokens]
                            const uint8_t* agreement,  // [num_tokens] or null
                            int num_heads, int64_t max_len, bool vec) {
  const int t = blockIdx.z, l = blockIdx.y;
  if (!is_selecting(TokenRole(roles[t]))) return;
  const int32_t lists = num_lists[t];
  // One list of one head becomes probabilities only when other ranks' heads join it.
  const bool single = lists == 1 && num_heads == 1 && agreement != nullptr && agreement[t] != 0;
  if (lists < 1 || (lists >= num_heads && !single) || num_heads % lists != 0 || l >= lists) return;
  const int64_t n = min(int64_t(lengths[t]), max_len);
  const int64_t j0 = int64_t(blockIdx.x) * kChunk + threadIdx.x;  // scalar path
  if (int64_t(blockIdx.x) * kChunk >= n) return;
  const int group = num_heads / lists;
  const int64_t head0 = int64_t(t) * num_heads + int64_t(l) * group;
  float* rows = scores + head0 * max_len;  // the group's first row; the others follow

  float sum[kPerThread];
#pragma unroll
  for (int k = 0; k < kPerThread; ++k) sum[k] = 0.0f;
  // Vector path: this thread's 4 consecutive positions, all inside the row, rows 16-byte aligned.
  const int64_t jv = (int64_t(blockIdx.x) * kThreads + threadIdx.x) * kPerThread;
  if (vec && jv + kPerThread <= n) {
    for (int h0 = 0; h0 < group; h0 += kHeadsInFlight) {
      float4 v[kHeadsInFlight];
#pragma unroll
      for (int u = 0; u < kHeadsInFlight; ++u) {
        if (h0 + u < group) v[u] = *reinterpret_cast<const float4*>(rows + (h0 + u) * max_len + jv);
      }
#pragma unroll
      for (int u = 0; u < kHeadsInFlight; ++u) {  // heads in ascending order, as the scalar path
        if (h0 + u >= group) break;
        const float lse_h = lse[head0 + h0 + u];
        sum[0] += expf(v[u].x - lse_h);
        sum[1] += expf(v[u].y - lse_h);
        sum[2] += expf(v[u].z - lse_h);
        sum[3] += expf(v[u].w - lse_h);
      }
    }
    *reinterpret_cast<float4*>(rows + jv) = make_float4(sum[0], sum[1], sum[2], sum[3]);
    return;
  }
  if (vec) {  // the row's last, partial group of 4 positions
    for (int hh = 0; hh < group; ++hh) {
      const float lse_h = lse[head0 + hh];
      for (int k = 0; k < kPerThread; ++k) {
        if (jv + k < n) sum[k] += expf(rows[hh * max_len + jv + k] - lse_h);
      }
    }
    for (int k = 0; k < kPerThread; ++k) {
      if (jv + k < n) rows[jv + k] = sum[k];
    }
    return;
  }
  for (int hh = 0; hh < group; ++hh) {
    const float lse_h = lse[head0 + hh];
    const float* row = rows + hh * max_len;
#pragma unroll
    for (int k = 0; k < kPerThread; ++k) {
      const int64_t j = j0 + k * kThreads;
      if (j < n) sum[k] += expf(row[j] - lse_h);
    }
  }
  // In place: position j of the first row was read above by this same thread only.
#pragma unroll
  for (int k = 0; k < kPerThread; ++k) {
    const int64_t j = j0 + k * kThreads;
    if (j < n) rows[j] = sum[k];
  }
}

}  // namespace

void head_group_probs(const HeadGroupProbsParams& p, Stream stream) {
  TIDAL_NVTX_SCOPE("head_group_probs");
  const int64_t tokens = p.scores.size(0), heads = p.scores.size(1), max_len = p.scores.size(2);
  if (tokens == 0 || max_len == 0) return;
  TIDAL_CHECK(tokens <= 65535 && heads <= 65535,
              "head_group_probs: the CUDA grid takes at most 65535 tokens and heads");
  // Every row 16-byte aligned: the base, and rows max_len floats apart (the scores are contiguous).
  const bool vec = reinterpret_cast<uintptr_t>(p.scores.data) % 16 == 0 && max_len % 4 == 0 &&
                   p.scores.stride[2] == 1 && p.scores.stride[1] == max_len &&
                   p.scores.stride[0] == heads * max_len;
  const dim3 grid(unsigned((max_len + kChunk - 1) / kChunk),
                  unsigned(std::max<int64_t>(1, heads / 2)), unsigned(tokens));
  head_group_probs_kernel<<<grid, kThreads, 0, raw_stream(stream)>>>(
      p.scores.data_as<float>(), p.lse.data_as<float>(), p.lengths.data_as<int32_t>(),
      p.num_lists.data_as<int32_t>(), p.roles.data_as<uint8_t>(),
      p.agreement.data != nullptr ? p.agreement.data_as<uint8_t>() : nullptr, int(heads), max_len,
      vec);
  check_launch("head_group_probs_kernel", stream);
}

}  // namespace tidal::kernels::cuda
