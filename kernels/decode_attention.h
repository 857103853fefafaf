// SPDX-License-Identifier: Apache-2.0
// Decode attention for a whole batch in one launch, whatever its mix of policies: each decode
// token attends, per its role in this layer (kernels/token_role.h), either densely over
// positions 0..n-1 of its sequence, or over the positions of its lists (TidalDecode's sparse
// layers, reference/TIDALDECODE.md §1.5; Quest's chosen pages). Dense and sparse attention are
// one kernel family: a row's positions are a range or a list. Selecting tokens also get their
// pre-softmax logits written in the same pass over K (§1.2), and every row's log-sum-exp.
//   o_h = sum_j softmax_j(q_h . k_j * scale) v_j   over the row's positions j
// GQA: query head h reads KV head h / (num_heads / num_kv_heads); a list-attending token with L
// lists reads list h / (num_heads / L) (L = num_heads: per-query-head lists; L = num_kv_heads:
// per-KV-head; L = 1: one shared list).
// On the GPU: split-K (flash-decoding) over the row's positions, the query heads that share a KV
// head and a position source served by one read of each K/V row, then a merge of the splits.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/token_role.h"
#include "runtime/stream.h"
#include "runtime/tensor.h"

namespace tidal::kernels {

struct DecodeAttentionParams {
  TensorView out;           // [num_tokens, num_heads, head_dim], written
  TensorView q;             // [num_tokens, num_heads, head_dim], post-RoPE
  TensorView k_cache;       // [num_pages, page_size, num_kv_heads, head_dim], post-RoPE keys
  TensorView v_cache;       // [num_pages, page_size, num_kv_heads, head_dim]
  TensorView block_tables;  // [num_rows, max_pages] i32
  TensorView seq_ids;       // [num_tokens] i32, block-table row of each token
  TensorView lengths;       // [num_tokens] i32, n >= 1: positions 0..n-1 are cached (n-1: itself)
  TensorView roles;         // [num_tokens] u8 TokenRole in this layer
  TensorView indices;       // [num_tokens, max_lists, max_budget] i32 positions (< n), ascending;
                            //   read for kSparse / kQuest tokens
  TensorView counts;        // [num_tokens, max_lists] i32, >= 1 valid entries per used list
  TensorView num_lists;     // [num_tokens] i32, L of a list-attending token; L divides num_heads
  // Written for selecting tokens (kSelect / kReselect) at positions 0..n-1: q.k * scale (f32).
  // May be empty (data null) when no token selects. [num_tokens, num_heads, max_len] f32.
  TensorView logits;
  // Optional: [num_tokens, num_heads, max_len] f16 (max_len >= n). With it, a selecting token
  // whose lists a group of heads shares (has_group_lists(num_lists[t], num_heads)) has its logits
  // written here instead, each f32 q.k * scale rounded to f16 (to nearest even; beyond +-65504,
  // infinite), and `logits` left as it was for that token: they only feed head_group_probs, and
  // half the bytes is what a selection layer at 2^20 positions spends most on beyond its K/V
  // reads (reference/TIDALDECODE.md §8.2: logits "in fp16/fp32").
  TensorView logits16 = {};
  // Optional (data null: not written). [num_tokens, num_heads] f32: log(sum_j exp(q.k_j * scale))
  // over the row's positions (natural log), for per-KV-head / shared selection scores.
  TensorView lse;
  float scale = 0.0f;      // softmax scale; Default (0): 1 / sqrt(head_dim)
  int64_t num_splits = 0;  // GPU split-K width (lists_only: the cluster's); Default (0): chosen
                           // from the shapes and SM count
  // FP8 caches (u8 e4m3 codes, kernels/paged_kv_common.h): the rows' scales,
  // f32 [num_pages, num_kv_heads, page_size]. Default: empty, for caches of q's dtype.
  TensorView k_scale = {};
  TensorView v_scale = {};
  // Optional (GPU): i32, at least num_tokens * num_heads elements, all zero, kept by the caller
  // across calls (a workspace that persists, never shared by concurrent launches). With it, the
  // last split block to finish a (token, head) merges that head's splits, so no merge launch
  // follows the split kernel (MHA shapes, where a block serves one head; GQA shapes keep the
  // merge launch); the counters are zero again when the launch ends. Ignored on the CPU.
  TensorView merge_counters = {};
  // Optional: [num_tokens] i32, 0 <= prior_lens[t] <= lengths[t]: positions below it hold K/V
  // rows that no launch of this step writes (they were cached by earlier steps; the engine's step
  // plan sets it: the token's own position, or the first position a correction chunk of its
  // sequence rewrites beside it). With it, the GPU's tensor-core kernel starts its plan, page and
  // list lookups and its first stages of those rows before its programmatic wait
  // (kernels/pdl.cuh), overlapping the kernels before it. That relies on the launch order the
  // engine keeps: the plan arrays are host copies, block tables and committed lists (and their
  // rows) are each followed by an ordinary launch before any decode attention reads them. Quest
  // tokens read their lists after the wait. Results do not depend on it. Ignored on the CPU.
  TensorView prior_lens = {};
  // Optional hints (GPU; results never depend on them, only the launch's shape). lists_only:
  // no token reads a dense range in this launch (every one attends lists: a sparse layer). The
  // tensor-core kernel may then run each run's row as one thread-block cluster of a few splits
  // that merge in distributed shared memory: no partials and no merge launch, where a short
  // list's call is mostly their fixed cost. By default on FP8 caches (clusters of 8; 16-bit ones
  // measured slower in the step), or of num_splits (2..16) when set; TIDAL_ATTN_CLUSTER in the
  // environment sets the size (0: none). head_lists: some token may have a list per query head
  // under GQA; such launches keep the wave-filling splits. decode_attention.cu has the numbers.
  bool lists_only = false;
  bool head_lists = false;
  // GPU, lists-only launches on the SIMT kernel (MHA, or GQA head lists, on 16-bit caches at
  // head_dim 64 / 128): the steps of K/V rows its shared-memory ring keeps in flight (0: none, a
  // step's rows loaded after the math of the one before; at most 2). Default (-1): chosen
  // (TIDAL_ATTN_RING in the environment overrides it). Results never depend on it.
  int ring_stages = -1;
  // Optional (GPU): [num_tokens, max_lists, max_budget] i32, kSparse tokens' lists as cache rows:
  // `indices` resolved under this launch's block tables and prior_lens (kernels/cache_rows.h;
  // CommitSelectionParams::rows writes them). The SIMT kernel's ring launches read them in place
  // of indices and the block tables, a dependent lookup less before the first loads and none in
  // the loop; other launches, and the CPU, read indices. Results do not depend on it, provided
  // the rows were resolved with prior_lens no higher than this launch's (an entry marked as
  // cached is loaded before the programmatic wait). TIDAL_ATTN_ROWS=0 in the environment
  // ignores it.
  TensorView rows = {};
};

// Bytes of scratch the GPU launch needs (split partials); 0 on the CPU. Depends only on the
// shapes of `p` (data may be null), so a workspace can be planned before any tensor exists.
size_t decode_attention_workspace_size(const DecodeAttentionParams& p);

// The thread-block cluster size the GPU launch of `p` takes (DecodeAttentionParams::lists_only),
// 0 for none and on the CPU: for tests and benchmarks.
int decode_attention_cluster_size(const DecodeAttentionParams& p);

// workspace: at least decode_attention_workspace_size(p) bytes on p's device (may be empty on
// the CPU).
void decode_attention(const DecodeAttentionParams& p, TensorView workspace, Stream stream);

namespace ref {
void decode_attention(const DecodeAttentionParams& p);
}  // namespace ref

namespace cuda {
size_t decode_attention_workspace_size(const DecodeAttentionParams& p);
void decode_attention(const DecodeAttentionParams& p, TensorView workspace, Stream stream);
int decode_attention_cluster_size(const DecodeAttentionParams& p);
}  // namespace cuda

}  // namespace tidal::kernels
