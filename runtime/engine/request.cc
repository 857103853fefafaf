// SPDX-License-Identifier: Apache-2.0
#include "runtime/engine/request.h"

#include <algorithm>

#include "runtime/check.h"

namespace tidal::engine {
namespace {

// The id range check, naming where the ids came from ("ids[3]", "text").
Status check_vocab(const std::vector<int32_t>& ids, int64_t vocab, const std::string& from) {
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] >= 0 && ids[i] < vocab) continue;
    const std::string where = from == "ids" ? "ids[" + std::to_string(i) + "]" : from;
    return invalid_argument(where + ": token id " + std::to_string(ids[i]) +
                            " is outside the model's vocabulary [0, " + std::to_string(vocab) +
                            ")");
  }
  return ok_status();
}

void add_unique(int32_t id, std::vector<int32_t>* ids) {
  if (id >= 0 && std::find(ids->begin(), ids->end(), id) == ids->end()) ids->push_back(id);
}

// BOS alone: the unconditional start of a document (the config's BOS, else the tokenizer's).
Status bos_only(const model::Tokenizer* tokenizer, const model::ModelConfig& config,
                std::vector<int32_t>* prompt) {
  int32_t bos = config.bos_token_id;
  if (bos < 0 && tokenizer != nullptr) bos = tokenizer->bos_id();
  if (bos < 0) return invalid_argument("text: is empty and the model has no BOS token");
  prompt->assign(1, bos);
  return ok_status();
}

}  // namespace

Status build_prompt(const PromptSpec& spec, const model::Tokenizer* tokenizer,
                    const model::ModelConfig& config, std::vector<int32_t>* prompt_out,
                    std::vector<int32_t>* eos_out) {
  TIDAL_CHECK(config.vocab > 0, "build_prompt: the model config has no vocab");
  std::vector<int32_t> prompt, chat_eos;
  std::string from;
  switch (spec.kind) {
    case PromptSpec::Kind::kIds:
      if (spec.ids.empty()) return invalid_argument("ids: must not be empty");
      prompt = spec.ids;
      from = "ids";
      break;
    case PromptSpec::Kind::kChat:
      if (tokenizer == nullptr)
        return invalid_argument("chat: needs a tokenizer; this model has none");
      TIDAL_RETURN_IF_ERROR(model::apply_llama3_chat(*tokenizer, spec.messages, &prompt, &chat_eos)
                                .with_context("chat"));
      from = "chat";
      break;
    case PromptSpec::Kind::kText:
      if (spec.text.empty()) {
        TIDAL_RETURN_IF_ERROR(bos_only(tokenizer, config, &prompt));
      } else {
        if (tokenizer == nullptr)
          return invalid_argument("text: needs a tokenizer; send ids instead");
        TIDAL_RETURN_IF_ERROR(
            tokenizer->encode(spec.text, /*add_bos=*/true, &prompt).with_context("text"));
        if (prompt.empty()) return invalid_argument("text: encodes to no tokens");
      }
      from = "text";
      break;
  }
  TIDAL_RETURN_IF_ERROR(check_vocab(prompt, config.vocab, from));
  std::vector<int32_t> eos;
  for (int32_t id : config.eos_token_ids) add_unique(id, &eos);
  if (tokenizer != nullptr) add_unique(tokenizer->eos_id(), &eos);
  for (int32_t id : chat_eos) add_unique(id, &eos);
  *prompt_out = std::move(prompt);
  *eos_out = std::move(eos);
  return ok_status();
}

RequestState::RequestState(GenerationRequest request, const model::Tokenizer* tokenizer)
    : request_(std::move(request)), tokenizer_(tokenizer) {
  result_.prompt_tokens = int64_t(request_.prompt.size());
  if (tokenizer_ != nullptr) {
    // The prompt is the decoder's context: text that follows it keeps its leading space.
    decoder_ =
        std::make_unique<model::StreamDecoder>(*tokenizer_, /*skip_special=*/true, request_.prompt);
    matcher_ = std::make_unique<StopStringMatcher>(request_.stop.stop_strings);
  }
}

Status RequestState::accept(int32_t token, bool context_full, GenerationEvent* ev,
                            std::optional<FinishReason>* finish) {
  result_.tokens.push_back(token);
  ev->token = token;
  ev->text.clear();
  ev->finished = false;
  bool stop_string = false;
  if (decoder_) {
    std::string piece;
    const Status st = decoder_->push(token, &piece);
    if (!st.ok()) {
      return invalid_argument("the model produced token id " + std::to_string(token) +
                              ", which the tokenizer cannot decode (its vocabulary has " +
                              std::to_string(tokenizer_->vocab_size()) + " ids): " + st.message());
    }
    stop_string = matcher_->feed(piece, &ev->text);
    result_.text += ev->text;
  }
  const StopConditions& stop = request_.stop;
  const bool eos = !stop.ignore_eos &&
                   std::find(stop.eos_ids.begin(), stop.eos_ids.end(), token) != stop.eos_ids.end();
  finish->reset();
  if (stop_string) {
    *finish = FinishReason::kStopString;
  } else if (eos) {
    *finish = FinishReason::kEos;
  } else if (int64_t(result_.tokens.size()) >= stop.max_new_tokens) {
    *finish = FinishReason::kLength;
  } else if (context_full) {
    *finish = FinishReason::kContext;
  }
  return ok_status();
}

void RequestState::finish(FinishReason reason, GenerationEvent* ev) {
  result_.finish = reason;
  ev->token = -1;
  ev->text.clear();
  ev->finished = true;
  if (decoder_) {
    std::string rest;
    const Status st = decoder_->finish(&rest);
    TIDAL_CHECK(st.ok(), "RequestState: stream decoder failed: " + st.message());
    // A stop string the flushed text completes outranks the other reasons, as in accept() (vLLM
    // reports "stop" there too); not a cancellation: the client or an error ended the request.
    if (reason != FinishReason::kStopString) {
      if (matcher_->feed(rest, &ev->text) && reason != FinishReason::kCancelled) {
        result_.finish = FinishReason::kStopString;
      }
      matcher_->flush(&ev->text);
    }
    result_.text += ev->text;
  }
}

}  // namespace tidal::engine
