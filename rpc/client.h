// SPDX-License-Identifier: Apache-2.0
// The C++ client library of tidal.v1.Inference (and the standard health service): one channel,
// the shared secret (when the server wants one) added to every call, streaming generation with
// a callback per message, and the unary calls. A Client is safe to use from many threads at once.
#pragma once

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>

#include "grpc_health/v1/health.grpc.pb.h"
#include "tidal/v1/inference.grpc.pb.h"

namespace tidal::rpc {

struct ClientOptions {
  std::string auth_token;  // sent as "authorization: Bearer <token>"; empty: none
  // Per call deadline; 0 (or less): none. Values past ~31 years (inf included) are clamped to
  // that; NaN is an expired deadline (every call fails with DEADLINE_EXCEEDED), not "none".
  double timeout_seconds = 0;
};

class Client {
 public:
  // Connects lazily: the first call (or wait_ready) opens the channel to `target` (host:port).
  Client(const std::string& target, const ClientOptions& options = ClientOptions());

  // Blocks until the channel is connected or `seconds` pass (clamped as timeout_seconds; NaN and
  // values <= 0: no wait).
  bool wait_ready(double seconds);

  // Streams a generation: `on_message` gets every response in order (return false to stop
  // reading: the call is cancelled, as a client that disconnects). `final` receives the last
  // message's final part when one came. Returns the call's status (OK when the request finished,
  // CANCELLED when on_message stopped it).
  grpc::Status generate(const v1::GenerateRequest& request,
                        const std::function<bool(const v1::GenerateResponse&)>& on_message,
                        v1::FinalMessage* final = nullptr);
  // The same with a caller-owned context (to cancel from another thread: ctx->TryCancel()).
  grpc::Status generate(grpc::ClientContext* ctx, const v1::GenerateRequest& request,
                        const std::function<bool(const v1::GenerateResponse&)>& on_message,
                        v1::FinalMessage* final = nullptr);

  grpc::Status cancel(const std::string& request_id, bool* found);
  grpc::Status tokenize(const v1::TokenizeRequest& request, v1::TokenizeResponse* response);
  grpc::Status model_info(v1::ModelInfo* info);
  grpc::Status stats(v1::Stats* stats);
  // grpc.health.v1.Health/Check for `service` ("" for the server, "tidal.v1.Inference").
  grpc::Status health(const std::string& service,
                      grpc::health::v1::HealthCheckResponse::ServingStatus* status);

  // A context with the token and deadline set, for calls made through stub() directly.
  void prepare(grpc::ClientContext* ctx) const;
  v1::Inference::Stub& stub() { return *stub_; }

 private:
  ClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Inference::Stub> stub_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
};

}  // namespace tidal::rpc
