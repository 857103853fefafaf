// SPDX-License-Identifier: Apache-2.0
// The Llama forward over a paged KV cache: one call runs a step of any mix of prefill chunks and
// decode tokens from several sequences, and returns logits for the rows asked for. Each decode
// token's attention follows its sequence's policy (dense, TidalDecode selection / sparse layers,
// or Quest); prefill is dense in every layer.
#pragma once

#include <cstdint>
#include <vector>

#include "model/attention_policy.h"
#include "model/config.h"
#include "model/weights.h"
#include "runtime/arena.h"
#include "runtime/tensor.h"

namespace tidal::model {

// One decode token's attention in one layer, for tests and inspection: the role, and the lists
// of positions each list of heads attended (empty for dense layers).
struct LayerTrace {
  int64_t position = 0;  // the decode token's position (n - 1)
  int64_t layer = 0;
  LayerRole role = LayerRole::kDense;
  std::vector<std::vector<int32_t>> lists;
};

// How a sequence's decode tokens attend, and where their statistics go.
struct SequenceAttention {
  const AttentionPolicy* policy = nullptr;   // null: full attention
  std::vector<int64_t> reselect;             // reselect_layers(*policy, config)
  AttentionStats* stats = nullptr;           // optional; decode tokens add to it
  std::vector<LayerTrace>* trace = nullptr;  // optional; every decode layer appends to it
};

// The tokens of one step. Token t of sequence row s at position p attends to positions 0..p of s.
struct ForwardBatch {
  TensorView tokens;        // [num_tokens] i32
  TensorView positions;     // [num_tokens] i32
  TensorView seq_ids;       // [num_tokens] i32, row of block_tables
  TensorView block_tables;  // [num_seqs, max_pages] i32
  TensorView logit_rows;    // [num_logits] i32, token rows whose logits are computed
  TensorView decode;        // optional [num_tokens] u8: 1 marks a decode token (policies apply)
  const SequenceAttention* attention = nullptr;  // optional, [num_seqs] (by block-table row)
};

// One layer's paged cache.
struct KvLayer {
  TensorView k;        // [num_pages, page_size, num_kv_heads, head_dim]
  TensorView v;        // [num_pages, page_size, num_kv_heads, head_dim]
  TensorView key_max;  // optional [num_pages, num_kv_heads, head_dim]: Quest page bounds
  TensorView key_min;  // optional, likewise
};

// Sizes of the per-step workspace.
struct WorkspaceShape {
  int64_t max_tokens = 0;   // tokens in one step
  int64_t max_seqs = 0;     // sequences (block-table rows) in one step; also logit rows
  int64_t max_context = 0;  // positions per sequence
  int64_t max_budget = 0;   // largest sparse budget K (tokens)
  int64_t page_size = 16;   // KV page size (Quest pages)
};

// Per-step activations and selection state, sized once.
struct LlamaWorkspace {
  TensorView x;         // [max_tokens, hidden] residual stream
  TensorView xn;        // [max_tokens, hidden] normed
  TensorView q;         // [max_tokens, num_heads, head_dim]
  TensorView k;         // [max_tokens, num_kv_heads, head_dim]
  TensorView v;         // [max_tokens, num_kv_heads, head_dim]
  TensorView attn;      // [max_tokens, num_heads, head_dim]
  TensorView proj;      // [max_tokens, hidden] o_proj / down_proj output
  TensorView gate;      // [max_tokens, inter]
  TensorView up;        // [max_tokens, inter]
  TensorView last;      // [max_seqs, hidden] hidden rows that need logits
  TensorView inv_freq;  // [head_dim / 2] f32 RoPE frequencies
  // Selection state, by sequence row.
  TensorView logits;       // [max_seqs, num_heads, max_context] a selection layer's scores
  TensorView group_probs;  // [max_seqs, num_heads, max_context] per-KV-head / shared scores
  TensorView sel;          // [max_seqs, num_heads, max_budget] i32 selected positions
  TensorView sel_counts;   // [max_seqs, num_heads] i32
  TensorView prev_sel;     // [max_seqs, num_heads, max_budget] i32 the previous selection
  TensorView page_scores;  // [max_seqs, num_heads, max_pages] Quest bounds
  TensorView pages;        // [max_seqs, num_heads, max_pages] i32 chosen pages
  TensorView page_counts;  // [max_seqs, num_heads] i32
  TensorView lengths;      // [max_seqs, num_heads] i32 row lengths for top-k
  std::vector<bool> has_selection;  // by sequence row, within the current step
  WorkspaceShape shape;
  Arena arena;

  static Status create(const ModelConfig& config, const WorkspaceShape& shape, LlamaWorkspace* out);
  static size_t bytes_for(const ModelConfig& config, const WorkspaceShape& shape);
};

// RoPE inverse frequencies [head_dim / 2] in f32, as transformers computes them (default or
// llama3 scaling).
std::vector<float> rope_inv_freq(const RopeConfig& rope, int64_t head_dim);

// Runs the batch through every layer, appending each token's K/V (and Quest bounds, when the
// cache keeps them) to `kv`, and writes the logits of the requested rows to `logits`
// [num_logits, vocab] (f32).
// Requires: the workspace shape covers the batch; kv.size() == num_layers; every position
// within its sequence's block table; sparse budgets <= shape.max_budget.
void llama_forward(const ModelConfig& config, const LlamaWeights& w, const ForwardBatch& batch,
                   const std::vector<KvLayer>& kv, LlamaWorkspace& ws, TensorView logits);

}  // namespace tidal::model
