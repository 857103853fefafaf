// SPDX-License-Identifier: Apache-2.0
// The one place where the public API (proto/tidal/v1/inference.proto) meets the engine:
// requests in (through engine::build_prompt, the request builder `tidal generate` uses too),
// streamed tokens, results, statistics and the model's description out, and Status ->
// grpc::Status. The service's handlers stay thin.
#pragma once

#include <grpcpp/support/status.h>

#include <cstddef>
#include <string>

#include "model/config.h"
#include "model/tokenizer.h"
#include "runtime/engine/engine.h"
#include "runtime/engine/generate.h"
#include "runtime/engine/request.h"
#include "runtime/engine/scheduler.h"
#include "rpc/model_layers.h"
#include "runtime/status.h"
#include "tidal/v1/inference.pb.h"

namespace tidal::rpc {

// The longest request_id, in bytes: every response of a request carries it, and a client's
// receive limit (gRPC's default: 4 MB a message) must hold each of them.
inline constexpr size_t kMaxRequestIdBytes = 256;
// A request_id (Generate's, Cancel's) over kMaxRequestIdBytes: INVALID_ARGUMENT naming the field
// and the limit ("request_id: at most 256 bytes (got 300)").
Status check_request_id(const std::string& id);

// Same code (kOutOfMemory -> RESOURCE_EXHAUSTED, kAlreadyExists -> ALREADY_EXISTS) and message.
grpc::Status to_grpc_status(const Status& status);

// The prompt of a Generate (or Tokenize) request, as the request builder takes it.
Status prompt_from_proto(const v1::GenerateRequest& req, engine::PromptSpec* out);

// The attention policy (kind, budget, granularity, sparse start, re-selection layers, agreement)
// and the correction interval, validated against the model and the KV cache's page size. A
// field that has no effect under the kind is refused, as the command line refuses such flags.
// `model_layers` (may be null) fills the layers of a tidal request that gives none.
Status policy_from_proto(const v1::AttentionPolicy& in, int64_t correction_interval,
                         const model::ModelConfig& config, int64_t kv_page_size,
                         model::AttentionPolicy* out, const ModelLayers* model_layers = nullptr);

// Builds the engine's request from a GenerateRequest (its request_id is checked, not copied): the
// prompt and EOS ids by engine::build_prompt; sampling and stop conditions (unset fields keep the
// engine's defaults); the policy by policy_from_proto. `tokenizer` may be null: then only an ids
// prompt (or empty text with a config BOS) works, and stop strings are refused. Bad input is
// kInvalidArgument with a one-line message that names the field ("sampling.top_p: ...",
// "attention.budget: ..."). `out` is overwritten only on success.
Status from_proto(const v1::GenerateRequest& req, const model::Tokenizer* tokenizer,
                  const model::ModelConfig& config, int64_t kv_page_size,
                  engine::GenerationRequest* out, const ModelLayers* model_layers = nullptr);

v1::FinishReason to_proto(engine::FinishReason reason);
void to_proto(const model::AttentionStats& in, v1::AttentionStats* out);
// The final message of a finished request: finish reason, usage and attention statistics.
void to_proto(const engine::GenerationResult& result, v1::FinalMessage* out);
void to_proto(const engine::SchedulerStats& in, v1::Stats* out);

// What GetModelInfo answers: the model, where and how it runs, its KV capacity, the limits and
// the defaults a request gets.
struct ServedModel {
  const engine::Engine* engine = nullptr;
  bool has_tokenizer = false;
  std::string model_dir;
  std::string version;
  int64_t max_queue = 0;
  ModelLayers layers;  // the defaults' tidal layers when found
};
void to_proto(const ServedModel& in, v1::ModelInfo* out);

// "tidal (budget 16, per-kv-head)" for the request log.
std::string policy_summary(const model::AttentionPolicy& policy);

}  // namespace tidal::rpc
