// SPDX-License-Identifier: Apache-2.0
// Selection scores shared by a group of heads: per head, the softmax over positions 0..n-1 of
// its pre-softmax logits; per group of `heads_per_group` consecutive heads, their sum. Used for
// per-KV-head selection (a group = the query heads of one KV head) and shared selection (one
// group of every head). Summing probabilities, not logits, keeps one head's scale from drowning
// the others.
#pragma once

#include <cstdint>

#include "runtime/tensor.h"

namespace tidal::kernels {

// out:     [num_tokens, num_heads / heads_per_group, max_len] f32; entries past n untouched
// logits:  [num_tokens, num_heads, max_len] f32 pre-softmax scores
// lengths: [num_tokens] i32, n of each token's row (1 <= n <= max_len)
// Requires: num_heads % heads_per_group == 0.
void head_group_probs(TensorView out, TensorView logits, TensorView lengths,
                      int64_t heads_per_group);

namespace ref {
void head_group_probs(TensorView out, TensorView logits, TensorView lengths,
                      int64_t heads_per_group);
}  // namespace ref

}  // namespace tidal::kernels
