// SPDX-License-Identifier: Apache-2.0
// The step plan: everything one forward step needs that is not weights or cache — its tokens,
// positions and sequences; what each decode token's attention does in every layer (decided on
// the host from its policy before the step, DESIGN.md §7); the prefill chunks; the rows whose
// logits are wanted and how to sample them; and the block-table entries that changed. It is a
// plain, serialisable struct: a header and fixed-capacity arrays in one byte buffer, sized once,
// so building a plan allocates nothing, the device gets it in one copy (from pinned memory, also
// inside a CUDA graph), and rank 0 can broadcast the same bytes to the other ranks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/token_role.h"
#include "model/llama.h"
#include "runtime/tensor.h"

namespace tidal::engine {

struct StepCapacity {
  int64_t max_tokens = 0;        // tokens in a step (decode + prefill)
  int64_t max_decode = 0;        // decode tokens (sequences) in a step
  int64_t max_prefill_seqs = 0;  // sequences with prefill / correction tokens in a step
  int64_t max_logits = 0;        // rows whose logits a step computes
  int64_t num_layers = 0;
  int64_t max_updates = 0;  // block-table entries a step may change
};

// The counts at the head of the buffer.
struct StepHeader {
  int32_t num_tokens = 0;
  int32_t num_decode = 0;
  int32_t num_prefill_seqs = 0;
  int32_t num_logits = 0;
  int32_t num_updates = 0;
  int32_t max_query_len = 0;
};

// One decode token's per-step facts (see model::ForwardBatch).
struct DecodeToken {
  int32_t token = 0;
  int32_t position = 0;     // n - 1
  int32_t seq_row = 0;      // block-table row
  int32_t num_lists = 0;    // tidal: by granularity; quest: num_heads; full: 0
  int32_t budget = 1;       // tidal: K
  int32_t page_length = 1;  // quest: pages up to the current one
  int32_t page_budget = 1;  // quest: K / page_size
  uint8_t agreement = 0;    // model::ListAgreement: tensor parallel list agreement; 0 none
  bool head_lists = false;  // its lists are per query head, and query heads share KV heads
  bool padding = false;     // fills a graph bucket: left out of the layers' attention hints
};

// How one logit row is sampled (engine::SamplingParams, flattened).
struct SampleRow {
  float temperature = 0.0f;
  int32_t top_k = 0;
  float top_p = 1.0f;
  float min_p = 0.0f;
  uint64_t seed = 0;
  uint64_t counter = 0;
};

class StepPlan {
 public:
  explicit StepPlan(const StepCapacity& capacity);
  const StepCapacity& capacity() const { return capacity_; }
  // The buffer's size: what travels to the device (or another rank) each step.
  size_t bytes() const { return bytes_; }

  // Lays the plan over `host` (bytes() bytes, e.g. pinned memory) and clears it.
  void bind(void* host);
  void* data() const { return base_; }
  // Starts a new step: no tokens, every layer's ops off, every update slot unused.
  void clear();

  const StepHeader& header() const { return *reinterpret_cast<const StepHeader*>(base_); }
  // Appends a decode token (all decode tokens come before any prefill token); returns its index.
  int64_t add_decode(const DecodeToken& t);
  // The token's role in `layer`; also marks the layer's optional launches and its attention's
  // shape (model::kLayerListsOnly: no decode token left on a dense range; kLayerHeadLists).
  void set_role(int64_t decode_index, int64_t layer, kernels::TokenRole role);
  // Appends a prefill (or correction) chunk: tokens[i] at positions first_position + i of
  // sequence row `seq_row`, whose cache then holds first_position + count positions.
  void add_prefill(int32_t seq_row, int32_t first_position, const int32_t* tokens, int64_t count);
  // Asks for the logits of token row `row` (and how to sample them).
  void add_logit_row(int32_t row, const SampleRow& sample);
  // Records that block-table entry (row, index) now holds `page`.
  void add_page_update(int32_t row, int32_t index, int32_t page);

  int64_t num_decode() const { return header().num_decode; }
  const uint8_t* layer_ops() const;

  // The plan's arrays as views over a copy of the buffer at `base` on `device` (the host buffer
  // itself, or its device copy), shaped for this step.
  model::ForwardBatch batch(void* base, Device device, TensorView block_tables) const;
  // The sampling arrays of the logit rows, over `base` likewise: temperature, top_k, top_p,
  // min_p, seeds, counters ([num_logits] each).
  struct SampleViews {
    TensorView temperature, top_k, top_p, min_p, seeds, counters;
  };
  SampleViews samples(void* base, Device device) const;

 private:
  StepHeader& mutable_header() { return *reinterpret_cast<StepHeader*>(base_); }
  template <typename T>
  T* array(size_t offset) const {
    return reinterpret_cast<T*>(static_cast<uint8_t*>(base_) + offset);
  }

  StepCapacity capacity_;
  // Host only (not in the buffer): per layer, the decode tokens on a dense range (every token but
  // padding is, until set_role says otherwise); per decode token, DecodeToken::head_lists and
  // ::padding.
  std::vector<int32_t> range_tokens_;
  std::vector<uint8_t> head_lists_, padding_;
  // Byte offsets of the arrays inside the buffer.
  struct Offsets {
    size_t tokens, positions, seq_ids;                                           // [max_tokens] i32
    size_t lengths, prior_lens, num_lists, budgets, page_lengths, page_budgets;  // [max_decode]
    size_t agreement;                                                            // [max_decode] u8
    size_t roles;                                         // [layers, max_decode] u8
    size_t layer_ops;                                     // [layers] u8
    size_t query_starts, prefill_seq_ids, context_lens;   // [max_prefill_seqs(+1)]
    size_t logit_rows, temperature, top_k, top_p, min_p;  // [max_logits] 4 bytes
    size_t seeds, counters;                               // [max_logits] 8 bytes
    size_t updates;                                       // [max_updates, 3] i32
  } off_;
  size_t bytes_ = 0;
  void* base_ = nullptr;
};

}  // namespace tidal::engine
