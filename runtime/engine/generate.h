// SPDX-License-Identifier: Apache-2.0
// The generation loop of `tidal generate`: the coordinator's scheduler (scheduler.h) run on the
// caller's thread until every request has finished: requests are admitted into free sequence
// slots as KV pages allow, prefilled in chunks interleaved with the decode steps of the others,
// sampled and checked per request (request.h), with KV cache correction passes scheduled, and
// tokens (and, with a tokenizer, text) streamed as they come.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/tokenizer.h"
#include "runtime/engine/engine.h"
#include "runtime/engine/sampler.h"

namespace tidal::engine {

// Stop strings a request may carry, and their length. Every generated token is matched against
// each of them on the scheduler's one thread, so without a bound one request (say, a million
// strings from the wire) would slow every step of every other. Generous against what clients use
// (OpenAI's API takes 4; TGI's default is 4).
inline constexpr size_t kMaxStopStrings = 64;
inline constexpr size_t kMaxStopStringBytes = 1024;

struct StopConditions {
  std::vector<int32_t> eos_ids;           // any ends the request (unless ignore_eos)
  int64_t max_new_tokens = 256;           // generated tokens at most; Default: 256
  std::vector<std::string> stop_strings;  // text that ends the request (needs a tokenizer)
  bool ignore_eos = false;                // keep going past EOS ids; Default: false

  Status validate() const;
};

struct GenerationRequest {
  std::vector<int32_t> prompt;  // at least one token
  SamplingParams sampling;
  StopConditions stop;
  model::AttentionPolicy attention;  // decode-step attention (and cache correction); Default: full
};

// Why a request ended. Running out is a finish reason like the others, not an error: kContext
// when the sequence reached max_context tokens, kKvCapacity when the KV cache had no page left
// for its next token (other sequences hold the rest, or kv_capacity is below max_context).
enum class FinishReason { kEos, kLength, kStopString, kContext, kCancelled, kKvCapacity };
const char* finish_reason_name(FinishReason r);

struct GenerationResult {
  std::vector<int32_t> tokens;  // generated ids (an EOS that ended the request included)
  std::string text;             // generated text (with a tokenizer; stop string cut off)
  FinishReason finish = FinishReason::kLength;
  int64_t prompt_tokens = 0;
  // KV cache rows the request held at its end: the prompt and every generated token but the last
  // (which was sampled, never fed back).
  int64_t cached_tokens = 0;
  double queue_seconds = 0;        // from its submission to its first prefill step
  double prefill_seconds = 0;      // from its first prefill step to its first token
  double first_token_seconds = 0;  // from its submission to its first token (TTFT)
  double decode_seconds = 0;    // wall time of the decode steps it took part in
  model::AttentionStats stats;  // KV rows read per layer role, list overlap, corrections
};

// A streamed piece: `token` was generated for request `request` (-1 with `finished` at the
// end), `text` is newly printable text. Return false to cancel that request. The finished event
// also carries the request's result and, when it failed (non-finite logits, an engine error, or
// a cancellation with a reason), that status.
struct GenerationEvent {
  size_t request = 0;
  int32_t token = -1;
  std::string text;
  bool finished = false;
  const GenerationResult* result = nullptr;  // the finished event only
  Status status;                             // the finished event only
};
using GenerationCallback = std::function<bool(const GenerationEvent&)>;

// Runs every request to completion. `tokenizer` may be null (then there is no text and stop
// strings are rejected). Bad requests fail before any work starts. Among several requests an
// error names its request ("request 1: ..."); a lone request's error is the check's own message.
Status generate(Engine& engine, const std::vector<GenerationRequest>& requests,
                const model::Tokenizer* tokenizer, const GenerationCallback& on_event,
                std::vector<GenerationResult>* results);

}  // namespace tidal::engine
