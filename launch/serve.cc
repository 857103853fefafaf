// SPDX-License-Identifier: Apache-2.0
// `tidal serve`: loads a model and serves tidal.v1.Inference (rpc/service.h) on --listen until
// SIGINT or SIGTERM; then it stops admitting, lets running requests finish for --drain-seconds
// (a second signal cuts that short), cancels the rest with a status and exits 0. A signal while
// the model loads stops the process at once, serving nothing. The signals are blocked in every
// thread and taken by a thread of their own (launch/stop_signals.h), so no thread is interrupted
// mid-step.
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <memory>
#include <string>

#include "launch/cli.h"
#include "launch/flag_names.h"
#include "launch/policy_file.h"
#include "launch/presets.h"
#include "launch/stop_signals.h"
#include "model/weights.h"
#include "rpc/service.h"
#include "runtime/size_math.h"

namespace tidal::launch {
namespace {

// The secret from --auth-token, or the first line of --auth-token-file.
Status auth_token(const ServeOptions& o, std::string* token) {
  *token = o.auth_token;
  if (!o.auth_token_file_given) return ok_status();
  return read_auth_token_file(o.auth_token_file, token);
}

void log_line(const std::string& line) {
  std::fprintf(stderr, "tidal: %s\n", line.c_str());  // one call: one whole line
}

}  // namespace

Status check_serve_flags(const ServeOptions& o) {
  if (o.max_queue < 1) return invalid_argument("--max-queue must be >= 1");
  TIDAL_RETURN_IF_ERROR(check_max_budget_flag(o.engine));
  if (o.seed_given && o.preset.empty()) {
    return invalid_argument(
        "--seed has no effect without --preset (a model's weights are its checkpoint's)");
  }
  // An empty secret would silently serve without authentication, as would an empty path of
  // --auth-token-file (or its empty first line, refused in auth_token()).
  TIDAL_RETURN_IF_ERROR(check_auth_token_flags(
      o.auth_token, o.auth_token_given, o.auth_token_file, o.auth_token_file_given,
      "give the secret calls must carry, or leave the flag out to serve without authentication"));
  return check_seconds(o.drain_seconds, "--drain-seconds");
}

Status run_serve(const ServeOptions& o, const DefaultModel& defaults) {
  StopSignals signals;  // before any thread starts (the CPU path's pool, MPI's, gRPC's)
  if (o.parallel.requested()) return run_serve_parallel(o, defaults, signals);
  TIDAL_RETURN_IF_ERROR(check_serve_flags(o));  // before the model loads
  engine::EngineConfig config = o.engine;
  TIDAL_RETURN_IF_ERROR(apply_device_flags(o.device, &config));
  TIDAL_RETURN_IF_ERROR(name_flags(config.validate()));
  if (!o.preset.empty()) {  // no directory: no tokenizer, GetModelInfo names the preset
    std::unique_ptr<engine::Engine> engine;
    TIDAL_RETURN_IF_ERROR(create_preset_engine(o.preset, o.seed, config, &engine));
    return serve_with(o, "preset:" + o.preset, *engine, signals);
  }
  std::string dir;
  TIDAL_RETURN_IF_ERROR(model_dir_or_default(o.model_dir, defaults, &dir));
  model::ModelConfig cfg;
  TIDAL_RETURN_IF_ERROR(model::load_model_config(dir, &cfg));
  TIDAL_RETURN_IF_ERROR(name_flags(engine::check_fits(cfg, config)).with_context(dir));
  std::unique_ptr<engine::Engine> engine;
  TIDAL_RETURN_IF_ERROR(engine::Engine::load(dir, config, &engine));
  return serve_with(o, dir, *engine, signals);
}

Status serve_with(const ServeOptions& o, const std::string& dir, engine::Engine& engine,
                  StopSignals& signals) {
  TIDAL_RETURN_IF_ERROR(check_serve_flags(o));
  rpc::ServerOptions so;
  so.listen = o.listen;
  TIDAL_RETURN_IF_ERROR(auth_token(o, &so.auth_token));
  so.model_dir = dir;
  so.version = o.version;
  // The model's tidal_policy.json: the layers a tidal request without layers gets. Checked
  // against the model once, here, so a file made for another model stops the server at start.
  ModelPolicy file;
  TIDAL_RETURN_IF_ERROR(load_model_policy(dir, &file));
  if (file.found()) {
    model::AttentionPolicy probe;
    probe.kind = model::AttentionKind::kTidal;
    probe.quest.page_size = engine.config().page_size;
    TIDAL_RETURN_IF_ERROR(apply_model_policy(file, /*layers_given=*/false,
                                             engine.model_config(), &probe));
    so.model_layers = {true, file.sparse_start, file.reselect_layers, file.path};
  }
  so.scheduler.max_queue = o.max_queue;
  if (!o.quiet) so.log = log_line;
  std::unique_ptr<model::Tokenizer> tok;
  const Status tst = model::Tokenizer::load_from_dir(dir, &tok);
  if (!tst.ok() && tst.code() != StatusCode::kNotFound) return tst;
  // From here on a signal is held for the shutdown below, as the server may be up: one that
  // comes while it starts stops it once it has started.
  signals.serving();
  std::unique_ptr<rpc::Server> server;
  TIDAL_RETURN_IF_ERROR(
      rpc::Server::start(engine, tok.get(), so, &server).with_context("--listen"));
  const engine::MemoryPlan& plan = engine.memory_plan();
  std::fprintf(stderr, "tidal: serving on %s\n", server->address().c_str());
  std::fprintf(stderr,
               "tidal: model %s on %s (%s), %lld sequences per step, KV cache %lld tokens "
               "(%s), prefill chunk %lld%s; SIGINT or SIGTERM stops\n",
               engine.model_config().name.c_str(), plan.device_name.c_str(), dtype_name(plan.dtype),
               static_cast<long long>(engine.config().max_batch),
               static_cast<long long>(plan.kv_capacity_tokens), human_bytes(plan.kv_bytes).c_str(),
               static_cast<long long>(engine.config().prefill_chunk),
               so.auth_token.empty() ? "" : ", auth token required");
  if (file.found()) {
    std::fprintf(stderr, "tidal: tidal requests without layers take %s from %s\n",
                 layers_label(file.sparse_start, file.reselect_layers).c_str(), file.path.c_str());
  }

  const int sig = signals.wait();
  const engine::SchedulerStats st = server->stats();
  std::fprintf(stderr,
               "tidal: %s: shutting down; %lld requests live, draining for up to %.0f s (a second "
               "signal cancels them now)\n",
               sig == SIGINT ? "SIGINT" : "SIGTERM", static_cast<long long>(st.queued + st.running),
               o.drain_seconds);
  // A second signal ends the drain: the live requests are cancelled at once.
  signals.on_signal([&server] { server->cancel_all(); });
  const int64_t cancelled = server->shutdown(o.drain_seconds);
  signals.on_signal(nullptr);
  const engine::SchedulerStats end = server->stats();
  std::fprintf(stderr,
               "tidal: stopped: %lld requests finished, %lld cancelled (%lld at the drain's end), "
               "%lld failed; %lld tokens generated\n",
               static_cast<long long>(end.finished), static_cast<long long>(end.cancelled),
               static_cast<long long>(cancelled), static_cast<long long>(end.failed),
               static_cast<long long>(end.generated_tokens));
  return ok_status();
}

}  // namespace tidal::launch
