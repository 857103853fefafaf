// SPDX-License-Identifier: Apache-2.0
// Sparse (gather) decode attention: each query head attends only to the token positions of its
// index list, with the softmax renormalised over those positions (reference/TIDALDECODE.md §1.5).
// With L lists per token, head h reads list h / (num_heads / L): L == num_heads is per-query-head
// selection, L == num_kv_heads per-KV-head, L == 1 one shared list.
#pragma once

#include "runtime/tensor.h"

namespace tidal::kernels {

struct GatherAttentionParams {
  TensorView out;           // [num_tokens, num_heads, head_dim], written
  TensorView q;             // [num_tokens, num_heads, head_dim], post-RoPE
  TensorView k_cache;       // [num_pages, page_size, num_kv_heads, head_dim]
  TensorView v_cache;       // [num_pages, page_size, num_kv_heads, head_dim]
  TensorView block_tables;  // [num_seqs, max_pages] i32
  TensorView seq_ids;       // [num_tokens] i32, block-table row of each token
  TensorView indices;       // [num_tokens, num_lists, budget] i32 token positions
  TensorView counts;        // [num_tokens, num_lists] i32, valid entries of each list (>= 1)
  float scale = 0.0f;       // softmax scale; Default (0): 1 / sqrt(head_dim)
};

// Requires: num_heads % num_lists == 0; every listed position already in the cache.
void gather_attention(const GatherAttentionParams& p);

namespace ref {
void gather_attention(const GatherAttentionParams& p);
}  // namespace ref

}  // namespace tidal::kernels
