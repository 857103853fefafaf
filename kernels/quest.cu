// SPDX-License-Identifier: Apache-2.0
// Quest on the GPU (reference/TIDALDECODE.md §5): the page-bound update on append, the page
// scores of kQuest tokens, and the expansion of chosen pages into positions.
//   quest_metadata_update  one thread per (token, KV head, 16-byte slice of head_dim); only the
//                          first token of a run of tokens on one page works, folding the run in
//                          order, so a prefill chunk needs no atomics and keeps the ref's order
//   quest_page_scores      one block per (token, KV head, chunk of pages); a group of `lanes`
//                          threads per page reads its max/min rows once (16-byte loads) and
//                          serves the KV head's G query heads, whose q sits in shared memory
//   expand_pages           one block per (token, list); position e is page e / P, slot e % P
#include "kernels/cuda_common.cuh"
#include "kernels/fp8_e4m3.cuh"
#include "kernels/quest.h"

namespace tidal::kernels::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kPagesPerBlock = 64;  // page chunk of quest_page_scores: ~100 chunks at 100K tokens

// The physical page of logical page `lp` of block-table row `seq`, or -1 where the ref would
// reject the arguments (the device skips rather than reads out of bounds).
struct BlockTable {
  const int32_t* data;  // [num_rows, max_pages] at the strides below
  int64_t row_stride, col_stride;
  int64_t rows, cols, num_pages;  // num_pages: rows of the bounds cache

  __device__ int64_t page(int64_t seq, int64_t lp) const {
    if (seq < 0 || seq >= rows || lp < 0 || lp >= cols) return -1;
    const int32_t id = data[seq * row_stride + lp * col_stride];
    return id >= 0 && id < num_pages ? id : -1;
  }
};

template <typename T, int V>
__device__ __forceinline__ void load_vec(const T* src, float (&out)[V]) {
  if constexpr (V == 1) {
    out[0] = to_float(*src);
  } else {
    load_floats<T, V>(src, out);
  }
}

template <typename T, int V>
__device__ __forceinline__ void store_vec(T* dst, const float (&in)[V]) {
  if constexpr (V == 1) {
    *dst = from_float<T>(in[0]);
  } else {
    store_floats<T, V>(dst, in);
  }
}

template <typename T, int V>
__global__ void __launch_bounds__(kThreads)
    quest_metadata_update_kernel(T* key_max,  // [num_pages, num_kv_heads, head_dim]
                                 T* key_min,  // [num_pages, num_kv_heads, head_dim]
                                 BlockTable table,
                                 const int32_t* seq_ids,    // [num_tokens]
                                 const int32_t* positions,  // [num_tokens]
                                 const T* k,                // [num_tokens, num_kv_heads, head_dim]
                                 int64_t num_tokens, int num_kv_heads, int head_dim,
                                 int page_size, bool fp8_keys) {
  const int vecs = head_dim / V;
  const int64_t id = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  const int64_t t = id / (int64_t(num_kv_heads) * vecs);
  if (t >= num_tokens) return;
  const int h = int(id / vecs % num_kv_heads), d = int(id % vecs) * V;
  const int32_t seq = seq_ids[t], pos = positions[t];
  if (pos < 0) return;
  const int lp = pos / page_size;
  // Only the head of a run (consecutive tokens of one sequence on one page) works.
  if (t > 0 && seq_ids[t - 1] == seq && positions[t - 1] >= 0 &&
      positions[t - 1] / page_size == lp) {
    return;
  }
  const int64_t page = table.page(seq, lp);
  if (page < 0) return;
  const int64_t at = (page * num_kv_heads + h) * head_dim + d;
  float mx[V], mn[V];
  if (pos % page_size != 0) {  // the page holds earlier tokens: fold into its bounds
    load_vec<T, V>(key_max + at, mx);
    load_vec<T, V>(key_min + at, mn);
  }
  for (int64_t u = t; u < num_tokens; ++u) {
    const int32_t p = positions[u];
    if (seq_ids[u] != seq || p < 0 || p / page_size != lp) break;
    float x[V];
    const T* key = k + (u * num_kv_heads + h) * head_dim;
    load_vec<T, V>(key + d, x);
    if (fp8_keys) {  // the key as the FP8 cache holds it: the whole row's scale, then round trip
      float amax = 0.0f;
      for (int i = 0; i < head_dim; ++i) amax = fmaxf(amax, fabsf(to_float(key[i])));
      const float scale = e4m3_row_scale(amax);
#pragma unroll
      for (int e = 0; e < V; ++e) x[e] = e4m3_to_f32(f32_to_e4m3(x[e] / scale)) * scale;
    }
    const bool fresh = p % page_size == 0;
#pragma unroll
    for (int e = 0; e < V; ++e) {  // std::max / std::min as the ref: the old value wins ties
      mx[e] = fresh || mx[e] < x[e] ? x[e] : mx[e];
      mn[e] = fresh || x[e] < mn[e] ? x[e] : mn[e];
    }
  }
  store_vec<T, V>(key_max + at, mx);
  store_vec<T, V>(key_min + at, mn);
}

// Sum over the `lanes` threads of a page group (a power of two <= 32, aligned in the warp).
__device__ __forceinline__ float group_sum(float x, int lanes) {
  const int lane = threadIdx.x & 31;
  const unsigned mask = lanes == 32 ? 0xFFFFFFFFu : ((1u << lanes) - 1u) << (lane & ~(lanes - 1));
  for (int o = lanes / 2; o > 0; o /= 2) x += __shfl_xor_sync(mask, x, o);
  return x;
}

template <typename T, int V>
__global__ void __launch_bounds__(kThreads)
    quest_page_scores_kernel(float* out,        // [num_tokens, num_heads, out_pages]
                             const T* q,        // [num_tokens, num_heads, head_dim]
                             const T* key_max,  // [num_pages, num_kv_heads, head_dim]
                             const T* key_min,  // [num_pages, num_kv_heads, head_dim]
                             BlockTable table,
                             const int32_t* seq_ids,  // [num_tokens]
                             const int32_t* lengths,  // [num_tokens]
                             const uint8_t* roles,    // [num_tokens]
                             int num_heads, int num_kv_heads, int head_dim, int page_size,
                             int64_t out_pages, int64_t page_chunks, int lanes) {
  extern __shared__ float q_shared[];  // [group, head_dim]: the KV head's query heads
  const int64_t t = blockIdx.x / (page_chunks * num_kv_heads);
  const int kvh = int(blockIdx.x / page_chunks % num_kv_heads);
  const int64_t first = blockIdx.x % page_chunks * kPagesPerBlock;
  if (roles[t] != uint8_t(TokenRole::kQuest)) return;
  const int64_t n = lengths[t];
  if (n < 1) return;
  // Full pages before the current one (the current page is always attended, never scored).
  const int64_t full = min((n - 1) / page_size, out_pages);
  if (first >= full) return;
  const int64_t last = min(first + kPagesPerBlock, full);
  const int group = num_heads / num_kv_heads;
  const T* q_rows = q + (t * num_heads + int64_t(kvh) * group) * head_dim;
  for (int i = threadIdx.x; i < group * head_dim; i += kThreads) q_shared[i] = to_float(q_rows[i]);
  __syncthreads();

  const int seq = seq_ids[t];
  const int lane = threadIdx.x % lanes, groups = kThreads / lanes;
  float* out_rows = out + (t * num_heads + int64_t(kvh) * group) * out_pages;
  // One vector per lane covers the row in the common case (head_dim 128: 16 lanes of 8 bf16
  // or 32 lanes of 4 f32): those stay in registers across the group's query heads.
  const bool one = head_dim == lanes * V;
  for (int64_t lp = first + threadIdx.x / lanes; lp < last; lp += groups) {
    const int64_t page = table.page(seq, lp);
    if (page < 0) continue;  // uniform over the page group
    const T* mx = key_max + (page * num_kv_heads + kvh) * head_dim;
    const T* mn = key_min + (page * num_kv_heads + kvh) * head_dim;
    float hi[V], lo[V];
    if (one) {
      load_vec<T, V>(mx + lane * V, hi);
      load_vec<T, V>(mn + lane * V, lo);
    }
    for (int g = 0; g < group; ++g) {
      const float* qg = q_shared + g * head_dim;
      float acc = 0.0f;
      if (one) {
#pragma unroll
        for (int e = 0; e < V; ++e) {
          const float qd = qg[lane * V + e];
          acc += fmaxf(qd * hi[e], qd * lo[e]);
        }
      } else {
        for (int d = lane * V; d < head_dim; d += lanes * V) {
          load_vec<T, V>(mx + d, hi);  // L1 hits after the first query head
          load_vec<T, V>(mn + d, lo);
#pragma unroll
          for (int e = 0; e < V; ++e) acc += fmaxf(qg[d + e] * hi[e], qg[d + e] * lo[e]);
        }
      }
      acc = group_sum(acc, lanes);
      if (lane == 0) out_rows[int64_t(g) * out_pages + lp] = acc;
    }
  }
}

__global__ void __launch_bounds__(kThreads)
    expand_pages_kernel(int32_t* positions,          // [num_tokens, max_lists, max_budget]
                        int32_t* counts,             // [num_tokens, max_lists]
                        const int32_t* pages,        // [num_tokens, max_lists, max_page_budget]
                        const int32_t* page_counts,  // [num_tokens, max_lists]
                        const int32_t* lengths,      // [num_tokens]
                        const int32_t* num_lists,    // [num_tokens]
                        const uint8_t* roles,        // [num_tokens]
                        int max_lists, int max_page_budget, int max_budget, int page_size) {
  const int64_t row = blockIdx.x;  // token * max_lists + list
  const int64_t t = row / max_lists;
  const int l = int(row % max_lists);
  if (roles[t] != uint8_t(TokenRole::kQuest) || l >= num_lists[t]) return;
  const int64_t pos = int64_t(lengths[t]) - 1;
  const int num = page_counts[row];
  if (pos < 0 || num < 0 || num > max_page_budget) return;
  const int32_t* list = pages + row * max_page_budget;
  // Every page but the last is a full page before the current one; the last may be the
  // current page, cut at n - 1.
  int64_t count = 0;
  if (num > 0) {
    const int64_t last = min(int64_t(page_size), pos - int64_t(list[num - 1]) * page_size + 1);
    count = max(int64_t(0), int64_t(num - 1) * page_size + last);
  }
  count = min(count, int64_t(max_budget));
  int32_t* out = positions + row * max_budget;
  for (int e = threadIdx.x; e < max_budget; e += kThreads) {
    out[e] = e < count ? int32_t(int64_t(list[e / page_size]) * page_size + e % page_size) : -1;
  }
  if (threadIdx.x == 0) counts[row] = int32_t(count);
}

BlockTable block_table(const TensorView& block_tables, const TensorView& bounds) {
  return BlockTable{block_tables.data_as<int32_t>(),
                    block_tables.stride[0],
                    block_tables.stride[1],
                    block_tables.size(0),
                    block_tables.size(1),
                    bounds.size(0)};
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <typename T, int V>
void launch_metadata_update(const QuestMetadataParams& p, Stream stream) {
  const int64_t tokens = p.k.size(0);
  const int kv_heads = int(p.k.size(1)), head_dim = int(p.k.size(2));
  const int64_t threads = tokens * kv_heads * (head_dim / V);
  quest_metadata_update_kernel<T, V>
      <<<unsigned(ceil_div<int64_t>(threads, kThreads)), kThreads, 0, raw_stream(stream)>>>(
          static_cast<T*>(p.key_max.data), static_cast<T*>(p.key_min.data),
          block_table(p.block_tables, p.key_max), p.seq_ids.data_as<int32_t>(),
          p.positions.data_as<int32_t>(), static_cast<const T*>(p.k.data), tokens, kv_heads,
          head_dim, int(p.page_size), p.fp8_keys);
  check_launch("quest_metadata_update_kernel", stream);
}

template <typename T>
void launch_metadata_update(const QuestMetadataParams& p, Stream stream) {
  constexpr int kVec = 16 / sizeof(T);
  if (p.k.size(2) % kVec == 0 && aligned16(p.key_max.data) && aligned16(p.key_min.data) &&
      aligned16(p.k.data)) {
    launch_metadata_update<T, kVec>(p, stream);
  } else {
    launch_metadata_update<T, 1>(p, stream);
  }
}

template <typename T, int V>
void launch_page_scores(const QuestPageScoresParams& p, int64_t page_chunks, Stream stream) {
  const int64_t tokens = p.q.size(0), out_pages = p.out.size(2);
  const int heads = int(p.q.size(1)), kv_heads = int(p.key_max.size(1));
  const int head_dim = int(p.q.size(2));
  const size_t smem = size_t(heads / kv_heads) * head_dim * sizeof(float);
  int lanes = 1;  // threads per page: the largest power of two <= min(32, head_dim / V)
  while (lanes * 2 <= 32 && lanes * 2 * V <= head_dim) lanes *= 2;
  const int64_t blocks = tokens * kv_heads * page_chunks;
  quest_page_scores_kernel<T, V><<<unsigned(blocks), kThreads, smem, raw_stream(stream)>>>(
      p.out.data_as<float>(), static_cast<const T*>(p.q.data),
      static_cast<const T*>(p.key_max.data), static_cast<const T*>(p.key_min.data),
      block_table(p.block_tables, p.key_max), p.seq_ids.data_as<int32_t>(),
      p.lengths.data_as<int32_t>(), p.roles.data_as<uint8_t>(), heads, kv_heads, head_dim,
      int(p.page_size), out_pages, page_chunks, lanes);
  check_launch("quest_page_scores_kernel", stream);
}

template <typename T>
void launch_page_scores(const QuestPageScoresParams& p, int64_t page_chunks, Stream stream) {
  constexpr int kVec = 16 / sizeof(T);
  if (p.q.size(2) % kVec == 0 && aligned16(p.key_max.data) && aligned16(p.key_min.data)) {
    launch_page_scores<T, kVec>(p, page_chunks, stream);
  } else {
    launch_page_scores<T, 1>(p, page_chunks, stream);
  }
}

}  // namespace

void quest_metadata_update(const QuestMetadataParams& p, Stream stream) {
  TIDAL_NVTX_SCOPE("quest_metadata_update");
  if (p.k.numel() == 0) return;
  TIDAL_CHECK(p.k.size(0) * p.k.size(1) * p.k.size(2) < (int64_t(1) << 40),
              "quest_metadata_update: too many tokens");
  switch (p.k.dtype) {
    case DType::kF32: launch_metadata_update<float>(p, stream); break;
    case DType::kF16: launch_metadata_update<__half>(p, stream); break;
    case DType::kBF16: launch_metadata_update<__nv_bfloat16>(p, stream); break;
    default: TIDAL_CHECK(false, "quest_metadata_update: unsupported dtype");
  }
}

void quest_page_scores(const QuestPageScoresParams& p, Stream stream) {
  TIDAL_NVTX_SCOPE("quest_page_scores");
  if (p.q.numel() == 0 || p.out.size(2) == 0) return;
  const int64_t group = p.q.size(1) / p.key_max.size(1);
  TIDAL_CHECK(group * p.q.size(2) * int64_t(sizeof(float)) <= 48 * 1024,
              "quest_page_scores: num_heads / num_kv_heads * head_dim too large");
  const int64_t page_chunks = ceil_div<int64_t>(p.out.size(2), kPagesPerBlock);
  TIDAL_CHECK(p.q.size(0) * p.key_max.size(1) * page_chunks < (int64_t(1) << 31),
              "quest_page_scores: grid too large");
  switch (p.q.dtype) {
    case DType::kF32: launch_page_scores<float>(p, page_chunks, stream); break;
    case DType::kF16: launch_page_scores<__half>(p, page_chunks, stream); break;
    case DType::kBF16: launch_page_scores<__nv_bfloat16>(p, page_chunks, stream); break;
    default: TIDAL_CHECK(false, "quest_page_scores: unsupported dtype");
  }
}

void expand_pages(const ExpandPagesParams& p, Stream stream) {
  TIDAL_NVTX_SCOPE("expand_pages");
  const int64_t rows = p.pages.size(0) * p.pages.size(1);
  if (rows == 0) return;
  TIDAL_CHECK(rows < (int64_t(1) << 31), "expand_pages: too many lists");
  expand_pages_kernel<<<unsigned(rows), kThreads, 0, raw_stream(stream)>>>(
      p.positions.data_as<int32_t>(), p.counts.data_as<int32_t>(), p.pages.data_as<int32_t>(),
      p.page_counts.data_as<int32_t>(), p.lengths.data_as<int32_t>(),
      p.num_lists.data_as<int32_t>(), p.roles.data_as<uint8_t>(), int(p.pages.size(1)),
      int(p.pages.size(2)), int(p.positions.size(2)), int(p.page_size));
  check_launch("expand_pages_kernel", stream);
}

}  // namespace tidal::kernels::cuda
