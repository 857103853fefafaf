// SPDX-License-Identifier: Apache-2.0
// Proto <-> engine conversions. Every check on a request happens here or in the engine's own
// validation before it is queued, so a bad request fails before any token is streamed.
#include "rpc/convert.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "runtime/check.h"

namespace tidal::rpc {
namespace {

// Unset optional fields keep SamplingParams' defaults.
engine::SamplingParams convert_sampling(const v1::SamplingParams& in) {
  engine::SamplingParams out;
  if (in.has_temperature()) out.temperature = in.temperature();
  if (in.has_top_k()) out.top_k = in.top_k();
  if (in.has_top_p()) out.top_p = in.top_p();
  if (in.has_min_p()) out.min_p = in.min_p();
  if (in.has_seed()) out.seed = in.seed();
  return out;
}

Status convert_stop(const v1::StopConditions& in, const model::Tokenizer* tokenizer,
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

void messages_from_proto(const v1::ChatMessages& in, std::vector<model::ChatMessage>* out) {
  for (const v1::ChatMessage& m : in.messages()) out->push_back({m.role(), m.content()});
}

}  // namespace

Status check_request_id(const std::string& id) {
  if (id.size() <= kMaxRequestIdBytes) return ok_status();
  return invalid_argument("request_id: at most " + std::to_string(kMaxRequestIdBytes) +
                          " bytes (got " + std::to_string(id.size()) + ")");
}

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
    case StatusCode::kAlreadyExists: return with(grpc::StatusCode::ALREADY_EXISTS);
  }
  TIDAL_CHECK(false, "to_grpc_status: unknown StatusCode");
  return with(grpc::StatusCode::UNKNOWN);
}

Status prompt_from_proto(const v1::GenerateRequest& req, engine::PromptSpec* out) {
  switch (req.prompt_case()) {
    case v1::GenerateRequest::PROMPT_NOT_SET:
      return invalid_argument("prompt: set one of text, ids or chat");
    case v1::GenerateRequest::kIds:
      out->kind = engine::PromptSpec::Kind::kIds;
      out->ids.assign(req.ids().ids().begin(), req.ids().ids().end());
      return ok_status();
    case v1::GenerateRequest::kChat:
      out->kind = engine::PromptSpec::Kind::kChat;
      messages_from_proto(req.chat(), &out->messages);
      return ok_status();
    case v1::GenerateRequest::kText:
      out->kind = engine::PromptSpec::Kind::kText;
      out->text = req.text();
      return ok_status();
  }
  return invalid_argument("prompt: unknown kind");
}

Status policy_from_proto(const v1::AttentionPolicy& in, int64_t correction_interval,
                         const model::ModelConfig& config, int64_t kv_page_size,
                         model::AttentionPolicy* out, const ModelLayers* model_layers) {
  model::AttentionPolicy p;
  if (!in.kind().empty()) {
    TIDAL_RETURN_IF_ERROR(
        model::parse_attention_kind(in.kind(), &p.kind).with_context("attention.kind"));
  }
  const bool is_tidal = p.kind == model::AttentionKind::kTidal;
  const bool sparse = p.kind != model::AttentionKind::kFull;
  // Fields the kind does not read would silently do nothing.
  const struct {
    const char* name;
    bool given, applies;
  } fields[] = {
      {"attention.budget", in.has_budget(), sparse},
      {"correction_interval", correction_interval != 0, sparse},
      {"attention.granularity", !in.granularity().empty(), is_tidal},
      {"attention.sparse_start", in.has_sparse_start(), is_tidal},
      {"attention.reselect_layers", in.has_reselect_layers(), is_tidal},
      {"attention.agreement", !in.agreement().empty(), is_tidal},
  };
  for (const auto& f : fields) {
    if (f.given && !f.applies) {
      return invalid_argument(std::string(f.name) + ": has no effect with attention kind '" +
                              model::attention_kind_name(p.kind) + "'");
    }
  }
  if (!in.granularity().empty()) {
    TIDAL_RETURN_IF_ERROR(model::parse_granularity(in.granularity(), &p.tidal.granularity)
                              .with_context("attention.granularity"));
  }
  if (!in.agreement().empty()) {
    TIDAL_RETURN_IF_ERROR(model::parse_agreement(in.agreement(), &p.tidal.agreement)
                              .with_context("attention.agreement"));
  }
  if (in.has_budget()) p.tidal.budget = p.quest.budget = in.budget();
  if (is_tidal && model_layers != nullptr && model_layers->found && !in.has_sparse_start() &&
      !in.has_reselect_layers()) {
    p.tidal.sparse_start = model_layers->sparse_start;
    p.tidal.reselect_layers = model_layers->reselect_layers;
  }
  if (in.has_sparse_start()) p.tidal.sparse_start = in.sparse_start();
  if (in.has_reselect_layers()) {
    p.tidal.reselect_layers = std::vector<int64_t>(in.reselect_layers().layers().begin(),
                                                   in.reselect_layers().layers().end());
  }
  p.quest.page_size = kv_page_size;
  p.correction_interval = correction_interval;
  TIDAL_RETURN_IF_ERROR(p.validate(config, kv_page_size).with_context("attention"));
  *out = std::move(p);
  return ok_status();
}

Status from_proto(const v1::GenerateRequest& req, const model::Tokenizer* tokenizer,
                  const model::ModelConfig& config, int64_t kv_page_size,
                  engine::GenerationRequest* out, const ModelLayers* model_layers) {
  TIDAL_CHECK(out != nullptr, "from_proto: out is null");
  TIDAL_RETURN_IF_ERROR(check_request_id(req.request_id()));
  engine::GenerationRequest r;
  engine::PromptSpec spec;
  TIDAL_RETURN_IF_ERROR(prompt_from_proto(req, &spec));
  TIDAL_RETURN_IF_ERROR(engine::build_prompt(spec, tokenizer, config, &r.prompt, &r.stop.eos_ids));
  const std::vector<int32_t> eos_ids = r.stop.eos_ids;
  r.sampling = convert_sampling(req.sampling());
  TIDAL_RETURN_IF_ERROR(convert_stop(req.stop(), tokenizer, &r.stop));
  r.stop.eos_ids = eos_ids;
  TIDAL_RETURN_IF_ERROR(r.sampling.validate().with_context("sampling"));
  TIDAL_RETURN_IF_ERROR(r.stop.validate().with_context("stop"));
  TIDAL_RETURN_IF_ERROR(policy_from_proto(req.attention(), req.correction_interval(), config,
                                          kv_page_size, &r.attention, model_layers));
  *out = std::move(r);
  return ok_status();
}

v1::FinishReason to_proto(engine::FinishReason reason) {
  switch (reason) {
    case engine::FinishReason::kEos: return v1::FINISH_REASON_EOS;
    case engine::FinishReason::kLength: return v1::FINISH_REASON_LENGTH;
    case engine::FinishReason::kStopString: return v1::FINISH_REASON_STOP_STRING;
    case engine::FinishReason::kContext: return v1::FINISH_REASON_CONTEXT;
    case engine::FinishReason::kCancelled: return v1::FINISH_REASON_CANCELLED;
    case engine::FinishReason::kKvCapacity: return v1::FINISH_REASON_KV_CAPACITY;
  }
  TIDAL_CHECK(false, "to_proto: unknown engine::FinishReason");
  return v1::FINISH_REASON_UNSPECIFIED;
}

void to_proto(const model::AttentionStats& in, v1::AttentionStats* out) {
  out->Clear();
  out->set_decode_steps(in.decode_steps);
  int64_t total = 0;
  for (int role = 0; role < 4; ++role) {
    total += in.rows[role];
    if (in.layer_steps[role] == 0) continue;
    v1::LayerRoleStats* r = out->add_roles();
    r->set_role(model::layer_role_name(model::LayerRole(role)));
    r->set_layer_steps(in.layer_steps[role]);
    r->set_rows(in.rows[role]);
  }
  out->set_rows_total(total);
  out->set_quest_metadata_rows(in.quest_metadata_rows);
  out->set_overlap_kept(in.overlap_kept);
  out->set_overlap_total(in.overlap_total);
  out->set_correction_passes(in.correction_passes);
  out->set_correction_tokens(in.correction_tokens);
}

void to_proto(const engine::GenerationResult& result, v1::FinalMessage* out) {
  out->set_finish(to_proto(result.finish));
  v1::Usage* usage = out->mutable_usage();
  usage->set_prompt_tokens(result.prompt_tokens);
  usage->set_generated_tokens(int64_t(result.tokens.size()));
  usage->set_queue_seconds(result.queue_seconds);
  usage->set_prefill_seconds(result.prefill_seconds);
  usage->set_first_token_seconds(result.first_token_seconds);
  usage->set_decode_seconds(result.decode_seconds);
  to_proto(result.stats, out->mutable_stats());
}

void to_proto(const engine::SchedulerStats& in, v1::Stats* out) {
  out->set_queued(in.queued);
  out->set_running(in.running);
  out->set_requests_finished(in.finished);
  out->set_requests_cancelled(in.cancelled);
  out->set_requests_failed(in.failed);
  out->set_prompt_tokens(in.prompt_tokens);
  out->set_generated_tokens(in.generated_tokens);
  out->set_kv_pages_used(in.kv_pages_used);
  out->set_kv_pages_free(in.kv_pages_total - in.kv_pages_used);
  out->set_kv_pages_total(in.kv_pages_total);
  out->set_kv_pages_reserved(in.kv_pages_reserved);
  out->set_page_size(in.page_size);
  out->set_tokens_per_second(in.tokens_per_second);
  out->set_steps(in.steps);
  out->set_mixed_steps(in.mixed_steps);
  out->set_correction_passes(in.correction_passes);
  out->set_correction_tokens(in.correction_tokens);
}

void to_proto(const ServedModel& in, v1::ModelInfo* out) {
  const engine::Engine& e = *in.engine;
  const model::ModelConfig& c = e.model_config();
  v1::ModelConfig* mc = out->mutable_config();
  mc->set_name(c.name);
  mc->set_num_layers(c.num_layers);
  mc->set_hidden(c.hidden);
  mc->set_inter(c.inter);
  mc->set_num_heads(c.num_heads);
  mc->set_num_kv_heads(c.num_kv_heads);
  mc->set_head_dim(c.head_dim);
  mc->set_vocab(c.vocab);
  mc->set_max_position_embeddings(c.max_position_embeddings);
  mc->set_bos_token_id(c.bos_token_id);
  for (int32_t id : c.eos_token_ids) mc->add_eos_token_ids(id);
  mc->set_rope_theta(double(c.rope.theta));
  mc->set_num_params(c.num_params());
  out->set_model_dir(in.model_dir);
  const engine::MemoryPlan& plan = e.memory_plan();
  out->set_device(plan.device_name);
  out->set_dtype(dtype_name(plan.dtype));
  const model::ModelShard& shard = e.shard();
  out->mutable_parallel()->set_tp(shard.parallel.tp_size);
  out->mutable_parallel()->set_pp(shard.parallel.pp_size);
  out->mutable_parallel()->set_world_size(shard.parallel.tp_size * shard.parallel.pp_size);
  for (const char* p : {"full", "tidal", "quest"}) out->add_policies(p);
  for (const char* g : {"per-query-head", "per-kv-head", "shared"}) out->add_granularities(g);
  v1::KvCapacity* kv = out->mutable_kv();
  kv->set_tokens(plan.kv_capacity_tokens);
  kv->set_page_size(e.config().page_size);
  kv->set_pages(plan.kv_capacity_tokens / e.config().page_size);
  kv->set_bytes(int64_t(plan.kv_bytes));
  kv->set_max_context(plan.max_context);
  v1::Limits* lim = out->mutable_limits();
  lim->set_max_batch(e.config().max_batch);
  lim->set_prefill_chunk(e.config().prefill_chunk);
  lim->set_max_budget(std::min(e.config().max_budget, plan.max_context));
  lim->set_max_queue(in.max_queue);
  const engine::SamplingParams sampling;
  const engine::StopConditions stop;
  const model::AttentionPolicy policy;
  v1::Defaults* d = out->mutable_defaults();
  d->set_max_new_tokens(stop.max_new_tokens);
  d->set_temperature(sampling.temperature);
  d->set_top_k(sampling.top_k);
  d->set_top_p(sampling.top_p);
  d->set_min_p(sampling.min_p);
  d->set_attention(model::attention_kind_name(policy.kind));
  d->set_budget(policy.tidal.budget);
  d->set_granularity(model::granularity_name(policy.tidal.granularity));
  model::AttentionPolicy tidal_policy = policy;
  tidal_policy.kind = model::AttentionKind::kTidal;
  if (in.layers.found) {
    tidal_policy.tidal.sparse_start = in.layers.sparse_start;
    tidal_policy.tidal.reselect_layers = in.layers.reselect_layers;
  }
  d->set_sparse_start(tidal_policy.tidal.sparse_start);
  for (int64_t l : model::reselect_layers(tidal_policy, c)) d->add_reselect_layers(l);
  d->set_agreement(model::agreement_name(policy.tidal.agreement));
  out->set_has_tokenizer(in.has_tokenizer);
  out->set_version(in.version);
}

std::string policy_summary(const model::AttentionPolicy& p) {
  std::string s = model::attention_kind_name(p.kind);
  if (p.kind == model::AttentionKind::kTidal) {
    s += " (budget " + std::to_string(p.tidal.budget) + ", " +
         model::granularity_name(p.tidal.granularity) + ")";
  } else if (p.kind == model::AttentionKind::kQuest) {
    s += " (budget " + std::to_string(p.quest.budget) + ")";
  }
  if (p.correction_interval > 0) {
    s += ", correction every " + std::to_string(p.correction_interval);
  }
  return s;
}

}  // namespace tidal::rpc
