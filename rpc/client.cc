// SPDX-License-Identifier: Apache-2.0
#include "rpc/client.h"

#include <algorithm>
#include <chrono>

namespace tidal::rpc {
namespace {

constexpr int kMaxMessageBytes = 64 << 20;
// Deadlines further away are clamped: the clock counts int64 nanoseconds since 1970, which run
// out in 2262 (and 1e13 s in microseconds is already past int64).
constexpr double kMaxDeadlineSeconds = 1e9;  // ~31 years

// `seconds` from now; NaN and values <= 0 are now (an expired deadline).
std::chrono::system_clock::time_point after(double seconds) {
  const double s = seconds > 0 ? std::min(seconds, kMaxDeadlineSeconds) : 0.0;
  return std::chrono::system_clock::now() +
         std::chrono::microseconds(static_cast<int64_t>(s * 1e6));
}

// A deadline for every call unless the timeout is 0 (or negative): NaN is not "none".
bool has_deadline(double timeout_seconds) { return !(timeout_seconds <= 0); }

}  // namespace

Client::Client(const std::string& target, const ClientOptions& options) : options_(options) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  channel_ = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
  stub_ = v1::Inference::NewStub(channel_);
  health_ = grpc::health::v1::Health::NewStub(channel_);
}

bool Client::wait_ready(double seconds) { return channel_->WaitForConnected(after(seconds)); }

void Client::prepare(grpc::ClientContext* ctx) const {
  if (!options_.auth_token.empty()) {
    ctx->AddMetadata("authorization", "Bearer " + options_.auth_token);
  }
  if (has_deadline(options_.timeout_seconds)) ctx->set_deadline(after(options_.timeout_seconds));
}

grpc::Status Client::generate(const v1::GenerateRequest& request,
                              const std::function<bool(const v1::GenerateResponse&)>& on_message,
                              v1::FinalMessage* final) {
  grpc::ClientContext ctx;
  return generate(&ctx, request, on_message, final);
}

grpc::Status Client::generate(grpc::ClientContext* ctx, const v1::GenerateRequest& request,
                              const std::function<bool(const v1::GenerateResponse&)>& on_message,
                              v1::FinalMessage* final) {
  prepare(ctx);
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader = stub_->Generate(ctx, request);
  v1::GenerateResponse msg;
  while (reader->Read(&msg)) {
    if (final != nullptr && msg.has_final()) *final = msg.final();
    if (!on_message(msg)) {
      ctx->TryCancel();
      break;
    }
  }
  return reader->Finish();
}

grpc::Status Client::cancel(const std::string& request_id, bool* found) {
  grpc::ClientContext ctx;
  prepare(&ctx);
  v1::CancelRequest req;
  req.set_request_id(request_id);
  v1::CancelResponse resp;
  const grpc::Status st = stub_->Cancel(&ctx, req, &resp);
  if (found != nullptr) *found = resp.found();
  return st;
}

grpc::Status Client::tokenize(const v1::TokenizeRequest& request, v1::TokenizeResponse* response) {
  grpc::ClientContext ctx;
  prepare(&ctx);
  return stub_->Tokenize(&ctx, request, response);
}

grpc::Status Client::model_info(v1::ModelInfo* info) {
  grpc::ClientContext ctx;
  prepare(&ctx);
  return stub_->GetModelInfo(&ctx, v1::GetModelInfoRequest(), info);
}

grpc::Status Client::stats(v1::Stats* stats) {
  grpc::ClientContext ctx;
  prepare(&ctx);
  return stub_->GetStats(&ctx, v1::GetStatsRequest(), stats);
}

grpc::Status Client::health(const std::string& service,
                            grpc::health::v1::HealthCheckResponse::ServingStatus* status) {
  grpc::ClientContext ctx;
  if (has_deadline(options_.timeout_seconds)) ctx.set_deadline(after(options_.timeout_seconds));
  grpc::health::v1::HealthCheckRequest req;
  req.set_service(service);
  grpc::health::v1::HealthCheckResponse resp;
  const grpc::Status st = health_->Check(&ctx, req, &resp);
  if (status != nullptr) *status = resp.status();
  return st;
}

}  // namespace tidal::rpc
