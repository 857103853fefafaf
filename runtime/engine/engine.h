// SPDX-License-Identifier: Apache-2.0
// The engine: a model's weights, its paged KV cache and a step workspace, planned once at
// start. Sequences are added with their prompt, prefilled densely in chunks, then decoded
// together one token per step.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "model/attention_policy.h"
#include "model/config.h"
#include "model/llama.h"
#include "model/weights.h"
#include "runtime/engine/kv_cache.h"
#include "runtime/status.h"

namespace tidal::engine {

struct EngineConfig {
  int64_t page_size = 16;   // KV tokens per page; Default: 16
  int64_t max_batch = 8;    // sequences decoded in one step; Default: 8
  int64_t max_context = 0;  // tokens per sequence (prompt + generated); Default (0): the model's
  int64_t kv_capacity = 0;  // KV tokens over all sequences; Default (0): max_batch *
                            // max_context, capped to what fits in available memory
  int64_t prefill_chunk = 256;  // prompt tokens per prefill step; Default: 256
  int64_t max_budget = 4096;    // largest sparse budget a request may ask; Default: 4096

  Status validate() const;
};

// What the engine holds, in bytes, and what it can serve.
struct MemoryPlan {
  size_t weight_bytes = 0;
  size_t kv_bytes = 0;
  size_t workspace_bytes = 0;
  int64_t kv_capacity_tokens = 0;  // pages * page_size
  int64_t kv_bytes_per_token = 0;  // every layer, K and V (Quest page bounds: per page, extra)
  int64_t max_context = 0;
  bool kv_capped = false;  // the automatic capacity was cut to fit available memory
};

// Plans memory without allocating (for `tidal info`). `available_bytes` is the host memory that
// weights, KV cache and workspace may take (0: unknown, no cap). An automatic KV capacity keeps
// 10% of it free; an explicit one is taken as asked (Engine::create checks that it fits).
MemoryPlan plan_memory(const model::ModelConfig& model, const EngineConfig& config,
                       size_t available_bytes);

using SeqId = int64_t;

class Engine {
 public:
  // Takes ownership of `weights` (for model.config). Allocates the KV cache and workspace.
  static Status create(const model::ModelConfig& model, model::LlamaWeights weights,
                       const EngineConfig& config, std::unique_ptr<Engine>* out);
  // Loads <dir>/config.json and its safetensors checkpoint.
  static Status load(const std::string& dir, const EngineConfig& config,
                     std::unique_ptr<Engine>* out);

  const model::ModelConfig& model_config() const { return model_; }
  const EngineConfig& config() const { return config_; }
  const MemoryPlan& memory_plan() const { return plan_; }

  // Registers a sequence holding `prompt` (at least one token) whose decode steps attend as
  // `policy` says. Fails with a clear error when the prompt is longer than the context or the KV
  // capacity, the policy is invalid, or max_batch sequences are live.
  Status add_sequence(const std::vector<int32_t>& prompt, SeqId* id);
  Status add_sequence(const std::vector<int32_t>& prompt, const model::AttentionPolicy& policy,
                      SeqId* id);
  // Prefills every not-yet-cached prompt token in chunks; writes the logits after the last
  // prompt token to `logits` [vocab] (f32).
  Status prefill(SeqId id, TensorView logits);
  // One decode step: appends tokens[i] to sequence ids[i] (all distinct) and writes their next-
  // token logits to logits[i] ([ids.size(), vocab], f32). Fails (changing nothing) when a
  // sequence would exceed its context or the KV cache is full.
  Status decode(const std::vector<SeqId>& ids, const std::vector<int32_t>& tokens,
                TensorView logits);
  // KV cache correction (reference/TIDALDECODE.md §2): recomputes the K/V of the sequence's last
  // `num_tokens` cached positions with a dense chunked pass through every layer, overwriting the
  // entries written while sparse layers were active. Counted in the sequence's stats.
  Status correct(SeqId id, int64_t num_tokens);
  // Frees the sequence's KV pages.
  void release(SeqId id);

  // The sequence's attention statistics so far (decode steps and corrections).
  const model::AttentionStats& stats(SeqId id) const;
  // Records every decode layer's role and lists of the sequence into `trace` (null: stop).
  void set_trace(SeqId id, std::vector<model::LayerTrace>* trace);
  // Copies the cached key and value of (layer, position), [num_kv_heads * head_dim] each.
  Status read_kv(SeqId id, int64_t layer, int64_t position, std::vector<float>* key,
                 std::vector<float>* value) const;

  int64_t length(SeqId id) const;    // tokens cached for the sequence
  int64_t kv_tokens_in_use() const;  // pages held by live sequences, in tokens

 private:
  struct Sequence {
    std::vector<int32_t> tokens;       // prompt + generated; positions 0..size-1
    int64_t cached = 0;                // tokens whose K/V are in the cache
    std::vector<int32_t> block_table;  // page ids
    int64_t row = 0;                   // row in block_tables_
    model::AttentionPolicy policy;
    model::AttentionStats stats;
    std::vector<int64_t> reselect;  // the policy's reselect layers, resolved
    std::vector<model::LayerTrace>* trace = nullptr;
  };

  Engine() = default;
  Sequence* find(SeqId id);
  // Runs one forward step over (sequence, position) pairs, fetching logits for `logit_rows`.
  void run_step(const std::vector<Sequence*>& seqs, const std::vector<int64_t>& seq_of_tok,
                const std::vector<int64_t>& pos_of_tok, const std::vector<int32_t>& logit_rows,
                bool decode, TensorView logits);
  // Dense pass over positions [begin, end) of `s` in prefill chunks, logits of the last position
  // to `logits` (when it has data).
  void dense_pass(Sequence* s, int64_t begin, int64_t end, TensorView logits);
  const Sequence* find(SeqId id) const;

  model::ModelConfig model_;
  EngineConfig config_;
  MemoryPlan plan_;
  model::LlamaWeights weights_;
  KvCache kv_;
  model::LlamaWorkspace ws_;
  std::unordered_map<SeqId, Sequence> seqs_;
  std::vector<bool> row_used_;
  std::vector<int32_t> block_tables_;  // [max_batch, max_pages] host buffer
  int64_t max_pages_ = 0;
  SeqId next_id_ = 0;
};

}  // namespace tidal::engine
