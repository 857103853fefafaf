// SPDX-License-Identifier: Apache-2.0
// Proto <-> engine conversions. Every check on a request happens here, before the engine sees
// it, so a bad request fails with INVALID_ARGUMENT before any token is streamed.
#include "rpc/convert.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "runtime/check.h"

namespace tidal::rpc {
namespace {

// The id range check, naming where the ids came from ("ids[3]", "text").
Status check_vocab(const std::vector<int32_t>& ids, int64_t vocab, bool from_ids) {
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] >= 0 && ids[i] < vocab) continue;
    const std::string where = from_ids ? "ids[" + std::to_string(i) + "]" : "text";
    return invalid_argument(where + ": token id " + std::to_string(ids[i]) +
                            " is outside the model's vocabulary [0, " + std::to_string(vocab) +
                            ")");
  }
  return ok_status();
}

// Fills `prompt` (and, for chat, the template's extra EOS ids) from the request's prompt oneof.
Status convert_prompt(const GenerateRequest& req, const model::Tokenizer* tokenizer,
                      const model::ModelConfig& config, std::vector<int32_t>* prompt,
                      std::vector<int32_t>* chat_eos) {
  switch (req.prompt_case()) {
    case GenerateRequest::PROMPT_NOT_SET: return invalid_argument("prompt: set either text or ids");
    case GenerateRequest::kIds: {
      if (req.chat()) return invalid_argument("chat: needs a text prompt, not ids");
      if (req.ids().ids().empty()) return invalid_argument("ids: must not be empty");
      prompt->assign(req.ids().ids().begin(), req.ids().ids().end());
      return check_vocab(*prompt, config.vocab, /*from_ids=*/true);
    }
    case GenerateRequest::kText: break;
  }
  const std::string& text = req.text();
  if (req.chat()) {
    if (tokenizer == nullptr) {
      return invalid_argument("chat: needs a tokenizer; this model has none");
    }
    TIDAL_RETURN_IF_ERROR(
        model::apply_llama3_chat_template(*tokenizer, text, prompt, chat_eos).with_context("chat"));
  } else if (text.empty()) {
    // BOS alone: the unconditional start of a document.
    int32_t bos = config.bos_token_id;
    if (bos < 0 && tokenizer != nullptr) bos = tokenizer->bos_id();
    if (bos < 0) return invalid_argument("text: is empty and the model has no BOS token");
    prompt->assign(1, bos);
  } else {
    if (tokenizer == nullptr) return invalid_argument("text: needs a tokenizer; send ids instead");
    TIDAL_RETURN_IF_ERROR(tokenizer->encode(text, /*add_bos=*/true, prompt).with_context("text"));
    if (prompt->empty()) return invalid_argument("text: encodes to no tokens");
  }
  return check_vocab(*prompt, config.vocab, /*from_ids=*/false);
}

// Unset optional fields keep SamplingParams' defaults.
engine::SamplingParams convert_sampling(const SamplingParams& in) {
  engine::SamplingParams out;
  if (in.has_temperature()) out.temperature = in.temperature();
  if (in.has_top_k()) out.top_k = in.top_k();
  if (in.has_top_p()) out.top_p = in.top_p();
  if (in.has_min_p()) out.min_p = in.min_p();
  if (in.has_seed()) out.seed = in.seed();
  return out;
}

Status convert_stop(const StopConditions& in, const model::Tokenizer* tokenizer,
                    engine::StopConditions* out) {
  if (in.has_max_new_tokens()) out->max_new_tokens = in.max_new_tokens();
  for (int i = 0; i < in.stop_strings_size(); ++i) {
    if (in.stop_strings(i).empty()) {
      return invalid_argument("stop.stop_strings[" + std::to_string(i) + "]: must not be empty");
    }
  }
  if (in.stop_strings_size() > 0 && tokenizer == nullptr) {
    return invalid_argument("stop.stop_strings: need a tokenizer; this model has none");
  }
  out->stop_strings.assign(in.stop_strings().begin(), in.stop_strings().end());
  out->ignore_eos = in.ignore_eos();
  return ok_status();
}

void add_unique(int32_t id, std::vector<int32_t>* ids) {
  if (id >= 0 && std::find(ids->begin(), ids->end(), id) == ids->end()) ids->push_back(id);
}

}  // namespace

grpc::Status to_grpc_status(const Status& status) {
  const auto with = [&status](grpc::StatusCode code) {
    return grpc::Status(code, status.message());
  };
  switch (status.code()) {
    case StatusCode::kOk: return grpc::Status::OK;
    case StatusCode::kInvalidArgument: return with(grpc::StatusCode::INVALID_ARGUMENT);
    case StatusCode::kNotFound: return with(grpc::StatusCode::NOT_FOUND);
    case StatusCode::kOutOfRange: return with(grpc::StatusCode::OUT_OF_RANGE);
    case StatusCode::kOutOfMemory: return with(grpc::StatusCode::RESOURCE_EXHAUSTED);
    case StatusCode::kUnavailable: return with(grpc::StatusCode::UNAVAILABLE);
    case StatusCode::kInternal: return with(grpc::StatusCode::INTERNAL);
  }
  TIDAL_CHECK(false, "to_grpc_status: unknown StatusCode");
  return with(grpc::StatusCode::UNKNOWN);
}

Status from_proto(const GenerateRequest& req, const model::Tokenizer* tokenizer,
                  const model::ModelConfig& config, engine::GenerationRequest* out) {
  TIDAL_CHECK(out != nullptr, "from_proto: out is null");
  TIDAL_CHECK(config.vocab > 0, "from_proto: the model config has no vocab");
  engine::GenerationRequest r;
  std::vector<int32_t> chat_eos;
  TIDAL_RETURN_IF_ERROR(convert_prompt(req, tokenizer, config, &r.prompt, &chat_eos));
  r.sampling = convert_sampling(req.sampling());
  TIDAL_RETURN_IF_ERROR(convert_stop(req.stop(), tokenizer, &r.stop));
  for (int32_t id : config.eos_token_ids) add_unique(id, &r.stop.eos_ids);
  if (tokenizer != nullptr) add_unique(tokenizer->eos_id(), &r.stop.eos_ids);
  for (int32_t id : chat_eos) add_unique(id, &r.stop.eos_ids);
  TIDAL_RETURN_IF_ERROR(r.sampling.validate().with_context("sampling"));
  TIDAL_RETURN_IF_ERROR(r.stop.validate().with_context("stop"));
  *out = std::move(r);
  return ok_status();
}

FinishReason to_proto(engine::FinishReason reason) {
  switch (reason) {
    case engine::FinishReason::kEos: return FINISH_REASON_EOS;
    case engine::FinishReason::kLength: return FINISH_REASON_LENGTH;
    case engine::FinishReason::kStopString: return FINISH_REASON_STOP_STRING;
    case engine::FinishReason::kContext: return FINISH_REASON_CONTEXT;
    case engine::FinishReason::kCancelled: return FINISH_REASON_CANCELLED;
    case engine::FinishReason::kKvCapacity: return FINISH_REASON_KV_CAPACITY;
  }
  TIDAL_CHECK(false, "to_proto: unknown engine::FinishReason");
  return FINISH_REASON_UNSPECIFIED;
}

void to_proto(const engine::GenerationEvent& ev, const std::string& request_id,
              GenerateResponse* out) {
  out->Clear();
  out->set_request_id(request_id);
  out->set_token_id(ev.finished ? -1 : ev.token);
  out->set_text(ev.text);
}

void finish_to_proto(const engine::GenerationResult& result, const std::string& request_id,
                     GenerateResponse* out) {
  out->set_request_id(request_id);
  out->set_token_id(-1);
  out->set_finish(to_proto(result.finish));
  Usage* usage = out->mutable_usage();
  usage->set_prompt_tokens(result.prompt_tokens);
  usage->set_generated_tokens(int64_t(result.tokens.size()));
  usage->set_prefill_seconds(result.prefill_seconds);
  usage->set_decode_seconds(result.decode_seconds);
}

}  // namespace tidal::rpc
