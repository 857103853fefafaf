// SPDX-License-Identifier: Apache-2.0
// Quest (reference/TIDALDECODE.md §5): per page and KV head, the element-wise min and max of the
// post-RoPE keys, maintained on append; per query head, an upper bound of q.k over each page,
// U = sum_i max(q_i * max_i, q_i * min_i); and the expansion of chosen pages into token
// positions. The metadata pages are the KV cache's own pages (Quest page size == KV page size).
// A decode step runs: quest_page_scores -> topk_per_row (pages) -> expand_pages ->
// decode_attention over the positions, each once for the whole batch (kQuest tokens only).
#pragma once

#include <cstdint>

#include "kernels/token_role.h"
#include "runtime/stream.h"
#include "runtime/tensor.h"

namespace tidal::kernels {

struct QuestMetadataParams {
  TensorView key_max;       // [num_pages, num_kv_heads, head_dim], the cache dtype, updated
  TensorView key_min;       // [num_pages, num_kv_heads, head_dim], updated
  TensorView block_tables;  // [num_rows, max_pages] i32
  TensorView seq_ids;       // [num_tokens] i32
  TensorView positions;     // [num_tokens] i32
  TensorView k;             // [num_tokens, num_kv_heads, head_dim] post-RoPE keys just appended
  int64_t page_size = 16;   // the KV cache's
  // The cache stores keys as FP8 (kernels/paged_kv_common.h): fold each key row as the cache
  // holds it (quantized and dequantized, exact in the bounds' dtype for f32 and bf16), so the
  // bounds bound the keys attention reads. The bounds stay in the activations' dtype.
  bool fp8_keys = false;
};

// Folds the appended keys into their pages' bounds, as if token by token in order: a token at
// slot 0 of a page starts it fresh, later slots take the element-wise max / min. Requires: a
// sequence's tokens appear in increasing position order; tokens sharing a page in one call are
// consecutive (a prefill chunk).
void quest_metadata_update(const QuestMetadataParams& p, Stream stream);

struct QuestPageScoresParams {
  // [num_tokens, num_heads, max_pages] f32: out[t, h, p] = U for every page p < num_pages - 1
  // of a kQuest token, num_pages = ceil(n / page_size). Other entries are left as they are.
  TensorView out;
  TensorView q;             // [num_tokens, num_heads, head_dim]
  TensorView key_max;       // [num_pages, num_kv_heads, head_dim]
  TensorView key_min;       // [num_pages, num_kv_heads, head_dim]
  TensorView block_tables;  // [num_rows, max_pages] i32
  TensorView seq_ids;       // [num_tokens] i32
  TensorView lengths;       // [num_tokens] i32, n
  TensorView roles;         // [num_tokens] u8; only kQuest tokens are scored
  int64_t page_size = 16;
};

void quest_page_scores(const QuestPageScoresParams& p, Stream stream);

struct ExpandPagesParams {
  // [num_tokens, max_lists, max_budget] i32, written for lists l < num_lists[t] of kQuest tokens:
  // the positions of the list's pages in order (the current page cut at n - 1).
  TensorView positions;
  TensorView counts;        // [num_tokens, max_lists] i32, written
  TensorView pages;         // [num_tokens, max_lists, max_page_budget] i32 ascending page numbers
  TensorView page_counts;   // [num_tokens, max_lists] i32
  TensorView lengths;       // [num_tokens] i32, n
  TensorView num_lists;     // [num_tokens] i32
  TensorView roles;         // [num_tokens] u8; only kQuest tokens are expanded
  int64_t page_size = 16;
};

// Requires: page_counts * page_size <= max_budget for every expanded list.
void expand_pages(const ExpandPagesParams& p, Stream stream);

namespace ref {
void quest_metadata_update(const QuestMetadataParams& p);
void quest_page_scores(const QuestPageScoresParams& p);
void expand_pages(const ExpandPagesParams& p);
}  // namespace ref

namespace cuda {
void quest_metadata_update(const QuestMetadataParams& p, Stream stream);
void quest_page_scores(const QuestPageScoresParams& p, Stream stream);
void expand_pages(const ExpandPagesParams& p, Stream stream);
}  // namespace cuda

}  // namespace tidal::kernels
