// SPDX-License-Identifier: Apache-2.0
// Helpers of the coordinator tests: stories260K engines, an in-process server on a free
// loopback port, streamed generations collected whole, and the tidal command run as a process
// (once, or as a server that is signalled and waited for).
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "model/tokenizer.h"
#include "rpc/client.h"
#include "rpc/service.h"
#include "runtime/engine/engine.h"
#include "tests/testing/testing.h"

namespace tidal::rpc::testing {

constexpr const char* kStories = "models/stories260K/hf";

std::string stories_dir();
// stories260K on the CPU (f32); skips nothing: callers skip without the fixture first.
std::unique_ptr<engine::Engine> load_stories(engine::EngineConfig config);
std::unique_ptr<model::Tokenizer> stories_tokenizer();

// An engine, its tokenizer and a server over them on 127.0.0.1:<free port>.
struct Served {
  std::unique_ptr<engine::Engine> engine;
  std::unique_ptr<model::Tokenizer> tokenizer;
  std::unique_ptr<Server> server;
  std::vector<std::string> log;  // the request log lines (read after shutdown)
  std::unique_ptr<Client> client(const std::string& token = "") const;
};
std::unique_ptr<Served> serve_stories(engine::EngineConfig config,
                                      ServerOptions options = ServerOptions());

// One generation, collected.
struct Streamed {
  grpc::Status status;
  std::vector<int32_t> ids;
  std::string text;
  int messages = 0;
  bool has_final = false;
  v1::FinalMessage final;
};
Streamed generate(Client& client, const v1::GenerateRequest& req);

// A text request with the flags' meaning of `tidal generate` (temperature, seed, max tokens).
v1::GenerateRequest text_request(const std::string& prompt, float temperature, uint64_t seed,
                                 int64_t max_new_tokens);

// `tidal ARGS` run to its end.
struct TidalRun {
  int exit_code = -1;  // -1 when killed by a signal
  std::string out;
  std::string err;
};
TidalRun run_tidal(const std::string& args);
// Ids printed by `tidal generate ... --print-ids` (its stdout's only line).
std::vector<int32_t> parse_ids(const std::string& line);
std::string quote(const std::string& s);

// `tidal serve ARGS --listen 127.0.0.1:0` as a child process.
class ServeProcess {
 public:
  // Starts it and waits (up to 60 s) for its "serving on" line; address() is then set.
  bool start(const std::string& args);
  // Starts it without waiting for anything.
  void launch(const std::string& args);
  ~ServeProcess();  // kills it when still running
  const std::string& address() const { return address_; }
  void signal(int sig);
  // Waits for the exit (up to `seconds`); its exit code, -1 when killed by a signal (then
  // term_signal() names it), -2 on a timeout (it is killed then, unless `kill_on_timeout` is
  // false: then it runs on and may be waited for again).
  int wait(double seconds, bool kill_on_timeout = true);
  int term_signal() const { return term_signal_; }
  std::string err() const;
  // Waits (up to `seconds`) for `text` to appear in its stderr; false when it has not by then, or
  // the process ended without writing it. start() returns at the "serving on" line, and serve
  // prints more start-up lines after it (README): they may not be written yet.
  bool wait_for_err(const std::string& text, double seconds) const;

 private:
  pid_t pid_ = -1;
  int term_signal_ = 0;
  std::string dir_;
  std::string address_;
};

}  // namespace tidal::rpc::testing
