// SPDX-License-Identifier: Apache-2.0
// The Llama forward over a paged KV cache: one call runs a step of any mix of prefill chunks and
// decode tokens from several sequences, and returns logits for the rows asked for.
#pragma once

#include <cstdint>
#include <vector>

#include "model/config.h"
#include "model/weights.h"
#include "runtime/arena.h"
#include "runtime/tensor.h"

namespace tidal::model {

// The tokens of one step. Token t of sequence row s at position p attends to positions 0..p of s.
struct ForwardBatch {
  TensorView tokens;        // [num_tokens] i32
  TensorView positions;     // [num_tokens] i32
  TensorView seq_ids;       // [num_tokens] i32, row of block_tables
  TensorView block_tables;  // [num_seqs, max_pages] i32
  TensorView logit_rows;    // [num_logits] i32, token rows whose logits are computed
};

// One layer's paged cache: [num_pages, page_size, num_kv_heads, head_dim] each.
struct KvLayer {
  TensorView k;
  TensorView v;
};

// Per-step activations, sized once for at most `max_tokens` tokens and `max_logits` rows.
struct LlamaWorkspace {
  TensorView x;          // [max_tokens, hidden] residual stream
  TensorView xn;         // [max_tokens, hidden] normed
  TensorView q;          // [max_tokens, num_heads, head_dim]
  TensorView k;          // [max_tokens, num_kv_heads, head_dim]
  TensorView v;          // [max_tokens, num_kv_heads, head_dim]
  TensorView attn;       // [max_tokens, num_heads, head_dim]
  TensorView proj;       // [max_tokens, hidden] o_proj / down_proj output
  TensorView gate;       // [max_tokens, inter]
  TensorView up;         // [max_tokens, inter]
  TensorView last;       // [max_logits, hidden] hidden rows that need logits
  TensorView inv_freq;   // [head_dim / 2] f32 RoPE frequencies
  int64_t max_tokens = 0;
  int64_t max_logits = 0;
  HostArena arena;

  // Plans and allocates; the RoPE frequencies are filled from the config.
  static Status create(const ModelConfig& config, int64_t max_tokens, int64_t max_logits,
                       LlamaWorkspace* out);
  static size_t bytes_for(const ModelConfig& config, int64_t max_tokens, int64_t max_logits);
};

// RoPE inverse frequencies [head_dim / 2] in f32, as transformers computes them (default or
// llama3 scaling).
std::vector<float> rope_inv_freq(const RopeConfig& rope, int64_t head_dim);

// Runs the batch through every layer, appending each token's K/V to `kv`, and writes the logits
// of the requested rows to `logits` [num_logits, vocab] (f32).
// Requires: num_tokens <= ws.max_tokens, num_logits <= ws.max_logits, kv.size() == num_layers,
// every position within the sequence's block table.
void llama_forward(const ModelConfig& config, const LlamaWeights& w, const ForwardBatch& batch,
                   const std::vector<KvLayer>& kv, const LlamaWorkspace& ws, TensorView logits);

}  // namespace tidal::model
