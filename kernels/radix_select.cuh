// SPDX-License-Identifier: Apache-2.0
// Radix-select building blocks shared by topk_per_row.cu and sample_tokens.cu: f32 -> u32 keys
// whose unsigned order is the float order, and the block-wide step of a most-significant-digit
// descent that finds the digit where the count (or mass) counted from the top crosses `need`.
// The descent is the one of RAFT's radix select / AIR top-k (Zhang et al., SC'23), rewritten.
#pragma once

#include <cstdint>
#include <cub/block/block_scan.cuh>

namespace tidal::kernels::cuda {

// Unsigned key with key(a) > key(b) iff a > b for numbers; -0 and +0 share a key (they compare
// equal), and every NaN maps to 0, below -inf (0x007FFFFF): the ref ranks NaN below every number.
__device__ __forceinline__ uint32_t order_key(float x) {
  uint32_t b = __float_as_uint(x);
  if (x != x) return 0u;
  if (b == 0x80000000u) b = 0u;
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

template <typename Count>
struct DigitChoice {
  uint32_t digit;  // the bucket holding the need-th element counted from the top
  Count need;      // what is still needed inside that bucket (1..hist[digit])
};

// One step of the descent, by all kThreads threads of a block (every thread must call it):
// over buckets hist[0..bins), the highest digit d with sum_{x >= d} hist[x] >= need, and
// need - sum_{x > d} hist[x]. `load(b)` reads bucket b, once per bucket: each thread loads its
// buckets together (one round trip when they are in global memory) and keeps them for the
// finder. Requires: bins <= kThreads, or bins % kThreads == 0 and bins <= kMaxPer * kThreads;
// 1 <= need <= sum of all buckets (otherwise digit 0 is returned). Ends with a barrier, so the
// caller may overwrite the buckets right after.
template <typename Count, int kThreads, int kMaxPer = 8, typename Load>
__device__ DigitChoice<Count> select_digit(int bins, Count need, Load&& load) {
  using Scan = cub::BlockScan<Count, kThreads>;
  __shared__ typename Scan::TempStorage scan_storage;
  __shared__ DigitChoice<Count> choice;
  // Thread 0 owns the top buckets, so an exclusive prefix over threads is "everything above".
  const int per = bins > kThreads ? bins / kThreads : 1;
  const int hi = bins - int(threadIdx.x) * per, lo = hi - per;
  if (per > kMaxPer) __trap();  // a caller's bins beyond kMaxPer * kThreads: a bug, never a guess
  Count bucket[kMaxPer];  // bucket[i]: bucket lo + i
  Count mine = 0;
#pragma unroll
  for (int i = 0; i < kMaxPer; ++i) {
    bucket[i] = hi > 0 && i < per ? load(lo + i) : Count(0);
  }
#pragma unroll
  for (int i = 0; i < kMaxPer; ++i) mine += bucket[i];  // the order of the buckets, lo first
  if (threadIdx.x == 0) choice = DigitChoice<Count>{0u, need};
  __syncthreads();  // the default is written before the finder overwrites it
  Count above;
  Scan(scan_storage).ExclusiveSum(mine, above);
  if (hi > 0 && above < need && need <= above + mine) {
    bool found = false;  // exactly one thread gets here
#pragma unroll
    for (int i = kMaxPer - 1; i >= 0; --i) {
      if (found || i >= per) continue;
      if (need <= above + bucket[i]) {
        choice = DigitChoice<Count>{uint32_t(lo + i), Count(need - above)};
        found = true;
      } else {
        above += bucket[i];
      }
    }
  }
  __syncthreads();
  const DigitChoice<Count> result = choice;
  __syncthreads();
  return result;
}

}  // namespace tidal::kernels::cuda
