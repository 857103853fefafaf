// SPDX-License-Identifier: Apache-2.0
// Writes new tokens' keys and values into the paged KV cache of one layer.
// Layout (DESIGN.md §5): a cache is [num_pages, page_size, num_kv_heads, head_dim]; a sequence
// owns the pages its block-table row lists, and position p lives in page table[p / page_size],
// slot p % page_size.
#pragma once

#include "runtime/tensor.h"

namespace tidal::kernels {

// k_cache, v_cache: [num_pages, page_size, num_kv_heads, head_dim], written
// block_tables:     [num_seqs, max_pages] i32, page ids per sequence
// seq_ids:          [num_tokens] i32, the block-table row of each token
// positions:        [num_tokens] i32, each < max_pages * page_size
// k, v:             [num_tokens, num_kv_heads, head_dim]
void paged_kv_append(TensorView k_cache, TensorView v_cache, TensorView block_tables,
                     TensorView seq_ids, TensorView positions, TensorView k, TensorView v);

namespace ref {
void paged_kv_append(TensorView k_cache, TensorView v_cache, TensorView block_tables,
                     TensorView seq_ids, TensorView positions, TensorView k, TensorView v);
}  // namespace ref

}  // namespace tidal::kernels
