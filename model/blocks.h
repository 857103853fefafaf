// SPDX-License-Identifier: Apache-2.0
// Building blocks of the forward that compose kernels: the attention of one layer for the whole
// batch, one launch per op whatever the mix of token roles (dense, selection, sparse, Quest).
#pragma once

#include <cstdint>

#include "model/llama.h"

namespace tidal::model {

// Attention of layer `layer` for every token of the batch: `q` [num_tokens, num_heads,
// head_dim] (post-RoPE) attends over `kv` (already holding this step's keys and values) into
// `out`. Decode tokens follow their role (reference/TIDALDECODE.md §1.6):
//   quest:  pages = topk(bounds(q), K/P-1 of earlier pages) ++ [current]; lists = their tokens
//   all:    o = attention over 0..n-1 (dense, select) or over the token's lists (sparse, quest)
//   select: S = the same pass's logits; [group probs]; I = topk(S, K-1 of 0..n-2) ++ [n-1];
//           I becomes the lists later sparse layers read (overlap with the replaced lists counted)
// Prefill tokens attend densely and causally.
// With `par` (tensor parallel), lists whose heads span ranks are agreed across them between the
// group sums and the commit (parallel_forward.h). Without it, on the GPU, a selection layer's
// group sums, top-k and commit may be left running on ws.side_stream: the caller joins it
// (SideStream::join) before anything reads the lists or the scratch.
void attention_layer(const ModelConfig& config, int64_t layer, const ForwardBatch& batch,
                     const KvLayer& kv, LlamaWorkspace& ws, TensorView q, TensorView out,
                     Stream stream, ForwardParallel* par = nullptr);

}  // namespace tidal::model
