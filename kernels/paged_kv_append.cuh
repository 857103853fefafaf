// SPDX-License-Identifier: Apache-2.0
// The cache slot of an appended token, shared by paged_kv_append's kernels and the QKV GEMV that
// appends in its epilogue (kernels/linear_gemv.cu, linear_qkv_append). Only .cu files include this.
#pragma once

#include <cstdint>
#include <cstdio>

#include "kernels/paged_kv_append.h"

namespace tidal::kernels::cuda {

// A step's append plan as the kernels read it.
struct AppendArgs {
  const int32_t* block_tables;  // [num_rows, max_pages], strides bt_stride0 / bt_stride1
  int64_t bt_stride0, bt_stride1;
  int64_t num_rows, max_pages;
  const int32_t* seq_ids;    // [num_tokens], stride seq_stride
  const int32_t* positions;  // [num_tokens], stride pos_stride
  int64_t seq_stride, pos_stride;
  int64_t num_pages, page_size;
  int64_t token_words;  // words of one token's keys (num_kv_heads * head_dim elements)
};

// The plan of p (token_words left 0: the caller sets it for its word size).
inline AppendArgs make_append_args(const PagedKvAppendParams& p) {
  AppendArgs a;
  a.block_tables = static_cast<const int32_t*>(p.block_tables.data);
  a.bt_stride0 = p.block_tables.stride[0];
  a.bt_stride1 = p.block_tables.stride[1];
  a.num_rows = p.block_tables.size(0);
  a.max_pages = p.block_tables.size(1);
  a.seq_ids = static_cast<const int32_t*>(p.seq_ids.data);
  a.positions = static_cast<const int32_t*>(p.positions.data);
  a.seq_stride = p.seq_ids.stride[0];
  a.pos_stride = p.positions.stride[0];
  a.num_pages = p.k_cache.size(0);
  a.page_size = p.k_cache.size(1);
  a.token_words = 0;
  return a;
}

// The cache row (page * page_size + slot) of token t. A sequence row, position or page id outside
// the cache is a bug in the step plan (ref:: dies on it): the thread that is `reporter` prints it,
// and every thread that finds it traps instead of writing another sequence's pages.
__device__ __forceinline__ int64_t append_slot(const AppendArgs& a, int64_t t, bool reporter) {
  const int32_t seq = a.seq_ids[t * a.seq_stride];
  const int32_t pos = a.positions[t * a.pos_stride];
  const int64_t block = pos >= 0 ? int64_t(pos) / a.page_size : -1;
  int32_t page = -1;
  if (seq >= 0 && seq < a.num_rows && block >= 0 && block < a.max_pages) {
    page = a.block_tables[seq * a.bt_stride0 + block * a.bt_stride1];
  }
  if (page < 0 || page >= a.num_pages) {
    if (reporter) {
      printf(
          "tidal paged_kv_append: token %lld (sequence row %d, position %d) maps to page %d, "
          "outside the cache of %lld pages or the block table\n",
          (long long)t, seq, pos, page, (long long)a.num_pages);
    }
    __trap();
  }
  return int64_t(page) * a.page_size + int64_t(pos) % a.page_size;
}

}  // namespace tidal::kernels::cuda
