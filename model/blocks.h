// SPDX-License-Identifier: Apache-2.0
// Building blocks of the forward that compose kernels: the attention of one layer, which routes
// every token by its role (dense, selection, sparse gather, Quest) in this decode step.
#pragma once

#include <cstdint>

#include "model/llama.h"

namespace tidal::model {

// Attention of layer `layer` for every token of the batch: `q` [num_tokens, num_heads,
// head_dim] (post-RoPE) attends over `kv` (already holding this step's keys and values) into
// `out`. Prefill tokens and dense-role decode tokens attend densely; a selection layer also
// picks each sequence's lists into `ws`; sparse layers gather over them; Quest layers pick pages.
void attention_layer(const ModelConfig& config, int64_t layer, const ForwardBatch& batch,
                     const KvLayer& kv, LlamaWorkspace& ws, TensorView q, TensorView out);

}  // namespace tidal::model
