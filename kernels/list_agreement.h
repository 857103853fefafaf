// SPDX-License-Identifier: Apache-2.0
// Agreeing on shared selection lists across tensor-parallel ranks, the approximate variant
// (DESIGN.md §6). Each rank holds only some heads, so its summed scores are partial. Each rank's
// local top-k positions are its candidates; the candidates of every rank are all-gathered; every
// rank then scores every candidate with its partial scores, and one all-reduce of those
// (num_ranks x K values per token, whatever the context length) gives every candidate its whole
// score. The merged row holds those scores at the candidates and -inf elsewhere, and
// topk_per_row selects from it exactly as one rank would (K-1 best of 0..n-2, ties to the lower
// position, plus n-1): every rank holds identical lists, equal to the exact variant's whenever
// the exact top-k lies inside the union of the ranks' local top-k. The exact variant
// all-reduces the whole score row instead and needs no op here.
#pragma once

#include <cstdint>

#include "kernels/token_role.h"
#include "runtime/stream.h"
#include "runtime/tensor.h"

namespace tidal::kernels {

struct ListCandidatesParams {
  // [num_tokens, max_candidates] i32, written for every token: for a selecting token whose
  // agreement equals `match`, entry k < counts[t, 0] is lists[t, 0, k]; every other entry -1.
  TensorView candidates;
  TensorView lists;   // [num_tokens, max_lists, max_budget] i32, the local top-k (list 0 is read)
  TensorView counts;  // [num_tokens, max_lists] i32, each <= max_candidates for matching tokens
  TensorView roles;   // [num_tokens] u8
  TensorView agreement;  // [num_tokens] u8
  uint8_t match = 0;
};

struct CandidateScoresParams {
  // [num_ranks, num_tokens, max_candidates] f32, written: this rank's partial score of each
  // candidate, scores[t, 0, position] (0 for -1 entries).
  TensorView out;
  TensorView candidates;  // [num_ranks, num_tokens, max_candidates] i32, all-gathered
  TensorView scores;      // [num_tokens, num_heads, max_len] f32; row 0 holds the partial scores
};

struct MergeCandidatesParams {
  // [num_tokens, num_heads, max_len] f32: for a selecting token whose agreement equals `match`,
  // row 0 at positions 0..n-1 becomes -inf except at the candidates: their whole scores (every
  // other row and token untouched).
  TensorView scores;
  TensorView candidates;  // [num_ranks, num_tokens, max_candidates] i32, all-gathered
  TensorView totals;      // [num_ranks, num_tokens, max_candidates] f32, summed over the ranks
  TensorView lengths;     // [num_tokens] i32, n
  TensorView roles;       // [num_tokens] u8
  TensorView agreement;   // [num_tokens] u8
  uint8_t match = 0;
  // [num_tokens] u8, written: roles[t] for the merged tokens, kDense for every other token, so a
  // topk_per_row over it re-selects only the merged tokens.
  TensorView merged_roles;
};

void list_candidates(const ListCandidatesParams& p, Stream stream);
void candidate_scores(const CandidateScoresParams& p, Stream stream);
void merge_candidates(const MergeCandidatesParams& p, Stream stream);

namespace ref {
void list_candidates(const ListCandidatesParams& p);
void candidate_scores(const CandidateScoresParams& p);
void merge_candidates(const MergeCandidatesParams& p);
}  // namespace ref

namespace cuda {
void list_candidates(const ListCandidatesParams& p, Stream stream);
void candidate_scores(const CandidateScoresParams& p, Stream stream);
void merge_candidates(const MergeCandidatesParams& p, Stream stream);
}  // namespace cuda

}  // namespace tidal::kernels
