// SPDX-License-Identifier: Apache-2.0
// topk_per_row on the GPU: a radix select whose rows are each spread over several blocks, so 32
// rows of 100K positions or 2 rows of 1M still fill the GPU. Two paths, chosen by the shapes and
// the device only (a captured graph serves any n):
// - rows of up to 16 x 20480 positions: one thread-block cluster a row (topk_cluster_kernel,
//   below), every block holding its chunk in shared memory, barriers in hardware;
// - longer rows: the multi-block select of AIR top-k / RAFT's select_k (written afresh),
//   described here. Each row's n - 1 candidates are cut into B chunks, one block each, and a
//   launch is two kernels:
//   init    zero the rows' histograms and counters (graphs replay the launch, and the workspace
//           is shared scratch: nothing may be assumed zero from before)
//   select  one block per (row, chunk), in five phases separated by row-wide barriers:
//     histogram x3  per 11/11/10-bit digit of the order-preserving key: a shared-memory
//                   histogram of the candidates that match the digits found so far, added to
//                   the row's global one; the row's last block to finish picks the digit where
//                   the count from the top crosses the remaining k and releases the others, so
//                   after three passes the threshold key T is exact, with `need` = how many keys
//                   equal to T are kept (the lowest positions: ref's tie rule)
//     count         per chunk: keys above T, keys equal to T
//     write         per chunk: its offset from the counts of the chunks before it, then a block
//                   scan over 4-element tiles writes the kept positions in ascending order
// The grid is fixed by the shapes (one wave at most, blocks per SM from the occupancy calculator)
// and shared out on the device among the rows the step actually selects for (a token's L lists,
// not the max_lists the buffers hold): B = the grid / those rows, capped at kMinChunk candidates a
// chunk. The barriers need every block of a row resident at once: the launch is cooperative,
// which makes the driver refuse a grid that would not fit rather than let it hang. With B = 1 a
// row has no barrier to wait at, and a block takes rows one after another. Passes 0 and 1 and the
// write read the chunk (from L2 after the first); pass 1 also stages the keys it counts (those
// whose top 11 bits are pass 0's digit: every key that can equal T) in shared memory, so pass 2
// and the count read only those, and the count adds the chunk's keys above pass 0's digit from
// its own pass-0 histogram. A chunk with more than kStaged such keys reads the chunk in every
// phase instead.
// Rows with n <= K (keep everything) or K == 1 (only n - 1) are written whole by their chunk 0.
#include <cooperative_groups.h>

#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#include "kernels/cuda_common.cuh"
#include "kernels/radix_select.cuh"
#include "kernels/topk_per_row.h"

namespace tidal::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxBins = 2048;
constexpr int kHistWords = 2048 + 2048 + 1024;  // the three passes' histograms of one row
// Per row: prefix[0..3] (key bits found before pass p), need[0..3], done[0..3] (blocks finished
// pass p; done[3]: chunk counts written), ready[0..2] (pass p's digit published).
constexpr int kStateWords = 16;
constexpr int kPrefix = 0, kNeed = 4, kDone = 8, kReady = 12;
constexpr int64_t kMinChunk = 4096;  // candidates per block at least: amortises its fixed cost
constexpr int kStaged = 4096;        // pass-1 keys a block keeps in shared memory (16 KiB)

__host__ __device__ constexpr int pass_shift(int pass) {
  return pass == 0 ? 21 : pass == 1 ? 10 : 0;
}
__host__ __device__ constexpr int pass_bits(int pass) { return pass == 2 ? 10 : 11; }

struct Args {
  int32_t* indices;                   // [num_tokens, max_lists, max_budget]
  int32_t* counts;                    // [num_tokens, max_lists]
  const float* scores;                // [num_tokens, num_heads, max_len] at the strides below
  const int32_t* lengths;             // [num_tokens]
  const int32_t* budgets;             // [num_tokens]
  const int32_t* num_lists;           // [num_tokens]
  const uint8_t* roles;               // [num_tokens]
  int64_t token_stride, head_stride;  // of scores, elements
  uint32_t* hist;                     // [rows, kHistWords]
  uint32_t* state;                    // [rows, kStateWords]
  uint2* chunk_counts;                // [max(grid, rows)]: (above T, equal to T) per chunk
  uint32_t active_roles;
  int num_tokens, num_heads, max_lists, max_budget, max_len;
  // Cluster path: the blocks of a row. Multi-block path: the most chunks a row may take (each
  // launch divides its grid among the rows it actually selects for, up to this many a row).
  int blocks_per_row;
};

// What a block needs to know about its row (row = token * max_lists + list).
struct Row {
  const float* scores;  // positions 0..n-1
  int32_t* out;         // max_budget entries
  int n, budget;
  int chunk;     // candidates per chunk, a multiple of 4 (16-byte aligned vectors)
  int chunks;    // non-empty chunks of the n - 1 candidates
  bool trivial;  // n <= K or K == 1: nothing to select
};

// False for rows that are not selected for: inactive role, list beyond the token's L, or
// arguments the ref would reject (the device skips them rather than reading out of bounds).
// The row's n - 1 candidates are cut into `chunks` chunks.
__device__ bool load_row(const Args& a, int64_t row, int chunks, Row* r) {
  const int64_t t = row / a.max_lists;
  const int l = int(row % a.max_lists);
  const uint32_t role = a.roles[t];
  if (role >= 32 || ((a.active_roles >> role) & 1u) == 0) return false;
  const int n = a.lengths[t], budget = a.budgets[t], lists = a.num_lists[t];
  if (lists < 1 || lists > a.max_lists || l >= lists || a.num_heads % lists != 0) return false;
  if (n < 1 || n > a.max_len || budget < 1 || budget > a.max_budget) return false;
  const int64_t head = int64_t(l) * (a.num_heads / lists);
  r->scores = a.scores + t * a.token_stride + head * a.head_stride;
  r->out = a.indices + row * a.max_budget;
  r->n = n;
  r->budget = budget;
  r->trivial = n <= budget || budget == 1;
  const int m = n - 1;  // n <= max_len < 2^31: positions in a row fit int
  r->chunk = (ceil_div(m, chunks) + 3) & ~3;
  r->chunks = r->chunk > 0 ? ceil_div(m, r->chunk) : 0;
  return true;
}

// Calls f(position, key) for every candidate in [begin, end), 16-byte loads where kVec (then
// `row + begin` is 16-byte aligned), kUnroll loads in flight per thread.
template <bool kVec, typename F>
__device__ __forceinline__ void for_each_key(const float* row, int begin, int end, F&& f) {
  constexpr int kUnroll = 4, kStep = 4 * kThreads;
  int tail = begin;
  if (kVec) {
    const int vend = begin + ((end - begin) & ~3);
    for (int base = begin + 4 * int(threadIdx.x); base < vend; base += kStep * kUnroll) {
      float4 v[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        if (base + u * kStep < vend)
          v[u] = *reinterpret_cast<const float4*>(row + base + u * kStep);
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int j = base + u * kStep;
        if (j >= vend) break;
        f(j, order_key(v[u].x));
        f(j + 1, order_key(v[u].y));
        f(j + 2, order_key(v[u].z));
        f(j + 3, order_key(v[u].w));
      }
    }
    tail = vend;
  }
  for (int j = tail + int(threadIdx.x); j < end; j += kThreads) f(j, order_key(row[j]));
}

__global__ void __launch_bounds__(kThreads) topk_init_kernel(Args a) {
  Row r;
  if (!load_row(a, blockIdx.x, 1, &r) || r.trivial) return;
  uint32_t* hist = a.hist + int64_t(blockIdx.x) * kHistWords;
  for (int i = threadIdx.x; i < kHistWords; i += kThreads) hist[i] = 0;
  if (threadIdx.x < kStateWords) {
    const int i = threadIdx.x;
    a.state[int64_t(blockIdx.x) * kStateWords + i] = i == kNeed ? uint32_t(r.budget - 1) : 0u;
  }
}

// Row-wide synchronisation between the blocks of one row (all resident: see the header).
__device__ __forceinline__ uint32_t load_acquire(const uint32_t* p) {
  uint32_t v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ void store_release(uint32_t* p, uint32_t v) {
  asm volatile("st.release.gpu.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}
// Thread 0 waits for *p >= target, then the block goes on; what was written before the release
// that set *p is visible to every thread of the block (read it with __ldcg: L1 is not coherent).
__device__ __forceinline__ void wait_at_least(const uint32_t* p, uint32_t target) {
  if (threadIdx.x == 0) {
    while (load_acquire(p) < target) __nanosleep(20);
  }
  __syncthreads();
}

// The keys of pass 1 (those whose top 11 bits are the digit pass 0 chose) staged in shared memory,
// so that pass 2 and the count read them there instead of the chunk again. A block whose chunk
// holds more than kStaged of them reads its chunk in every phase instead (same result).
struct Staged {
  uint32_t* keys;   // kStaged
  uint32_t* count;  // keys offered; > kStaged: overflowed
  uint32_t* above;  // the chunk's keys above pass 0's digit (block total, after pass 0)
  __device__ bool usable() const { return *count <= uint32_t(kStaged); }
};

// Calls f(key) for each key of the chunk the pass must see: from the staged keys in passes after
// pass 1 when they are usable, else every key of the chunk [begin, end).
template <bool kVec, typename F>
__device__ __forceinline__ void for_each_pass_key(const Row& r, int begin, int end,
                                                  const Staged& st, bool staged, F&& f) {
  if (staged) {
    const int n = int(*st.count);
    for (int i = threadIdx.x; i < n; i += kThreads) f(st.keys[i]);
  } else {
    for_each_key<kVec>(r.scores, begin, end, [&](int, uint32_t key) { f(key); });
  }
}

// One digit pass over the block's keys. The row's last block to add its histogram picks the
// digit and publishes prefix / need for the next pass; the others wait.
template <bool kVec>
__device__ void histogram_pass(const Args& a, int64_t row, const Row& r, int begin, int end,
                               int pass, uint32_t* hist, const Staged& st) {
  uint32_t* state = a.state + row * kStateWords;
  uint32_t* global_hist = a.hist + row * kHistWords + pass * kMaxBins;
  const int shift = pass_shift(pass), bins = 1 << pass_bits(pass);
  const int high = shift + pass_bits(pass);  // key bits above this digit: 32 - high of them
  const uint32_t prefix = __ldcg(&state[kPrefix + pass]);
  const bool staged = pass == 2 && st.usable();  // block-uniform

  for (int i = threadIdx.x; i < bins; i += kThreads) hist[i] = 0;
  __syncthreads();
  for_each_pass_key<kVec>(r, begin, end, st, staged, [&](uint32_t key) {
    if (high == 32 || (key >> high) == (prefix >> high)) {
      atomicAdd(&hist[(key >> shift) & uint32_t(bins - 1)], 1u);
      if (pass == 1) {  // stage it for pass 2 and the count
        const uint32_t at = atomicAdd(st.count, 1u);
        if (at < uint32_t(kStaged)) st.keys[at] = key;
      }
    }
  });
  __syncthreads();
  for (int i = threadIdx.x; i < bins; i += kThreads) {
    if (hist[i] != 0) atomicAdd(&global_hist[i], hist[i]);
  }
  // The last block of the row to get here sees every block's additions (threadfence pattern of
  // the CUDA threadFenceReduction sample).
  __threadfence();
  __syncthreads();
  __shared__ bool last;
  if (threadIdx.x == 0) last = atomicAdd(&state[kDone + pass], 1u) == uint32_t(r.chunks - 1);
  __syncthreads();
  if (!last) {
    wait_at_least(&state[kReady + pass], 1u);
  } else {
    __threadfence();
    const DigitChoice<uint32_t> c = select_digit<uint32_t, kThreads>(
        bins, __ldcg(&state[kNeed + pass]), [&](int b) { return __ldcg(&global_hist[b]); });
    if (threadIdx.x == 0) {
      state[kPrefix + pass + 1] = prefix | (c.digit << shift);
      state[kNeed + pass + 1] = c.need;
      store_release(&state[kReady + pass], 1u);  // orders the two stores above before it
    }
    __syncthreads();
  }
  if (pass == 0) {  // this chunk's keys above the chosen digit, from its own histogram
    const uint32_t digit = (__ldcg(&state[kPrefix + 1]) >> shift) & uint32_t(bins - 1);
    uint32_t above = 0;
    for (int i = threadIdx.x; i < bins; i += kThreads) above += uint32_t(i) > digit ? hist[i] : 0u;
    above = __reduce_add_sync(0xFFFFFFFFu, above);
    if ((threadIdx.x & 31) == 0) atomicAdd(st.above, above);
    __syncthreads();  // st.above complete; hist is free for the next pass
  }
}

// Chunk 0 of a row writes its count, the -1 padding and n - 1; rows with nothing to select are
// written here whole.
__device__ void write_row_frame(const Args& a, int64_t row, const Row& r) {
  const int kept = min(r.n, r.budget);
  for (int i = threadIdx.x; i < a.max_budget; i += kThreads) {
    int32_t v = -1;
    if (r.n <= r.budget) {
      v = i < r.n ? i : -1;
    } else if (i == kept - 1) {
      v = r.n - 1;
    } else if (i < kept - 1) {
      continue;  // a selected position, written by the chunks
    }
    r.out[i] = v;
  }
  if (threadIdx.x == 0) a.counts[row] = kept;
}

// The rows a launch selects for, in token order: a token whose role is active and whose list
// count L is valid has rows token * max_lists + 0..L-1 (load_row may still skip one for its n or
// K: its blocks then exit together). Returns how many there are, and in *row the i-th (-1 past
// the end). Warp 0 scans the tokens 32 at a time; every thread of the block gets the answer.
__device__ int active_row(const Args& a, int i, int64_t* row) {
  __shared__ int s_total;
  __shared__ long long s_row;
  if (threadIdx.x < 32) {
    const int lane = int(threadIdx.x);
    int before = 0;
    long long found = -1;
    for (int t0 = 0; t0 < a.num_tokens; t0 += 32) {
      const int t = t0 + lane;
      int l = 0;
      if (t < a.num_tokens) {
        const uint32_t role = a.roles[t];
        const int lists = a.num_lists[t];
        const bool on = role < 32 && ((a.active_roles >> role) & 1u) != 0;
        if (on && lists >= 1 && lists <= a.max_lists && a.num_heads % lists == 0) l = lists;
      }
      int upto = l;  // inclusive prefix over the lanes
      for (int o = 1; o < 32; o <<= 1) {
        const int v = __shfl_up_sync(0xFFFFFFFFu, upto, o);
        if (lane >= o) upto += v;
      }
      const int first = before + upto - l;
      if (i >= first && i < first + l) found = (long long)t * a.max_lists + (i - first);
      before += __shfl_sync(0xFFFFFFFFu, upto, 31);
    }
    if (lane == 0) {
      s_total = before;
      s_row = -1;
    }
    __syncwarp();
    if (found >= 0) s_row = found;  // one lane at most
  }
  __syncthreads();
  const int total = s_total;
  *row = s_row;
  __syncthreads();  // the next call may overwrite them
  return total;
}

// One chunk of one row: the five phases of the header. `slot`: this chunk's entry of
// chunk_counts (the row's chunks are slot - chunk .. slot - chunk + chunks - 1).
template <bool kVec>
__device__ void select_chunk(const Args& a, int64_t row, int chunk, int chunks, int slot) {
  Row r;
  if (!load_row(a, row, chunks, &r)) return;
  if (chunk == 0) write_row_frame(a, row, r);
  // Chunks hold < 2^31 / B positions each: chunk * B < max_len + 4 * B fits int. Blocks past the
  // row's last non-empty chunk take no part (r.chunks counts the blocks the barriers wait for).
  if (r.trivial || chunk >= r.chunks) return;
  const int begin = chunk * r.chunk;
  const int end = min(begin + r.chunk, r.n - 1);
  uint32_t* state = a.state + row * kStateWords;

  __shared__ uint32_t hist[kMaxBins];
  __shared__ uint32_t staged_keys[kStaged];
  __shared__ uint32_t staged_count, above_digit0;
  if (threadIdx.x == 0) staged_count = above_digit0 = 0;
  __syncthreads();
  const Staged st{staged_keys, &staged_count, &above_digit0};
  for (int pass = 0; pass < 3; ++pass) histogram_pass<kVec>(a, row, r, begin, end, pass, hist, st);
  const uint32_t threshold = __ldcg(&state[kPrefix + 3]);
  const uint32_t need = __ldcg(&state[kNeed + 3]);

  // Count: keys above T and equal to T in this chunk, published for the chunks after it.
  using Reduce = cub::BlockReduce<uint32_t, kThreads>;
  using Scan = cub::BlockScan<uint32_t, kThreads>;
  __shared__ union {
    typename Reduce::TempStorage reduce;
    typename Scan::TempStorage scan;
  } storage;
  {
    // With the staged keys: the keys above pass 0's digit, plus the staged ones above T (every
    // key equal to T is staged: its top 11 bits are that digit).
    const bool staged = st.usable();
    uint32_t above = 0, equal = 0;
    for_each_pass_key<kVec>(r, begin, end, st, staged, [&](uint32_t key) {
      above += key > threshold;
      equal += key == threshold;
    });
    if (staged && threadIdx.x == 0) above += above_digit0;
    above = Reduce(storage.reduce).Sum(above);
    __syncthreads();
    equal = Reduce(storage.reduce).Sum(equal);
    if (threadIdx.x == 0) {
      a.chunk_counts[slot] = make_uint2(above, equal);
      __threadfence();
      atomicAdd(&state[kDone + 3], 1u);
    }
    wait_at_least(&state[kDone + 3], uint32_t(r.chunks));
  }

  // Write: keys above T and equal to T in the chunks before this one.
  uint32_t above = 0, equal = 0;
  const uint2* counts = a.chunk_counts + (slot - chunk);
  for (int c = threadIdx.x; c < chunk; c += kThreads) {
    const uint2 v = __ldcg(&counts[c]);
    above += v.x;
    equal += v.y;
  }
  __shared__ uint32_t base[2];
  above = Reduce(storage.reduce).Sum(above);
  __syncthreads();
  equal = Reduce(storage.reduce).Sum(equal);
  if (threadIdx.x == 0) {
    base[0] = above;
    base[1] = equal;
  }
  __syncthreads();
  uint32_t above_before = base[0], equal_before = base[1];

  // Tiles of 4 consecutive candidates per thread, in position order; counts of one tile fit
  // 16 bits, so (above << 16 | equal) scans both at once.
  for (int tile = begin; tile < end; tile += 4 * kThreads) {
    const int j0 = tile + 4 * int(threadIdx.x);
    uint32_t key[4];
    if (kVec && j0 + 3 < end) {
      const float4 v = *reinterpret_cast<const float4*>(r.scores + j0);
      key[0] = order_key(v.x), key[1] = order_key(v.y), key[2] = order_key(v.z);
      key[3] = order_key(v.w);
    } else {
#pragma unroll
      for (int u = 0; u < 4; ++u) key[u] = j0 + u < end ? order_key(r.scores[j0 + u]) : 0u;
    }
    uint32_t mine = 0;
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      if (j0 + u < end) mine += key[u] > threshold ? (1u << 16) : key[u] == threshold ? 1u : 0u;
    }
    uint32_t before, total;
    __syncthreads();  // the previous tile's scan storage is free
    Scan(storage.scan).ExclusiveSum(mine, before, total);
    uint32_t hi = above_before + (before >> 16), eq = equal_before + (before & 0xFFFFu);
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      if (j0 + u >= end) break;
      if (key[u] > threshold) {
        r.out[hi + min(eq, need)] = j0 + u;
        ++hi;
      } else if (key[u] == threshold) {
        if (eq < need) r.out[hi + eq] = j0 + u;
        ++eq;
      }
    }
    above_before += total >> 16;
    equal_before += total & 0xFFFFu;
  }
}

// Grid (G): one wave at most, cooperative when a row may take several chunks. Every block counts
// the rows this launch selects for (R) and gives each min(blocks_per_row, G / R) chunks, so a
// token with 8 lists of 32 gets four times the blocks a row that the grid's 32 would give it
// (llama3-8b, per-KV-head lists at 2^20 positions: 16 -> 66 blocks a row). With R > G a block
// takes rows one after another, a chunk each (no barriers).
template <bool kVec>
__global__ void __launch_bounds__(kThreads, 4) topk_select_kernel(Args a) {
  int64_t row = -1;
  const int rows = active_row(a, 0, &row);
  if (rows == 0) return;
  const int chunks = max(1, min(a.blocks_per_row, int(gridDim.x) / rows));
  const int64_t items = int64_t(rows) * chunks;  // <= max(grid, rows)
  for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
    if (item > 0) active_row(a, int(item / chunks), &row);
    if (row < 0) break;  // (not reached: the lists cannot change during the launch)
    select_chunk<kVec>(a, row, int(item % chunks), chunks, int(item));
  }
}

// The cluster path: rows of up to kClusterKeys * 16 candidates run as one thread-block cluster
// per row (8 blocks, or 16 where the device allows it), each block holding its chunk's keys in
// shared memory for the whole select. A pass's histograms stay in each block's shared memory:
// block c sums slice c of the bins over the cluster (distributed shared memory loads), every
// block finds the slice that holds the digit from the slices' sums and the digit inside it from
// a copy of that slice. The row-wide barriers are cluster barriers (in hardware), so there is no
// init kernel, no workspace and no global spin: the chunk is read from global memory once,
// every later phase reads shared memory. Same phases and results as the multi-block kernel.
constexpr int kClusterKeys = 20480;  // keys one block holds (80 KiB of dynamic shared memory)
constexpr int kClusterMax = 16;

__device__ __forceinline__ void cluster_arrive() {
  asm volatile("barrier.cluster.arrive.release.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void cluster_wait() {
  asm volatile("barrier.cluster.wait.acquire.aligned;\n" ::: "memory");
}

// keys[j] = order_key(src[j]) for j < len, and pass 0's histogram of them in hist0.
template <bool kVec>
__device__ __forceinline__ void load_keys(const float* src, int len, uint32_t* keys,
                                          uint32_t* hist0) {
  constexpr int kUnroll = 8, kStep = 4 * kThreads;
  const int shift = pass_shift(0);
  int tail = 0;
  if (kVec) {
    const int vlen = len & ~3;
    for (int base = 4 * int(threadIdx.x); base < vlen; base += kStep * kUnroll) {
      float4 v[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        if (base + u * kStep < vlen)
          v[u] = *reinterpret_cast<const float4*>(src + base + u * kStep);
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int j = base + u * kStep;
        if (j >= vlen) break;
        const uint4 k =
            make_uint4(order_key(v[u].x), order_key(v[u].y), order_key(v[u].z), order_key(v[u].w));
        *reinterpret_cast<uint4*>(keys + j) = k;
        atomicAdd(&hist0[k.x >> shift], 1u);
        atomicAdd(&hist0[k.y >> shift], 1u);
        atomicAdd(&hist0[k.z >> shift], 1u);
        atomicAdd(&hist0[k.w >> shift], 1u);
      }
    }
    tail = vlen;
  }
  for (int j = tail + int(threadIdx.x); j < len; j += kThreads) {
    const uint32_t k = order_key(src[j]);
    keys[j] = k;
    atomicAdd(&hist0[k >> shift], 1u);
  }
}

// grid (cluster size C, rows), clusters of C blocks along x: block rank c holds chunk c of its
// row. a.blocks_per_row == C.
template <bool kVec>
__global__ void __launch_bounds__(kThreads) topk_cluster_kernel(Args a) {
  namespace cg = cooperative_groups;
  const cg::cluster_group cluster = cg::this_cluster();
  const int rank = int(cluster.block_rank());
  const int64_t row = blockIdx.y;
  Row r;
  // Both exits are uniform over the cluster (one row), before any remote access.
  if (!load_row(a, row, a.blocks_per_row, &r)) return;
  if (rank == 0) write_row_frame(a, row, r);
  if (r.trivial) return;
  const int begin = min(rank * r.chunk, r.n - 1);
  const int len = min(r.chunk, r.n - 1 - begin);  // 0 for ranks past the last chunk

  extern __shared__ __align__(16) uint32_t keys[];    // len of them
  __shared__ __align__(16) uint32_t local[kMaxBins];  // this block's histogram of a pass
  // The row's totals of this block's slice of a pass's bins (bins / C of them: bins from
  // rank * bins / C), and a copy of the slice that holds the pass's digit.
  __shared__ __align__(16) uint32_t slice_total[kMaxBins / 8];
  __shared__ __align__(16) uint32_t chosen[kMaxBins / 8];
  __shared__ uint32_t slice_sum;
  __shared__ DigitChoice<uint32_t> crossing;  // the slice holding the digit, need inside it
  __shared__ uint2 row_counts[kClusterMax];   // rank 0's: each chunk's (above T, equal T)
  __shared__ uint32_t base[2];
  using Reduce = cub::BlockReduce<uint32_t, kThreads>;
  using Scan = cub::BlockScan<uint32_t, kThreads>;
  __shared__ union {
    typename Reduce::TempStorage reduce;
    typename Scan::TempStorage scan;
  } storage;

  const int c = a.blocks_per_row, lane = int(threadIdx.x) & 31;
  for (int i = threadIdx.x; i < kMaxBins; i += kThreads) local[i] = 0;
  __syncthreads();
  load_keys<kVec>(r.scores + begin, len, keys, local);

  uint32_t prefix = 0, need = uint32_t(r.budget - 1);
  for (int pass = 0; pass < 3; ++pass) {
    const int shift = pass_shift(pass), bins = 1 << pass_bits(pass);
    const int high = shift + pass_bits(pass), slice = bins / c;  // a multiple of 4
    if (pass > 0) {
      for (int i = threadIdx.x; i < bins; i += kThreads) local[i] = 0;
      __syncthreads();
      for (int j = threadIdx.x; j < len; j += kThreads) {
        const uint32_t key = keys[j];
        if ((key >> high) == (prefix >> high))
          atomicAdd(&local[(key >> shift) & uint32_t(bins - 1)], 1u);
      }
    }
    cluster.sync();  // every block's histogram of this pass is complete
    // This block's slice summed over the cluster: 16-byte loads of each block's histogram (a
    // remote atomic a bucket serialises at its target block: ~20 us a pass, measured).
    uint32_t part = 0;
    if (int(threadIdx.x) < slice / 4) {
      const int b = rank * slice + 4 * int(threadIdx.x);
      uint4 sum = make_uint4(0u, 0u, 0u, 0u);
      for (int q = 0; q < c; ++q) {
        const uint4 v = *reinterpret_cast<const uint4*>(cluster.map_shared_rank(local + b, q));
        sum.x += v.x, sum.y += v.y, sum.z += v.z, sum.w += v.w;
      }
      *reinterpret_cast<uint4*>(slice_total + 4 * threadIdx.x) = sum;
      part = sum.x + sum.y + sum.z + sum.w;
    }
    part = Reduce(storage.reduce).Sum(part);
    if (threadIdx.x == 0) slice_sum = part;
    cluster.sync();  // every slice's totals and sum are complete
    // The slice holding the need-th key from the top: the highest rank whose slice sum, with
    // the sums of the ranks above it, reaches need (rank 0's slice at least: it sums to all).
    if (threadIdx.x < 32) {
      const uint32_t mine = lane < c ? *cluster.map_shared_rank(&slice_sum, lane) : 0u;
      uint32_t from_here = mine;  // the sums of ranks lane.. c - 1
      for (int o = 1; o < 32; o <<= 1) {
        const uint32_t v = __shfl_down_sync(0xFFFFFFFFu, from_here, o);
        if (lane + o < 32) from_here += v;
      }
      const uint32_t hits = __ballot_sync(0xFFFFFFFFu, lane < c && from_here >= need);
      const int star = 31 - __clz(hits);
      const uint32_t above = __shfl_sync(0xFFFFFFFFu, from_here - mine, star);
      if (lane == 0) crossing = DigitChoice<uint32_t>{uint32_t(star), need - above};
    }
    __syncthreads();
    const int star = int(crossing.digit);
    if (int(threadIdx.x) < slice / 4) {
      reinterpret_cast<uint4*>(chosen)[threadIdx.x] =
          reinterpret_cast<const uint4*>(cluster.map_shared_rank(slice_total, star))[threadIdx.x];
    }
    __syncthreads();
    const DigitChoice<uint32_t> d =
        select_digit<uint32_t, kThreads>(slice, crossing.need, [&](int b) { return chosen[b]; });
    prefix |= (uint32_t(star * slice) + d.digit) << shift;
    need = d.need;
  }
  const uint32_t threshold = prefix;

  // Each thread takes a run of consecutive keys, so one scan orders the block's kept positions;
  // (above << 16 | equal) scans both counts at once (a block holds < 2^16 keys).
  const int run = ceil_div(len, kThreads);
  const int lo = min(int(threadIdx.x) * run, len), hi_end = min(lo + run, len);
  uint32_t mine = 0;
  for (int j = lo; j < hi_end; ++j) {
    const uint32_t key = keys[j];
    mine += key > threshold ? (1u << 16) : key == threshold ? 1u : 0u;
  }
  uint32_t before, total;
  Scan(storage.scan).ExclusiveSum(mine, before, total);
  if (threadIdx.x == 0) {
    *cluster.map_shared_rank(row_counts + rank, 0) = make_uint2(total >> 16, total & 0xFFFFu);
  }
  cluster.sync();  // every chunk's counts are in rank 0
  if (threadIdx.x < 32) {
    const uint2* counts = cluster.map_shared_rank(row_counts, 0);
    const uint2 v = int(threadIdx.x) < rank ? counts[threadIdx.x] : make_uint2(0u, 0u);
    const uint32_t above = __reduce_add_sync(0xFFFFFFFFu, v.x);
    const uint32_t equal = __reduce_add_sync(0xFFFFFFFFu, v.y);
    if (threadIdx.x == 0) base[0] = above, base[1] = equal;
  }
  __syncthreads();
  cluster_arrive();  // done with rank 0's memory (rank 0 waits for everyone before it exits)
  uint32_t above = base[0] + (before >> 16), equal = base[1] + (before & 0xFFFFu);
  for (int j = lo; j < hi_end; ++j) {
    const uint32_t key = keys[j];
    if (key > threshold) {
      r.out[above + min(equal, need)] = begin + j;
      ++above;
    } else if (key == threshold) {
      if (equal < need) r.out[above + equal] = begin + j;
      ++equal;
    }
  }
  cluster_wait();
}

// Both instantiations of the cluster kernel may use clusters of 16 and kClusterKeys of dynamic
// shared memory (once per device).
void configure_cluster_kernels() {
  static int done[64] = {};
  per_device_cached(done, [] {
    for (auto* kernel : {topk_cluster_kernel<true>, topk_cluster_kernel<false>}) {
      TIDAL_CUDA_CHECK(
          cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
      TIDAL_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            int(kClusterKeys * sizeof(uint32_t))));
    }
    return 1;
  });
}

cudaLaunchConfig_t cluster_config(int c, int64_t rows, size_t smem, cudaLaunchAttribute* attr) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(unsigned(c), unsigned(rows));
  cfg.blockDim = dim3(kThreads);
  cfg.dynamicSmemBytes = smem;
  attr[0] = cluster_attribute(unsigned(c));
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  return cfg;
}

// Keys a cluster block holds for rows of max_len positions in clusters of c (a multiple of 4).
int64_t cluster_chunk(int64_t max_len, int c) {
  return (ceil_div<int64_t>(std::max<int64_t>(1, max_len - 1), c) + 3) & ~int64_t(3);
}

// The cluster size for rows of max_len positions: 8, else 16 where the device runs clusters of
// 16 blocks with the most shared memory; 0 when the rows are too long for either, or too many
// for the grid (the multi-block kernel then). Depends on the shapes and the device only.
int cluster_size(int64_t max_len, int64_t rows) {
  if (rows > 65535) return 0;
  if (cluster_chunk(max_len, 8) <= kClusterKeys) return 8;
  if (cluster_chunk(max_len, 16) > kClusterKeys) return 0;
  static int fits16[64] = {};  // 1: clusters of 16 run here, -1: they do not
  const int fits = per_device_cached(fits16, [] {
    configure_cluster_kernels();
    for (auto* kernel : {topk_cluster_kernel<true>, topk_cluster_kernel<false>}) {
      cudaLaunchAttribute attr[1];
      const cudaLaunchConfig_t cfg =
          cluster_config(16, 1, size_t(kClusterKeys) * sizeof(uint32_t), attr);
      int clusters = 0;
      if (cudaOccupancyMaxActiveClusters(&clusters, kernel, &cfg) != cudaSuccess) {
        (void)cudaGetLastError();  // not an error of ours: this device has no such clusters
        return -1;
      }
      if (clusters < 1) return -1;
    }
    return 1;
  });
  return fits > 0 ? 16 : 0;
}

template <bool kVec>
void launch_cluster(const Args& a, int64_t rows, Stream stream) {
  configure_cluster_kernels();
  cudaLaunchAttribute attr[1];
  cudaLaunchConfig_t cfg =
      cluster_config(a.blocks_per_row, rows,
                     size_t(cluster_chunk(a.max_len, a.blocks_per_row)) * sizeof(uint32_t), attr);
  cfg.stream = raw_stream(stream);
  TIDAL_CUDA_CHECK(cudaLaunchKernelEx(&cfg, topk_cluster_kernel<kVec>, a));
  check_launch("topk_cluster_kernel", stream);
}

// Resident select blocks per SM times the SMs: the most blocks one launch may hold, since a
// row's blocks wait for each other (once per device, from the occupancy calculator).
int64_t resident_blocks() {
  static int per_sm[64] = {};
  const int blocks_per_sm = per_device_cached(per_sm, [] {
    int blocks = 0, blocks_scalar = 0;  // the fewer of the two instantiations'
    TIDAL_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
        &blocks, topk_select_kernel<true>, kThreads, 0));
    TIDAL_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
        &blocks_scalar, topk_select_kernel<false>, kThreads, 0));
    return std::max(1, std::min(blocks, blocks_scalar));
  });
  return int64_t(blocks_per_sm) * sm_count();
}

// The multi-block launch, from the shapes and the device only (the workspace and the graph do
// not depend on n or on the lists a step selects for): the most chunks a row may take (at least
// kMinChunk candidates each) and the grid, one wave of resident blocks at most.
struct MultiBlock {
  int64_t chunks;  // Args::blocks_per_row
  int64_t grid;
};

MultiBlock multi_block(const TopkPerRowParams& p) {
  const int64_t rows = std::max<int64_t>(1, p.scores.size(0) * p.indices.size(1));
  const int64_t wave = resident_blocks();
  const int64_t most = std::max<int64_t>(1, ceil_div<int64_t>(p.scores.size(2), kMinChunk));
  const int64_t chunks = std::min(most, wave);
  return {chunks, std::min(wave, rows * chunks)};
}

template <bool kVec>
void launch(const Args& a, int64_t rows, int64_t grid, Stream stream) {
  const cudaStream_t s = raw_stream(stream);
  topk_init_kernel<<<unsigned(rows), kThreads, 0, s>>>(a);
  check_launch("topk_init_kernel", stream);
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(unsigned(grid));
  cfg.blockDim = dim3(kThreads);
  cfg.stream = s;
  cudaLaunchAttribute attr[1] = {};
  attr[0].id = cudaLaunchAttributeCooperative;
  attr[0].val.cooperative = 1;
  cfg.attrs = attr;
  // A row of one chunk has no barrier to wait at; with several, the grid is one wave.
  cfg.numAttrs = a.blocks_per_row > 1 && grid > 1 ? 1 : 0;
  TIDAL_CUDA_CHECK(cudaLaunchKernelEx(&cfg, topk_select_kernel<kVec>, a));
  check_launch("topk_select_kernel", stream);
}

}  // namespace

size_t topk_per_row_workspace_size(const TopkPerRowParams& p) {
  const int64_t rows = p.scores.size(0) * p.indices.size(1);
  if (cluster_size(p.scores.size(2), rows) > 0) return 0;  // the cluster path needs none
  return size_t(rows) * (kHistWords + kStateWords) * sizeof(uint32_t) +
         size_t(std::max(rows, multi_block(p).grid)) * sizeof(uint2);
}

void topk_per_row(const TopkPerRowParams& p, TensorView workspace, Stream stream) {
  TIDAL_NVTX_SCOPE("topk_per_row");
  const int64_t tokens = p.scores.size(0), rows = tokens * p.indices.size(1);
  if (rows == 0 || p.indices.size(2) == 0) return;
  TIDAL_CHECK(p.scores.size(2) < (int64_t(1) << 30) && p.indices.size(2) < (int64_t(1) << 30),
              "topk_per_row: max_len and max_budget must be below 2^30");
  TIDAL_CHECK(rows < (int64_t(1) << 31), "topk_per_row: too many rows");
  Args a = {};
  a.indices = p.indices.data_as<int32_t>();
  a.counts = p.counts.data_as<int32_t>();
  a.scores = p.scores.data_as<float>();
  a.lengths = p.lengths.data_as<int32_t>();
  a.budgets = p.budgets.data_as<int32_t>();
  a.num_lists = p.num_lists.data_as<int32_t>();
  a.roles = p.roles.data_as<uint8_t>();
  a.token_stride = p.scores.stride[0];
  a.head_stride = p.scores.stride[1];
  a.active_roles = p.active_roles;
  a.num_heads = int(p.scores.size(1));
  a.num_tokens = int(tokens);
  a.max_lists = int(p.indices.size(1));
  a.max_budget = int(p.indices.size(2));
  a.max_len = int(p.scores.size(2));
  // 16-byte loads need every row start 16-byte aligned.
  const bool vec = reinterpret_cast<uintptr_t>(a.scores) % 16 == 0 && a.token_stride % 4 == 0 &&
                   a.head_stride % 4 == 0;
  if (const int c = cluster_size(a.max_len, rows); c > 0) {
    a.blocks_per_row = c;
    if (vec) {
      launch_cluster<true>(a, rows, stream);
    } else {
      launch_cluster<false>(a, rows, stream);
    }
    return;
  }
  TIDAL_CHECK(reinterpret_cast<uintptr_t>(workspace.data) % 16 == 0,
              "topk_per_row: workspace must be 16-byte aligned");
  a.hist = static_cast<uint32_t*>(workspace.data);
  a.state = a.hist + rows * kHistWords;
  a.chunk_counts = reinterpret_cast<uint2*>(a.state + rows * kStateWords);
  const MultiBlock m = multi_block(p);
  a.blocks_per_row = int(m.chunks);
  if (vec) {
    launch<true>(a, rows, m.grid, stream);
  } else {
    launch<false>(a, rows, m.grid, stream);
  }
}

}  // namespace tidal::kernels::cuda
