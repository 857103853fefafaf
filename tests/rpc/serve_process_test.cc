// SPDX-License-Identifier: Apache-2.0
// `tidal serve` and `tidal client` as a user runs them: SIGTERM with streams running drains them
// (or, past --drain-seconds, ends them with a status) and the process exits 0; the client streams
// the same text as `tidal generate`, prints JSON lines, and fails with one line naming the gRPC
// code; the auth token; `serve --tp 1` (the distributed engine on one rank, as under mpirun)
// serves the same tokens.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <thread>

#include "tests/rpc/rpc_testing.h"

namespace tidal::rpc {
namespace {

using namespace ::tidal::rpc::testing;  // NOLINT: the helpers of this suite

std::unique_ptr<Client> connect(const std::string& address, const std::string& token = "") {
  ClientOptions o;
  o.auth_token = token;
  o.timeout_seconds = 120;
  auto c = std::make_unique<Client>(address, o);
  EXPECT_TRUE(c->wait_ready(30));
  return c;
}

std::string generate_cmd(const std::string& flags) {
  return "generate --model " + stories_dir() + " --device cpu " + flags;
}

TEST(ServeProcess, SigtermDrainsRunningStreamsAndExitsZero) {
  TIDAL_SKIP_WITHOUT_SHARED(kStories);
  ServeProcess serve;
  ASSERT_TRUE(serve.start("--model " + stories_dir() + " --device cpu --threads 1")) << serve.err();
  std::vector<Streamed> streams(3);
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&, i] {
      v1::GenerateRequest r = text_request("Once upon a time", 0.8f, uint64_t(i), 200);
      r.mutable_stop()->set_ignore_eos(true);
      streams[size_t(i)] = generate(*connect(serve.address()), r);
    });
  }
  auto client = connect(serve.address());
  v1::Stats s;
  // All three submitted and generating (a stream that came after the signal would be refused).
  while (client->stats(&s).ok() &&
         (s.running() + s.requests_finished() < 3 || s.generated_tokens() < 10)) {
    std::this_thread::yield();
  }
  serve.signal(SIGTERM);
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(serve.wait(60), 0) << serve.err();
  for (const Streamed& st : streams) {
    ASSERT_TRUE(st.status.ok()) << st.status.error_message();
    EXPECT_EQ(st.ids.size(), 200u);  // drained: each finished
  }
  const std::string err = serve.err();
  std::smatch live;
  ASSERT_TRUE(
      std::regex_search(err, live, std::regex("SIGTERM: shutting down; ([0-9]+) requests live")))
      << err;
  EXPECT_GE(std::stoi(live[1]), 1) << "the signal came while streams ran";
  EXPECT_NE(err.find("stopped: 3 requests finished"), std::string::npos) << err;
}

TEST(ServeProcess, SigtermPastTheDrainEndsStreamsWithAStatus) {
  TIDAL_SKIP_WITHOUT_SHARED(kStories);
  ServeProcess serve;
  ASSERT_TRUE(serve.start("--model " + stories_dir() + " --device cpu --drain-seconds 0"))
      << serve.err();
  std::vector<Streamed> streams(2);
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&, i] {
      v1::GenerateRequest r = text_request("Once upon a time", 0.8f, uint64_t(i), 480);
      r.mutable_stop()->set_ignore_eos(true);
      streams[size_t(i)] = generate(*connect(serve.address()), r);
    });
  }
  auto client = connect(serve.address());
  v1::Stats s;
  while (client->stats(&s).ok() && (s.running() < 2 || s.generated_tokens() < 4)) {
    std::this_thread::yield();
  }
  serve.signal(SIGINT);
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(serve.wait(60), 0) << serve.err();
  for (const Streamed& st : streams) {
    if (st.status.ok()) {  // it may have finished inside the (zero) drain
      EXPECT_EQ(st.ids.size(), 480u);
    } else {
      EXPECT_EQ(st.status.error_code(), grpc::StatusCode::UNAVAILABLE);
      EXPECT_NE(st.status.error_message().find("shutting down"), std::string::npos);
    }
  }
  EXPECT_NE(serve.err().find("SIGINT: shutting down"), std::string::npos) << serve.err();
}

// SIGINT or SIGTERM while the model loads: serve blocked both before loading and waited for them
// only once serving, so Ctrl-C did nothing until the load ended; then the server started
// ("serving on ...") and shut down at once. Here the load waits on a config.json that is a FIFO
// (nothing comes until the test writes it, which it does only if the signal did not stop serve;
// then serve printed "serving on", "SIGINT: shutting down; 0 requests live" and exited 0).
// The process now stops at once, with one line, by the signal itself (a shell's $? is 128 plus
// its number) and without serving.
TEST(ServeProcess, StopSignalDuringTheLoadStopsAtOnceWithoutServing) {
  TIDAL_SKIP_WITHOUT_SHARED(kStories);
  const std::string config = ::tidal::testing::read_file(stories_dir() + "/config.json");
  for (const int sig : {SIGINT, SIGTERM}) {
    const std::string name = sig == SIGINT ? "SIGINT" : "SIGTERM";
    const std::string dir = ::tidal::testing::temp_dir("loading_model");
    for (const char* f : {"model.safetensors", "tokenizer.json"}) {
      ::tidal::testing::write_file(dir + "/" + f,
                                   ::tidal::testing::read_file(stories_dir() + "/" + f));
    }
    const std::string fifo = dir + "/config.json";
    ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0) << fifo;
    ServeProcess serve;
    serve.launch("--model " + dir + " --device cpu --threads 1");
    // A writer's non-blocking open succeeds once serve has opened config.json for reading: the
    // load has begun, and waits in its read for as long as the test holds the FIFO open.
    int fd = -1;
    const auto t0 = std::chrono::steady_clock::now();
    while (fd < 0 && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(120)) {
      fd = open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
      if (fd < 0 && serve.wait(0, /*kill_on_timeout=*/false) != -2) break;  // it ended
      if (fd < 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ASSERT_GE(fd, 0) << name << ": serve never opened " << fifo << "; " << serve.err();
    serve.signal(sig);
    int code = serve.wait(60, /*kill_on_timeout=*/false);
    if (code == -2) {  // the signal changed nothing: let the load end, to show what comes of it
      // The load reads config.json again later: a plain file by then.
      ::tidal::testing::write_file(dir + "/config.plain", config);
      EXPECT_EQ(std::rename((dir + "/config.plain").c_str(), fifo.c_str()), 0);
      struct sigaction ignore = {}, before = {};
      ignore.sa_handler = SIG_IGN;  // serve may end meanwhile: EPIPE, not this test's end
      sigaction(SIGPIPE, &ignore, &before);
      fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
      const ssize_t n = write(fd, config.data(), config.size());
      sigaction(SIGPIPE, &before, nullptr);
      EXPECT_EQ(n, ssize_t(config.size())) << name << ": serve stopped reading";
    }
    close(fd);
    if (code == -2) code = serve.wait(120);
    const std::string err = serve.err();
    EXPECT_EQ(code, -1) << name << ": " << err;
    EXPECT_EQ(serve.term_signal(), sig) << name << ": " << err;
    EXPECT_NE(err.find("tidal: " + name + ": stopped while loading; not serving\n"),
              std::string::npos)
        << err;
    EXPECT_EQ(err.find("serving on"), std::string::npos) << err;
  }
}

TEST(ServeProcess, ClientStreamsWhatGenerateWritesAndFailsInOneLine) {
  TIDAL_SKIP_WITHOUT_SHARED(kStories);
  ServeProcess serve;
  ASSERT_TRUE(serve.start("--model " + stories_dir() + " --device cpu --auth-token-file " +
                          [] {
                            const std::string dir = ::tidal::testing::temp_dir("token");
                            ::tidal::testing::write_file(dir + "/token", "letmein\n");
                            return dir + "/token";
                          }()))
      << serve.err();
  const std::string flags =
      "--prompt 'Once upon a time' --temperature 0.7 --seed 3 --max-new-tokens 40 --attention "
      "tidal --budget 16 --granularity shared --correction-interval 8";
  const TidalRun want = run_tidal(generate_cmd(flags));
  ASSERT_EQ(want.exit_code, 0) << want.err;
  const std::string server = " --server " + serve.address();
  const TidalRun got = run_tidal("client" + server + " --auth-token letmein " + flags + " --stats");
  ASSERT_EQ(got.exit_code, 0) << got.err;
  EXPECT_EQ(got.out, want.out);
  EXPECT_NE(got.err.find("cache correction: 4 passes, 32 tokens recomputed"), std::string::npos)
      << got.err;
  EXPECT_NE(got.err.find("; seed 3\n"), std::string::npos) << got.err;
  // --json: one object per response; the last holds the final message.
  const TidalRun json = run_tidal("client" + server + " --auth-token letmein --json " + flags);
  ASSERT_EQ(json.exit_code, 0) << json.err;
  std::istringstream lines(json.out);
  std::string line, text;
  nlohmann::json last;
  while (std::getline(lines, line)) {
    last = nlohmann::json::parse(line);
    text += last.value("text", "");
  }
  EXPECT_EQ(text + "\n", want.out);
  EXPECT_EQ(last["final"]["finish"], "FINISH_REASON_LENGTH");
  EXPECT_EQ(last["final"]["usage"]["generated_tokens"], "40");
  EXPECT_EQ(last["final"]["seed"], "3");  // the seed used: here the one --seed gave
  // Failures: one line naming the code.
  const TidalRun noauth = run_tidal("client" + server + " " + flags);
  EXPECT_EQ(noauth.exit_code, 1);
  EXPECT_EQ(noauth.err.rfind("tidal: error: UNAUTHENTICATED: ", 0), 0u) << noauth.err;
  const TidalRun bad = run_tidal("client" + server + " --auth-token letmein --prompt-ids 1,600");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("tidal: error: INVALID_ARGUMENT: ids[1]: token id 600"), std::string::npos)
      << bad.err;
  EXPECT_EQ(std::count(bad.err.begin(), bad.err.end(), '\n'), 1) << bad.err;
  const TidalRun flag = run_tidal("client" + server + " --attention quest --granularity shared");
  EXPECT_EQ(flag.exit_code, 1);
  EXPECT_NE(flag.err.find("--granularity has no effect with --attention quest"), std::string::npos)
      << flag.err;
  // --chat without a prompt reads turns from stdin; stories260K has no chat template.
  const std::string turns = ::tidal::testing::temp_dir("chat") + "/turns";
  ::tidal::testing::write_file(turns, "Hi there\n");
  const TidalRun chat =
      run_tidal("client" + server + " --auth-token letmein --chat --system 'Be brief' < " + turns);
  EXPECT_EQ(chat.exit_code, 1);
  EXPECT_NE(chat.err.find("INVALID_ARGUMENT: chat: chat template: the tokenizer has no"),
            std::string::npos)
      << chat.err;
  const TidalRun health = run_tidal("client" + server + " --health");
  EXPECT_EQ(health.exit_code, 0) << health.err;
  EXPECT_EQ(health.out, "SERVING\n");
  const TidalRun info = run_tidal("client" + server + " --auth-token letmein --info");
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_EQ(nlohmann::json::parse(info.out)["config"]["vocab"], "512");
  const TidalRun tok =
      run_tidal("client" + server + " --auth-token letmein --tokenize --prompt 'Once upon a time'");
  EXPECT_EQ(tok.out, "1 403 407 261 378\n");
  const TidalRun none = run_tidal("client" + server + " --auth-token letmein --cancel nobody");
  EXPECT_EQ(none.exit_code, 1);
  EXPECT_NE(none.err.find("no live request has id 'nobody'"), std::string::npos) << none.err;
  const TidalRun down = run_tidal("client --server 127.0.0.1:1 --timeout 5 --prompt x");
  EXPECT_EQ(down.exit_code, 1);
  EXPECT_EQ(down.err.rfind("tidal: error: UNAVAILABLE: ", 0), 0u) << down.err;
  serve.signal(SIGTERM);
  EXPECT_EQ(serve.wait(60), 0);
}

// Without --seed the client sent seed 0 (generate's default), so the server's fresh draw for an
// unset seed never happened: every sampled run printed the same text and "seed 0". The seed is
// now unset unless --seed is given; the server's draw is printed and, sent back with --seed,
// reproduces the text. --seed 0 is sent as a seed like any other.
TEST(ServeProcess, ClientWithoutSeedGetsAFreshOneAndSendsAGivenOne) {
  TIDAL_SKIP_WITHOUT_SHARED(kStories);
  ServeProcess serve;
  ASSERT_TRUE(serve.start("--model " + stories_dir() + " --device cpu --threads 1")) << serve.err();
  const std::string flags =
      "--prompt 'Once upon a time' --temperature 1 --max-new-tokens 30 --ignore-eos";
  const std::string client = "client --server " + serve.address() + " " + flags;
  const std::regex seed_line("; seed ([0-9]+)\n");
  std::vector<std::string> seeds, texts;
  for (int i = 0; i < 2; ++i) {
    const TidalRun r = run_tidal(client);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    std::smatch m;
    ASSERT_TRUE(std::regex_search(r.err, m, seed_line)) << r.err;
    seeds.push_back(m[1]);
    texts.push_back(r.out);
  }
  EXPECT_NE(seeds[0], seeds[1]) << "each run without --seed gets its own draw";
  for (size_t i = 0; i < seeds.size(); ++i) {
    const TidalRun again = run_tidal(client + " --seed " + seeds[i]);
    ASSERT_EQ(again.exit_code, 0) << again.err;
    EXPECT_EQ(again.out, texts[i]) << "seed " << seeds[i];
    EXPECT_NE(again.err.find("; seed " + seeds[i] + "\n"), std::string::npos) << again.err;
  }
  const TidalRun want = run_tidal(generate_cmd(flags + " --seed 0"));
  ASSERT_EQ(want.exit_code, 0) << want.err;
  const TidalRun zero = run_tidal(client + " --seed 0");
  ASSERT_EQ(zero.exit_code, 0) << zero.err;
  EXPECT_EQ(zero.out, want.out);
  EXPECT_NE(zero.err.find("; seed 0\n"), std::string::npos) << zero.err;
  // --json reports the drawn seed in the final message too.
  const TidalRun json = run_tidal(client + " --json");
  ASSERT_EQ(json.exit_code, 0) << json.err;
  const std::string last = json.out.substr(json.out.rfind('\n', json.out.size() - 2) + 1);
  const nlohmann::json final = nlohmann::json::parse(last)["final"];
  ASSERT_TRUE(final.contains("seed")) << last;
  EXPECT_NE(final["seed"], "0") << last;
  serve.signal(SIGTERM);
  EXPECT_EQ(serve.wait(60), 0) << serve.err();
}

// A failed `tidal` run's stderr: exactly one line, the error holding `what`.
void expect_error(const std::string& err, const std::string& what) {
  EXPECT_EQ(err.rfind("tidal: error: ", 0), 0u) << err;
  EXPECT_NE(err.find(what), std::string::npos) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
}

// A tidal.v1.Inference server whose Generate streams "Once upon" and " a time" and then fails
// (a server shutting down, a proxy's reset); a request for the prompt "nothing" fails at once.
class FailingGenerate final : public v1::Inference::Service {
 public:
  grpc::Status Generate(grpc::ServerContext*, const v1::GenerateRequest* req,
                        grpc::ServerWriter<v1::GenerateResponse>* writer) override {
    if (req->text() != "nothing") {
      int32_t id = 400;
      for (const char* text : {"Once upon", " a time"}) {
        v1::GenerateResponse m;
        m.set_request_id("r1");
        m.add_token_ids(id++);
        m.set_text(text);
        writer->Write(m);
      }
    }
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the server is shutting down");
  }
};

// A stream that failed after some text left it without a newline, so on a terminal the error
// line ran on from it ("Once upon a timetidal: error: UNAVAILABLE: ..."). The partial text now
// ends with a newline as a finished one does (in a conversation too); a call that fails before
// any text still prints nothing on stdout.
TEST(ServeProcess, ClientEndsPartialTextWithANewlineWhenTheStreamFails) {
  FailingGenerate service;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  const std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  ASSERT_GT(port, 0);
  const std::string client = "client --timeout 60 --server 127.0.0.1:" + std::to_string(port);
  const std::string error = "tidal: error: UNAVAILABLE: the server is shutting down\n";
  const TidalRun partial = run_tidal(client + " --prompt 'Once'");
  EXPECT_EQ(partial.exit_code, 1);
  EXPECT_EQ(partial.out, "Once upon a time\n");
  EXPECT_EQ(partial.err, error);
  const std::string turns = ::tidal::testing::temp_dir("failing_chat") + "/turns";
  ::tidal::testing::write_file(turns, "Hi there\n");
  const TidalRun chat = run_tidal(client + " --chat < " + turns);
  EXPECT_EQ(chat.exit_code, 1);
  EXPECT_EQ(chat.out, "Once upon a time\n");
  EXPECT_EQ(chat.err, "> " + error);  // the prompt for the turn ("> "), then the error
  const TidalRun nothing = run_tidal(client + " --prompt nothing");
  EXPECT_EQ(nothing.exit_code, 1);
  EXPECT_EQ(nothing.out, "");
  EXPECT_EQ(nothing.err, error);
  // --json's lines each end with a newline already: nothing is added.
  const TidalRun json = run_tidal(client + " --json --prompt 'Once'");
  EXPECT_EQ(json.exit_code, 1);
  EXPECT_EQ(std::count(json.out.begin(), json.out.end(), '\n'), 2) << json.out;
  ASSERT_GE(json.out.size(), 2u);
  EXPECT_EQ(json.out.substr(json.out.size() - 2), "}\n") << json.out;
  server->Shutdown();
}

// --drain-seconds and --timeout take finite seconds up to a week: inf and 1e10 once overflowed
// the clocks (a drain that cancelled at once, undefined behaviour in the client) and NaN meant
// "no deadline". Refused before a model is loaded (no "using the embedded model" line) or a
// server is called.
TEST(ServeProcess, DurationFlagsAreFiniteAndAtMostAWeek) {
  for (const char* bad : {"inf", "1e10", "nan", "-1", "604801"}) {
    ServeProcess serve;
    EXPECT_FALSE(serve.start(std::string("--device cpu --drain-seconds ") + bad)) << bad;
    expect_error(serve.err(),
                 "--drain-seconds must be a number of seconds in [0, 604800] (a week), got ");
    const TidalRun client =
        run_tidal(std::string("client --server 127.0.0.1:1 --prompt x --timeout ") + bad);
    EXPECT_EQ(client.exit_code, 1) << bad;
    expect_error(client.err, "--timeout must be a number of seconds in [0, 604800] (a week), got ");
  }
  const TidalRun nan = run_tidal("client --server 127.0.0.1:1 --prompt x --timeout nan");
  EXPECT_NE(nan.err.find("got nan"), std::string::npos) << nan.err;
}

// Client flags that would do nothing are refused before any call (no server here): an empty
// --cancel id (it once fell through to streaming a whole generation), --system without --chat,
// a generation's flags beside a call that does not generate, an empty --prompt-file or
// --prompt-ids, and --json where the output stays plain text (or --print-ids under it).
TEST(ServeProcess, ClientRefusesFlagsWithoutEffect) {
  const std::string client = "client --server 127.0.0.1:1 --timeout 5 ";
  const struct {
    const char* flags;
    const char* error;
  } cases[] = {
      {"--cancel ''", "--cancel needs the id of the request to cancel"},
      {"--cancel '' --prompt 'Once upon'", "--cancel needs the id of the request to cancel"},
      {"--cancel r1 --max-new-tokens 4", "--max-new-tokens has no effect with --cancel"},
      {"--system 'Be brief' --prompt hi", "--system has no effect without --chat"},
      {"--info --temperature 0.5", "--temperature has no effect with --info"},
      {"--health --attention tidal --budget 16", "--attention has no effect with --health"},
      {"--server-stats --request-id r1", "--request-id has no effect with --server-stats"},
      {"--tokenize --prompt hi --seed 3", "--seed has no effect with --tokenize"},
      // An empty path was the flag's absence: --chat then opened a conversation on stdin.
      {"--prompt-file ''", "--prompt-file needs a path (got an empty one)"},
      {"--chat --prompt-file ''", "--prompt-file needs a path (got an empty one)"},
      {"--prompt hi --prompt-file ''", "give one of --prompt, --prompt-file, --prompt-ids"},
      // An empty id list too: it generated from BOS alone, and --chat opened a conversation.
      {"--prompt-ids ''", "--prompt-ids needs token ids (got an empty list)"},
      {"--chat --prompt-ids ''", "--prompt-ids needs token ids (got an empty list)"},
      {"--prompt hi --prompt-ids ''", "give one of --prompt, --prompt-file, --prompt-ids"},
      // --json printed these calls' plain text, and every JSON line holds the ids already.
      {"--health --json", "--json has no effect with --health"},
      {"--cancel r1 --json", "--json has no effect with --cancel"},
      {"--tokenize --prompt hi --json", "--json has no effect with --tokenize"},
      {"--prompt hi --json --print-ids", "--print-ids has no effect with --json"},
  };
  for (const auto& tc : cases) {
    const TidalRun r = run_tidal(client + tc.flags);
    EXPECT_EQ(r.exit_code, 1) << tc.flags;
    expect_error(r.err, tc.error);
  }
  // What each call reads passes the checks and fails only at the (absent) server.
  for (const char* ok : {"--tokenize --chat --system 'Be brief' --prompt hi", "--info --json",
                         "--server-stats --json", "--prompt hi --json", "--cancel r1",
                         "--chat --system 'Be brief' --prompt hi"}) {
    const TidalRun r = run_tidal(client + ok);
    EXPECT_EQ(r.exit_code, 1) << ok;
    expect_error(r.err, "UNAVAILABLE: ");
  }
}

// An empty token (--auth-token "$UNSET_VAR", an empty --auth-token-file path, a file whose first
// line is empty) was sent as no token at all: a server that wants one answered UNAUTHENTICATED
// without naming the flag, and an open server was called as if the flag were absent. Refused
// before any call, naming the flag, as `serve` refuses them.
TEST(ServeProcess, ClientRefusesAnEmptyAuthToken) {
  const std::string client = "client --server 127.0.0.1:1 --timeout 5 ";
  const std::string dir = ::tidal::testing::temp_dir("client_token");
  ::tidal::testing::write_file(dir + "/blank_first", "\nsecret\n");
  ::tidal::testing::write_file(dir + "/token", "secret\r\n");
  const struct {
    std::string flags;
    const char* error;
  } cases[] = {
      {"--prompt hi --auth-token ''", "--auth-token is empty"},
      {"--info --auth-token ''", "--auth-token is empty"},
      {"--prompt hi --auth-token-file ''", "--auth-token-file needs a path (got an empty one)"},
      {"--prompt hi --auth-token-file " + dir + "/blank_first",
       "--auth-token-file: the file's first line is empty"},
      {"--prompt hi --auth-token-file " + dir + "/absent", "--auth-token-file: "},
  };
  for (const auto& tc : cases) {
    const TidalRun r = run_tidal(client + tc.flags);
    EXPECT_EQ(r.exit_code, 1) << tc.flags;
    expect_error(r.err, tc.error);
  }
  const std::vector<std::string> oks = {"--prompt hi --auth-token secret",
                                        "--prompt hi --auth-token-file " + dir + "/token"};
  for (const std::string& ok : oks) {
    const TidalRun r = run_tidal(client + ok);
    EXPECT_EQ(r.exit_code, 1) << ok;
    expect_error(r.err, "UNAVAILABLE: ");
  }
}

// An empty --server reached gRPC, which logged two lines of its own and failed with "UNKNOWN:
// Failed to create secure client channel" (the channel is not secure, and no flag was named).
// Refused before any call, whichever call the flags ask for.
TEST(ServeProcess, ClientRefusesAnEmptyServer) {
  for (const char* call : {"--prompt hi", "--health", "--info", "--cancel r1"}) {
    const TidalRun r = run_tidal(std::string("client --timeout 5 --server '' ") + call);
    EXPECT_EQ(r.exit_code, 1) << call;
    expect_error(r.err, "--server needs host:port (got an empty one)");
  }
}

// The error line names the gRPC code, but only the codes the tidal server sends had names: the
// others, which reach a client from another server or a proxy on --server, printed as UNKNOWN.
// A gRPC server without the tidal service (here one serving only an unimplemented health
// service) answers every call UNIMPLEMENTED.
TEST(ServeProcess, ClientNamesCodesTheTidalServerNeverSends) {
  grpc::health::v1::Health::Service health;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&health);
  const std::unique_ptr<grpc::Server> other = builder.BuildAndStart();
  ASSERT_NE(other, nullptr);
  ASSERT_GT(port, 0);
  const std::string client = "client --timeout 30 --server 127.0.0.1:" + std::to_string(port);
  for (const char* call :
       {"--prompt hi", "--info", "--server-stats", "--cancel r1", "--tokenize --prompt hi"}) {
    const TidalRun r = run_tidal(client + " " + call);
    EXPECT_EQ(r.exit_code, 1) << call;
    expect_error(r.err,
                 "tidal: error: UNIMPLEMENTED: the server on --server does not serve this "
                 "call (not a tidal server, or an older one)");
  }
  other->Shutdown();
}

// The client's sampling and stop values are refused before any call, naming the flag as
// `generate` does (they once said "temperature must be ...", the library's field).
TEST(ServeProcess, ClientSamplingErrorsNameTheFlag) {
  const std::string client = "client --server 127.0.0.1:1 --timeout 5 --prompt hi ";
  const struct {
    const char* flags;
    const char* error;
  } cases[] = {
      {"--temperature -1", "--temperature must be a finite number >= 0"},
      {"--top-p nan", "--top-p must be in (0, 1] (got nan)"},
      {"--top-k -2", "--top-k must be >= 0"},
      {"--min-p 2", "--min-p must be in [0, 1]"},
      {"--max-new-tokens 0", "--max-new-tokens must be >= 1"},
  };
  for (const auto& tc : cases) {
    const TidalRun r = run_tidal(client + tc.flags);
    EXPECT_EQ(r.exit_code, 1) << tc.flags;
    expect_error(r.err, tc.error);
  }
}

// serve --seed seeds only --preset's random weights: without --preset it did nothing (generate
// refuses --weights-seed likewise). Refused before a model loads.
TEST(ServeProcess, SeedWithoutPresetIsRefused) {
  ServeProcess serve;
  EXPECT_FALSE(serve.start("--device cpu --seed 7"));
  expect_error(serve.err(), "--seed has no effect without --preset");
}

// An empty --auth-token would serve without authentication: refused at start, as an empty
// --auth-token-file path and an empty first line of the file are.
TEST(ServeProcess, EmptyAuthTokenIsRefused) {
  ServeProcess serve;
  EXPECT_FALSE(serve.start("--device cpu --auth-token ''"));
  expect_error(serve.err(), "--auth-token is empty");
  const std::string dir = ::tidal::testing::temp_dir("token");
  ::tidal::testing::write_file(dir + "/token", "\nsecret\n");
  ServeProcess file;
  EXPECT_FALSE(file.start("--device cpu --auth-token-file " + dir + "/token"));
  EXPECT_NE(file.err().find("--auth-token-file: the file's first line is empty"),
            std::string::npos)
      << file.err();
  // An empty path (--auth-token-file "$UNSET_VAR") was taken as the flag's absence: the server
  // started without authentication.
  ServeProcess no_path;
  EXPECT_FALSE(no_path.start("--device cpu --auth-token-file ''"));
  expect_error(no_path.err(), "--auth-token-file needs a path (got an empty one)");
}

// A request's sparse budget is bounded by EngineConfig::max_budget (4096 by default), which no
// serve flag set: on the embedded 16K-token model a tidal --budget 5000 was refused ('budget 5000
// exceeds the engine's max_budget 4096') whatever the context. --max-budget raises the bound (and
// GetModelInfo reports it); a budget above it is refused naming it; a value the engine cannot
// take stops serve before the model loads, naming the flag.
TEST(ServeProcess, MaxBudgetRaisesTheLargestBudgetARequestMayAsk) {
  const std::string model = std::string(TIDAL_SOURCE_DIR) + "/model/tidal-tiny-16k";
  const std::string serve_flags = "--model " + model + " --device cpu --max-batch 1";
  const std::string request =
      "--prompt-ids 4094,300,301 --temperature 0 --print-ids --max-new-tokens 6";
  const TidalRun full = run_tidal("generate " + serve_flags + " " + request);
  ASSERT_EQ(full.exit_code, 0) << full.err;
  const std::string tidal5000 = " " + request + " --attention tidal --budget 5000";

  ServeProcess plain;
  ASSERT_TRUE(plain.start(serve_flags)) << plain.err();
  const TidalRun refused = run_tidal("client --server " + plain.address() + tidal5000);
  EXPECT_EQ(refused.exit_code, 1);
  expect_error(refused.err,
               "budget 5000 exceeds the engine's max_budget 4096 (tidal serve --max-budget raises "
               "it)");
  EXPECT_NE(refused.err.find("INVALID_ARGUMENT"), std::string::npos) << refused.err;
  plain.signal(SIGTERM);
  EXPECT_EQ(plain.wait(60), 0) << plain.err();

  ServeProcess raised;
  ASSERT_TRUE(raised.start(serve_flags + " --max-budget 8192")) << raised.err();
  const std::string server = "client --server " + raised.address();
  const TidalRun taken = run_tidal(server + tidal5000);
  ASSERT_EQ(taken.exit_code, 0) << taken.err;
  EXPECT_EQ(taken.out, full.out);  // three prompt tokens and six new ones, all within 5000
  const TidalRun above = run_tidal(server + " " + request + " --attention tidal --budget 9000");
  EXPECT_EQ(above.exit_code, 1);
  expect_error(above.err, "budget 9000 exceeds the engine's max_budget 8192");
  const TidalRun info = run_tidal(server + " --info");
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_EQ(nlohmann::json::parse(info.out)["limits"]["max_budget"], "8192");
  raised.signal(SIGTERM);
  EXPECT_EQ(raised.wait(60), 0) << raised.err();

  for (const char* bad : {"1", "268435457"}) {
    ServeProcess refused_flag;
    EXPECT_FALSE(refused_flag.start(serve_flags + " --max-budget " + bad)) << bad;
    expect_error(refused_flag.err(), std::string("--max-budget must be in [2, 268435456] (the "
                                                 "largest sparse budget a request may ask), got ") +
                                         bad);
  }
}

// The distributed engine with one rank (MPI as a singleton): rank 0's coordinator path.
TEST(ServeProcess, DistributedOneRankServesTheSameTokens) {
  TIDAL_SKIP_WITHOUT_SHARED(kStories);
  ServeProcess serve;
  ASSERT_TRUE(serve.start("--model " + stories_dir() + " --device cpu --tp 1 --max-batch 4"))
      << serve.err();
  auto client = connect(serve.address());
  v1::ModelInfo info;
  ASSERT_TRUE(client->model_info(&info).ok());
  EXPECT_EQ(info.parallel().world_size(), 1);
  const std::string flags =
      "--prompt 'Once upon a time' --temperature 0.7 --seed 5 --max-new-tokens 30 --attention "
      "tidal --budget 16 --granularity per-kv-head --print-ids";
  const TidalRun want = run_tidal(generate_cmd(flags));
  ASSERT_EQ(want.exit_code, 0) << want.err;
  std::vector<std::thread> threads;
  std::vector<TidalRun> got(3);
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back(
        [&, i] { got[size_t(i)] = run_tidal("client --server " + serve.address() + " " + flags); });
  }
  for (std::thread& t : threads) t.join();
  for (const TidalRun& g : got) {
    ASSERT_EQ(g.exit_code, 0) << g.err;
    EXPECT_EQ(parse_ids(g.out), parse_ids(want.out));
  }
  serve.signal(SIGTERM);
  EXPECT_EQ(serve.wait(60), 0) << serve.err();
}


// A model directory holding tidal_policy.json: the server takes its layers for tidal requests
// that name none (and says so at start), streaming what `tidal generate` writes on the same
// directory; a file made for another model stops the server at start with one line.
TEST(ServeProcess, TidalRequestsTakeTheModelsPolicyFile) {
  TIDAL_SKIP_WITHOUT_SHARED(kStories);
  const std::string dir = ::tidal::testing::temp_dir("served_policy_model");
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.json"}) {
    ::tidal::testing::write_file(dir + "/" + f,
                                 ::tidal::testing::read_file(stories_dir() + "/" + f));
  }
  ::tidal::testing::write_file(dir + "/tidal_policy.json",
                               R"({"sparse_start": 3, "reselect_layers": [4]})");
  {
    ServeProcess serve;
    ASSERT_TRUE(serve.start("--model " + dir + " --device cpu --threads 1")) << serve.err();
    // The line comes after "serving on", where start() returned: it is waited for.
    EXPECT_TRUE(serve.wait_for_err("take 3:4 from " + dir + "/tidal_policy.json\n", 60))
        << serve.err();
    const std::string flags =
        " --prompt 'Once upon a time' --temperature 0 --max-new-tokens 24 --attention tidal "
        "--budget 4";
    const TidalRun want = run_tidal("generate --model " + dir + " --device cpu" + flags);
    ASSERT_EQ(want.exit_code, 0) << want.err;
    const TidalRun got = run_tidal("client --server " + serve.address() + flags);
    ASSERT_EQ(got.exit_code, 0) << got.err;
    EXPECT_EQ(got.out, want.out);
  }
  ::tidal::testing::write_file(dir + "/tidal_policy.json",
                               R"({"sparse_start": 7, "reselect_layers": []})");
  ServeProcess bad;
  EXPECT_FALSE(bad.start("--model " + dir + " --device cpu --threads 1"));
  EXPECT_NE(bad.err().find(dir + "/tidal_policy.json does not fit this model"), std::string::npos)
      << bad.err();
}

}  // namespace
}  // namespace tidal::rpc
