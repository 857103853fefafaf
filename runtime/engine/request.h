// SPDX-License-Identifier: Apache-2.0
// One request from its prompt to its finish, shared by `tidal generate` and the coordinator:
// the request builder (prompt ids and EOS ids from text, ids or chat messages) and the request
// state machine (each sampled token decoded to text with the prompt as context, stop strings,
// EOS, the token limit and the context; the text held back at the end flushed).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/tokenizer.h"
#include "runtime/engine/generate.h"
#include "runtime/engine/stop_strings.h"

namespace tidal::engine {

// A prompt as a caller gives it.
struct PromptSpec {
  enum class Kind {
    kText,  // `text`, encoded with BOS; an empty text is BOS alone
    kIds,   // `ids`, taken as-is
    kChat,  // `messages` in the Llama-3 instruct template (model::apply_llama3_chat)
  };
  Kind kind = Kind::kText;
  std::string text;
  std::vector<int32_t> ids;
  std::vector<model::ChatMessage> messages;
};

// The request builder: `prompt` from `spec`, and the ids that end the request: the config's
// EOS ids, the tokenizer's, then (chat) those ending an assistant turn, each once in that order.
// `tokenizer` may be null: then only ids (or an empty text, with a config BOS) work. Every id is
// checked against config.vocab. Errors are kInvalidArgument, one line naming the part: "ids[3]:
// ...", "text: ...", "chat: messages[1].role: ...". The outputs change only on success.
Status build_prompt(const PromptSpec& spec, const model::Tokenizer* tokenizer,
                    const model::ModelConfig& config, std::vector<int32_t>* prompt,
                    std::vector<int32_t>* eos_ids);

// The request state machine: what generate() and the coordinator do with every token of a
// request between the engine's steps.
class RequestState {
 public:
  // `tokenizer` may be null (no text; stop strings then never match). Keeps a reference to
  // `request`'s copy.
  RequestState(GenerationRequest request, const model::Tokenizer* tokenizer);

  const GenerationRequest& request() const { return request_; }
  GenerationResult& result() { return result_; }
  const GenerationResult& result() const { return result_; }

  // A sampled token: appended to the result, its newly printable text (stop strings held back)
  // written to ev->text with ev->token. Returns in `*finish` the reason it ends the request, if
  // it does: a stop string, then EOS, then max_new_tokens, then `context_full` (no room to feed
  // the token back). Fails when the tokenizer cannot decode the token.
  Status accept(int32_t token, bool context_full, GenerationEvent* ev,
                std::optional<FinishReason>* finish);
  // Ends the request: result().finish = reason, the held-back text flushed into ev->text (not
  // after a stop string), ev->finished set. When that text completes a stop string, the match is
  // cut off and result().finish is kStopString instead (unless `reason` is kCancelled).
  void finish(FinishReason reason, GenerationEvent* ev);

 private:
  GenerationRequest request_;
  const model::Tokenizer* tokenizer_;
  std::unique_ptr<model::StreamDecoder> decoder_;
  std::unique_ptr<StopStringMatcher> matcher_;
  GenerationResult result_;
};

}  // namespace tidal::engine
