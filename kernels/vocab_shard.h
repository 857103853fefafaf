// SPDX-License-Identifier: Apache-2.0
// The two ops of a vocabulary-parallel embedding and LM head (Megatron-LM's
// VocabParallelEmbedding; DESIGN.md §6), where each tensor-parallel rank holds rows
// [vocab_begin, vocab_begin + vocab_shard) of the embedding and the LM head:
//   embedding_lookup_shard: each rank looks up the ids it holds and writes zeros for the others;
//     an all-reduce then gives every rank the full embedding (a sum with one nonzero term: exact).
//   argmax_shard + argmax_merge: greedy sampling without gathering logits. Each rank finds its
//     shard's best logit (value, global id); the pairs are all-gathered and merged: the highest
//     value, ties to the lower id, which is sample_tokens' rule over the whole vocabulary.
#pragma once

#include <cstdint>

#include "runtime/stream.h"
#include "runtime/tensor.h"

namespace tidal::kernels {

// out:   [num_tokens, hidden], contiguous
// table: [vocab_shard, hidden], dense rows: global ids [vocab_begin, vocab_begin + vocab_shard)
// ids:   [num_tokens] i32, global ids (any id outside the shard gives a zero row)
void embedding_lookup_shard(TensorView out, TensorView table, TensorView ids, int64_t vocab_begin,
                            Stream stream);

// pairs:  [num_rows, 2] i32, written: (bits of the f32 maximum of the row, its global id
//         vocab_begin + j, the lowest j among equal maxima)
// logits: [num_rows, vocab_shard] f32, dense rows (row stride >= vocab_shard)
void argmax_shard(TensorView pairs, TensorView logits, int64_t vocab_begin, Stream stream);

// tokens: [num_rows] i32, written: the id of the highest value over the ranks' pairs; equal
//         values go to the lower id (ranks hold ascending id ranges, so the first rank wins)
// pairs:  [num_ranks, num_rows, 2] i32, all-gathered argmax_shard outputs
void argmax_merge(TensorView tokens, TensorView pairs, Stream stream);

namespace ref {
void embedding_lookup_shard(TensorView out, TensorView table, TensorView ids, int64_t vocab_begin);
void argmax_shard(TensorView pairs, TensorView logits, int64_t vocab_begin);
void argmax_merge(TensorView tokens, TensorView pairs);
}  // namespace ref

namespace cuda {
void embedding_lookup_shard(TensorView out, TensorView table, TensorView ids, int64_t vocab_begin,
                            Stream stream);
void argmax_shard(TensorView pairs, TensorView logits, int64_t vocab_begin, Stream stream);
void argmax_merge(TensorView tokens, TensorView pairs, Stream stream);
}  // namespace cuda

}  // namespace tidal::kernels
