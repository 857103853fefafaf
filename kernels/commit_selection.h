// SPDX-License-Identifier: Apache-2.0
// Makes a selection layer's new lists the ones later sparse layers read, and counts position
// persistence (reference/TIDALDECODE.md §1: how much of the earlier layer's list the re-selection
// layer keeps) into per-sequence counters on the device, so statistics never need a read-back
// inside a step.
#pragma once

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
};

void commit_selection(const CommitSelectionParams& p, Stream stream);

namespace ref {
void commit_selection(const CommitSelectionParams& p);
}  // namespace ref

namespace cuda {
void commit_selection(const CommitSelectionParams& p, Stream stream);
}  // namespace cuda

}  // namespace tidal::kernels
