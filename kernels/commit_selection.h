// SPDX-License-Identifier: Apache-2.0
// Makes a selection layer's new lists the ones later sparse layers read, and counts position
// persistence (reference/TIDALDECODE.md §1: how much of the earlier layer's list the re-selection
// layer keeps) into per-sequence counters on the device, so statistics never need a read-back
// inside a step.
#pragma once

#include "kernels/cache_rows.h"
#include "kernels/token_role.h"
#include "runtime/stream.h"
#include "runtime/tensor.h"

namespace tidal::kernels {

struct CommitSelectionParams {
  TensorView lists;       // [num_tokens, max_lists, max_budget] i32, overwritten for selecting tokens
  TensorView counts;      // [num_tokens, max_lists] i32, likewise
  TensorView new_lists;   // [num_tokens, max_lists, max_budget] i32, this layer's top-k (ascending)
  TensorView new_counts;  // [num_tokens, max_lists] i32
  TensorView num_lists;   // [num_tokens] i32, lists of each token
  TensorView roles;       // [num_tokens] u8; kSelect and kReselect tokens are committed
  TensorView seq_ids;     // [num_tokens] i32, the counter row of each token
  // [num_rows, 2] i64, added to for kReselect tokens: [0] positions of the replaced lists that
  // the new lists keep, [1] positions of the replaced lists (both summed over the lists).
  TensorView overlap;
  // Optional: [num_tokens, max_lists, max_budget] i32, written for selecting tokens: each new
  // list entry resolved to the cache row that holds it (kernels/cache_rows.h), kNoCacheRow past
  // the count, for the sparse layers' decode attention (DecodeAttentionParams::rows). With it:
  TensorView rows = {};
  TensorView block_tables = {};  // [num_rows, max_pages] i32, the step's (seq_ids index its rows)
  TensorView lengths = {};       // [num_tokens] i32, n: positions 0..n-1 cached
  TensorView prior_lens = {};    // optional [num_tokens] i32 (DecodeAttentionParams); none: every
                                 // row counts as written by the step
  int64_t page_size = 0;
};

void commit_selection(const CommitSelectionParams& p, Stream stream);

namespace ref {
void commit_selection(const CommitSelectionParams& p);
}  // namespace ref

namespace cuda {
void commit_selection(const CommitSelectionParams& p, Stream stream);
}  // namespace cuda

}  // namespace tidal::kernels
