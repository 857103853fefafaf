// SPDX-License-Identifier: Apache-2.0
// Dense causal attention for prefill chunks (and correction passes) over the paged KV cache: the
// queries of each sequence are consecutive rows, the last positions of its cached context, and
// each attends to every position up to its own. Variable-length in FlashAttention's style
// (query_starts, one entry per sequence), so several sequences' chunks go in one launch. On the
// GPU: tiled over queries and keys with tensor cores and an online softmax (FlashAttention-2), in
// bounded memory at any context length.
#pragma once

#include <cstdint>

#include "runtime/stream.h"
#include "runtime/tensor.h"

namespace tidal::kernels {

struct PrefillAttentionParams {
  TensorView out;           // [num_tokens, num_heads, head_dim], written
  TensorView q;             // [num_tokens, num_heads, head_dim], post-RoPE
  TensorView k_cache;       // [num_pages, page_size, num_kv_heads, head_dim] (this chunk appended)
  TensorView v_cache;       // [num_pages, page_size, num_kv_heads, head_dim]
  TensorView block_tables;  // [num_rows, max_pages] i32
  // [num_seqs + 1] i32, ascending from 0 to num_tokens: sequence i's queries are rows
  // query_starts[i] .. query_starts[i+1]-1.
  TensorView query_starts;
  TensorView seq_ids;       // [num_seqs] i32, block-table row of sequence i
  // [num_seqs] i32: positions cached for sequence i, its queries included. Query row r of
  // sequence i sits at position context_lens[i] - (query_starts[i+1] - r) and attends to
  // positions 0..that position.
  TensorView context_lens;
  int64_t max_query_len = 0;  // >= every sequence's query count; sizes the GPU grid
  float scale = 0.0f;         // softmax scale; Default (0): 1 / sqrt(head_dim)
  // FP8 caches (u8 e4m3 codes, kernels/paged_kv_common.h): the rows' scales,
  // f32 [num_pages, num_kv_heads, page_size]. Default: empty, for caches of q's dtype.
  TensorView k_scale = {};
  TensorView v_scale = {};
};

void prefill_attention(const PrefillAttentionParams& p, Stream stream);

namespace ref {
void prefill_attention(const PrefillAttentionParams& p);
}  // namespace ref

namespace cuda {
void prefill_attention(const PrefillAttentionParams& p, Stream stream);
}  // namespace cuda

}  // namespace tidal::kernels
