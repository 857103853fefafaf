// SPDX-License-Identifier: Apache-2.0
// The vocabulary-parallel ops on the GPU: the shard lookup (one block per token), the shard
// argmax (one block per row: a strided scan, then a block reduction keeping the lower id on
// ties), and the merge of the ranks' pairs (one thread per row).
#include "kernels/cuda_common.cuh"
#include "kernels/vocab_shard.h"

namespace tidal::kernels::cuda {
namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void embedding_lookup_shard_kernel(T* out,              // [num_tokens, hidden]
                                              const T* table,      // [vocab_shard, hidden]
                                              const int32_t* ids,  // [num_tokens]
                                              int64_t hidden, int64_t table_stride,
                                              int64_t vocab_begin, int64_t vocab_shard) {
  const int64_t t = blockIdx.x;
  const int64_t row = int64_t(ids[t]) - vocab_begin;
  const bool mine = row >= 0 && row < vocab_shard;
  T* to = out + t * hidden;
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) {
    to[i] = mine ? table[row * table_stride + i] : from_float<T>(0.0f);
  }
}

// The better of two (value, id) candidates: higher value, then lower id.
__device__ __forceinline__ bool better(float v, int64_t i, float bv, int64_t bi) {
  return v > bv || (v == bv && i < bi);
}

__global__ void __launch_bounds__(kThreads)
    argmax_shard_kernel(int32_t* pairs,       // [num_rows, 2]
                        const float* logits,  // [num_rows, vocab_shard], row stride `stride`
                        int64_t vocab_shard, int64_t stride, int64_t vocab_begin) {
  __shared__ float best_v[kThreads];
  __shared__ int64_t best_i[kThreads];
  const float* x = logits + int64_t(blockIdx.x) * stride;
  float bv = -INFINITY;
  int64_t bi = INT64_MAX;
  for (int64_t j = threadIdx.x; j < vocab_shard; j += blockDim.x) {
    if (bi == INT64_MAX || better(x[j], j, bv, bi)) {
      bv = x[j];
      bi = j;
    }
  }
  best_v[threadIdx.x] = bv;
  best_i[threadIdx.x] = bi;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) {
      const float v = best_v[threadIdx.x + s];
      const int64_t i = best_i[threadIdx.x + s];
      if (i != INT64_MAX && (best_i[threadIdx.x] == INT64_MAX ||
                             better(v, i, best_v[threadIdx.x], best_i[threadIdx.x]))) {
        best_v[threadIdx.x] = v;
        best_i[threadIdx.x] = i;
      }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    pairs[2 * blockIdx.x] = __float_as_int(best_v[0]);
    pairs[2 * blockIdx.x + 1] = int32_t(vocab_begin + best_i[0]);
  }
}

__global__ void argmax_merge_kernel(int32_t* tokens,       // [num_rows]
                                    const int32_t* pairs,  // [ranks, num_rows, 2]
                                    int64_t ranks, int64_t rows) {
  const int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= rows) return;
  float best = 0.0f;
  int32_t id = -1;
  for (int64_t k = 0; k < ranks; ++k) {
    const int32_t* pair = pairs + 2 * (k * rows + r);
    const float v = __int_as_float(pair[0]);
    if (id < 0 || v > best || (v == best && pair[1] < id)) {
      best = v;
      id = pair[1];
    }
  }
  tokens[r] = id;
}

}  // namespace

void embedding_lookup_shard(TensorView out, TensorView table, TensorView ids, int64_t vocab_begin,
                            Stream stream) {
  TIDAL_NVTX_SCOPE("embedding_lookup_shard");
  if (out.size(0) == 0) return;
  dispatch_float(out.dtype, "embedding_lookup_shard", [&](auto zero) {
    using T = decltype(zero);
    embedding_lookup_shard_kernel<T><<<unsigned(out.size(0)), kThreads, 0, raw_stream(stream)>>>(
        static_cast<T*>(out.data), static_cast<const T*>(table.data), ids.data_as<int32_t>(),
        out.size(1), table.stride[0], vocab_begin, table.size(0));
  });
  check_launch("embedding_lookup_shard_kernel", stream);
}

void argmax_shard(TensorView pairs, TensorView logits, int64_t vocab_begin, Stream stream) {
  TIDAL_NVTX_SCOPE("argmax_shard");
  if (logits.size(0) == 0) return;
  argmax_shard_kernel<<<unsigned(logits.size(0)), kThreads, 0, raw_stream(stream)>>>(
      pairs.data_as<int32_t>(), logits.data_as<float>(), logits.size(1), logits.stride[0],
      vocab_begin);
  check_launch("argmax_shard_kernel", stream);
}

void argmax_merge(TensorView tokens, TensorView pairs, Stream stream) {
  TIDAL_NVTX_SCOPE("argmax_merge");
  const int64_t rows = pairs.size(1);
  if (rows == 0) return;
  argmax_merge_kernel<<<unsigned(ceil_div<int64_t>(rows, 128)), 128, 0, raw_stream(stream)>>>(
      tokens.data_as<int32_t>(), pairs.data_as<int32_t>(), pairs.size(0), rows);
  check_launch("argmax_merge_kernel", stream);
}

}  // namespace tidal::kernels::cuda
