// SPDX-License-Identifier: Apache-2.0
// kernel_bench's gather ceiling: the K and V rows a list decode-attention call reads (each query
// head's list of positions over a paged cache, DESIGN.md §5's layout), read by the simplest
// kernel that can: every row once, all of a thread's loads issued before any is used, nothing
// computed but an XOR of the words (so nothing is optimized away and the result checks exactly).
// What it reaches against the copy is what such scattered rows allow; decode attention's
// list rows are rated against it (issue 9: "gather attention at K = 2048 >= 70% of the
// bandwidth its bytes need"). A benchmark kernel, not an op of the engine.
#pragma once

#include <cstdint>

#include "runtime/stream.h"

namespace tidal::bench {

struct GatherCeilingArgs {
  const void* k = nullptr;  // [pages, page_size, kv_heads, row_bytes]
  const void* v = nullptr;
  // [pages_of_the_row] i32: the row's block table; null: list entries are cache rows
  // (page * page_size + slot) already, with no table to look up (the rows alone).
  const int32_t* block_table = nullptr;
  const int32_t* lists = nullptr;  // [heads, budget] positions (or cache rows)
  uint32_t* out = nullptr;         // [heads, blocks_per_head]: each block's XOR of its words
  int64_t heads = 0, kv_heads = 0, budget = 0, page_size = 0;
  int64_t row_bytes = 0;  // a multiple of 16
};

// Blocks per head: each block reads kRowsPerBlock list entries' K and V rows.
int64_t gather_ceiling_blocks_per_head(const GatherCeilingArgs& a);
// Host pointers: the reference (and the CPU case's run).
void gather_ceiling_host(const GatherCeilingArgs& a);
#if TIDAL_WITH_CUDA
// Device pointers, on `stream`.
void gather_ceiling_cuda(const GatherCeilingArgs& a, Stream stream);
#endif

}  // namespace tidal::bench
