// SPDX-License-Identifier: Apache-2.0
// The coordinator (DESIGN.md §3): the gRPC server of tidal.v1.Inference over one engine (one
// process, or rank 0 of an mpirun job), its scheduler stepping on a thread of its own, and the
// standard grpc.health.v1.Health service of the gRPC library. Handlers use gRPC's callback API:
// a stream holds no thread while it waits for tokens, so many clients cost no threads.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "model/tokenizer.h"
#include "rpc/model_layers.h"
#include "runtime/engine/engine.h"
#include "runtime/engine/scheduler.h"
#include "runtime/status.h"

namespace grpc {
class Server;
}  // namespace grpc

namespace tidal::rpc {

class InferenceService;

struct ServerOptions {
  std::string listen = "127.0.0.1:50051";  // host:port; port 0 picks a free one
  // The shared secret every call of tidal.v1.Inference must carry as metadata "authorization:
  // Bearer <token>" (UNAUTHENTICATED otherwise). Empty: none. Health checks need none.
  std::string auth_token;
  std::string model_dir;  // for GetModelInfo
  std::string version;    // for GetModelInfo
  // The model's own tidal layers (launch/policy_file.h reads them from tidal_policy.json): a
  // tidal request that sets no layers takes them, and GetModelInfo reports them as the default.
  ModelLayers model_layers;
  engine::SchedulerOptions scheduler;
  // Receives one line per finished request (id, prompt / generated tokens, policy, queue time,
  // TTFT, tokens/s, finish). Empty: no log.
  std::function<void(const std::string&)> log;
};

// The service name the health service reports on (and "" for the whole server).
constexpr const char* kServiceName = "tidal.v1.Inference";

class Server {
 public:
  // Starts the scheduler over `engine` and serves on options.listen. `tokenizer` may be null
  // (ids prompts only). The engine and tokenizer must outlive the server; nothing else may use
  // the engine meanwhile.
  static Status start(engine::Engine& engine, const model::Tokenizer* tokenizer,
                      const ServerOptions& options, std::unique_ptr<Server>* out);
  ~Server();  // shutdown(0) unless done
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // "host:port" as bound (the port resolved when 0 was asked).
  const std::string& address() const { return address_; }
  int port() const { return port_; }

  // Graceful shutdown: stops admitting (Generate fails with UNAVAILABLE; health reports
  // NOT_SERVING), lets live requests finish, and their streams write their last messages, for
  // up to `drain_seconds`, then cancels the rest (their streams end with UNAVAILABLE) and stops
  // serving. Returns how many requests it cancelled, or cancel_all did during the drain.
  // Idempotent.
  int64_t shutdown(double drain_seconds);
  // Any thread: cancels every live request now (their streams end with UNAVAILABLE); cuts a
  // shutdown's drain short.
  void cancel_all();

  engine::SchedulerStats stats() const;

 private:
  Server() = default;

  std::unique_ptr<engine::Scheduler> scheduler_;
  std::unique_ptr<InferenceService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  int port_ = 0;
  bool shut_down_ = false;
  // SchedulerStats::cancelled when cancel_all first ran; -1: it has not.
  std::atomic<int64_t> cancelled_before_cut_{-1};
};

}  // namespace tidal::rpc
