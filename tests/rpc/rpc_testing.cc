// SPDX-License-Identifier: Apache-2.0
#include "tests/rpc/rpc_testing.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <regex>
#include <sstream>
#include <thread>

namespace tidal::rpc::testing {

std::string stories_dir() { return ::tidal::testing::shared_path(kStories); }

std::unique_ptr<engine::Engine> load_stories(engine::EngineConfig config) {
  std::unique_ptr<engine::Engine> e;
  const Status st = engine::Engine::load(stories_dir(), config, &e);
  EXPECT_TRUE(st.ok()) << st.to_string();
  return e;
}

std::unique_ptr<model::Tokenizer> stories_tokenizer() {
  std::unique_ptr<model::Tokenizer> tok;
  const Status st = model::Tokenizer::load_from_dir(stories_dir(), &tok);
  EXPECT_TRUE(st.ok()) << st.to_string();
  return tok;
}

std::unique_ptr<Client> Served::client(const std::string& token) const {
  ClientOptions o;
  o.auth_token = token;
  o.timeout_seconds = 120;
  auto c = std::make_unique<Client>(server->address(), o);
  EXPECT_TRUE(c->wait_ready(30));
  return c;
}

std::unique_ptr<Served> serve_stories(engine::EngineConfig config, ServerOptions options) {
  auto s = std::make_unique<Served>();
  s->engine = load_stories(config);
  s->tokenizer = stories_tokenizer();
  options.listen = "127.0.0.1:0";
  options.model_dir = stories_dir();
  Served* raw = s.get();
  options.log = [raw](const std::string& line) { raw->log.push_back(line); };
  const Status st = Server::start(*s->engine, s->tokenizer.get(), options, &s->server);
  EXPECT_TRUE(st.ok()) << st.to_string();
  return s;
}

Streamed generate(Client& client, const v1::GenerateRequest& req) {
  Streamed s;
  s.status = client.generate(req, [&s](const v1::GenerateResponse& m) {
    s.ids.insert(s.ids.end(), m.token_ids().begin(), m.token_ids().end());
    s.text += m.text();
    s.messages += 1;
    if (m.has_final()) {
      s.has_final = true;
      s.final = m.final();
    }
    return true;
  });
  return s;
}

v1::GenerateRequest text_request(const std::string& prompt, float temperature, uint64_t seed,
                                 int64_t max_new_tokens) {
  v1::GenerateRequest r;
  r.set_text(prompt);
  r.mutable_sampling()->set_temperature(temperature);
  r.mutable_sampling()->set_seed(seed);
  r.mutable_stop()->set_max_new_tokens(max_new_tokens);
  return r;
}

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

TidalRun run_tidal(const std::string& args) {
  const std::string dir = ::tidal::testing::temp_dir("rpc");
  const std::string cmd =
      std::string(TIDAL_BINARY) + " " + args + " > " + dir + "/out 2> " + dir + "/err";
  const int status = std::system(cmd.c_str());
  TidalRun r;
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  r.out = ::tidal::testing::read_file(dir + "/out");
  r.err = ::tidal::testing::read_file(dir + "/err");
  return r;
}

std::vector<int32_t> parse_ids(const std::string& line) {
  std::vector<int32_t> ids;
  std::istringstream in(line);
  int32_t id = 0;
  while (in >> id) ids.push_back(id);
  return ids;
}

void ServeProcess::launch(const std::string& args) {
  dir_ = ::tidal::testing::temp_dir("serve");
  const std::string cmd = "exec " + std::string(TIDAL_BINARY) + " serve " + args +
                          " --listen 127.0.0.1:0 2> " + dir_ + "/err";
  pid_ = fork();
  if (pid_ == 0) {
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
}

bool ServeProcess::start(const std::string& args) {
  launch(args);
  const std::regex serving("serving on (127\\.0\\.0\\.1:[0-9]+)");
  const auto t0 = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60)) {
    std::smatch m;
    const std::string text = err();
    if (std::regex_search(text, m, serving)) {
      address_ = m[1];
      return true;
    }
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

ServeProcess::~ServeProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
}

void ServeProcess::signal(int sig) {
  if (pid_ > 0) kill(pid_, sig);
}

int ServeProcess::wait(double seconds, bool kill_on_timeout) {
  const auto t0 = std::chrono::steady_clock::now();
  while (pid_ > 0) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      term_signal_ = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
      return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > seconds) {
      if (!kill_on_timeout) return -2;
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
      pid_ = -1;
      return -2;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return -2;
}

std::string ServeProcess::err() const {
  std::FILE* f = std::fopen((dir_ + "/err").c_str(), "rb");
  if (f == nullptr) return "";
  std::string s;
  char buf[4096];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) s.append(buf, n);
  std::fclose(f);
  return s;
}

bool ServeProcess::wait_for_err(const std::string& text, double seconds) const {
  const auto t0 = std::chrono::steady_clock::now();
  while (true) {
    // Whether it has ended is asked before the read: an ended process has written all it will.
    siginfo_t info = {};
    const bool ended =
        pid_ <= 0 ||
        (waitid(P_PID, id_t(pid_), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid_);
    if (err().find(text) != std::string::npos) return true;
    if (ended) return false;
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > seconds) {
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace tidal::rpc::testing
