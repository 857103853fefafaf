// SPDX-License-Identifier: Apache-2.0
// Agreeing on shared selection lists across tensor-parallel ranks, the approximate variant
// (DESIGN.md §6): each rank holds only some heads, so its aggregated scores are partial. Each
// rank turns its local top-k (positions and their partial scores) into candidates, the
// candidates of every rank are all-gathered, and every rank merges them into one score row by
// the same rule: a position's score is the sum of the scores the ranks that proposed it gave it
// (in rank order), -inf when none did. topk_per_row then selects from that row exactly as on one
// rank (K-1 best of 0..n-2, ties to the lower position, plus n-1), so every rank holds identical
// lists. The exact variant all-reduces the whole score row instead and needs no op here.
#pragma once

#include <cstdint>

#include "kernels/token_role.h"
#include "runtime/stream.h"
#include "runtime/tensor.h"

namespace tidal::kernels {

struct ListCandidatesParams {
  // [num_tokens, max_candidates, 2] i32, written for every token: for a selecting token whose
  // agreement equals `match`, entry k < counts[t, 0] is (lists[t, 0, k], the bits of f32
  // scores[t, 0, lists[t, 0, k]]); every other entry is (-1, 0).
  TensorView candidates;
  TensorView lists;   // [num_tokens, max_lists, max_budget] i32, the local top-k (list 0 is read)
  TensorView counts;  // [num_tokens, max_lists] i32, each <= max_candidates for matching tokens
  TensorView scores;  // [num_tokens, num_heads, max_len] f32; row 0 holds the partial scores
  TensorView roles;   // [num_tokens] u8
  TensorView agreement;  // [num_tokens] u8
  uint8_t match = 0;
};

struct MergeCandidatesParams {
  // [num_tokens, num_heads, max_len] f32: for a selecting token whose agreement equals `match`,
  // row 0 at positions 0..n-1 becomes the merged scores (every other row and token untouched).
  TensorView scores;
  TensorView candidates;  // [num_ranks, num_tokens, max_candidates, 2] i32, all-gathered
  TensorView lengths;     // [num_tokens] i32, n
  TensorView roles;       // [num_tokens] u8
  TensorView agreement;   // [num_tokens] u8
  uint8_t match = 0;
  // [num_tokens] u8, written: roles[t] for the merged tokens, kDense for every other token, so a
  // topk_per_row over it re-selects only the merged tokens.
  TensorView merged_roles;
};

void list_candidates(const ListCandidatesParams& p, Stream stream);
void merge_candidates(const MergeCandidatesParams& p, Stream stream);

namespace ref {
void list_candidates(const ListCandidatesParams& p);
void merge_candidates(const MergeCandidatesParams& p);
}  // namespace ref

namespace cuda {
void list_candidates(const ListCandidatesParams& p, Stream stream);
void merge_candidates(const MergeCandidatesParams& p, Stream stream);
}  // namespace cuda

}  // namespace tidal::kernels
