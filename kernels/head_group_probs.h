// SPDX-License-Identifier: Apache-2.0
// Selection scores shared by a group of heads (per-KV-head and shared lists, DESIGN.md §4): per
// head, the softmax over positions 0..n-1 of its pre-softmax logits; per group of consecutive
// heads, their sum. Summing probabilities, not logits, keeps one head's scale from drowning the
// others. Written over the group's first row of the selection layer's f32 scores (in place over
// its logits, or from the f16 ones decode attention kept in logits16), with each head's
// log-sum-exp from the attention pass (decode_attention's `lse`), so it is one read of the logits
// and no max/sum pass: p_hj = exp(s_hj - lse_h).
#pragma once

#include "kernels/token_role.h"
#include "runtime/stream.h"
#include "runtime/tensor.h"

namespace tidal::kernels {

struct HeadGroupProbsParams {
  // [num_tokens, num_heads, max_len] f32, updated. For a selecting token with L = num_lists[t]
  // < num_heads (G = num_heads / L heads per list), row l * G becomes, at positions j < n,
  //   sum over h in [l*G, (l+1)*G) of exp(scores[t, h, j] - lse[t, h]).
  // Other rows, other tokens and positions >= n are left as they are.
  TensorView scores;
  TensorView lse;        // [num_tokens, num_heads] f32
  TensorView lengths;    // [num_tokens] i32, n
  TensorView num_lists;  // [num_tokens] i32
  TensorView roles;      // [num_tokens] u8; only kSelect / kReselect tokens are touched
  // Optional [num_tokens] u8 (tensor parallelism): a token with a nonzero entry has its lists
  // agreed across ranks, which sum these scores, so it gets probabilities even when each list is
  // a single head (L == num_heads; only L == 1 then, the one list of a rank holding one head).
  TensorView agreement;
  // Optional: [num_tokens, num_heads, max_len] f16, decode attention's logits16. With it, a token
  // whose lists a group shares (has_group_lists(L, num_heads)) has its logits read from here (as
  // decode attention wrote them there) instead of from scores; the sums still go to scores.
  TensorView logits16 = {};
};

void head_group_probs(const HeadGroupProbsParams& p, Stream stream);

namespace ref {
void head_group_probs(const HeadGroupProbsParams& p);
}  // namespace ref

namespace cuda {
void head_group_probs(const HeadGroupProbsParams& p, Stream stream);
}  // namespace cuda

}  // namespace tidal::kernels
