// SPDX-License-Identifier: Apache-2.0
// Sparse lists as resolved cache rows (CommitSelectionParams::rows, DecodeAttentionParams::rows).
// A selection's commit resolves each new list entry, a position j of its token's sequence, to the
// paged cache's row that holds it, page * page_size + j % page_size with the page from the
// step's block table (the same for every layer of a step), so the sparse layers' decode
// attention reads the row itself: no block-table lookup before its first loads, none in its loop.
// An entry also says whether a launch of the step writes that row (positions >= prior_lens[t]),
// whose loads must wait for the kernels before (kernels/pdl.cuh):
//   r >= 0  row r, cached by an earlier step
//   -1      no row: a position, or its page, out of range (skipped, as the position would be)
//   -2 - r  row r, written by this step
#pragma once

#include <cstdint>

#include "kernels/host_device.h"

namespace tidal::kernels {

constexpr int32_t kNoCacheRow = -1;

// Whether every row of a cache of num_pages pages of page_size rows has an entry (-2 - row fits
// i32). decode_attention refuses rows over a larger cache; the engine reads positions there.
constexpr bool cache_rows_fit(int64_t num_pages, int64_t page_size) {
  return num_pages * page_size < (int64_t(1) << 31) - 2;
}

// The entry of position j of a token of length n (positions 0..n-1 cached) whose sequence's
// block-table row is `table` (its page i at table[i * stride]; n pages' worth readable). Rows
// past cache_rows_fit's bound resolve to kNoCacheRow.
TIDAL_HOST_DEVICE int32_t resolve_cache_row(const int32_t* table, int64_t stride, int32_t j,
                                            int32_t n, int32_t page_size, int32_t prior) {
  if (j < 0 || j >= n) return kNoCacheRow;
  const int32_t page = table[int64_t(j / page_size) * stride];
  if (page < 0) return kNoCacheRow;
  const int64_t row = int64_t(page) * page_size + j % page_size;
  if (row > INT32_MAX - 2) return kNoCacheRow;
  return j >= prior ? int32_t(-2 - row) : int32_t(row);
}

// The row an entry names (-1 for kNoCacheRow), and whether it predates the step.
TIDAL_HOST_DEVICE int32_t cache_row(int32_t entry) { return entry >= 0 ? entry : -2 - entry; }
TIDAL_HOST_DEVICE bool cache_row_predates_step(int32_t entry) { return entry >= kNoCacheRow; }

// Host: the entries of one list of `budget` slots whose first `count` hold positions (the rest,
// and any slot past a count out of 0..budget, kNoCacheRow). The CPU commit, its tests and
// kernel_bench resolve lists with it; the GPU commit resolves in its own threads.
template <typename Position>
void resolve_cache_rows(const int32_t* table, int64_t stride, const Position* list, int64_t count,
                        int64_t budget, int32_t n, int32_t page_size, int32_t prior,
                        int32_t* rows) {
  for (int64_t i = 0; i < budget; ++i) {
    rows[i] = i < count ? resolve_cache_row(table, stride, int32_t(list[i]), n, page_size, prior)
                        : kNoCacheRow;
  }
}

}  // namespace tidal::kernels
