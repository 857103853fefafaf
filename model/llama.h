// SPDX-License-Identifier: Apache-2.0
// The Llama forward over a paged KV cache: one call runs a step of decode tokens (one per
// sequence, each attending as its policy says in every layer) and prefill or correction chunks
// (dense, causal), from several sequences, and leaves logits for the rows asked for. Every
// launch serves the whole batch; nothing is allocated and nothing is read back, so a decode step
// can be captured in a CUDA graph (DESIGN.md §7).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "model/attention_policy.h"
#include "model/config.h"
#include "model/weights.h"
#include "runtime/arena.h"
#include "runtime/device.h"
#include "runtime/stream.h"
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

// Bits of ForwardBatch::layer_ops: which of a layer's optional launches some token needs, and
// how its attention launch is shaped (hints: results never depend on them).
constexpr uint8_t kLayerSelects = 1;  // a token selects: group probs, top-k, commit
constexpr uint8_t kLayerQuest = 2;    // a token runs Quest: page scores, page top-k, expansion
constexpr uint8_t kLayerListsOnly = 4;  // every decode token attends lists (DecodeAttentionParams)
constexpr uint8_t kLayerHeadLists = 8;  // some token's lists are per query head under GQA

// The tokens of one step as views on the step's device (the step plan's arrays). Tokens
// [0, num_decode) are decode tokens; [num_decode, num_tokens) are prefill or correction tokens,
// grouped by sequence in position order.
struct ForwardBatch {
  TensorView tokens;     // [num_tokens] i32
  TensorView positions;  // [num_tokens] i32
  TensorView seq_ids;    // [num_tokens] i32, block-table row
  int64_t num_decode = 0;
  // Decode tokens ([num_decode] i32 each; kernels/token_role.h says how they are read):
  TensorView lengths;       // n = position + 1
  TensorView prior_lens;    // positions below: rows no launch of this step writes (optional)
  TensorView num_lists;     // tidal: lists by granularity; quest: num_heads; full: 0
  TensorView budgets;       // tidal: K tokens
  TensorView page_lengths;  // quest: pages up to and including the current one
  TensorView page_budgets;  // quest: K / page_size pages
  TensorView roles;         // [num_layers, num_decode] u8 TokenRole
  // Host: per layer, kLayerSelects | kLayerQuest when some decode token needs those launches,
  // kLayerListsOnly | kLayerHeadLists as the decode tokens' roles and lists are.
  const uint8_t* layer_ops = nullptr;  // [num_layers]
  // Prefill tokens, by sequence (kernels/prefill_attention.h; rows counted from num_decode):
  TensorView query_starts;     // [num_prefill_seqs + 1] i32
  TensorView prefill_seq_ids;  // [num_prefill_seqs] i32
  TensorView context_lens;     // [num_prefill_seqs] i32
  int64_t max_query_len = 0;
  TensorView logit_rows;    // [num_logits] i32, token rows whose logits are computed
  TensorView block_tables;  // [num_rows, max_pages] i32, persistent on the device
  TensorView page_updates;  // [max_updates, 3] i32: applied to block_tables first (row -1: none)
  // Tensor / pipeline parallel only (parallel_forward.h): [num_decode] u8 ListAgreement, how each
  // decode token's lists are agreed across ranks; and the same plan over host memory, from which
  // the forward sizes its messages. Unused (and may be empty / null) on one rank.
  TensorView agreement;
  const ForwardBatch* host = nullptr;
  // Optional: called before (after = false) and after (after = true) each layer's attention
  // launches: traces, per-role timing. Eager runs only.
  std::function<void(int64_t layer, bool after)> attention_hook;
};

// One layer's paged cache.
struct KvLayer {
  TensorView k;        // [num_pages, page_size, num_kv_heads, head_dim]
  TensorView v;        // [num_pages, page_size, num_kv_heads, head_dim]
  TensorView key_max;  // optional [num_pages, num_kv_heads, head_dim]: Quest page bounds
  TensorView key_min;  // optional, likewise
  // FP8 caches (k and v u8 e4m3 codes, kernels/paged_kv_common.h): the rows' scales, f32
  // [num_pages, num_kv_heads, page_size]; empty when k and v hold the activations' dtype.
  TensorView k_scale = {};
  TensorView v_scale = {};
};

// Sizes of the step workspace.
struct WorkspaceShape {
  int64_t max_tokens = 0;     // tokens in one step
  int64_t max_decode = 0;     // decode tokens in one step (the largest batch)
  int64_t max_logits = 0;     // rows whose logits one step computes
  int64_t num_rows = 0;       // block-table rows (sequence slots); stats counters per row
  int64_t max_context = 0;    // positions per sequence
  int64_t max_budget = 0;     // largest sparse budget K (tokens)
  int64_t page_size = 16;     // KV page size (Quest pages)
  DType dtype = DType::kF32;  // activations (the weights' dtype)
  Device device;
};

// Per-step activations, selection state and op scratch, sized once on one device.
struct LlamaWorkspace {
  TensorView x;         // [max_tokens, hidden] residual stream
  TensorView xn;        // [max_tokens, hidden] normed
  TensorView q;         // [max_tokens, num_heads, head_dim]
  TensorView k;         // [max_tokens, num_kv_heads, head_dim]
  TensorView v;         // [max_tokens, num_kv_heads, head_dim]
  TensorView attn;      // [max_tokens, num_heads, head_dim]
  TensorView proj;      // [max_tokens, hidden] o_proj / down_proj output
  TensorView gate_up;   // [max_tokens, 2 * inter]
  TensorView act;       // [max_tokens, inter]
  TensorView last;      // [max_logits, hidden] normed rows that need logits
  TensorView logits;    // [max_logits, vocab] f32
  TensorView sampled;   // [max_logits] i32 sampled ids
  TensorView inv_freq;  // [head_dim / 2] f32 RoPE frequencies
  // Selection state of the decode tokens of the step.
  // scores: [max_decode, num_heads, max_context rounded up to 4 floats] f32: logits (per-query-
  // head lists), then group probs (rows 16-byte aligned; page_scores likewise).
  TensorView scores;
  // [max_decode, num_heads, same pitch] f16: the logits of tokens whose lists a group of heads
  // shares (per-KV-head, shared), which feed only head_group_probs: half the bytes
  // (kernels/decode_attention.h, DecodeAttentionParams::logits16). Empty under TIDAL_LOGITS16=0.
  TensorView logits16;
  TensorView lse;          // [max_decode, num_heads] f32
  TensorView lists;        // [max_decode, num_heads, max_budget] i32 lists sparse layers read
  TensorView counts;       // [max_decode, num_heads] i32
  TensorView new_lists;    // [max_decode, num_heads, max_budget] i32 a selection layer's top-k
  TensorView new_counts;   // [max_decode, num_heads] i32
  // [max_decode, num_heads, max_budget] i32: the lists as cache rows (kernels/cache_rows.h), which
  // the selection's commit writes and sparse layers' decode attention reads on one GPU.
  TensorView rows;
  TensorView page_scores;  // [max_decode, num_heads, max_pages rounded up to 4] f32 Quest bounds
  TensorView pages;        // [max_decode, num_heads, max_page_budget] i32 chosen pages
  TensorView page_counts;  // [max_decode, num_heads] i32
  TensorView overlap;      // [num_rows, 2] i64 position-persistence counters (kept by the engine)
  TensorView scratch;      // u8: the largest op workspace (decode attention, top-k, sampling)
  // [max_decode * num_heads] i32, zero between launches: decode attention's own-merge counters
  // (kernels/decode_attention.h), so no merge launch follows its split kernel.
  TensorView merge_counters;
  // [max_tokens, num_kv_heads, 2] i32, zero between launches: the counters by which the QKV
  // GEMV's blocks append to an FP8 cache in its own launch (PagedKvAppendParams::append_counters).
  // Empty under TIDAL_FP8_QKV_APPEND=0.
  TensorView append_counters;
  // GPU: the stream that work off a layer's critical path runs on, beside the rest of the layer
  // on the main stream, joined before the next layer: a selection layer's group probs, top-k and
  // list commit (one rank only: under TP the lists are agreed over NCCL in the main stream's
  // order), and Quest's page-bound update where no token of the layer runs Quest. Null on the CPU
  // and under TIDAL_SIDE_STREAM=0 (read when the workspace is created): the main stream runs them.
  std::shared_ptr<SideStream> side_stream;
  WorkspaceShape shape;
  Arena arena;

  static Status create(const ModelConfig& config, const WorkspaceShape& shape, LlamaWorkspace* out);
  static size_t bytes_for(const ModelConfig& config, const WorkspaceShape& shape);
};

// RoPE inverse frequencies [head_dim / 2] in f32, as transformers computes them (default or
// llama3 scaling).
std::vector<float> rope_inv_freq(const RopeConfig& rope, int64_t head_dim);

struct ForwardParallel;  // parallel_forward.h

// Runs the batch through every layer, appending each token's K/V (and Quest bounds, when the
// cache keeps them) to `kv`, and leaves the logits of the requested rows in ws.logits
// [num_logits, vocab] (f32). All views on one device; work is queued on `stream`.
// With `par` (tensor / pipeline parallel): `config` is the shard's local config (weights, cache
// and workspace are the shard's); only the stage's layers run, between receiving the previous
// stage's residual stream and sending its own (parallel_forward.h); the last stage leaves its
// vocabulary shard's logits [num_logits, vocab_shard].
// Requires: the workspace shape covers the batch; kv.size() == num_layers; every position
// within its sequence's block table; sparse budgets <= shape.max_budget.
void llama_forward(const ModelConfig& config, const LlamaWeights& w, const ForwardBatch& batch,
                   const std::vector<KvLayer>& kv, LlamaWorkspace& ws, Stream stream,
                   ForwardParallel* par = nullptr);

// The batch's keys and values into one layer's cache (K, V, FP8 scales, and Quest's page bounds
// when the cache keeps them). With `rope_q` and `inv_freq` set, q and key are rotated in place
// first (the same launch on the GPU). key, value: [num_tokens, num_kv_heads, head_dim].
void append_to_cache(const KvLayer& cache, const ForwardBatch& batch, TensorView key,
                     TensorView value, TensorView rope_q, TensorView inv_freq, Stream stream);

}  // namespace tidal::model
