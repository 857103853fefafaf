// SPDX-License-Identifier: Apache-2.0
// The coordinator on loopback, in process, with stories260K on the CPU: a streamed generation
// equals `tidal generate` (full, tidal at every granularity, quest); 32 concurrent clients with
// mixed prompt lengths, policies and budgets each get their solo run's output and leave no KV
// page behind; cancelling and disconnecting free a request's pages while the other streams go
// on; every kind of bad request gets its code and a message, and the server keeps serving;
// correction passes run at the requested interval; an unset seed is drawn per request and
// reported; health, auth, model info, tokenize; a graceful shutdown drains or cancels with a
// status.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <cfloat>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <thread>

#include "rpc/convert.h"
#include "tests/rpc/rpc_testing.h"

namespace tidal::rpc {
namespace {

using namespace ::tidal::rpc::testing;  // NOLINT: the helpers of this suite
using HealthStatus = grpc::health::v1::HealthCheckResponse;

engine::EngineConfig cpu_config(int64_t max_batch = 32, int64_t kv_capacity = 0) {
  engine::EngineConfig c;
  c.max_batch = max_batch;
  c.kv_capacity = kv_capacity;
  c.prefill_chunk = 64;  // prompts over 64 tokens are prefilled beside running decodes
  return c;
}

// Polls until `pred` holds (true) or `seconds` pass (false).
template <typename Pred>
bool eventually(Pred pred, double seconds = 30) {
  const auto t0 = std::chrono::steady_clock::now();
  while (!pred()) {
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > seconds) {
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

v1::Stats stats_of(Client& c) {
  v1::Stats s;
  EXPECT_TRUE(c.stats(&s).ok());
  return s;
}

struct PolicyCase {
  const char* name;
  const char* flags;  // tidal generate's
  std::function<void(v1::GenerateRequest*)> set;
};

const PolicyCase kPolicies[] = {
    {"full", "", [](v1::GenerateRequest*) {}},
    {"tidal_per_query_head",
     "--attention tidal --budget 16 --reselect-layers 3 --granularity per-query-head",
     [](v1::GenerateRequest* r) {
       r->mutable_attention()->set_kind("tidal");
       r->mutable_attention()->set_budget(16);
       r->mutable_attention()->mutable_reselect_layers()->add_layers(3);
       r->mutable_attention()->set_granularity("per-query-head");
     }},
    {"tidal_per_kv_head",
     "--attention tidal --budget 16 --reselect-layers 3 --granularity per-kv-head",
     [](v1::GenerateRequest* r) {
       r->mutable_attention()->set_kind("tidal");
       r->mutable_attention()->set_budget(16);
       r->mutable_attention()->mutable_reselect_layers()->add_layers(3);
       r->mutable_attention()->set_granularity("per-kv-head");
     }},
    {"tidal_shared", "--attention tidal --budget 16 --reselect-layers 3 --granularity shared",
     [](v1::GenerateRequest* r) {
       r->mutable_attention()->set_kind("tidal");
       r->mutable_attention()->set_budget(16);
       r->mutable_attention()->mutable_reselect_layers()->add_layers(3);
       r->mutable_attention()->set_granularity("shared");
     }},
    {"quest", "--attention quest --budget 32",
     [](v1::GenerateRequest* r) {
       r->mutable_attention()->set_kind("quest");
       r->mutable_attention()->set_budget(32);
     }},
};

TEST(Service, StreamEqualsTidalGenerateForEveryPolicy) {
  TIDAL_SKIP_WITHOUT_SHARED(kStories);
  auto served = serve_stories(cpu_config());
  auto client = served->client();
  const std::string prompt = "Once upon a time, there was a little dog named Max. He";
  v1::TokenizeRequest tr;
  tr.set_text(prompt);
  v1::TokenizeResponse tokens;
  ASSERT_TRUE(client->tokenize(tr, &tokens).ok());
  const int64_t prompt_tokens = tokens.ids_size();
  for (const PolicyCase& p : kPolicies) {
    const std::string common = "generate --model " + stories_dir() + " --device cpu --prompt " +
                               quote(prompt) + " --temperature 0.8 --seed 7 --max-new-tokens 60 " +
                               p.flags;
    const TidalRun ids = run_tidal(common + " --print-ids");
    ASSERT_EQ(ids.exit_code, 0) << ids.err;
    v1::GenerateRequest req = text_request(prompt, 0.8f, 7, 60);
    p.set(&req);
    const Streamed s = generate(*client, req);
    ASSERT_TRUE(s.status.ok()) << p.name << ": " << s.status.error_message();
    EXPECT_EQ(s.ids, parse_ids(ids.out)) << p.name;
    // The streamed text is what `tidal generate` prints (checked for two policies: the text
    // follows from the ids).
    const std::string name = p.name;
    if (name == "full" || name == "tidal_shared") {
      const TidalRun text = run_tidal(common);
      ASSERT_EQ(text.exit_code, 0) << text.err;
      EXPECT_EQ(s.text + "\n", text.out) << p.name;
    }
    ASSERT_TRUE(s.has_final) << p.name;
    EXPECT_EQ(s.final.usage().generated_tokens(), int64_t(s.ids.size()));
    EXPECT_EQ(s.final.usage().prompt_tokens(), prompt_tokens) << p.name;
    const bool sparse = std::string(p.name) != "full";
    const auto& roles = s.final.stats().roles();
    const bool read_sparse = std::any_of(
        roles.begin(), roles.end(),
        [](const v1::LayerRoleStats& r) { return r.role() == "sparse" || r.role() == "quest"; });
    EXPECT_EQ(read_sparse, sparse) << p.name;
  }
  EXPECT_EQ(stats_of(*client).kv_pages_used(), 0);
}

// An unset seed is a fresh draw per request (it was 0 for every request: identical sampled
// requests got identical text), reported in the final message; sending it back reproduces the
// request's tokens. A given seed, 0 included, is used and reported unchanged.
TEST(Service, UnsetSeedIsDrawnPerRequestAndReported) {
  TIDAL_SKIP_WITHOUT_SHARED(kStories);
  auto served = serve_stories(cpu_config());
  auto client = served->client();
  v1::GenerateRequest unseeded = text_request("Once upon a time", 1.0f, 0, 40);
  unseeded.mutable_sampling()->clear_seed();
  const Streamed a = generate(*client, unseeded), b = generate(*client, unseeded);
  ASSERT_TRUE(a.status.ok()) << a.status.error_message();
  ASSERT_TRUE(b.status.ok()) << b.status.error_message();
  ASSERT_TRUE(a.has_final && b.has_final);
  EXPECT_NE(a.final.seed(), b.final.seed());
  for (const Streamed* s : {&a, &b}) {
    const Streamed again =
        generate(*client, text_request("Once upon a time", 1.0f, s->final.seed(), 40));
    ASSERT_TRUE(again.status.ok()) << again.status.error_message();
    EXPECT_EQ(again.ids, s->ids);
    EXPECT_EQ(again.final.seed(), s->final.seed());
  }
  const Streamed zero = generate(*client, text_request("Once upon a time", 1.0f, 0, 40));
  ASSERT_TRUE(zero.status.ok()) << zero.status.error_message();
  for (const uint64_t seed : {uint64_t(0), uint64_t(7), UINT64_MAX}) {
    const Streamed s = generate(*client, text_request("Once upon a time", 1.0f, seed, 40));
    ASSERT_TRUE(s.status.ok()) << seed << ": " << s.status.error_message();
    EXPECT_EQ(s.final.seed(), seed);
    if (seed == 0) {
      EXPECT_EQ(s.ids, zero.ids);  // seed 0 is a seed like any other
    }
  }
  EXPECT_EQ(stats_of(*client).kv_pages_used(), 0);
}

// A request of the mixed load: prompt lengths from 1 to ~300 tokens, every policy, budgets.
v1::GenerateRequest mixed_request(int i) {
  v1::GenerateRequest r;
  r.set_request_id("client-" + std::to_string(i));
  const int64_t len = 1 + (i * 37) % 200;
  for (int64_t t = 0; t < len; ++t) r.mutable_ids()->add_ids(int32_t(1 + (t * 13 + i * 7) % 500));
  r.mutable_sampling()->set_temperature(i % 3 == 0 ? 0.0f : 0.9f);
  r.mutable_sampling()->set_seed(uint64_t(100 + i));
  r.mutable_stop()->set_max_new_tokens(16 + i % 9);
  r.mutable_stop()->set_ignore_eos(true);
  v1::AttentionPolicy* a = r.mutable_attention();
  switch (i % 4) {
    case 0: break;
    case 1:
      a->set_kind("tidal");
      a->set_budget(8 << (i % 3));
      a->set_granularity(i % 2 ? "per-kv-head" : "shared");
      a->mutable_reselect_layers()->add_layers(3);
      break;
    case 2:
      a->set_kind("tidal");
      a->set_budget(16);
      r.set_correction_interval(8);
      break;
    case 3:
      a->set_kind("quest");
      a->set_budget(16 << (i % 2));
      break;
  }
  return r;
}

TEST(Service, ThirtyTwoConcurrentClientsEachGetTheirSoloOutput) {
  TIDAL_SKIP_WITHOUT_SHARED(kStories);
  // 4096 tokens of KV: not every request fits at once, so some queue for pages.
  auto served = serve_stories(cpu_config(32, 4096));
  constexpr int kClients = 32;
  std::vector<Streamed> together(kClients);
  std::vector<std::thread> threads;
  std::atomic<int> ready{0};
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      auto client = served->client();
      ready += 1;
      while (ready < kClients) std::this_thread::yield();  // start together
      together[size_t(i)] = generate(*client, mixed_request(i));
    });
  }
  for (std::thread& t : threads) t.join();
  auto client = served->client();
  const v1::Stats after = stats_of(*client);
  EXPECT_EQ(after.kv_pages_used(), 0);
  EXPECT_EQ(after.kv_pages_reserved(), 0);
  EXPECT_EQ(after.running(), 0);
  EXPECT_EQ(after.queued(), 0);
  EXPECT_EQ(after.requests_finished(), kClients);
  EXPECT_GT(after.mixed_steps(), 0);  // prefill chunks rode with decode steps
  for (int i = 0; i < kClients; ++i) {
    const Streamed solo = generate(*client, mixed_request(i));
    const Streamed& t = together[size_t(i)];
    ASSERT_TRUE(t.status.ok()) << i << ": " << t.status.error_message();
    ASSERT_TRUE(solo.status.ok()) << i;
    EXPECT_EQ(t.ids, solo.ids) << "client " << i;
    EXPECT_EQ(t.final.finish(), v1::FINISH_REASON_LENGTH) << i;
    EXPECT_EQ(int64_t(t.ids.size()), 16 + i % 9) << i;
  }
  EXPECT_EQ(stats_of(*client).kv_pages_used(), 0);
}

TEST(Service, CancelAndDisconnectFreeKvWhileOthersGoOn) {
  TIDAL_SKIP_WITHOUT_SHARED(kStories);
  auto served = serve_stories(cpu_config(8));
  auto client = served->client();
  auto long_request = [](const std::string& id, uint64_t seed) {
    v1::GenerateRequest r = text_request("Once upon a time", 0.9f, seed, 480);
    r.set_request_id(id);
    r.mutable_stop()->set_ignore_eos(true);
    return r;
  };
  Streamed keep1, keep2, cancelled, dropped;
  std::thread k1([&] { keep1 = generate(*served->client(), long_request("keep1", 1)); });
  std::thread k2([&] { keep2 = generate(*served->client(), long_request("keep2", 1)); });
  std::thread c([&] { cancelled = generate(*served->client(), long_request("cancel-me", 3)); });
  ASSERT_TRUE(eventually([&] { return stats_of(*client).running() == 3; }));
  // A client that stops reading after a few tokens: it disconnects (cancels its call).
  int dropped_seen = 0;
  dropped.status = client->generate(long_request("drop-me", 4), [&](const v1::GenerateResponse& m) {
    dropped_seen += m.token_ids_size();
    return dropped_seen < 5;
  });
  EXPECT_EQ(dropped.status.error_code(), grpc::StatusCode::CANCELLED);
  bool found = false;
  ASSERT_TRUE(client->cancel("cancel-me", &found).ok());
  EXPECT_TRUE(found);
  // Both requests end and their pages return while the two others still run.
  ASSERT_TRUE(eventually([&] {
    const v1::Stats s = stats_of(*client);
    return s.requests_cancelled() == 2 && s.running() == 2;
  }));
  const v1::Stats mid = stats_of(*client);
  EXPECT_EQ(mid.running(), 2);
  EXPECT_LT(mid.generated_tokens(), 2 * 480 + 40);  // the keepers are still generating
  c.join();
  ASSERT_TRUE(cancelled.status.ok()) << cancelled.status.error_message();
  ASSERT_TRUE(cancelled.has_final);
  EXPECT_EQ(cancelled.final.finish(), v1::FINISH_REASON_CANCELLED);
  EXPECT_LT(cancelled.ids.size(), 480u);
  k1.join();
  k2.join();
  ASSERT_TRUE(keep1.status.ok());
  ASSERT_TRUE(keep2.status.ok());
  EXPECT_EQ(keep1.ids.size(), 480u);
  EXPECT_EQ(keep1.ids, keep2.ids);  // the same request (seed included): the same tokens
  EXPECT_EQ(stats_of(*client).kv_pages_used(), 0);
  ASSERT_TRUE(client->cancel("nobody", &found).ok());
  EXPECT_FALSE(found);
}

struct BadCase {
  const char* name;
  std::function<void(v1::GenerateRequest*)> edit;  // of a good text request
  grpc::StatusCode code;
  const char* message;
};

TEST(Service, BadRequestsGetTheirCodeAndTheServerKeepsServing) {
  TIDAL_SKIP_WITHOUT_SHARED(kStories);
  auto served = serve_stories(cpu_config(4, /*kv_capacity=*/256));
  auto client = served->client();
  const BadCase cases[] = {
      {"unknown policy", [](v1::GenerateRequest* r) { r->mutable_attention()->set_kind("dense"); },
       grpc::StatusCode::INVALID_ARGUMENT, "attention.kind: unknown attention 'dense'"},
      {"budget below 2",
       [](v1::GenerateRequest* r) {
         r->mutable_attention()->set_kind("tidal");
         r->mutable_attention()->set_budget(1);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "budget must be >= 2"},
      {"reselect layer out of range",
       [](v1::GenerateRequest* r) {
         r->mutable_attention()->set_kind("tidal");
         r->mutable_attention()->mutable_reselect_layers()->add_layers(5);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "layer 5 is outside the 5 layers"},
      {"correction interval no pass can follow",
       [](v1::GenerateRequest* r) {
         r->mutable_attention()->set_kind("tidal");
         r->set_correction_interval(511);
       },
       grpc::StatusCode::INVALID_ARGUMENT,
       "correction_interval 511 never runs a pass in a context of 512 tokens"},
      {"negative max tokens",
       [](v1::GenerateRequest* r) { r->mutable_stop()->set_max_new_tokens(-4); },
       grpc::StatusCode::INVALID_ARGUMENT, "max_new_tokens must be >= 1"},
      {"ids outside the vocabulary",
       [](v1::GenerateRequest* r) {
         r->mutable_ids()->add_ids(1);
         r->mutable_ids()->add_ids(512);
       },
       grpc::StatusCode::INVALID_ARGUMENT,
       "ids[1]: token id 512 is outside the model's vocabulary"},
      {"too many stop strings",
       [](v1::GenerateRequest* r) {
         for (int i = 0; i < 65; ++i) r->mutable_stop()->add_stop_strings("s" + std::to_string(i));
       },
       grpc::StatusCode::INVALID_ARGUMENT, "stop_strings: at most 64 (got 65)"},
      {"chat with no messages", [](v1::GenerateRequest* r) { r->mutable_chat(); },
       grpc::StatusCode::INVALID_ARGUMENT, "chat: messages: a chat needs at least one message"},
      {"chat with an unknown role",
       [](v1::GenerateRequest* r) {
         v1::ChatMessage* m = r->mutable_chat()->add_messages();
         m->set_role("narrator");
         m->set_content("hi");
       },
       grpc::StatusCode::INVALID_ARGUMENT, "chat: messages[0].role: 'narrator' is not"},
      {"chat without the template's tokens",
       [](v1::GenerateRequest* r) {
         v1::ChatMessage* m = r->mutable_chat()->add_messages();
         m->set_role("user");
         m->set_content("hi");
       },
       grpc::StatusCode::INVALID_ARGUMENT, "chat: chat template: the tokenizer has no"},
      {"no prompt", [](v1::GenerateRequest* r) { r->clear_prompt(); },
       grpc::StatusCode::INVALID_ARGUMENT, "prompt: set one of text, ids or chat"},
      {"prompt over the context",
       [](v1::GenerateRequest* r) {
         for (int i = 0; i < 600; ++i) r->mutable_ids()->add_ids(5);
       },
       grpc::StatusCode::OUT_OF_RANGE, "exceeds the context of 512 tokens"},
      {"prompt over the KV capacity",
       [](v1::GenerateRequest* r) {
         for (int i = 0; i < 300; ++i) r->mutable_ids()->add_ids(5);
       },
       grpc::StatusCode::RESOURCE_EXHAUSTED, "exceeds the KV cache capacity of 256 tokens"},
  };
  const v1::GenerateRequest good = text_request("Once upon a time", 0.0f, 0, 8);
  const std::vector<int32_t> good_ids = generate(*client, good).ids;
  ASSERT_EQ(good_ids.size(), 8u);
  for (const BadCase& c : cases) {
    v1::GenerateRequest req = good;
    c.edit(&req);
    const Streamed s = generate(*client, req);
    EXPECT_EQ(s.status.error_code(), c.code) << c.name << ": " << s.status.error_message();
    EXPECT_NE(s.status.error_message().find(c.message), std::string::npos)
        << c.name << ": " << s.status.error_message();
    EXPECT_EQ(s.messages, 0) << c.name;
    EXPECT_EQ(generate(*client, good).ids, good_ids) << "after " << c.name;
  }
  // A request id a live request holds is refused; the holder is unaffected.
  v1::GenerateRequest holder = text_request("Once upon a time", 0.0f, 0, 250);
  holder.set_request_id("dup");
  holder.mutable_stop()->set_ignore_eos(true);
  Streamed first;
  std::thread t([&] { first = generate(*served->client(), holder); });
  ASSERT_TRUE(eventually([&] { return stats_of(*client).running() == 1; }));
  v1::GenerateRequest second = good;
  second.set_request_id("dup");
  const Streamed refused = generate(*client, second);
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_NE(refused.status.error_message().find("request id 'dup' is already running"),
            std::string::npos)
      << refused.status.error_message();
  t.join();
  EXPECT_TRUE(first.status.ok());
  EXPECT_EQ(first.ids.size(), 250u);
  EXPECT_TRUE(generate(*client, second).status.ok());  // free again
  bool found = true;
  const grpc::Status empty = client->cancel("", &found);
  EXPECT_EQ(empty.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

// Every response echoes the request's id, and nothing capped its length: a client that named its
// request with a few MB got messages over gRPC's default 4 MB receive limit (the Python client's,
// most clients'), so its call failed with RESOURCE_EXHAUSTED once the request ran. Ids are at
// most 256 bytes: a longer one is refused before the request is queued, naming the field and the
// limit (Cancel's too: no live request can hold one), and the server keeps serving.
TEST(Service, RequestIdsOverTheirCapAreRefused) {
  TIDAL_SKIP_WITHOUT_SHARED(kStories);
  auto served = serve_stories(cpu_config(2));
  auto client = served->client();
  v1::GenerateRequest req = text_request("Once upon a time", 0.0f, 0, 4);
  const std::string longest(256, 'x');
  req.set_request_id(longest);
  std::vector<std::string> echoed;
  const grpc::Status st = client->generate(req, [&](const v1::GenerateResponse& m) {
    echoed.push_back(m.request_id());
    return true;
  });
  EXPECT_TRUE(st.ok()) << st.error_message();
  ASSERT_FALSE(echoed.empty());
  for (const std::string& id : echoed) EXPECT_EQ(id, longest);
  req.set_request_id(longest + "x");
  const Streamed over = generate(*client, req);
  EXPECT_EQ(over.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(over.status.error_message(), "request_id: at most 256 bytes (got 257)");
  EXPECT_EQ(over.messages, 0);
  // A client with gRPC's default limits gets the refusal, not a message larger than it takes.
  const std::unique_ptr<v1::Inference::Stub> plain = v1::Inference::NewStub(
      grpc::CreateChannel(served->server->address(), grpc::InsecureChannelCredentials()));
  req.set_request_id(std::string(5 << 20, 'x'));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader = plain->Generate(&ctx, req);
  v1::GenerateResponse m;
  int messages = 0;
  while (reader->Read(&m)) messages += 1;
  const grpc::Status huge = reader->Finish();
  EXPECT_EQ(huge.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << huge.error_message();
  EXPECT_EQ(huge.error_message(), "request_id: at most 256 bytes (got 5242880)");
  EXPECT_EQ(messages, 0);
  bool found = true;
  const grpc::Status cancel = client->cancel(longest + "x", &found);
  EXPECT_EQ(cancel.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(cancel.error_message(), "request_id: at most 256 bytes (got 257)");
  req.set_request_id("after");
  EXPECT_TRUE(generate(*client, req).status.ok());
}

// A request without an id gets one from the server ("tidal-N"); a client may have named its
// own request the same. The server's pick skips an id a live request holds: the request without
// an id runs (it was refused with ALREADY_EXISTS for an id it never sent).
TEST(Service, ServerPickedIdsSkipAnIdAClientTook) {
  TIDAL_SKIP_WITHOUT_SHARED(kStories);
  auto served = serve_stories(cpu_config());
  auto client = served->client();
  v1::GenerateRequest holder = text_request("Once upon a time", 0.0f, 0, 250);
  holder.set_request_id("tidal-1");  // the server's first pick
  holder.mutable_stop()->set_ignore_eos(true);
  Streamed first;
  std::thread t([&] { first = generate(*served->client(), holder); });
  ASSERT_TRUE(eventually([&] { return stats_of(*client).running() == 1; }));
  const v1::GenerateRequest unnamed = text_request("Once upon a time", 0.0f, 0, 8);
  std::string id;
  int64_t tokens = 0;
  const grpc::Status st = client->generate(unnamed, [&](const v1::GenerateResponse& m) {
    id = m.request_id();
    tokens += m.token_ids_size();
    return true;
  });
  EXPECT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(tokens, 8);
  EXPECT_FALSE(id.empty());
  EXPECT_NE(id, "tidal-1");
  t.join();
  EXPECT_TRUE(first.status.ok()) << first.status.error_message();
  EXPECT_EQ(first.ids.size(), 250u);
}

// A port another server holds is refused. gRPC binds with SO_REUSEPORT unless told not to: a
// second server on a taken port started ("serving on 127.0.0.1:P") and the kernel shared the
// port's connections between the two, so a client's calls went to either server (another
// model, another auth token, requests its Cancel never found).
TEST(Service, APortAnotherServerHoldsIsRefused) {
  TIDAL_SKIP_WITHOUT_SHARED(kStories);
  auto first = serve_stories(cpu_config(2));
  auto engine = load_stories(cpu_config(2));
  ServerOptions options;
  options.listen = first->server->address();
  std::unique_ptr<Server> second;
  const Status st = Server::start(*engine, nullptr, options, &second);
  EXPECT_EQ(st.code(), StatusCode::kUnavailable) << st.to_string();
  EXPECT_NE(st.message().find("cannot serve on '" + options.listen + "'"), std::string::npos)
      << st.message();
  EXPECT_EQ(second, nullptr);
  // The first server goes on serving every call.
  auto client = first->client();
  for (int i = 0; i < 4; ++i) {
    const Streamed s = generate(*client, text_request("Once upon a time", 0.0f, 0, 4));
    EXPECT_TRUE(s.status.ok()) << s.status.error_message();
    EXPECT_EQ(s.ids.size(), 4u);
  }
  EXPECT_EQ(stats_of(*client).requests_finished(), 4);
}

TEST(Service, CorrectionPassesRunAtTheIntervalAndShowInStats) {
  TIDAL_SKIP_WITHOUT_SHARED(kStories);
  auto served = serve_stories(cpu_config());
  auto client = served->client();
  v1::GenerateRequest req = text_request("Once upon a time", 0.0f, 0, 50);
  req.mutable_stop()->set_ignore_eos(true);
  req.mutable_attention()->set_kind("tidal");
  req.mutable_attention()->set_budget(16);
  req.mutable_attention()->mutable_reselect_layers()->add_layers(3);
  req.set_correction_interval(8);
  const Streamed s = generate(*client, req);
  ASSERT_TRUE(s.status.ok()) << s.status.error_message();
  // 49 decode steps: a pass after steps 8, 16, ..., 48, each over the last 8 tokens.
  EXPECT_EQ(s.final.stats().correction_passes(), 6);
  EXPECT_EQ(s.final.stats().correction_tokens(), 48);
  const v1::Stats st = stats_of(*client);
  EXPECT_EQ(st.correction_passes(), 6);
  EXPECT_EQ(st.correction_tokens(), 48);
  const TidalRun want =
      run_tidal("generate --model " + stories_dir() +
                " --device cpu --prompt 'Once upon a time' --temperature 0 "
                "--max-new-tokens 50 --ignore-eos --print-ids --attention tidal "
                "--budget 16 --reselect-layers 3 --correction-interval 8 --stats");
  ASSERT_EQ(want.exit_code, 0) << want.err;
  EXPECT_EQ(s.ids, parse_ids(want.out));
  EXPECT_NE(want.err.find("cache correction: 6 passes, 48 tokens recomputed"), std::string::npos)
      << want.err;
}

TEST(Service, HealthAuthInfoAndTokenize) {
  TIDAL_SKIP_WITHOUT_SHARED(kStories);
  ServerOptions options;
  options.auth_token = "s3cret";
  auto served = serve_stories(cpu_config(), options);
  auto anonymous = served->client();
  auto wrong = served->client("guess");
  auto client = served->client("s3cret");
  HealthStatus::ServingStatus h = HealthStatus::UNKNOWN;
  ASSERT_TRUE(anonymous->health(kServiceName, &h).ok());  // health needs no token
  EXPECT_EQ(h, HealthStatus::SERVING);
  ASSERT_TRUE(anonymous->health("", &h).ok());
  EXPECT_EQ(h, HealthStatus::SERVING);
  const v1::GenerateRequest req = text_request("Once upon a time", 0.0f, 0, 4);
  for (Client* c : {anonymous.get(), wrong.get()}) {
    EXPECT_EQ(generate(*c, req).status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
    v1::Stats s;
    EXPECT_EQ(c->stats(&s).error_code(), grpc::StatusCode::UNAUTHENTICATED);
    bool found;
    EXPECT_EQ(c->cancel("x", &found).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  EXPECT_TRUE(generate(*client, req).status.ok());
  v1::ModelInfo info;
  ASSERT_TRUE(client->model_info(&info).ok());
  EXPECT_EQ(info.config().num_layers(), 5);
  EXPECT_EQ(info.config().num_kv_heads(), 4);
  EXPECT_EQ(info.config().vocab(), 512);
  EXPECT_EQ(info.device(), "cpu");
  EXPECT_EQ(info.parallel().world_size(), 1);
  EXPECT_EQ(info.kv().tokens(), 32 * 512);
  EXPECT_EQ(info.limits().max_batch(), 32);
  EXPECT_EQ(info.limits().prefill_chunk(), 64);
  EXPECT_EQ(info.defaults().max_new_tokens(), 256);
  EXPECT_EQ(info.policies_size(), 3);
  EXPECT_TRUE(info.has_tokenizer());
  v1::TokenizeRequest tr;
  tr.set_text("Once upon a time");
  v1::TokenizeResponse ids;
  ASSERT_TRUE(client->tokenize(tr, &ids).ok());
  EXPECT_EQ(std::vector<int32_t>(ids.ids().begin(), ids.ids().end()),
            (std::vector<int32_t>{1, 403, 407, 261, 378}));
  tr.set_add_bos(false);
  ASSERT_TRUE(client->tokenize(tr, &ids).ok());
  EXPECT_EQ(ids.ids_size(), 4);
  // add_bos reads text only: with chat input (whose template places BOS) it is refused, either
  // value, instead of being dropped.
  v1::TokenizeRequest chat;
  v1::ChatMessage* m = chat.mutable_chat()->add_messages();
  m->set_role("user");
  m->set_content("Hi");
  for (bool add_bos : {false, true}) {
    chat.set_add_bos(add_bos);
    const grpc::Status st = client->tokenize(chat, &ids);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << add_bos;
    EXPECT_EQ(st.error_message().rfind("add_bos: has no effect with chat input", 0), 0u)
        << st.error_message();
  }
}

// A Tokenize call with no input was refused as "prompt: set one of text, ids or chat", naming a
// field and a kind of input that TokenizeRequest does not have; it now names its own fields.
TEST(Service, TokenizeWithoutInputNamesItsOwnFields) {
  TIDAL_SKIP_WITHOUT_SHARED(kStories);
  auto served = serve_stories(cpu_config());
  auto client = served->client();
  v1::TokenizeResponse ids;
  for (bool set_add_bos : {false, true}) {
    v1::TokenizeRequest empty;
    if (set_add_bos) empty.set_add_bos(false);
    const grpc::Status st = client->tokenize(empty, &ids);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << set_add_bos;
    EXPECT_EQ(st.error_message(), "input: set text or chat") << set_add_bos;
  }
  v1::TokenizeRequest empty_text;  // an empty text is given: BOS alone, as Generate takes it
  empty_text.set_text("");
  ASSERT_TRUE(client->tokenize(empty_text, &ids).ok());
  EXPECT_EQ(std::vector<int32_t>(ids.ids().begin(), ids.ids().end()), std::vector<int32_t>{1});
}

TEST(Service, ShutdownDrainsThenCancelsWithAStatus) {
  TIDAL_SKIP_WITHOUT_SHARED(kStories);
  auto served = serve_stories(cpu_config());
  auto client = served->client();
  v1::GenerateRequest req = text_request("Once upon a time", 0.9f, 1, 300);
  req.mutable_stop()->set_ignore_eos(true);
  // Drained: the running stream finishes; meanwhile health says NOT_SERVING and new requests
  // are refused.
  Streamed drained;
  std::thread t([&] { drained = generate(*served->client(), req); });
  ASSERT_TRUE(eventually([&] { return stats_of(*client).running() == 1; }));
  int64_t cancelled = -1;
  std::thread stop([&] { cancelled = served->server->shutdown(60); });
  HealthStatus::ServingStatus h = HealthStatus::SERVING;
  ASSERT_TRUE(eventually(
      [&] { return client->health(kServiceName, &h).ok() && h == HealthStatus::NOT_SERVING; }));
  const Streamed refused = generate(*client, text_request("hi", 0, 0, 4));
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  stop.join();
  t.join();
  EXPECT_EQ(cancelled, 0);
  ASSERT_TRUE(drained.status.ok()) << drained.status.error_message();
  EXPECT_EQ(drained.ids.size(), 300u);
  EXPECT_EQ(served->engine->kv_tokens_in_use(), 0);

  // Not drained: the stream ends with UNAVAILABLE.
  auto again = serve_stories(cpu_config());
  auto c2 = again->client();
  req.mutable_stop()->set_max_new_tokens(500);
  Streamed cut;
  std::thread t2([&] { cut = generate(*again->client(), req); });
  ASSERT_TRUE(eventually([&] { return stats_of(*c2).generated_tokens() > 3; }));
  EXPECT_EQ(again->server->shutdown(0), 1);
  t2.join();
  EXPECT_EQ(cut.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_NE(cut.status.error_message().find("shutting down"), std::string::npos);
  EXPECT_LT(cut.ids.size(), 500u);
  EXPECT_EQ(again->engine->kv_tokens_in_use(), 0);
  // One log line per request, with its id, tokens, policy, TTFT, rate and finish.
  ASSERT_FALSE(served->log.empty());
  EXPECT_NE(served->log[0].find("prompt 5 tokens, generated 300, full, queue"), std::string::npos)
      << served->log[0];
  EXPECT_NE(served->log[0].find("finish length"), std::string::npos) << served->log[0];
}

// A request that finished generating can still be writing: a client that reads slower than the
// server writes holds its last messages on the server (here, 480 tokens' messages, each carrying
// the longest request id, past the client's small flow control window). The drain covers them:
// the stream ends with its final message, though the client reads only after gRPC's own 1 s
// shutdown deadline (it once cancelled them), and the shutdown waits until it has.
TEST(Service, ShutdownDrainsAStreamStillWritingItsLastMessages) {
  TIDAL_SKIP_WITHOUT_SHARED(kStories);
  auto served = serve_stories(cpu_config());
  v1::GenerateRequest req = text_request("Once upon a time", 0.9f, 1, 480);
  req.mutable_stop()->set_ignore_eos(true);
  req.set_request_id(std::string(kMaxRequestIdBytes, 'r'));  // every message carries it
  std::atomic<bool> read{false};
  Streamed slow;
  // A client that asks for little: a small window per stream, never grown by gRPC's bandwidth
  // probes, so the server holds what the client has not read.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 1024);
  const std::unique_ptr<v1::Inference::Stub> stub =
      v1::Inference::NewStub(grpc::CreateCustomChannel(served->server->address(),
                                                       grpc::InsecureChannelCredentials(), args));
  std::thread t([&] {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
    std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader = stub->Generate(&ctx, req);
    v1::GenerateResponse m;
    while (reader->Read(&m)) {
      while (!read) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      slow.ids.insert(slow.ids.end(), m.token_ids().begin(), m.token_ids().end());
      slow.has_final = slow.has_final || m.has_final();
    }
    slow.status = reader->Finish();
  });
  ASSERT_TRUE(eventually([&] { return served->server->stats().finished == 1; }));
  int64_t cancelled = -1;
  std::chrono::duration<double> drained{0};
  std::thread stop([&] {
    const auto t0 = std::chrono::steady_clock::now();
    cancelled = served->server->shutdown(60);
    drained = std::chrono::steady_clock::now() - t0;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  read = true;
  t.join();
  stop.join();
  EXPECT_EQ(cancelled, 0);
  EXPECT_GE(drained.count(), 2.0) << "the stream was still writing: the drain waited for it";
  ASSERT_TRUE(slow.status.ok()) << slow.status.error_message();
  EXPECT_TRUE(slow.has_final);
  EXPECT_EQ(slow.ids.size(), 480u);
}

// cancel_all during the drain (`tidal serve`'s second signal) cuts it short: the requests it
// ends are the shutdown's cancellations, and shutdown's count, which serve reports, holds them
// (it once said 0: the drain then ended with nothing live).
TEST(Service, CancelAllDuringTheDrainIsCountedByShutdown) {
  TIDAL_SKIP_WITHOUT_SHARED(kStories);
  auto served = serve_stories(cpu_config());
  auto client = served->client();
  std::vector<Streamed> streams(4);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < streams.size(); ++i) {
    threads.emplace_back([&, i] {
      v1::GenerateRequest r = text_request("Once upon a time", 0.9f, i, 500);
      r.mutable_stop()->set_ignore_eos(true);
      streams[i] = generate(*served->client(), r);
    });
  }
  ASSERT_TRUE(eventually([&] { return stats_of(*client).running() == 4; }));
  int64_t cancelled = -1;
  std::thread stop([&] { cancelled = served->server->shutdown(60); });
  ASSERT_TRUE(eventually([&] { return stats_of(*client).draining(); }));
  served->server->cancel_all();
  stop.join();
  for (std::thread& t : threads) t.join();
  int64_t cut = 0;
  for (const Streamed& s : streams) {
    if (s.status.ok()) continue;  // it may have finished before the cut
    EXPECT_EQ(s.status.error_code(), grpc::StatusCode::UNAVAILABLE);
    cut += 1;
  }
  EXPECT_GE(cut, 1) << "the cut came while streams ran";
  EXPECT_EQ(cancelled, cut);
  EXPECT_EQ(served->server->stats().cancelled, cut);
}

// Durations past the clocks' range are clamped, not overflowed: a client timeout of inf or
// 1e13 s is a far deadline (the call succeeds) and NaN an expired one; an infinite drain waits
// for the running stream (it once overflowed and cancelled it at once).
TEST(Service, DurationsOutsideTheClocksRangeAreClamped) {
  TIDAL_SKIP_WITHOUT_SHARED(kStories);
  auto served = serve_stories(cpu_config());
  const v1::GenerateRequest hi = text_request("Once upon a time", 0.0f, 0, 4);
  // NaN's call, whose deadline has passed when it starts, asks for more than the server can
  // stream before gRPC's deadline timer fires: four tokens now and then arrived first on a loaded
  // machine, and the call ended OK.
  v1::GenerateRequest long_one = text_request("Once upon a time", 0.0f, 0, 480);
  long_one.mutable_stop()->set_ignore_eos(true);
  for (double timeout : {double(INFINITY), 1e13, DBL_MAX, std::nan("")}) {
    ClientOptions o;
    o.timeout_seconds = timeout;
    Client c(served->server->address(), o);
    EXPECT_TRUE(c.wait_ready(INFINITY));
    const Streamed s = generate(c, std::isnan(timeout) ? long_one : hi);
    if (std::isnan(timeout)) {
      EXPECT_EQ(s.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
    } else {
      EXPECT_TRUE(s.status.ok()) << timeout << ": " << s.status.error_message();
      EXPECT_EQ(s.ids.size(), 4u) << timeout;
    }
  }
  auto client = served->client();
  // The NaN timeout's request may still be on the server (its client gave up at once): wait for
  // it to go, so that `running() == 1` below is the drained request and not that one (it was,
  // now and then, and shutdown then refused the drained request, not yet arrived).
  ASSERT_TRUE(eventually([&] {
    const v1::Stats st = stats_of(*client);
    return st.running() == 0 && st.queued() == 0;
  }));
  v1::GenerateRequest req = text_request("Once upon a time", 0.9f, 1, 480);
  req.mutable_stop()->set_ignore_eos(true);
  Streamed drained;
  std::thread t([&] { drained = generate(*served->client(), req); });
  ASSERT_TRUE(eventually([&] { return stats_of(*client).running() == 1; }));
  EXPECT_EQ(served->server->shutdown(INFINITY), 0);
  t.join();
  ASSERT_TRUE(drained.status.ok()) << drained.status.error_message();
  EXPECT_EQ(drained.ids.size(), 480u);
}

// The model's tidal_policy.json layers (ServerOptions::model_layers, filled by `tidal serve`):
// a tidal request that sets no layers runs with them, exactly as one that names them; a request
// that names its own layers keeps them; GetModelInfo reports them as the default.
TEST(Service, ModelLayersAreTheTidalDefault) {
  TIDAL_SKIP_WITHOUT_SHARED(kStories);
  ServerOptions options;
  options.model_layers = {true, 3, {4}, "tidal_policy.json"};
  auto served = serve_stories(cpu_config(), options);
  auto client = served->client();
  v1::ModelInfo info;
  ASSERT_TRUE(client->model_info(&info).ok());
  EXPECT_EQ(info.defaults().sparse_start(), 3);
  EXPECT_EQ(std::vector<int64_t>(info.defaults().reselect_layers().begin(),
                                 info.defaults().reselect_layers().end()),
            std::vector<int64_t>{4});

  const std::string prompt = "Once upon a time there was a little girl who loved to play outside";
  auto tidal = [&](int64_t sparse_start, std::vector<int64_t> reselect) {
    v1::GenerateRequest r = text_request(prompt, 0.0f, 0, 12);
    r.mutable_attention()->set_kind("tidal");
    r.mutable_attention()->set_budget(4);
    if (sparse_start >= 0) {
      r.mutable_attention()->set_sparse_start(sparse_start);
      for (int64_t l : reselect) r.mutable_attention()->mutable_reselect_layers()->add_layers(l);
    }
    Streamed s = generate(*client, r);
    EXPECT_TRUE(s.status.ok()) << s.status.error_message();
    EXPECT_TRUE(s.has_final);
    return s;
  };
  const Streamed unset = tidal(-1, {});
  const Streamed named = tidal(3, {4});
  const Streamed other = tidal(1, {});
  EXPECT_EQ(unset.ids, named.ids);
  EXPECT_EQ(unset.final.stats().SerializeAsString(), named.final.stats().SerializeAsString());
  // The layers decide which rows each step reads: a request with its own layers differs.
  EXPECT_NE(unset.final.stats().SerializeAsString(), other.final.stats().SerializeAsString());
}

}  // namespace
}  // namespace tidal::rpc
