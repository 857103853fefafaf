// SPDX-License-Identifier: Apache-2.0
#include "rpc/service.h"

#include <grpc/grpc.h>
#include <grpcpp/ext/health_check_service_server_builder_option.h>
#include <grpcpp/health_check_service_interface.h>

#include <chrono>

#include "rpc/convert.h"
#include "rpc/generate_stream.h"

namespace tidal::rpc {
namespace {

constexpr int kMaxMessageBytes = 64 << 20;  // a prompt of a few MB of text fits

// Compares without an early exit, so the time taken says nothing about the token.
bool same_secret(const grpc::string_ref& given, const std::string& want) {
  unsigned char diff = given.size() == want.size() ? 0 : 1;
  for (size_t i = 0; i < want.size(); ++i) {
    diff |= static_cast<unsigned char>(want[i] ^ (i < given.size() ? given.data()[i] : 0));
  }
  return diff == 0;
}

grpc::ServerUnaryReactor* finish(grpc::CallbackServerContext* ctx, const grpc::Status& st) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(st);
  return reactor;
}

}  // namespace

InferenceService::InferenceService(engine::Engine& engine, const model::Tokenizer* tokenizer,
                                   engine::Scheduler& scheduler, const ServerOptions& options)
    : engine_(engine),
      tokenizer_(tokenizer),
      scheduler_(scheduler),
      options_(options),
      started_(std::chrono::steady_clock::now()) {
  std::random_device device;
  std::seed_seq seq{device(), device(), device(), device()};
  seeds_.seed(seq);
}

uint64_t InferenceService::draw_seed() {
  std::lock_guard<std::mutex> lock(seeds_mu_);
  return seeds_();
}

void InferenceService::stream_started() {
  std::lock_guard<std::mutex> lock(streams_mu_);
  streams_ += 1;
}

void InferenceService::stream_done() {
  std::lock_guard<std::mutex> lock(streams_mu_);
  streams_ -= 1;
  streams_cv_.notify_all();
}

bool InferenceService::wait_streams(double seconds) {
  std::unique_lock<std::mutex> lock(streams_mu_);
  streams_cv_.wait_for(lock, engine::bounded_wait(seconds),
                       [this] { return streams_ == 0 || stop_waiting_; });
  return streams_ == 0;
}

void InferenceService::stop_waiting() {
  std::lock_guard<std::mutex> lock(streams_mu_);
  stop_waiting_ = true;
  streams_cv_.notify_all();
}

grpc::Status InferenceService::check_auth(const grpc::CallbackServerContext& ctx) const {
  if (options_.auth_token.empty()) return grpc::Status::OK;
  const std::string want = "Bearer " + options_.auth_token;
  const auto& md = ctx.client_metadata();
  const auto range = md.equal_range("authorization");
  for (auto it = range.first; it != range.second; ++it) {
    if (same_secret(it->second, want)) return grpc::Status::OK;
  }
  return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                      "this server needs its auth token: metadata 'authorization: Bearer <token>'");
}

grpc::ServerWriteReactor<v1::GenerateResponse>* InferenceService::Generate(
    grpc::CallbackServerContext* ctx, const v1::GenerateRequest* req) {
  auto* stream = new GenerateStream(this, ctx);
  stream->begin(*req);
  return stream;
}

grpc::ServerUnaryReactor* InferenceService::Cancel(grpc::CallbackServerContext* ctx,
                                                   const v1::CancelRequest* req,
                                                   v1::CancelResponse* resp) {
  grpc::Status st = check_auth(*ctx);
  if (!st.ok()) return finish(ctx, st);
  if (req->request_id().empty()) {
    return finish(ctx, grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                    "request_id: name the request to cancel"));
  }
  // No live request holds a longer id: refused as Generate refuses it, not "not found".
  const Status id = check_request_id(req->request_id());
  if (!id.ok()) return finish(ctx, to_grpc_status(id));
  resp->set_found(scheduler_.cancel(req->request_id()));
  return finish(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* InferenceService::Tokenize(grpc::CallbackServerContext* ctx,
                                                     const v1::TokenizeRequest* req,
                                                     v1::TokenizeResponse* resp) {
  grpc::Status st = check_auth(*ctx);
  if (!st.ok()) return finish(ctx, st);
  if (req->input_case() == v1::TokenizeRequest::INPUT_NOT_SET) {
    // Checked here: the prompt rules below would name Generate's fields (prompt, ids).
    return finish(ctx, grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "input: set text or chat"));
  }
  if (req->input_case() == v1::TokenizeRequest::kChat && req->has_add_bos()) {
    // A field without effect is refused (inference.proto): the chat template places BOS itself.
    return finish(ctx, grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                    "add_bos: has no effect with chat input (the chat template "
                                    "places BOS); set it with text only"));
  }
  std::vector<int32_t> ids, eos;
  Status s;
  if (req->input_case() == v1::TokenizeRequest::kText && req->has_add_bos() && !req->add_bos()) {
    if (tokenizer_ == nullptr) {
      s = invalid_argument("text: needs a tokenizer; this model has none");
    } else {
      s = tokenizer_->encode(req->text(), /*add_bos=*/false, &ids).with_context("text");
    }
  } else {
    v1::GenerateRequest as_prompt;  // the same prompt rules as Generate
    if (req->input_case() == v1::TokenizeRequest::kText) as_prompt.set_text(req->text());
    if (req->input_case() == v1::TokenizeRequest::kChat) *as_prompt.mutable_chat() = req->chat();
    engine::PromptSpec spec;
    s = prompt_from_proto(as_prompt, &spec);
    if (s.ok()) s = engine::build_prompt(spec, tokenizer_, engine_.model_config(), &ids, &eos);
  }
  if (!s.ok()) return finish(ctx, to_grpc_status(s));
  for (int32_t id : ids) resp->add_ids(id);
  return finish(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* InferenceService::GetModelInfo(grpc::CallbackServerContext* ctx,
                                                         const v1::GetModelInfoRequest*,
                                                         v1::ModelInfo* resp) {
  grpc::Status st = check_auth(*ctx);
  if (!st.ok()) return finish(ctx, st);
  ServedModel m;
  m.engine = &engine_;
  m.has_tokenizer = tokenizer_ != nullptr;
  m.model_dir = options_.model_dir;
  m.version = options_.version;
  m.max_queue = options_.scheduler.max_queue;
  m.layers = options_.model_layers;
  to_proto(m, resp);
  return finish(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* InferenceService::GetStats(grpc::CallbackServerContext* ctx,
                                                     const v1::GetStatsRequest*, v1::Stats* resp) {
  grpc::Status st = check_auth(*ctx);
  if (!st.ok()) return finish(ctx, st);
  to_proto(scheduler_.stats(), resp);
  resp->set_uptime_seconds(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count());
  resp->set_draining(draining_);
  return finish(ctx, grpc::Status::OK);
}

Status Server::start(engine::Engine& engine, const model::Tokenizer* tokenizer,
                     const ServerOptions& options, std::unique_ptr<Server>* out) {
  std::unique_ptr<Server> s(new Server());
  s->scheduler_ = std::make_unique<engine::Scheduler>(engine, tokenizer, options.scheduler);
  s->service_ = std::make_unique<InferenceService>(engine, tokenizer, *s->scheduler_, options);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  // gRPC binds with SO_REUSEPORT by default: a port another server holds would be shared with
  // it (the kernel spreading connections over both) instead of refused.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddListeningPort(options.listen, grpc::InsecureServerCredentials(), &s->port_);
  builder.RegisterService(s->service_.get());
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  s->server_ = builder.BuildAndStart();
  if (s->server_ == nullptr || s->port_ == 0) {
    s->shut_down_ = true;  // nothing to shut down
    return unavailable("cannot serve on '" + options.listen +
                       "' (a host:port that is free, e.g. 127.0.0.1:50051)");
  }
  const size_t colon = options.listen.rfind(':');
  s->address_ = options.listen.substr(0, colon) + ":" + std::to_string(s->port_);
  grpc::HealthCheckServiceInterface* health = s->server_->GetHealthCheckService();
  if (health != nullptr) {
    health->SetServingStatus(kServiceName, true);
    health->SetServingStatus(true);
  }
  s->scheduler_->start();
  *out = std::move(s);
  return ok_status();
}

Server::~Server() { shutdown(0); }

int64_t Server::shutdown(double drain_seconds) {
  if (shut_down_) return 0;
  shut_down_ = true;
  const auto begun = std::chrono::steady_clock::now();
  service_->set_draining();
  scheduler_->stop_admitting();
  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  if (health != nullptr) {
    health->SetServingStatus(kServiceName, false);
    health->SetServingStatus(false);
  }
  if (!scheduler_->wait_idle(drain_seconds)) {
    cancel_all();
    scheduler_->wait_idle(60.0);  // cancellations are taken at the next step boundary
  }
  // Every request has ended, but a stream may still be writing its last messages (its final
  // one among them) to a client that reads slower than it was written: the rest of the drain is
  // theirs, as gRPC's deadline below would cancel them.
  const std::chrono::duration<double> spent = std::chrono::steady_clock::now() - begun;
  service_->wait_streams(drain_seconds - spent.count());
  // What is left is streams cut short, unary calls, which finish at once, and idle connections,
  // which gRPC closes only at the deadline (clients keep channels open).
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  scheduler_->stop();
  // The requests cancelled since the drain was cut (here or by a cancel_all meanwhile): live
  // ones that finished before the cancellation was taken are not among them.
  const int64_t before = cancelled_before_cut_;
  return before < 0 ? 0 : scheduler_->stats().cancelled - before;
}

void Server::cancel_all() {
  int64_t unset = -1;
  cancelled_before_cut_.compare_exchange_strong(unset, scheduler_->stats().cancelled);
  scheduler_->cancel_all(unavailable("the server is shutting down"));
  service_->stop_waiting();  // streams still writing to slow clients are cut too
}

engine::SchedulerStats Server::stats() const { return scheduler_->stats(); }

}  // namespace tidal::rpc
