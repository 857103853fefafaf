// SPDX-License-Identifier: Apache-2.0
// The gather ceiling's kernel (gather_ceiling.h): block (b, head) reads the K and V rows of list
// entries [b * R, (b + 1) * R) of the head's list, R = 32 KiB / row_bytes. Thread t takes the
// 16-byte words t, t + 256, ... of those R rows laid end to end (consecutive threads:
// consecutive words of a row), looks up all eight rows' places, then issues all sixteen loads
// before it uses one; the block's XOR of every word goes to out[head, b].
#include "benchmarks/kernels/gather_ceiling.h"
#include "kernels/cuda_common.cuh"

namespace tidal::bench {

namespace {

constexpr int kThreads = 256, kItems = 8;  // 16-byte words a thread reads of K (and of V)

__global__ void __launch_bounds__(kThreads)
    gather_ceiling_kernel(GatherCeilingArgs a, int row_vecs, int rows_per_block) {
  const int64_t head = blockIdx.y;
  const int64_t kv_head = head / (a.heads / a.kv_heads);
  const int32_t* list = a.lists + head * a.budget;
  const int64_t row0 = int64_t(blockIdx.x) * rows_per_block;
  int64_t at[kItems];
#pragma unroll
  for (int i = 0; i < kItems; ++i) {
    const int item = i * kThreads + int(threadIdx.x);
    const int64_t r = row0 + item / row_vecs;
    at[i] = -1;
    if (r < a.budget) {
      const int64_t pos = __ldg(list + r);
      const int64_t row =
          a.block_table != nullptr
              ? int64_t(__ldg(a.block_table + pos / a.page_size)) * a.page_size + pos % a.page_size
              : pos;
      at[i] = (row * a.kv_heads + kv_head) * row_vecs + item % row_vecs;
    }
  }
  const uint4* k = static_cast<const uint4*>(a.k);
  const uint4* v = static_cast<const uint4*>(a.v);
  uint4 kw[kItems], vw[kItems];
#pragma unroll
  for (int i = 0; i < kItems; ++i) {
    kw[i] = at[i] >= 0 ? __ldg(k + at[i]) : make_uint4(0, 0, 0, 0);
    vw[i] = at[i] >= 0 ? __ldg(v + at[i]) : make_uint4(0, 0, 0, 0);
  }
  uint32_t x = 0;
#pragma unroll
  for (int i = 0; i < kItems; ++i) {
    x ^= kw[i].x ^ kw[i].y ^ kw[i].z ^ kw[i].w ^ vw[i].x ^ vw[i].y ^ vw[i].z ^ vw[i].w;
  }
  for (int o = 16; o > 0; o >>= 1) x ^= __shfl_xor_sync(0xffffffffu, x, o);
  __shared__ uint32_t warps[kThreads / 32];
  if (threadIdx.x % 32 == 0) warps[threadIdx.x / 32] = x;
  __syncthreads();
  if (threadIdx.x == 0) {
    uint32_t b = 0;
    for (int w = 0; w < kThreads / 32; ++w) b ^= warps[w];
    a.out[head * gridDim.x + blockIdx.x] = b;
  }
}

}  // namespace

void gather_ceiling_cuda(const GatherCeilingArgs& a, Stream stream) {
  const int64_t blocks = gather_ceiling_blocks_per_head(a);
  const int row_vecs = int(a.row_bytes / 16);
  const int rows_per_block = kThreads * kItems / row_vecs;
  gather_ceiling_kernel<<<dim3(unsigned(blocks), unsigned(a.heads)), kThreads, 0,
                          kernels::cuda::raw_stream(stream)>>>(a, row_vecs, rows_per_block);
  kernels::cuda::check_launch("gather_ceiling_kernel", stream);
}

}  // namespace tidal::bench
