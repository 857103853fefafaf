// SPDX-License-Identifier: Apache-2.0
// Dense causal attention over a paged KV cache, for prefill chunks and batched decode alike:
// each query token attends to positions 0..its own position of its own sequence.
// GQA: query head h reads KV head h / (num_heads / num_kv_heads).
#pragma once

#include "runtime/tensor.h"

namespace tidal::kernels {

struct PagedAttentionParams {
  TensorView out;           // [num_tokens, num_heads, head_dim], written
  TensorView q;             // [num_tokens, num_heads, head_dim], post-RoPE
  TensorView k_cache;       // [num_pages, page_size, num_kv_heads, head_dim], post-RoPE keys
  TensorView v_cache;       // [num_pages, page_size, num_kv_heads, head_dim]
  TensorView block_tables;  // [num_seqs, max_pages] i32
  TensorView seq_ids;       // [num_tokens] i32, block-table row of each query token
  TensorView positions;     // [num_tokens] i32, the query's position; keys 0..position attended
  float scale = 0.0f;       // softmax scale; Default (0): 1 / sqrt(head_dim)
  // Optional (data null: not written). [num_tokens, num_heads, max_len] f32: the pre-softmax
  // scaled scores q.k * scale at positions 0..position, for a selection layer's top-k
  // (reference/TIDALDECODE.md §1.2); entries past the position are untouched.
  TensorView logits;
};

void paged_attention(const PagedAttentionParams& p);

namespace ref {
void paged_attention(const PagedAttentionParams& p);
}  // namespace ref

}  // namespace tidal::kernels
