// SPDX-License-Identifier: Apache-2.0
// The one place where the public API (proto/inference.proto) meets the engine: requests in,
// streamed tokens and finish/usage out, and Status -> grpc::Status. Handlers stay thin.
#pragma once

#include <grpcpp/support/status.h>

#include <string>

#include "model/config.h"
#include "model/tokenizer.h"
#include "rpc/proto/inference.pb.h"
#include "runtime/engine/generate.h"
#include "runtime/status.h"

namespace tidal::rpc {

// Same code (kOutOfMemory -> RESOURCE_EXHAUSTED) and the same message.
grpc::Status to_grpc_status(const Status& status);

// Builds the engine's request from a GenerateRequest:
// - prompt: `text` is encoded with BOS (empty text is BOS alone: config.bos_token_id, else the
//   tokenizer's); `ids` are taken as-is (non-empty, each in [0, config.vocab)); `chat` wraps
//   `text` in the Llama-3 template and adds the ids that end an assistant turn to the EOS ids.
// - sampling / stop: unset fields keep the engine's defaults.
// - EOS ids: config.eos_token_ids, then tokenizer->eos_id() when it has one, de-duplicated.
// `tokenizer` may be null; then only an `ids` prompt (or empty text with a config BOS) works,
// and stop strings are rejected. Bad input is kInvalidArgument with a one-line message that
// names the field (e.g. "sampling.top_p: ..."). `out` is overwritten only on success.
Status from_proto(const GenerateRequest& req, const model::Tokenizer* tokenizer,
                  const model::ModelConfig& config, engine::GenerationRequest* out);

// One streamed event. A token event sets token_id and text (finish and usage stay unset); a
// finished event gives token_id -1 and the text flushed at the end, to which finish_to_proto
// then adds finish and usage. `out` is cleared first.
void to_proto(const engine::GenerationEvent& ev, const std::string& request_id,
              GenerateResponse* out);

// Marks `out` as the request's last message: request_id, token_id -1, finish and usage from
// `result`. Keeps out->text(), so it may be called on the response to_proto built from the
// finished event (or on a fresh message).
void finish_to_proto(const engine::GenerationResult& result, const std::string& request_id,
                     GenerateResponse* out);

FinishReason to_proto(engine::FinishReason reason);

}  // namespace tidal::rpc
