// SPDX-License-Identifier: Apache-2.0
// Device code of decode_attention (included by decode_attention.cu only): the per-token plan
// (which positions a query head attends, how a row is cut into splits) and the split kernel.
//
// Split kernel, one block per (split, run of heads, token), kThreads threads:
//   - a "run" is heads_per_block consecutive query heads of one KV head. The block serves the
//     run in passes, one per position source: a range row (dense, select) is one pass over all
//     the run's heads; list rows are one pass per list the run touches (L <= num_kv_heads: one;
//     per-query-head lists under GQA: one per head). Each K/V row a pass reads serves every head
//     of the pass: the pass keeps all their q vectors in registers (GQA's one read per group).
//   - a thread group of TG = head_dim / VEC threads owns one K/V row at a time, each thread one
//     16-byte vector of it (VEC elements); a warp holds 32 / TG groups; a step of the block
//     covers TILE = GROUPS * kRowsInFlight rows of the split's chunk (all their K and V loads
//     issued before any math, their list entries and pages looked up a step or two ahead), group
//     g taking rows g * kRowsInFlight .. + kRowsInFlight - 1 of it under MHA (a selecting row's
//     logits then leave a group as one 16-byte store) and rows g, g + GROUPS, ... for runs of
//     several heads; each group has its own fp32 online softmax in registers. No barrier inside
//     the loop; the groups' (m, l, o) are combined through shared memory at the end.
//   - the split's partial (o / l, m + log l) goes to the workspace, or straight to `out` and `lse`
//     when the split covers the whole row (one split, or a row shorter than a chunk);
//     decode_attention_merge_kernel combines the splits of the other rows.
// This kernel serves MHA, f32 and the small head_dims; 16-bit GQA runs at head_dim 64 / 128 take
// the tensor-core kernel of decode_attention_mma.cuh, which shares the plan and the partials.
// FP8 caches (KT = uint8_t, e4m3 codes with a scale per (token, KV head) row): a thread loads the
// codes of its VEC elements (VEC bytes), and each row's scales multiply its score (K) and its
// weight in O (V).
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/cache_rows.h"
#include "kernels/cuda_common.cuh"
#include "kernels/fp8_e4m3.cuh"
#include "kernels/mma_common.cuh"
#include "kernels/pdl.cuh"
#include "kernels/token_role.h"

namespace tidal::kernels::cuda::attention {

constexpr int kThreads = 128;     // split kernel block
constexpr int kRowsInFlight = 4;  // K/V rows per thread group per step
constexpr int kMaxHeadsPerBlock = 4;
constexpr int kMinChunk = 64;    // fewest positions a split takes (rounded up to a tile)
constexpr int kBlocksPerSm = 4;  // resident split blocks per SM (register-bound)
// A stage of the SIMT kernel's shared-memory ring (RING > 0): each thread's kRowsInFlight K and V
// vectors of one step, 16 bytes each.
constexpr int kRingStageBytes = kThreads * kRowsInFlight * 2 * 16;

// The step plan and cache geometry, as raw pointers and integers (shared by both kernels).
struct Plan {
  const int32_t* block_tables;  // [num_rows, max_pages], strides bt_stride0 / bt_stride1
  const int32_t* seq_ids;       // [num_tokens]
  const int32_t* lengths;       // [num_tokens]
  const uint8_t* roles;         // [num_tokens] TokenRole
  const int32_t* indices;       // [num_tokens, max_lists, max_budget]
  const int32_t* counts;        // [num_tokens, max_lists]
  const int32_t* num_lists;     // [num_tokens]
  const int32_t* prior_lens;    // [num_tokens] or null (DecodeAttentionParams::prior_lens)
  const int32_t* rows;          // like indices, or null (DecodeAttentionParams::rows)
  int64_t bt_stride0, bt_stride1;
  int64_t num_pages;  // cache rows (page ids must be below)
  int32_t num_rows, max_pages;
  int32_t page_size, page_shift;  // page_shift >= 0 when page_size is a power of two
  int32_t num_heads, num_kv_heads, heads_per_block;
  int32_t max_lists, max_budget;
  int32_t num_splits, tile;  // tile: positions a block covers per step
};

// Where query head h of token t reads its positions, and which of the heads h..h_limit-1 share
// that source. len == 0: nothing to attend (a malformed plan; outputs stay unwritten).
struct RowSource {
  int32_t len;          // positions in the row
  int32_t span;         // what the splits cut: len for a range, the list's capacity (max_budget)
  const int32_t* list;  // the list (ascending positions), or null: the range 0..len-1
  int32_t n;            // the token's length; list positions must lie in 0..n-1
  int32_t h_end;        // heads [h, h_end) share the source
  bool selecting;       // write logits (range rows of kSelect / kReselect tokens)
  bool group_logits;    // selecting, lists a group's: the logits go to logits16 when it is given
};

// The token's plan words are read together (one round trip, not one per branch); a list's count
// is the only load that waits on them. Lists are cut into splits by their capacity, not their
// count, so a split's list entries can be read beside the count (decode_attention_mma.cuh): a
// split's first entry is known once num_lists is.
__device__ __forceinline__ RowSource row_source(const Plan& p, int t, int h, int h_limit) {
  RowSource r{0, 0, nullptr, 0, h + 1, false, false};
  const int32_t seq = p.seq_ids[t];
  const auto role = TokenRole(p.roles[t]);
  const int32_t length = p.lengths[t];
  const int32_t lists = p.num_lists[t];
  // Positions past the block table would read a page id out of bounds: cap them.
  const int64_t cap = int64_t(p.max_pages) * p.page_size;
  const int32_t n = int32_t(min(int64_t(length), cap));
  if (seq < 0 || seq >= p.num_rows || n < 1) return r;
  r.n = n;
  if (is_dense_range(role)) {
    r.len = r.span = n;
    r.h_end = h_limit;
    r.selecting = is_selecting(role);
    r.group_logits = r.selecting && has_group_lists(lists, p.num_heads);
  } else if (role == TokenRole::kSparse || role == TokenRole::kQuest) {
    if (lists < 1 || lists > p.max_lists || p.num_heads % lists != 0) return r;
    const int32_t heads_per_list = p.num_heads / lists, l = h / heads_per_list;
    const int64_t row = int64_t(t) * p.max_lists + l;
    r.len = max(0, min(p.counts[row], p.max_budget));
    r.span = r.len > 0 ? p.max_budget : 0;
    r.list = p.indices + row * p.max_budget;
    r.h_end = min(h_limit, (l + 1) * heads_per_list);
  }
  return r;
}

// Positions per split: an even share of the span rounded up to a tile, at least kMinChunk
// (rounded likewise). Short rows use few splits; blocks past the row's end exit at once.
__device__ __forceinline__ int32_t split_chunk(int32_t span, int32_t num_splits, int32_t tile) {
  const int32_t share = int32_t((int64_t(span) + num_splits - 1) / num_splits);
  const int32_t min_chunk = (kMinChunk + tile - 1) / tile * tile;
  return max((share + tile - 1) / tile * tile, min_chunk);
}

// Splits of head h of token t that hold keys (the first ones: chunks are cut from 0).
__device__ __forceinline__ int active_splits(const Plan& p, int t, int h) {
  const RowSource src = row_source(p, t, h, h + 1);
  if (src.len <= 0) return 0;
  const int32_t chunk = split_chunk(src.span, p.num_splits, p.tile);
  return int((int64_t(src.len) + chunk - 1) / chunk);
}

// Shared floats merge_splits needs: the weights (the split count rounded up to float4), then
// threads * 4 partial sums (16-byte aligned).
__host__ __device__ constexpr int merge_smem_floats(int splits, int threads) {
  return (splits + 3) / 4 * 4 + threads * 4;
}

// A thread's first loads of merge_splits: its first batch of partials (splits sg, sg +
// split_groups, ..., kMergeBatch of them) and the lse of split threadIdx.x. 5 a batch, not more:
// the merge kernel keeps to 48 registers.
constexpr int kMergeBatch = 5;
struct MergeFirst {
  float4 v[kMergeBatch];
  float lse;
};

// Loads a row's MergeFirst for all its num_splits splits (zeros and -inf past them). The merge
// kernel calls it before the plan says how many splits hold keys, so the plan's round trips
// overlap these (merge_splits masks what lies past `active`): volatile, so the compiler cannot
// sink the loads below the kernel's early exit.
__device__ __forceinline__ MergeFirst merge_first(int64_t row, int num_splits, int head_dim,
                                                  const float* part_o, const float* part_lse) {
  MergeFirst f;
  const int lanes = head_dim / 4, split_groups = int(blockDim.x) / lanes;
  const int lane = threadIdx.x % lanes, sg = threadIdx.x / lanes;
  const float* row_o = part_o + row * num_splits * head_dim;
#pragma unroll
  for (int u = 0; u < kMergeBatch; ++u) {
    const int s = sg + u * split_groups;
    f.v[u] = make_float4(0, 0, 0, 0);
    if (s < num_splits) {
      const float* src = row_o + int64_t(s) * head_dim + lane * 4;
      asm volatile("ld.global.cg.v4.f32 {%0, %1, %2, %3}, [%4];"
                   : "=f"(f.v[u].x), "=f"(f.v[u].y), "=f"(f.v[u].z), "=f"(f.v[u].w)
                   : "l"(src));
    }
  }
  f.lse = -INFINITY;
  if (int(threadIdx.x) < num_splits) {
    asm volatile("ld.global.cg.f32 %0, [%1];"
                 : "=f"(f.lse)
                 : "l"(part_lse + row * num_splits + threadIdx.x));
  }
  return f;
}

// Combines the `active` splits of one (token, head) row into out and lse (when not null):
// weights exp(lse_s - max), o = sum w_s o_s / sum w_s. Every thread of the block takes part, as
// (split group, 4 dims); head_dim / 4 divides blockDim.x. smem: merge_smem_floats(num_splits,
// blockDim.x) floats, 16-byte aligned; scratch: 32 floats. The partials are read through L2: in
// the split kernel's own merge, other blocks of the launch wrote them. `first`: this thread's
// merge_first loads of the row, or null to load them here. Ends with a barrier, so the caller
// may reuse smem.
template <typename T>
__device__ void merge_splits(int64_t row, int active, int num_splits, int head_dim,
                             const float* part_o,    // [tokens, heads, num_splits, head_dim]
                             const float* part_lse,  // [tokens, heads, num_splits]
                             T* out, float* lse, float* smem, float* scratch,
                             const MergeFirst* first = nullptr) {
  float* const weights = smem;
  float* const sums = smem + (num_splits + 3) / 4 * 4;
  const int threads = int(blockDim.x);
  const float* row_lse = part_lse + row * num_splits;
  const float* row_o = part_o + row * num_splits * head_dim;
  const int lanes = head_dim / 4, split_groups = threads / lanes;
  const int lane = threadIdx.x % lanes, sg = threadIdx.x / lanes;
  // This thread's partials (splits sg, sg + split_groups, ...), kMergeBatch at a time; the first
  // batch loads beside the lse's, so a row of up to kMergeBatch * split_groups splits (40 at
  // head_dim 128 and 256 threads: a 33-split row) waits one round trip for both (the weights'
  // block reductions run while they land). A split's lse is read once (the thread's first in a
  // register, for both passes).
  auto load_batch = [&](int s0, float4(&dst)[kMergeBatch]) {
#pragma unroll
    for (int u = 0; u < kMergeBatch; ++u) {
      const int s = s0 + u * split_groups;
      dst[u] = s < active ? __ldcg(reinterpret_cast<const float4*>(row_o + s * head_dim) + lane)
                          : make_float4(0, 0, 0, 0);
    }
  };
  float4 v[kMergeBatch];
  float lse0;
  if (first != nullptr) {
#pragma unroll
    for (int u = 0; u < kMergeBatch; ++u) {
      v[u] = sg + u * split_groups < active ? first->v[u] : make_float4(0, 0, 0, 0);
    }
    lse0 = first->lse;
  } else {
    load_batch(sg, v);
    lse0 = int(threadIdx.x) < active ? __ldcg(row_lse + threadIdx.x) : -INFINITY;
  }
  auto split_lse = [&](int s) { return s == int(threadIdx.x) ? lse0 : __ldcg(row_lse + s); };

  float mx = -INFINITY;
  for (int s = threadIdx.x; s < active; s += threads) mx = fmaxf(mx, split_lse(s));
  mx = block_max(mx, scratch);
  float total = 0.0f;
  for (int s = threadIdx.x; s < active; s += threads) {
    weights[s] = __expf(split_lse(s) - mx);
    total += weights[s];
  }
  total = block_sum(total, scratch);  // its barriers also publish `weights`

  // In split order, so the sums are those of a one-at-a-time loop: the first split's weighted
  // partial, then fmaf of each next one (a split past `active` adds 0 * 0).
  float4 acc = make_float4(0, 0, 0, 0);  // lanes divides the block: every thread has a slot
  for (int s0 = sg; s0 < active; s0 += kMergeBatch * split_groups) {
    if (s0 != sg) load_batch(s0, v);
#pragma unroll
    for (int u = 0; u < kMergeBatch; ++u) {
      const int s = s0 + u * split_groups;
      const float w = s < active ? weights[s] : 0.0f;
      if (s == sg) {
        acc = make_float4(w * v[u].x, w * v[u].y, w * v[u].z, w * v[u].w);
      } else {
        acc.x = fmaf(w, v[u].x, acc.x);
        acc.y = fmaf(w, v[u].y, acc.y);
        acc.z = fmaf(w, v[u].z, acc.z);
        acc.w = fmaf(w, v[u].w, acc.w);
      }
    }
  }
  *reinterpret_cast<float4*>(sums + sg * head_dim + lane * 4) = acc;
  __syncthreads();
  for (int d = threadIdx.x; d < head_dim; d += threads) {
    float o = 0.0f;
    for (int k = 0; k < split_groups; ++k) o += sums[k * head_dim + d];
    out[row * head_dim + d] = from_float<T>(o / total);
  }
  if (threadIdx.x == 0 && lse != nullptr) lse[row] = mx + logf(total);
  __syncthreads();
}

// merge_splits with one warp (the tensor-core kernel's own merge: a warp a head, the run's heads
// at once, no block barrier). Lane l owns dims l * D/32 ..; the lse of splits l and l + 32 stay in
// registers (more splits are re-read), and the first kBatch partials load beside them, so a row of
// up to kBatch splits costs one L2 round trip and each further kBatch one more. The same formula as
// merge_splits (weights exp(lse_s - max), o = sum w_s o_s / sum w_s), summed in split order.
template <typename T, int D>
__device__ void merge_splits_warp(int64_t row, int active, int num_splits, const float* part_o,
                                  const float* part_lse, T* out, float* lse) {
  static_assert(D % 64 == 0, "whole float2 / float4 a lane");
  constexpr int V = D / 32, kBatch = V == 4 ? 16 : 32;
  using Vec = std::conditional_t<V == 4, float4, float2>;
  const int lane = threadIdx.x % 32;
  const float* row_lse = part_lse + row * num_splits;
  const Vec* row_o = reinterpret_cast<const Vec*>(part_o + row * num_splits * D) + lane;
  const int stride = D / V;  // Vecs between splits
  auto load = [&](int s, float(&v)[V]) {
    const Vec x = __ldcg(row_o + int64_t(s) * stride);
    memcpy(v, &x, sizeof(x));
  };
  float v[kBatch][V];
#pragma unroll
  for (int u = 0; u < kBatch; ++u) {
    if (u < active) load(u, v[u]);
  }
  const float l0 = lane < active ? __ldcg(row_lse + lane) : -INFINITY;
  const float l1 = lane + 32 < active ? __ldcg(row_lse + lane + 32) : -INFINITY;
  float mx = fmaxf(l0, l1);
  for (int s = lane + 64; s < active; s += 32) mx = fmaxf(mx, __ldcg(row_lse + s));
  mx = warp_max(mx);
  const float w0 = __expf(l0 - mx), w1 = __expf(l1 - mx);  // 0 past active
  float total = w0 + w1;
  for (int s = lane + 64; s < active; s += 32) total += __expf(__ldcg(row_lse + s) - mx);
  total = warp_sum(total);
  auto weight = [&](int s) {  // warp-uniform s
    if (s < 32) return __shfl_sync(0xffffffffu, w0, s);
    if (s < 64) return __shfl_sync(0xffffffffu, w1, s - 32);
    return __expf(__ldcg(row_lse + s) - mx);
  };

  float acc[V] = {};
  for (int s0 = 0; s0 < active; s0 += kBatch) {
    if (s0 > 0) {
#pragma unroll
      for (int u = 0; u < kBatch; ++u) {
        if (s0 + u < active) load(s0 + u, v[u]);
      }
    }
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      if (s0 + u >= active) break;
      const float w = weight(s0 + u);
#pragma unroll
      for (int i = 0; i < V; ++i) acc[i] = fmaf(w, v[u][i], acc[i]);
    }
  }
  float o[V];
#pragma unroll
  for (int i = 0; i < V; ++i) o[i] = acc[i] / total;
  store_floats(out + row * D + lane * V, o);
  if (lane == 0 && lse != nullptr) lse[row] = mx + logf(total);
}

// Both split kernels are programmatic dependent launches (kernels/pdl.cuh): the split grid is
// scheduled while the QKV GEMV and its KV append drain and waits for them in the kernel; the
// merge launch after it is an ordinary one (decode_attention.cu). Everything a kernel of the
// chain wrote (q, the appended K/V rows and FP8 scales, the partials) is read after the wait with
// coherent loads; the plan's lists and block tables through L2 (__ldcg), since the grid may have
// started before their writers' stores were visible.
// Where a split kernel lets the next launch be scheduled (pdl_launch_dependents): at its start,
// after its K/V loop (the tensor-core kernel; the SIMT one then triggers at its exit), or at its
// exit. With a merge launch after it (an ordinary launch, which holds the o projection back until
// the split grid completes) the split kernel triggers at its start; without one (own merge,
// cluster merge, one split) the o projection's programmatic launch follows the split kernel
// directly (decode_attention.cu says where it is let in).
constexpr int kTriggerAtStart = 0, kTriggerAfterLoop = 1, kTriggerAtExit = 2;

// KT: the caches' element, T or uint8_t (FP8 e4m3 codes, with k_scale and v_scale).
template <typename T, typename KT = T>
struct SplitArgs {
  Plan plan;
  T* out;             // [num_tokens, num_heads, head_dim] (written when num_splits == 1)
  const T* q;         // [num_tokens, num_heads, head_dim]
  const KT* k_cache;  // [num_pages, page_size, num_kv_heads, head_dim]
  const KT* v_cache;  // same
  const float* k_scale = nullptr;  // FP8: [num_pages, num_kv_heads, page_size]
  const float* v_scale = nullptr;  // same
  float* logits;                   // [num_tokens, num_heads, max_len] or null
  __half* logits16 = nullptr;      // same, f16: group_logits rows' (DecodeAttentionParams)
  float* lse;                      // [num_tokens, num_heads] or null
  float* part_o;                   // [num_tokens, num_heads, num_splits, head_dim] (num_splits > 1)
  float* part_lse;                 // [num_tokens, num_heads, num_splits]
  // Zeroed counters, one per (token, run of heads): the last split block of a run merges it
  // (last_split_block, merge_run; the SIMT kernel, runs of one head); null:
  // decode_attention_merge_kernel follows.
  int* merge_counters = nullptr;
  // The tensor-core kernel launched in clusters of num_splits blocks along x: the splits of a run
  // merge in distributed shared memory (cluster_merge); no partials, no merge launch.
  bool cluster_merge = false;
  int trigger = kTriggerAtStart;  // where the kernel lets the next launch in (kTrigger*)
  int64_t max_len;                // logits' (and logits16's) last dimension
  float scale;
};

// Where a selecting row writes its logits: f32 (DecodeAttentionParams::logits), or f16 for a token
// whose lists a group of heads shares when logits16 is given; null: no logits (not selecting, or
// no buffer for its kind).
struct LogitRow {
  void* row = nullptr;  // position 0 of the head's row
  bool f16 = false;

  template <typename T, typename KT>
  __device__ __forceinline__ static LogitRow of(const SplitArgs<T, KT>& a, const RowSource& src,
                                                int t, int num_heads, int h) {
    LogitRow r;
    if (!src.selecting) return r;
    const int64_t at = (int64_t(t) * num_heads + h) * a.max_len;
    if (src.group_logits && a.logits16 != nullptr) {
      r.row = a.logits16 + at;
      r.f16 = true;
    } else if (a.logits != nullptr) {
      r.row = a.logits + at;
    }
    return r;
  }
  __device__ __forceinline__ explicit operator bool() const { return row != nullptr; }
  __device__ __forceinline__ void store(int64_t j, float x) const {
    if (f16) {
      static_cast<__half*>(row)[j] = __float2half_rn(x);
    } else {
      static_cast<float*>(row)[j] = x;
    }
  }
  // Positions j and j + 1 in one store: j even, the row's pairs aligned (pairs_aligned).
  __device__ __forceinline__ void store2(int64_t j, float x0, float x1) const {
    if (f16) {
      *reinterpret_cast<__half2*>(static_cast<__half*>(row) + j) = __floats2half2_rn(x0, x1);
    } else {
      *reinterpret_cast<float2*>(static_cast<float*>(row) + j) = make_float2(x0, x1);
    }
  }
  // Every row of both buffers holds its pairs aligned (8 bytes f32, 4 bytes f16).
  template <typename T, typename KT>
  __device__ __forceinline__ static bool pairs_aligned(const SplitArgs<T, KT>& a) {
    return a.max_len % 2 == 0 && reinterpret_cast<uintptr_t>(a.logits) % 8 == 0 &&
           reinterpret_cast<uintptr_t>(a.logits16) % 4 == 0;
  }
};

// 16 bytes of T as floats (raw: a uint4 loaded through the read-only path).
template <typename T, int N>
__device__ __forceinline__ void unpack(const uint4& raw, float (&out)[N]) {
  static_assert(sizeof(T) * N == 16, "one 16-byte vector");
  T v[N];
  memcpy(v, &raw, 16);
#pragma unroll
  for (int i = 0; i < N; ++i) out[i] = to_float(v[i]);
}

// VEC e4m3 codes (raw: their VEC bytes, in the low words of a uint4) as floats.
template <int N>
__device__ __forceinline__ void unpack_e4m3(const uint4& raw, float (&out)[N]) {
  static_assert(N == 4 || N == 8, "4 or 8 codes");
  const uint32_t w[2] = {raw.x, raw.y};
#pragma unroll
  for (int i = 0; i < N / 2; ++i) {
    const uint32_t pair = e4m3x2_to_f16x2(uint16_t(w[i / 2] >> (16 * (i % 2))));
    __half2 h;
    memcpy(&h, &pair, 4);
    const float2 f = __half22float2(h);
    out[2 * i] = f.x;
    out[2 * i + 1] = f.y;
  }
}

// The VEC elements of a thread at `p` (T: one 16-byte vector; FP8: VEC bytes), streamed (L2
// evict-first: each K/V row is read once).
template <typename KT, int VEC>
__device__ __forceinline__ uint4 load_row_vec(const KT* p) {
  if constexpr (sizeof(KT) * VEC == 16) {
    return __ldcs(reinterpret_cast<const uint4*>(p));
  } else if constexpr (VEC == 8) {
    const uint2 v = __ldcs(reinterpret_cast<const uint2*>(p));
    return make_uint4(v.x, v.y, 0, 0);
  } else {
    static_assert(VEC == 4, "4, 8 or 16 bytes");
    return make_uint4(__ldcs(reinterpret_cast<const unsigned int*>(p)), 0, 0, 0);
  }
}

template <typename T, typename KT, int VEC>
__device__ __forceinline__ void unpack_row_vec(const uint4& raw, float (&out)[VEC]) {
  if constexpr (std::is_same_v<KT, uint8_t>) {
    unpack_e4m3<VEC>(raw, out);
  } else {
    unpack<T>(raw, out);
  }
}

// The split kernels' own merge. Every block of (token t, run blockIdx.y) counts itself once,
// after its partial stores; true in the block that counts last, which then merges the run. Its
// counter is zero again for the next launch. Call with every thread, at the kernel's end.
__device__ __forceinline__ bool last_split_block(int* counters, int t, int* s_flag) {
  __threadfence();  // this thread's partial stores, visible device-wide before the count
  __syncthreads();
  if (threadIdx.x == 0) {
    int* const c = counters + int64_t(t) * gridDim.y + blockIdx.y;
    const bool last = atomicAdd(c, 1) == int(gridDim.x) - 1;
    if (last) atomicExch(c, 0);
    *s_flag = last;
  }
  __syncthreads();
  const bool last = *s_flag != 0;
  if (last) __threadfence();  // ... and the other blocks' stores, seen after their counts
  return last;
}

// Merges each head of the block's run (heads h_first..) that more than one split served.
template <typename T, typename KT>
__device__ void merge_run(const SplitArgs<T, KT>& a, int t, int h_first, int head_dim, float* smem,
                          float* scratch) {
  const Plan& p = a.plan;
  for (int hh = 0; hh < p.heads_per_block; ++hh) {
    const int h = h_first + hh;
    const int active = active_splits(p, t, h);
    if (active <= 1) continue;  // block-uniform: merge_splits' barriers see every thread
    merge_splits(int64_t(t) * p.num_heads + h, active, p.num_splits, head_dim, a.part_o, a.part_lse,
                 a.out, a.lse, smem, scratch);
  }
}

// At most 128 registers (no spills at 4 heads x head_dim 128): 4 blocks per SM for every
// instantiation, which the host's split count assumes.
// RING > 0 (MHA, caches of q's dtype): a step's K/V rows come through a ring of RING stages in
// dynamic shared memory (RING * kRingStageBytes), each thread's own 16-byte vectors copied with
// cp.async: the rows of step s + RING are issued when step s is taken from the ring, before its
// math, so RING steps stay in flight through the math (RING == 0: a step's rows are loaded into
// registers after the math of the step before; nothing loads during the math). No barrier: a
// thread reads back only what it copied.
template <typename T, typename KT, int D, int GMAX, int RING = 0>
__global__ void __launch_bounds__(kThreads, kBlocksPerSm)
    decode_attention_split_kernel(SplitArgs<T, KT> a) {
  constexpr bool kFp8 = std::is_same_v<KT, uint8_t>;
  static_assert(RING == 0 || (GMAX == 1 && !kFp8 && sizeof(KT) * (16 / sizeof(T)) == 16),
                "the ring: MHA, 16-byte vectors of the cache's own type");
  extern __shared__ __align__(16) uint4 attn_ring[];  // RING > 0: [RING][U][2][kThreads]
  constexpr int VEC = 16 / int(sizeof(T));  // elements per 16-byte vector of q
  constexpr int TG = D / VEC;               // threads per K/V row
  static_assert(D % VEC == 0 && TG >= 1 && TG <= 32 && (TG & (TG - 1)) == 0, "head_dim");
  constexpr int RW = 32 / TG;  // rows per warp per step
  constexpr int GROUPS = kThreads / 32 * RW;
  constexpr int U = kRowsInFlight;
  constexpr int TILE = GROUPS * U;  // the host's Plan::tile (chunks are multiples of it)
  // o of every group and head, then combined: GMAX * 4 KiB for 16-bit caches.
  __shared__ __align__(16) float s_o[GMAX][GROUPS][D];  // also the own merge's (host checks)
  __shared__ float s_m[GMAX][GROUPS], s_l[GMAX][GROUPS];

  // The look-ahead costs 8 registers: only MHA's kernel (GMAX 1) has them to spare.
  constexpr bool kAhead = GMAX == 1;

  if (a.trigger == kTriggerAtStart) pdl_launch_dependents();
  const Plan& p = a.plan;
  const int split = blockIdx.x, t = blockIdx.z;
  // The early prologue (MHA: GMAX 1; DecodeAttentionParams::prior_lens): the plan, lookups and
  // this thread's first rows before the wait, when those rows predate the step. Quest tokens
  // wait first (their lists are written just before this launch).
  bool waited = !kAhead || p.prior_lens == nullptr || TokenRole(p.roles[t]) == TokenRole::kQuest;
  if (waited) pdl_wait();
  const int32_t prior = waited ? 0 : p.prior_lens[t];
  const int h_first = blockIdx.y * p.heads_per_block, h_limit = h_first + p.heads_per_block;
  const int lane = threadIdx.x & 31;
  const int gl = lane & (TG - 1);                          // lane within the row's group
  const int group = (threadIdx.x >> 5) * RW + lane / TG;   // row group within the block
  const int64_t row_stride = int64_t(p.num_kv_heads) * D;  // between slots of a page
  const int64_t seq_row = int64_t(p.seq_ids[t]) * p.bt_stride0;
  const float scale = a.scale;
  // float4 logits: every row of them 16-byte aligned (a group's first position is a multiple of U);
  // f16 ones (logits16): four halves, 8-byte aligned.
  static_assert(U == 4, "a group's logits are one float4");
  const bool logit_quads = a.max_len % 4 == 0 && reinterpret_cast<uintptr_t>(a.logits) % 16 == 0;
  const bool logit16_quads =
      a.max_len % 4 == 0 && reinterpret_cast<uintptr_t>(a.logits16) % 8 == 0;

  for (int h = h_first; h < h_limit;) {  // one pass per position source (block-uniform)
    const RowSource src = row_source(p, t, h, h_limit);
    const int h0 = h, ng = src.h_end - h;
    h = src.h_end;
    const int32_t chunk = split_chunk(src.span, p.num_splits, p.tile);
    const int32_t begin = int32_t(min(int64_t(split) * chunk, int64_t(src.len)));
    const int32_t end = int32_t(min(int64_t(begin) + chunk, int64_t(src.len)));
    if (begin >= end) continue;
    const bool final_split = begin == 0 && end == src.len;  // the row's only split: its result
    const int kvh = h0 / (p.num_heads / p.num_kv_heads);
    const int64_t head_off = int64_t(kvh) * D + gl * VEC;
    // The ring's sparse rows (Plan::rows): the list as cache rows, read in place of the positions.
    const int32_t* list = src.list;
    bool resolved = false;
    if constexpr (RING > 0) {
      if (p.rows != nullptr && list != nullptr && TokenRole(p.roles[t]) == TokenRole::kSparse) {
        list = p.rows + (list - p.indices);
        resolved = true;
      }
    }

    // Row u of the step at b: its entry (the position, or the raw list entry; -1 past the
    // chunk), then that entry's block-table entry (resolved rows: the entry itself). Both are
    // looked up ahead (list entries two steps, pages one) and issued before a step's math, so a
    // step's K/V loads wait on neither.
    auto entry = [&](int32_t b, int u) -> int32_t {
      const int32_t i = GMAX == 1 ? b + group * U + u : b + u * GROUPS + group;
      if (i >= end) return -1;
      return list != nullptr ? __ldcg(list + i) : i;
    };
    auto page_of = [&](int32_t j) -> int32_t {
      if constexpr (RING > 0) {
        if (resolved) return j;
      }
      if (j < 0 || j >= src.n) return -1;
      const int32_t page_idx = p.page_shift >= 0 ? j >> p.page_shift : j / p.page_size;
      return __ldcg(p.block_tables + seq_row + int64_t(page_idx) * p.bt_stride1);
    };
    int32_t ent[U], page[U], ent_next[U];
    if constexpr (kAhead) {
#pragma unroll
      for (int u = 0; u < U; ++u) ent[u] = entry(begin, u);
#pragma unroll
      for (int u = 0; u < U; ++u) page[u] = page_of(ent[u]);
#pragma unroll
      for (int u = 0; u < U; ++u) ent_next[u] = entry(begin + TILE, u);
    }
    // The look-ahead moves a step on: the pages of ent_next's step, its entries, and the entries
    // of the step at next_base.
    auto advance = [&](int32_t next_base) {
#pragma unroll
      for (int u = 0; u < U; ++u) {
        page[u] = page_of(ent_next[u]);
        ent[u] = ent_next[u];
        ent_next[u] = entry(next_base, u);
      }
    };

    uint4 kraw[U], vraw[U];
    float ks[U], vs[U];  // FP8: the rows' scales
    int32_t pos[U];
    bool valid[U];
    // The step's rows (ent / page) into registers.
    auto load_rows = [&] {
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int32_t j = ent[u];
        const bool ok = j >= 0 && j < src.n && page[u] >= 0 && page[u] < p.num_pages;
        valid[u] = ok;
        pos[u] = j;
        kraw[u] = vraw[u] = make_uint4(0, 0, 0, 0);
        ks[u] = vs[u] = 0.0f;
        if (ok) {
          const int32_t slot = p.page_shift >= 0 ? j & (p.page_size - 1) : j % p.page_size;
          const int64_t off = (int64_t(page[u]) * p.page_size + slot) * row_stride + head_off;
          kraw[u] = load_row_vec<KT, VEC>(a.k_cache + off);
          vraw[u] = load_row_vec<KT, VEC>(a.v_cache + off);
          if constexpr (kFp8) {
            const int64_t at = (int64_t(page[u]) * p.num_kv_heads + kvh) * p.page_size + slot;
            ks[u] = __ldcg(a.k_scale + at);
            vs[u] = __ldcg(a.v_scale + at);
          }
        }
      }
    };
    // The ring (RING > 0): slot k's word for row u and K (kv 0) or V (1) of this thread; valid rows
    // of each slot as U bits of ring_valid.
    [[maybe_unused]] uint32_t ring_valid = 0;
    [[maybe_unused]] uint64_t policy = 0;
    auto ring_word = [&](int slot, int u, int kv) {
      return attn_ring + ((slot * U + u) * 2 + kv) * kThreads + threadIdx.x;
    };
    // Copies the rows ent / page describe (resolved: page holds the row's entry) into `slot`
    // (invalid ones: none, marked so); one group. Its row check and offset repeat load_rows' on
    // purpose: shared through lambdas, they moved ptxas's allocation of the dense launches' kernel
    // (same registers) and cost llama2-7b `full` at 100K +0.06-0.10 ms a step on an H100
    // (twenty-eighth session, call 105).
    auto ring_issue = [&](int slot) {
      uint32_t bits = 0;
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int32_t j = ent[u];
        int64_t row = -1;  // the cache row
        if (resolved) {
          const int32_t r = cache_row(page[u]);
          if (r >= 0 && int64_t(r) < int64_t(p.num_pages) * p.page_size) row = r;
        } else if (j >= 0 && j < src.n && page[u] >= 0 && page[u] < p.num_pages) {
          const int32_t slot_in_page = p.page_shift >= 0 ? j & (p.page_size - 1) : j % p.page_size;
          row = int64_t(page[u]) * p.page_size + slot_in_page;
        }
        if (row >= 0) {
          bits |= 1u << u;
          const int64_t off = row * row_stride + head_off;
          cp_async_16_hint(smem_u32(ring_word(slot, u, 0)), a.k_cache + off, true, policy);
          cp_async_16_hint(smem_u32(ring_word(slot, u, 1)), a.v_cache + off, true, policy);
        }
      }
      cp_async_commit();
      ring_valid = (ring_valid & ~(((1u << U) - 1) << (slot * U))) | bits << (slot * U);
    };
    // Before the wait: the first step's rows when every one of this thread's predates the step.
    // The wait then depends on them (pdl_wait_after), so ptxas keeps the loads ahead of it. The
    // ring: its first RING steps' copies, each issued before the wait while all of its rows
    // predate the step (cp.async and the wait are ordered asm statements).
    bool preloaded = false;
    if constexpr (RING > 0) {
      policy = l2_evict_first_policy();
#pragma unroll
      for (int k = 0; k < RING; ++k) {
        if (!waited) {
          bool old_rows = true;
#pragma unroll
          for (int u = 0; u < U; ++u) {
            old_rows = old_rows && (resolved ? cache_row_predates_step(ent[u]) : ent[u] < prior);
          }
          if (!old_rows) {
            pdl_wait();
            waited = true;
          }
        }
        ring_issue(k);
        advance(begin + (k + 2) * TILE);
      }
      if (!waited) pdl_wait();
      waited = true;
    } else if (!waited) {
      bool old_rows = true;
#pragma unroll
      for (int u = 0; u < U; ++u) old_rows = old_rows && ent[u] < prior;
      if (old_rows) {
        load_rows();
        uint32_t dep = 0;
#pragma unroll
        for (int u = 0; u < U; ++u) dep ^= kraw[u].x ^ vraw[u].x;
        pdl_wait_after(dep);
        preloaded = true;
      } else {
        pdl_wait();
      }
      waited = true;
    }

    float q[GMAX][VEC], o[GMAX][VEC], m[GMAX], l[GMAX];
#pragma unroll
    for (int g = 0; g < GMAX; ++g) {
      if (g < ng) {
        unpack<T>(*reinterpret_cast<const uint4*>(a.q + (int64_t(t) * p.num_heads + h0 + g) * D +
                                                  gl * VEC),
                  q[g]);
      } else {
#pragma unroll
        for (int e = 0; e < VEC; ++e) q[g][e] = 0.0f;
      }
#pragma unroll
      for (int e = 0; e < VEC; ++e) o[g][e] = 0.0f;
      m[g] = -INFINITY;
      l[g] = 0.0f;
    }

    for (int32_t base = begin, step = 0; base < end; base += TILE, ++step) {
      if constexpr (RING > 0) {
        // Take this step from its slot, then refill the slot with step + RING (ent / page) and
        // look a step further ahead: RING steps in flight through this step's math.
        const int slot = step % RING;
        cp_async_wait<RING - 1>();
        const uint32_t bits = ring_valid >> (slot * U);
#pragma unroll
        for (int u = 0; u < U; ++u) {
          valid[u] = (bits >> u & 1u) != 0;
          const int32_t i = base + group * U + u;
          pos[u] = src.list == nullptr && i < end ? i : -1;  // (logits: range rows only)
          kraw[u] = valid[u] ? *ring_word(slot, u, 0) : make_uint4(0, 0, 0, 0);
          vraw[u] = valid[u] ? *ring_word(slot, u, 1) : make_uint4(0, 0, 0, 0);
        }
        asm volatile("" ::: "memory");  // the slot's reads stay ahead of its refill
        ring_issue(slot);
        advance(base + (RING + 2) * TILE);
      } else {
        if constexpr (!kAhead) {
#pragma unroll
          for (int u = 0; u < U; ++u) ent[u] = entry(base, u);
#pragma unroll
          for (int u = 0; u < U; ++u) page[u] = page_of(ent[u]);
        }
        if (!preloaded) load_rows();
        preloaded = false;
        if constexpr (kAhead) advance(base + 2 * TILE);  // in flight during this math
      }

      // Scores: partial dots over this thread's VEC dims, summed over the row's TG lanes.
      float s[GMAX][U];
#pragma unroll
      for (int u = 0; u < U; ++u) {
        float k[VEC];
        unpack_row_vec<T, KT, VEC>(kraw[u], k);
#pragma unroll
        for (int g = 0; g < GMAX; ++g) {
          float dot = 0.0f;
          if (g < ng) {
#pragma unroll
            for (int e = 0; e < VEC; ++e) dot = fmaf(q[g][e], k[e], dot);
          }
#pragma unroll
          for (int off = TG / 2; off > 0; off >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, off);
          if constexpr (kFp8) dot *= ks[u];
          s[g][u] = valid[u] ? dot * scale : -INFINITY;
        }
      }

      // Selecting tokens: the pre-softmax logits, from the same read of K. Lane g % TG of the
      // group writes head g: under MHA its U consecutive positions as one store when all are valid
      // (one store where U scalar ones cost the kernel ~8% of its time at 100K, on an H200): a
      // float4, or four halves for a token whose lists a group shares (logits16).
      const bool half = src.group_logits && a.logits16 != nullptr;
      if (half || (src.selecting && a.logits != nullptr)) {
        bool quad = false;
        if constexpr (GMAX == 1) {
          quad = (half ? logit16_quads : logit_quads) && src.list == nullptr &&
                 pos[U - 1] < a.max_len;
#pragma unroll
          for (int u = 0; u < U; ++u) quad = quad && valid[u];
        }
        const int64_t row0 = (int64_t(t) * p.num_heads + h0) * a.max_len;
        if (quad) {
          if (gl == 0 && half) {
            const __half2 lo = __floats2half2_rn(s[0][0], s[0][1]);
            const __half2 hi = __floats2half2_rn(s[0][2], s[0][3]);
            uint2 w;
            memcpy(&w.x, &lo, 4);
            memcpy(&w.y, &hi, 4);
            *reinterpret_cast<uint2*>(a.logits16 + row0 + pos[0]) = w;
          } else if (gl == 0) {
            *reinterpret_cast<float4*>(a.logits + row0 + pos[0]) =
                make_float4(s[0][0], s[0][1], s[0][2], s[0][3]);
          }
        } else {
#pragma unroll
          for (int u = 0; u < U; ++u) {
#pragma unroll
            for (int g = 0; g < GMAX; ++g) {
              if (g < ng && valid[u] && gl == g % TG && pos[u] < a.max_len) {
                const int64_t at = row0 + int64_t(g) * a.max_len + pos[u];
                if (half) {
                  a.logits16[at] = __float2half_rn(s[g][u]);
                } else {
                  a.logits[at] = s[g][u];
                }
              }
            }
          }
        }
      }

      // Online softmax per head over the U rows of this step: s becomes the rows' weights.
#pragma unroll
      for (int g = 0; g < GMAX; ++g) {
        float mx = m[g];
#pragma unroll
        for (int u = 0; u < U; ++u) mx = fmaxf(mx, s[g][u]);
        if (g >= ng || mx == -INFINITY) {  // no valid row yet: exp(-inf - -inf) would be NaN
#pragma unroll
          for (int u = 0; u < U; ++u) s[g][u] = 0.0f;
          continue;
        }
        const float alpha = __expf(m[g] - mx);
        m[g] = mx;
        l[g] *= alpha;
#pragma unroll
        for (int e = 0; e < VEC; ++e) o[g][e] *= alpha;
#pragma unroll
        for (int u = 0; u < U; ++u) {
          s[g][u] = __expf(s[g][u] - mx);
          l[g] += s[g][u];
        }
      }
      // Each V row, converted once, feeds every head of the pass.
#pragma unroll
      for (int u = 0; u < U; ++u) {
        float v[VEC];
        unpack_row_vec<T, KT, VEC>(vraw[u], v);
        if constexpr (kFp8) {
#pragma unroll
          for (int e = 0; e < VEC; ++e) v[e] *= vs[u];
        }
#pragma unroll
        for (int g = 0; g < GMAX; ++g) {
          if (g >= ng) continue;
#pragma unroll
          for (int e = 0; e < VEC; ++e) o[g][e] = fmaf(s[g][u], v[e], o[g][e]);
        }
      }
    }

    if constexpr (RING > 0) cp_async_wait<0>();  // (past the chunk: empty groups) before the
                                                 // next pass's copies reuse the slots
    // Combine the groups' states: lse merge over GROUPS partial softmaxes per head.
#pragma unroll
    for (int g = 0; g < GMAX; ++g) {
      if (g >= ng) continue;
#pragma unroll
      for (int e = 0; e < VEC; ++e) s_o[g][group][gl * VEC + e] = o[g][e];
      if (gl == 0) {
        s_m[g][group] = m[g];
        s_l[g][group] = l[g];
      }
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < ng * D; idx += kThreads) {
      const int g = idx / D, d = idx % D;
      float mx = -INFINITY;
      for (int k = 0; k < GROUPS; ++k) mx = fmaxf(mx, s_m[g][k]);
      float sum = 0.0f, acc = 0.0f;
      for (int k = 0; k < GROUPS; ++k) {
        const float w = s_m[g][k] == -INFINITY ? 0.0f : __expf(s_m[g][k] - mx);
        sum = fmaf(s_l[g][k], w, sum);
        acc = fmaf(s_o[g][k][d], w, acc);
      }
      const int64_t row = int64_t(t) * p.num_heads + h0 + g;
      const float lse = mx + logf(sum);
      if (final_split) {
        a.out[row * D + d] = from_float<T>(acc / sum);
        if (d == 0 && a.lse != nullptr) a.lse[row] = lse;
      } else {
        a.part_o[(row * p.num_splits + split) * D + d] = acc / sum;
        if (d == 0) a.part_lse[row * p.num_splits + split] = lse;
      }
    }
    __syncthreads();  // the next pass reuses the shared arrays
  }
  if (!waited) pdl_wait();  // (a block with no rows: still ordered after the kernel before)
  if (a.merge_counters == nullptr) return;
  if constexpr (GMAX > 1) {
    // The host gives counters to runs of one head only (decode_attention.cu: measured slower on
    // GQA), so these instantiations carry no merge code (it cost them registers, and a spill).
    __trap();
  } else {
    __shared__ int s_last;
    __shared__ float s_scratch[32];
    if (last_split_block(a.merge_counters, t, &s_last)) {
      merge_run(a, t, h_first, D, &s_o[0][0][0], s_scratch);
    }
  }
}

}  // namespace tidal::kernels::cuda::attention
