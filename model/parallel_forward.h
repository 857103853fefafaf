// SPDX-License-Identifier: Apache-2.0
// What the Llama forward adds under tensor and pipeline parallelism (DESIGN.md §6): the
// communicators and shard of this rank, the buffers its collectives use, and the steps the
// forward calls between its kernels: the all-reduce after each row-parallel projection, the
// vocabulary-parallel embedding, the agreement of selection lists whose heads span ranks, and the
// hidden states (and live selection lists) crossing a pipeline boundary. On one rank the forward
// takes none of these paths and makes no communicator call.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "model/llama.h"
#include "model/shard.h"
#include "parallel/communicator.h"
#include "runtime/arena.h"
#include "runtime/stream.h"
#include "runtime/tensor.h"

namespace tidal::model {

// How one decode token's selection lists are agreed across ranks: a byte per decode token of the
// step plan (ForwardBatch::agreement), decided on rank 0 from the policy and the shard.
enum class ListAgreement : uint8_t {
  kNone = 0,           // each list lies on one rank (per-query-head, split KV heads, one rank)
  kApproxTp = 1,       // shared lists: local top-k candidates all-gathered over the TP group
  kExactTp = 2,        // shared lists: the summed score row all-reduced over the TP group
  kApproxKvGroup = 3,  // per-KV-head lists of a replicated KV head: likewise over its ranks
  kExactKvGroup = 4,
};

// Sizes of the buffers below.
struct ParallelShape {
  int64_t max_decode = 0;   // decode tokens in a step
  int64_t max_budget = 0;   // largest sparse budget K
  int64_t max_logits = 0;   // rows whose logits a step computes
  int64_t vocab = 0;        // the model's vocabulary
  int64_t vocab_shard = 0;  // this rank's rows of it
  int tp_size = 1;
  Device device;
  // Tokens in a step and the hidden size, for the f32 partial sums of the row-parallel
  // projections: allocated when tp_size > 1 and the activations are 16-bit.
  int64_t max_tokens = 0;
  int64_t hidden = 0;
  DType dtype = DType::kF32;  // the activations'
};

// Device buffers of the collectives, in one arena.
struct ParallelBuffers {
  TensorView candidates;    // [max_decode, max_budget] i32: this rank's local top-k
  TensorView gathered;      // [tp, max_decode, max_budget] i32: every rank's
  TensorView totals;        // [tp, max_decode, max_budget] f32: their scores, then summed
  TensorView merged_roles;  // [max_decode] u8
  TensorView pairs;         // [max_logits, 2] i32: this rank's (max logit, id) per row
  TensorView all_pairs;     // [tp, max_logits, 2] i32
  TensorView shard_logits;  // [tp, max_logits, vocab_shard] f32: every rank's logits (sampling)
  TensorView logits;        // [max_logits, vocab] f32: the whole rows
  TensorView sampled;       // [max_logits] i32: ids coming back to rank 0 from the last stage
  TensorView scratch;       // u8: sample_tokens' workspace over whole rows [max_logits, vocab]
  // [max_tokens, hidden] f32: o_proj's and down_proj's partial sums under TP with 16-bit
  // activations, all-reduced in f32 and rounded once by the norm that adds them, as one rank
  // rounds its whole sum (empty otherwise: the projections write the workspace's proj). In
  // memory the TP group registered for its collectives when it could (`registered`).
  TensorView partial;
  std::shared_ptr<void> registered;
  Arena arena;

  // tp: the TP group (null or of one rank: no registered memory). Collective over tp when the
  // partial sums are registered (alloc_registered): its failures after that point are local.
  static Status create(const ParallelShape& shape, parallel::Communicator* tp,
                       ParallelBuffers* out);
  static size_t bytes_for(const ParallelShape& shape);
};

// Bytes and calls of the agreement collectives, per rank, counted on the host.
struct AgreementCounters {
  int64_t approx_layers = 0;  // selection layers (of some token) agreed by candidates
  // Candidate bytes: this rank's positions into the all-gather plus the candidate scores
  // all-reduced (num_ranks x K per token: independent of the context length).
  int64_t approx_bytes = 0;
  int64_t exact_layers = 0;  // selection layers agreed by all-reducing score rows
  int64_t exact_bytes = 0;   // score-row bytes all-reduced (n per token)

  AgreementCounters& operator+=(const AgreementCounters& o) {
    approx_layers += o.approx_layers;
    approx_bytes += o.approx_bytes;
    exact_layers += o.exact_layers;
    exact_bytes += o.exact_bytes;
    return *this;
  }
  AgreementCounters operator-(const AgreementCounters& o) const {
    return {approx_layers - o.approx_layers, approx_bytes - o.approx_bytes,
            exact_layers - o.exact_layers, exact_bytes - o.exact_bytes};
  }
};

// What a marked span of the forward does (ForwardParallel::marker): the all-reduces of the
// activations (after each row-parallel projection, and of a vocabulary-parallel embedding), or a
// selection layer's list agreement (its collectives and the kernels between them).
enum class CommSpan : uint8_t { kAllReduce = 0, kAgreement = 1 };

struct ForwardParallel {
  ModelShard shard;
  parallel::Communicator* tp = nullptr;  // this stage's TP group (device buffers)
  parallel::Communicator* pp = nullptr;  // this tensor slice's pipeline (device buffers)
  // The ranks sharing this rank's KV head when KV heads are replicated (kv_replicas > 1).
  parallel::Communicator* kv_group = nullptr;
  ParallelBuffers* buffers = nullptr;
  AgreementCounters counters;
  // Called on the host around every span of `CommSpan` (before: after = false), for timing
  // with events on the forward's stream. Empty: none.
  std::function<void(CommSpan span, bool after)> marker;
};

// What the parallel forward of a decode-only batch decides on the host beyond its layer ops
// (ForwardBatch::layer_ops), appended to `sig`: whether live selection lists cross each stage
// boundary, and per layer the candidates' width of approximate list agreement (0: no token
// agrees there). A step replays a graph captured for another step only when both have the same
// signature. False when the launches depend on values that change every step (exact agreement
// all-reduces score rows as long as each token's context): such steps run eagerly.
bool launch_signature(const ForwardParallel& par, const ForwardBatch& host,
                      std::vector<int64_t>* sig);

// Sums a row-parallel projection's partial outputs over the TP group (a no-op for tp = 1).
void tp_all_reduce(ForwardParallel& par, TensorView buf, Stream stream);

// The residual stream entering this stage: the embedding of the tokens on the first stage
// (vocabulary-parallel: each rank's rows, then an all-reduce), else the previous stage's output,
// with the selection lists still live at the boundary.
void stage_input(ForwardParallel& par, const ModelConfig& local, const LlamaWeights& w,
                 const ForwardBatch& b, LlamaWorkspace& ws, TensorView x, Stream stream);
// Sends this stage's residual stream `x` (the last residual added) and the live selection lists
// to the next stage. Requires: not the last stage.
void stage_output(ForwardParallel& par, const ForwardBatch& b, LlamaWorkspace& ws, TensorView x,
                  Stream stream);

// The two halves of list agreement inside a selection layer (blocks.cc): after the group sums
// and before the top-k, the exact variant all-reduces each agreeing token's score row; after the
// top-k, the approximate variant all-gathers the local top-k, all-reduces every rank's scores of
// those candidates, and re-selects among them (kernels/list_agreement.h).
void agree_exact(ForwardParallel& par, const ForwardBatch& b, int64_t layer, LlamaWorkspace& ws,
                 Stream stream);
void agree_approx(ForwardParallel& par, const ForwardBatch& b, int64_t layer, LlamaWorkspace& ws,
                  Stream stream);

// True when some decode token of `host` (a plan over host memory) selected its lists before
// layer `boundary` and reads them (sparse) or replaces them (re-selection) at or after it.
bool lists_live_at(const ForwardBatch& host, int64_t boundary);

// Decode tokens [begin, end) of a decode-only batch as a batch of their own (a pipeline
// micro-batch): per-token arrays sliced, logit rows 0..end-begin-1 (a decode step's logit rows
// are its tokens in order). `host` is left to the caller.
ForwardBatch decode_slice(const ForwardBatch& b, int64_t begin, int64_t end);

}  // namespace tidal::model
