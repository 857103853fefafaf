// SPDX-License-Identifier: Apache-2.0
// The service's internals: InferenceService (the callback handlers) and GenerateStream, the
// reactor of one Generate call. Only service.cc and generate_stream.cc include this.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <random>
#include <string>

#include "rpc/service.h"
#include "tidal/v1/inference.grpc.pb.h"

namespace tidal::rpc {

class InferenceService final : public v1::Inference::CallbackService {
 public:
  InferenceService(engine::Engine& engine, const model::Tokenizer* tokenizer,
                   engine::Scheduler& scheduler, const ServerOptions& options);

  grpc::ServerWriteReactor<v1::GenerateResponse>* Generate(grpc::CallbackServerContext* ctx,
                                                           const v1::GenerateRequest* req) override;
  grpc::ServerUnaryReactor* Cancel(grpc::CallbackServerContext* ctx, const v1::CancelRequest* req,
                                   v1::CancelResponse* resp) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* ctx,
                                     const v1::TokenizeRequest* req,
                                     v1::TokenizeResponse* resp) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* ctx,
                                         const v1::GetModelInfoRequest* req,
                                         v1::ModelInfo* resp) override;
  grpc::ServerUnaryReactor* GetStats(grpc::CallbackServerContext* ctx,
                                     const v1::GetStatsRequest* req, v1::Stats* resp) override;

  // OK, or UNAUTHENTICATED when a token is set and the call does not carry it.
  grpc::Status check_auth(const grpc::CallbackServerContext& ctx) const;
  void set_draining() { draining_ = true; }
  bool draining() const { return draining_; }
  // A request id for a request that came without one.
  std::string next_request_id() { return "tidal-" + std::to_string(++next_id_); }
  // A sampling seed for a request that came without one: a fresh draw each time (any thread).
  uint64_t draw_seed();
  void log(const std::string& line) const {
    if (options_.log) options_.log(line);
  }

  engine::Engine& engine() { return engine_; }
  const model::Tokenizer* tokenizer() const { return tokenizer_; }
  const ModelLayers& model_layers() const { return options_.model_layers; }
  engine::Scheduler& scheduler() { return scheduler_; }

  // Generate calls in progress, from the handler to OnDone: a stream whose request has ended
  // may still be writing its last messages to a client that reads slowly.
  void stream_started();
  void stream_done();
  // Blocks until no Generate call is in progress, `seconds` pass (as Scheduler::wait_idle's) or
  // stop_waiting() is called; true when none is.
  bool wait_streams(double seconds);
  void stop_waiting();

 private:
  engine::Engine& engine_;
  const model::Tokenizer* tokenizer_;
  engine::Scheduler& scheduler_;
  const ServerOptions options_;
  std::atomic<bool> draining_{false};
  std::atomic<int64_t> next_id_{0};
  std::mutex seeds_mu_;
  std::mt19937_64 seeds_;  // seeded from std::random_device
  std::chrono::steady_clock::time_point started_;
  std::mutex streams_mu_;
  std::condition_variable streams_cv_;  // a stream ended, or stop_waiting()
  int64_t streams_ = 0;
  bool stop_waiting_ = false;
};

// One Generate call: submits the request to the scheduler, and writes what the scheduler's
// events bring (tokens since the previous write, coalesced while a write is in flight; then the
// final message), finishing once the request has ended. A client that goes away (cancel,
// disconnect, deadline) cancels its request. Finish is called only after the scheduler's
// finished event, so the scheduler never calls a deleted reactor.
class GenerateStream final : public grpc::ServerWriteReactor<v1::GenerateResponse> {
 public:
  GenerateStream(InferenceService* service, grpc::CallbackServerContext* ctx);
  // Checks and submits the request; on failure finishes the call with the error.
  void begin(const v1::GenerateRequest& req);

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  // The scheduler's thread: a token, or the end. Returns false once the client is gone.
  bool on_event(const engine::GenerationEvent& ev);
  // Starts the next write, or finishes the call when everything is written. Unlocks `lock`
  // before calling into gRPC.
  void advance(std::unique_lock<std::mutex>& lock);
  void log_finish(const engine::GenerationEvent& ev) const;

  InferenceService* service_;
  grpc::CallbackServerContext* ctx_;
  std::string id_;
  std::string policy_;  // for the request log
  uint64_t seed_ = 0;   // the sampling seed used (given or drawn), for the final message
  engine::RequestHandle handle_ = 0;

  std::mutex mu_;
  v1::GenerateResponse pending_;  // tokens, text (and the final message) not yet written
  bool has_pending_ = false;
  v1::GenerateResponse out_;  // the message being written (alive until OnWriteDone)
  bool writing_ = false;
  bool final_ready_ = false;  // the request has ended
  grpc::Status final_status_;
  bool finish_called_ = false;
  bool gone_ = false;  // the client cancelled, disconnected, or a write failed
};

}  // namespace tidal::rpc
