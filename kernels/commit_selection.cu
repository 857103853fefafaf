// SPDX-License-Identifier: Apache-2.0
// commit_selection on the GPU: one block per (list, token). A kReselect token's block first
// counts, for its list, how many positions of the old list the new one keeps (binary search in
// the ascending new list, staged in shared memory: 11 probes of global memory one after another
// took 25 us for K = 2048 on an H200) and adds (kept, old count) to its sequence's counters;
// then, after a barrier (every old entry has been read), every selecting token's block copies
// the new list and count over the old ones (and, with CommitSelectionParams::rows, writes each new
// entry's cache row: one block-table read an entry). A few KiB per list: latency-bound and tiny.
#include <algorithm>

#include "kernels/commit_selection.h"
#include "kernels/cuda_common.cuh"

namespace tidal::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxStaged = 8192;  // new-list entries staged in shared memory (32 KiB); past it, the
                                  // search reads global memory

// True when `x` is among the first `n` entries of the ascending `list`.
__device__ __forceinline__ bool contains(const int32_t* list, int32_t n, int32_t x) {
  int32_t lo = 0, hi = n;  // search [lo, hi)
  while (lo < hi) {
    const int32_t mid = lo + (hi - lo) / 2;
    const int32_t v = list[mid];
    if (v == x) return true;
    if (v < x) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return false;
}

// CommitSelectionParams::rows and what resolving them reads (rows null: not written).
struct ResolveArgs {
  int32_t* rows = nullptr;               // [num_tokens, max_lists, budget]
  const int32_t* block_tables = nullptr;  // [table_rows, max_pages]
  const int32_t* lengths = nullptr;       // [num_tokens]
  const int32_t* prior_lens = nullptr;    // [num_tokens] or null
  int64_t bt_stride0 = 0, bt_stride1 = 0, max_positions = 0;  // max_pages * page_size
  int32_t table_rows = 0, page_size = 1;
};

// Grid (max_lists, num_tokens).
__global__ void __launch_bounds__(kThreads)
    commit_selection_kernel(int32_t* lists,               // [num_tokens, max_lists, budget]
                            int32_t* counts,              // [num_tokens, max_lists]
                            const int32_t* new_lists,     // [num_tokens, max_lists, budget]
                            const int32_t* new_counts,    // [num_tokens, max_lists]
                            const int32_t* num_lists,     // [num_tokens]
                            const uint8_t* roles,         // [num_tokens]
                            const int32_t* seq_ids,       // [num_tokens]
                            unsigned long long* overlap,  // [num_rows, 2]
                            int max_lists, int budget, int num_rows, int staged_capacity,
                            ResolveArgs res) {
  __shared__ int warp_kept[kThreads / 32];
  const int l = blockIdx.x, t = blockIdx.y;
  const auto role = TokenRole(roles[t]);
  if (!is_selecting(role)) return;
  const int32_t used = num_lists[t];
  const int32_t seq = seq_ids[t];
  if (used < 1 || used > max_lists || l >= used || seq < 0 || seq >= num_rows) return;
  const int64_t li = int64_t(t) * max_lists + l;
  int32_t* old_list = lists + li * budget;
  const int32_t* new_list = new_lists + li * budget;
  const int32_t new_count = new_counts[li];

  if (role == TokenRole::kReselect) {
    const int32_t old_count = max(0, min(counts[li], budget));
    const int32_t search_n = max(0, min(new_count, budget));
    extern __shared__ int32_t staged[];  // kMaxStaged entries when the launch gave them
    const bool stage = search_n <= kMaxStaged && staged_capacity >= search_n;
    if (stage) {
      for (int32_t i = threadIdx.x; i < search_n; i += kThreads) staged[i] = new_list[i];
      __syncthreads();
    }
    const int32_t* search = stage ? staged : new_list;
    int kept = 0;
    for (int32_t i = threadIdx.x; i < old_count; i += kThreads) {
      kept += contains(search, search_n, old_list[i]) ? 1 : 0;
    }
    kept = __reduce_add_sync(0xffffffffu, kept);
    if ((threadIdx.x & 31) == 0) warp_kept[threadIdx.x >> 5] = kept;
    __syncthreads();
    if (threadIdx.x == 0) {
      int total = 0;
      for (int w = 0; w < kThreads / 32; ++w) total += warp_kept[w];
      atomicAdd(&overlap[2 * int64_t(seq)], static_cast<unsigned long long>(total));
      atomicAdd(&overlap[2 * int64_t(seq) + 1], static_cast<unsigned long long>(old_count));
    }
  }
  __syncthreads();  // the old list and count are read before anything overwrites them
  if (res.rows != nullptr) {  // CommitSelectionParams::rows, from the new list
    int32_t* rows = res.rows + li * budget;
    const bool in_table = seq < res.table_rows;
    const int32_t* table = res.block_tables + int64_t(in_table ? seq : 0) * res.bt_stride0;
    const int32_t n = int32_t(min(int64_t(res.lengths[t]), res.max_positions));
    const int32_t prior = res.prior_lens != nullptr ? res.prior_lens[t] : 0;
    const int32_t used = max(0, min(new_count, budget));
    for (int32_t i = threadIdx.x; i < budget; i += kThreads) {
      rows[i] = in_table && i < used ? resolve_cache_row(table, res.bt_stride1, new_list[i], n,
                                                         res.page_size, prior)
                                     : kNoCacheRow;
    }
  }
  for (int32_t i = threadIdx.x; i < budget; i += kThreads) old_list[i] = new_list[i];
  if (threadIdx.x == 0) counts[li] = new_count;
}

// Launched the ordinary way right after the commit: it starts only once the commit has
// completed, and every later kernel of the stream starts after it. So the committed lists are
// visible to the decode attention of later layers before its programmatic wait
// (DecodeAttentionParams::prior_lens), which a programmatic kernel right after the commit, able
// to start as its blocks exit, would not guarantee.
__global__ void lists_committed_kernel() {}

ResolveArgs resolve_args(const CommitSelectionParams& p) {
  ResolveArgs r;
  if (p.rows.data == nullptr) return r;
  r.rows = p.rows.data_as<int32_t>();
  r.block_tables = p.block_tables.data_as<int32_t>();
  r.lengths = p.lengths.data_as<int32_t>();
  r.prior_lens = p.prior_lens.data != nullptr ? p.prior_lens.data_as<int32_t>() : nullptr;
  r.bt_stride0 = p.block_tables.stride[0];
  r.bt_stride1 = p.block_tables.stride[1];
  r.max_positions = p.block_tables.size(1) * p.page_size;
  r.table_rows = int32_t(p.block_tables.size(0));
  r.page_size = int32_t(p.page_size);
  return r;
}

}  // namespace

void commit_selection(const CommitSelectionParams& p, Stream stream) {
  TIDAL_NVTX_SCOPE("commit_selection");
  const int64_t tokens = p.lists.size(0), max_lists = p.lists.size(1), budget = p.lists.size(2);
  if (tokens == 0 || max_lists == 0) return;
  TIDAL_CHECK(tokens <= 65535 && budget < (int64_t(1) << 31),
              "commit_selection: the CUDA grid takes at most 65535 tokens");
  // Shared memory for the staged new list: the budget's entries, up to kMaxStaged (within the
  // 48 KiB a launch gets without opting in).
  const int staged = int(std::min<int64_t>(budget, kMaxStaged));
  commit_selection_kernel<<<dim3(unsigned(max_lists), unsigned(tokens)), kThreads,
                            size_t(staged) * sizeof(int32_t), raw_stream(stream)>>>(
      p.lists.data_as<int32_t>(), p.counts.data_as<int32_t>(), p.new_lists.data_as<int32_t>(),
      p.new_counts.data_as<int32_t>(), p.num_lists.data_as<int32_t>(), p.roles.data_as<uint8_t>(),
      p.seq_ids.data_as<int32_t>(),
      reinterpret_cast<unsigned long long*>(p.overlap.data_as<int64_t>()), int(max_lists),
      int(budget), int(p.overlap.size(0)), staged, resolve_args(p));
  check_launch("commit_selection_kernel", stream);
  lists_committed_kernel<<<1, 1, 0, raw_stream(stream)>>>();
  check_launch("lists_committed_kernel", stream);
}

}  // namespace tidal::kernels::cuda
