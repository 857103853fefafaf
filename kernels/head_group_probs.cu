// SPDX-License-Identifier: Apache-2.0
// head_group_probs on the GPU: blocks per (list, token) that share out its position chunks; a
// thread sums exp(s_hj - lse_h) over the list's heads for kPerThread positions and writes the sum
// over the first head's row. Reads each logit once, writes one row per list: bandwidth-bound. Rows
// that are 16-byte aligned are read as float4, four heads' loads in flight before any exp (with one
// 4-byte load per head in flight the kernel reached 31% of the copy bandwidth at 100K positions,
// 8 lists of 4 heads, on an H200; at 2^20 positions that is ~0.1 ms per selection layer).
// Logits that decode attention kept as f16 (logits16) are read from there, 8 bytes per 4.
#include <algorithm>
#include <cstring>

#include "kernels/cuda_common.cuh"
#include "kernels/head_group_probs.h"

namespace tidal::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kPerThread = 4;
constexpr int kChunk = kThreads * kPerThread;  // positions per block
constexpr int kHeadsInFlight = 4;              // vector path: float4 loads issued before the exps

// The group's logits, head hh of the group at position j: f32 rows of the scores, or f16 rows of
// logits16 (decode attention wrote them there: has_group_lists).
struct GroupLogits {
  const float* f32;   // the group's first head's row in scores, or null
  const __half* f16;  // the same in logits16, or null
  int64_t max_len;
  __device__ __forceinline__ float at(int hh, int64_t j) const {
    return f16 != nullptr ? __half2float(f16[hh * max_len + j]) : f32[hh * max_len + j];
  }
  // Positions j..j+3 (16-byte f32 / 8-byte f16 loads: rows aligned, j a multiple of 4).
  __device__ __forceinline__ float4 at4(int hh, int64_t j) const {
    if (f16 != nullptr) {
      const uint2 raw = *reinterpret_cast<const uint2*>(f16 + hh * max_len + j);
      __half2 lo, hi;
      memcpy(&lo, &raw.x, 4);
      memcpy(&hi, &raw.y, 4);
      const float2 a = __half22float2(lo), b = __half22float2(hi);
      return make_float4(a.x, a.y, b.x, b.y);
    }
    return *reinterpret_cast<const float4*>(f32 + hh * max_len + j);
  }
};

// One chunk of kChunk positions of list l's group (rows: the group's first row in the scores,
// the others follow; n: the token's positions).
__device__ __forceinline__ void group_chunk(float* rows, const GroupLogits& in, const float* lse,
                                            int group, int64_t chunk, int64_t n, bool vec) {
  float sum[kPerThread];
#pragma unroll
  for (int k = 0; k < kPerThread; ++k) sum[k] = 0.0f;
  // Vector path: this thread's 4 consecutive positions, all inside the row, rows 16-byte aligned.
  const int64_t jv = (chunk * kThreads + threadIdx.x) * kPerThread;
  if (vec && jv + kPerThread <= n) {
    for (int h0 = 0; h0 < group; h0 += kHeadsInFlight) {
      float4 v[kHeadsInFlight];
#pragma unroll
      for (int u = 0; u < kHeadsInFlight; ++u) {
        if (h0 + u < group) v[u] = in.at4(h0 + u, jv);
      }
#pragma unroll
      for (int u = 0; u < kHeadsInFlight; ++u) {  // heads in ascending order, as the scalar path
        if (h0 + u >= group) break;
        const float lse_h = lse[h0 + u];
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
      const float lse_h = lse[hh];
      for (int k = 0; k < kPerThread; ++k) {
        if (jv + k < n) sum[k] += expf(in.at(hh, jv + k) - lse_h);
      }
    }
    for (int k = 0; k < kPerThread; ++k) {
      if (jv + k < n) rows[jv + k] = sum[k];
    }
    return;
  }
  const int64_t j0 = chunk * kChunk + threadIdx.x;
  for (int hh = 0; hh < group; ++hh) {
    const float lse_h = lse[hh];
#pragma unroll
    for (int k = 0; k < kPerThread; ++k) {
      const int64_t j = j0 + k * kThreads;
      if (j < n) sum[k] += expf(in.at(hh, j) - lse_h);
    }
  }
  // Over the first row: its position j (f32 logits: in place) was read above by this same thread
  // only.
#pragma unroll
  for (int k = 0; k < kPerThread; ++k) {
    const int64_t j = j0 + k * kThreads;
    if (j < n) rows[j] = sum[k];
  }
}

// Grid (blocks, max(1, num_heads / 2), num_tokens), blocks <= ceil(max_len / kChunk) (the host
// sizes it below): a list index per y (a token with L < num_heads lists has L <= num_heads / 2),
// blocks past L exit at once, so the grid is fixed for any plan. Each block walks the chunks
// blockIdx.x, + gridDim.x, ...: a block of one chunk does ~8 KB of work behind three dependent
// header loads, so at 2^20 positions 16384 such blocks ran at half the copy rate whatever the
// logits' width (44-45 us, H200, call 47).
__global__ void __launch_bounds__(kThreads)
    head_group_probs_kernel(float* scores,             // [num_tokens, num_heads, max_len]
                            const __half* logits16,    // [num_tokens, num_heads, max_len] or null
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
  const int group = num_heads / lists;
  const int64_t head0 = int64_t(t) * num_heads + int64_t(l) * group;
  float* rows = scores + head0 * max_len;  // the group's first row; the others follow
  const bool from16 = logits16 != nullptr && has_group_lists(lists, num_heads);
  const GroupLogits in{from16 ? nullptr : rows, from16 ? logits16 + head0 * max_len : nullptr,
                       max_len};
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  for (int64_t chunk = blockIdx.x; chunk < chunks; chunk += gridDim.x) {
    group_chunk(rows, in, lse + head0, group, chunk, n, vec);
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
  // f16 logits (contiguous, checked): 8-byte aligned rows.
  const bool vec = reinterpret_cast<uintptr_t>(p.scores.data) % 16 == 0 && max_len % 4 == 0 &&
                   p.scores.stride[2] == 1 && p.scores.stride[1] == max_len &&
                   p.scores.stride[0] == heads * max_len &&
                   reinterpret_cast<uintptr_t>(p.logits16.data) % 8 == 0;
  // Blocks a (list, token): about four waves of 8 blocks an SM if every (list, token) slot of the
  // grid worked, but never more than kMaxChunksABlock chunks a block. The slots that work are
  // known on the device only (lists and roles): one selecting token in a batch of 64 would
  // otherwise get 4 blocks a list for all its positions.
  constexpr int64_t kMaxChunksABlock = 8;
  const int64_t chunks = (max_len + kChunk - 1) / kChunk;
  const int64_t lists_grid = std::max<int64_t>(1, heads / 2) * tokens;
  const int64_t cap = std::max<int64_t>(1, int64_t(sm_count()) * 8 * 4 / lists_grid);
  const int64_t blocks =
      std::min(chunks, std::max(cap, (chunks + kMaxChunksABlock - 1) / kMaxChunksABlock));
  const dim3 grid(unsigned(blocks), unsigned(std::max<int64_t>(1, heads / 2)), unsigned(tokens));
  head_group_probs_kernel<<<grid, kThreads, 0, raw_stream(stream)>>>(
      p.scores.data_as<float>(), static_cast<const __half*>(p.logits16.data),
      p.lse.data_as<float>(), p.lengths.data_as<int32_t>(), p.num_lists.data_as<int32_t>(),
      p.roles.data_as<uint8_t>(),
      p.agreement.data != nullptr ? p.agreement.data_as<uint8_t>() : nullptr, int(heads), max_len,
      vec);
  check_launch("head_group_probs_kernel", stream);
}

}  // namespace tidal::kernels::cuda
