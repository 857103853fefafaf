// SPDX-License-Identifier: Apache-2.0
// topk_per_row on the GPU: a multi-block radix select (the design of AIR top-k / RAFT's
// multi-block select_k, written afresh), so 32 rows of 100K positions or 2 rows of 1M still
// spread over the whole GPU. Each row's n - 1 candidates are cut into B chunks, one block each
// (B fixed by the shapes and the device, so a captured graph serves any n), and a launch is two
// kernels:
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
// The barriers need every block of a row resident at once: B is capped so that the grid fits
// one wave (blocks per SM from the occupancy calculator), and the launch is cooperative, which
// makes the driver refuse a grid that would not fit rather than let it hang. With B = 1 a row
// has no barrier to wait at, so any number of rows runs. Passes 0 and 1 and the write read the
// chunk (from L2 after the first); pass 1 also stages the keys it counts (those whose top 11 bits
// are pass 0's digit: every key that can equal T) in shared memory, so pass 2 and the count read
// only those, and the count adds the chunk's keys above pass 0's digit from its own pass-0
// histogram. A chunk with more than kStaged such keys reads the chunk in every phase instead.
// Rows with n <= K (keep everything) or K == 1 (only n - 1) are written whole by their chunk 0.
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
  uint2* chunk_counts;                // [rows, blocks_per_row]: (above T, equal to T)
  uint32_t active_roles;
  int num_heads, max_lists, max_budget, max_len, blocks_per_row;
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
__device__ bool load_row(const Args& a, int64_t row, Row* r) {
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
  r->chunk = (ceil_div(m, a.blocks_per_row) + 3) & ~3;
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
  if (!load_row(a, blockIdx.x, &r) || r.trivial) return;
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
  uint32_t* keys;      // kStaged
  uint32_t* count;     // keys offered; > kStaged: overflowed
  uint32_t* above;     // the chunk's keys above pass 0's digit (block total, after pass 0)
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

template <bool kVec>
__global__ void __launch_bounds__(kThreads, 4) topk_select_kernel(Args a) {
  const int64_t row = blockIdx.x;
  Row r;
  if (!load_row(a, row, &r)) return;
  if (blockIdx.y == 0) write_row_frame(a, row, r);
  // Chunks hold < 2^31 / B positions each: chunk * B < max_len + 4 * B fits int. Blocks past the
  // row's last non-empty chunk take no part (r.chunks counts the blocks the barriers wait for).
  if (r.trivial || int(blockIdx.y) >= r.chunks) return;
  const int begin = int(blockIdx.y) * r.chunk;
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
      a.chunk_counts[row * a.blocks_per_row + blockIdx.y] = make_uint2(above, equal);
      __threadfence();
      atomicAdd(&state[kDone + 3], 1u);
    }
    wait_at_least(&state[kDone + 3], uint32_t(r.chunks));
  }

  // Write: keys above T and equal to T in the chunks before this one.
  uint32_t above = 0, equal = 0;
  const uint2* counts = a.chunk_counts + row * a.blocks_per_row;
  for (int c = threadIdx.x; c < int(blockIdx.y); c += kThreads) {
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

// B: chunks per row, from the shapes and the device only (the workspace and the graph do not
// depend on n): as many as one wave of resident blocks holds, at least kMinChunk candidates
// each; 1 when the rows alone fill the wave.
int64_t blocks_per_row(const TopkPerRowParams& p) {
  const int64_t rows = std::max<int64_t>(1, p.scores.size(0) * p.indices.size(1));
  const int64_t most = std::max<int64_t>(1, ceil_div<int64_t>(p.scores.size(2), kMinChunk));
  return std::min(most, std::max<int64_t>(1, resident_blocks() / rows));
}

template <bool kVec>
void launch(const Args& a, int64_t rows, Stream stream) {
  const cudaStream_t s = raw_stream(stream);
  topk_init_kernel<<<unsigned(rows), kThreads, 0, s>>>(a);
  check_launch("topk_init_kernel", stream);
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(unsigned(rows), unsigned(a.blocks_per_row));
  cfg.blockDim = dim3(kThreads);
  cfg.stream = s;
  cudaLaunchAttribute attr[1] = {};
  attr[0].id = cudaLaunchAttributeCooperative;
  attr[0].val.cooperative = 1;
  cfg.attrs = attr;
  cfg.numAttrs = a.blocks_per_row > 1 ? 1 : 0;  // B = 1: no barriers, any number of rows
  TIDAL_CUDA_CHECK(cudaLaunchKernelEx(&cfg, topk_select_kernel<kVec>, a));
  check_launch("topk_select_kernel", stream);
}

}  // namespace

size_t topk_per_row_workspace_size(const TopkPerRowParams& p) {
  const int64_t rows = p.scores.size(0) * p.indices.size(1);
  return size_t(rows) * (kHistWords + kStateWords) * sizeof(uint32_t) +
         size_t(rows * blocks_per_row(p)) * sizeof(uint2);
}

void topk_per_row(const TopkPerRowParams& p, TensorView workspace, Stream stream) {
  TIDAL_NVTX_SCOPE("topk_per_row");
  const int64_t tokens = p.scores.size(0), rows = tokens * p.indices.size(1);
  if (rows == 0 || p.indices.size(2) == 0) return;
  TIDAL_CHECK(p.scores.size(2) < (int64_t(1) << 30) && p.indices.size(2) < (int64_t(1) << 30),
              "topk_per_row: max_len and max_budget must be below 2^30");
  TIDAL_CHECK(rows < (int64_t(1) << 31), "topk_per_row: too many rows");
  TIDAL_CHECK(reinterpret_cast<uintptr_t>(workspace.data) % 16 == 0,
              "topk_per_row: workspace must be 16-byte aligned");
  Args a;
  a.indices = p.indices.data_as<int32_t>();
  a.counts = p.counts.data_as<int32_t>();
  a.scores = p.scores.data_as<float>();
  a.lengths = p.lengths.data_as<int32_t>();
  a.budgets = p.budgets.data_as<int32_t>();
  a.num_lists = p.num_lists.data_as<int32_t>();
  a.roles = p.roles.data_as<uint8_t>();
  a.token_stride = p.scores.stride[0];
  a.head_stride = p.scores.stride[1];
  a.hist = static_cast<uint32_t*>(workspace.data);
  a.state = a.hist + rows * kHistWords;
  a.chunk_counts = reinterpret_cast<uint2*>(a.state + rows * kStateWords);
  a.active_roles = p.active_roles;
  a.num_heads = int(p.scores.size(1));
  a.max_lists = int(p.indices.size(1));
  a.max_budget = int(p.indices.size(2));
  a.max_len = int(p.scores.size(2));
  a.blocks_per_row = int(blocks_per_row(p));
  TIDAL_CHECK(a.blocks_per_row <= 65535, "topk_per_row: max_len too large for the grid");
  // 16-byte loads need every row start 16-byte aligned.
  const bool vec = reinterpret_cast<uintptr_t>(a.scores) % 16 == 0 && a.token_stride % 4 == 0 &&
                   a.head_stride % 4 == 0;
  if (vec) {
    launch<true>(a, rows, stream);
  } else {
    launch<false>(a, rows, stream);
  }
}

}  // namespace tidal::kernels::cuda
