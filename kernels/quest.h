// SPDX-License-Identifier: Apache-2.0
// Quest (reference/TIDALDECODE.md §5): per page and KV head, the element-wise min and max of the
// post-RoPE keys, maintained on append; per query head, an upper bound of q.k over each page,
// U = sum_i max(q_i * max_i, q_i * min_i); and the expansion of chosen pages into token
// positions. The metadata pages are the KV cache's own pages (Quest page size == KV page size).
#pragma once

#include "runtime/tensor.h"

namespace tidal::kernels {

// Folds the appended keys into their pages' bounds: a token at slot 0 of a page starts it
// fresh, later slots take the element-wise max / min.
// key_max, key_min: [num_pages, num_kv_heads, head_dim] f32, updated
// block_tables:     [num_seqs, max_pages] i32; page_size is the KV cache's
// seq_ids, positions: [num_tokens] i32
// k:                [num_tokens, num_kv_heads, head_dim] post-RoPE keys
void quest_metadata_update(TensorView key_max, TensorView key_min, TensorView block_tables,
                           TensorView seq_ids, TensorView positions, TensorView k,
                           int64_t page_size);

// Page bounds for decode tokens: out[t, h, p] = U for every full page p < positions[t] /
// page_size of token t's sequence (entries from the current page on are untouched).
// out: [num_tokens, num_heads, max_pages] f32; q: [num_tokens, num_heads, head_dim]
void quest_page_scores(TensorView out, TensorView q, TensorView key_max, TensorView key_min,
                       TensorView block_tables, TensorView seq_ids, TensorView positions,
                       int64_t page_size);

// Token positions of chosen pages: for each (token, list), the positions of its pages in
// order, the current page cut at positions[t]. Pages must be ascending.
// positions_out: [num_tokens, num_lists, max_positions] i32; counts_out [num_tokens, num_lists]
// pages: [num_tokens, num_lists, page_budget] i32 logical page numbers; page_counts likewise
void expand_pages(TensorView positions_out, TensorView counts_out, TensorView pages,
                  TensorView page_counts, TensorView positions, int64_t page_size);

namespace ref {
void quest_metadata_update(TensorView key_max, TensorView key_min, TensorView block_tables,
                           TensorView seq_ids, TensorView positions, TensorView k,
                           int64_t page_size);
void quest_page_scores(TensorView out, TensorView q, TensorView key_max, TensorView key_min,
                       TensorView block_tables, TensorView seq_ids, TensorView positions,
                       int64_t page_size);
void expand_pages(TensorView positions_out, TensorView counts_out, TensorView pages,
                  TensorView page_counts, TensorView positions, int64_t page_size);
}  // namespace ref

}  // namespace tidal::kernels
