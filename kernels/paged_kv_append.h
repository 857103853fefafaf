// SPDX-License-Identifier: Apache-2.0
// Writes new tokens' keys and values into the paged KV cache of one layer.
// Layout (DESIGN.md §5): a cache is [num_pages, page_size, num_kv_heads, head_dim]; a sequence
// owns the pages its block-table row lists, and position p lives in page table[p / page_size],
// slot p % page_size.
#pragma once

#include "runtime/stream.h"
#include "runtime/tensor.h"

namespace tidal::kernels {

struct PagedKvAppendParams {
  TensorView k_cache;       // [num_pages, page_size, num_kv_heads, head_dim], written
  TensorView v_cache;       // [num_pages, page_size, num_kv_heads, head_dim], written
  TensorView block_tables;  // [num_rows, max_pages] i32, page ids per sequence row
  TensorView seq_ids;       // [num_tokens] i32, the block-table row of each token
  TensorView positions;     // [num_tokens] i32, each < max_pages * page_size
  TensorView k;             // [num_tokens, num_kv_heads, head_dim], the activations' dtype
  TensorView v;             // [num_tokens, num_kv_heads, head_dim]
  // FP8 caches (u8 e4m3 codes, kernels/paged_kv_common.h): [num_pages, num_kv_heads, page_size]
  // f32, written with each row's scale. Default: empty, for caches of the activations' dtype.
  TensorView k_scale = {};
  TensorView v_scale = {};
  // Optional: rotary_embedding first, in the same launch on the GPU (kernels/rotary_embedding.h:
  // q and k rotated in place at `positions`, then k appended). Default: empty, no rotation.
  TensorView rope_q = {};         // [num_tokens, num_heads, head_dim], rotated in place
  TensorView rope_inv_freq = {};  // [head_dim / 2] f32
  // Optional, linear_qkv_append on the GPU with an FP8 cache only (ignored elsewhere): i32, at
  // least num_tokens * num_kv_heads * 2 elements, all zero, kept by the caller across launches (a
  // workspace that persists, never shared by concurrent launches; each launch leaves it zero).
  // With it the decode shapes append to an FP8 cache in the QKV GEMV's own launch (the blocks of
  // a head meet through these counters to quantize its row whole); without it, in a launch of
  // their own.
  TensorView append_counters = {};
  // Optional hint, linear_qkv_append's GEMV on the GPU only (results never depend on it): true
  // when positions, seq_ids, block_tables and rope_inv_freq were written, and visible, before the
  // kernel before this launch started (an ordinary launch separates their writers from it, as the
  // engine's step keeps: model/llama.cc). The GEMV then reads its angles and slots before its
  // programmatic wait (kernels/pdl.cuh), beside its first weight loads, instead of in its tail.
  bool plan_complete = false;
};

// The FP8 copy of a whole host cache [num_pages, page_size, num_kv_heads, head_dim] of any float
// dtype, row by row as paged_kv_append writes it: codes (u8, the cache's shape) and scales (f32
// [num_pages, num_kv_heads, page_size]). For tests and benchmarks that build caches directly.
void quantize_kv_cache(const TensorView& cache, TensorView codes, TensorView scales);

// FP8 caches: each (token, KV head) row is quantized on its own (quantize_e4m3_row). With rope_q
// set, the result is exactly rotary_embedding(rope_q, k, positions, rope_inv_freq) followed by
// the append.
// Two tokens writing the same slot (padding tokens of a graph bucket) leave either one there.
void paged_kv_append(const PagedKvAppendParams& p, Stream stream);

// The checks paged_kv_append makes of p (dies with a message on a bad shape or dtype), for ops
// that append in their own launch (linear_qkv_append).
void check_paged_kv_append(const PagedKvAppendParams& p);

namespace ref {
void paged_kv_append(const PagedKvAppendParams& p);
}  // namespace ref

namespace cuda {
void paged_kv_append(const PagedKvAppendParams& p, Stream stream);
}  // namespace cuda

}  // namespace tidal::kernels
