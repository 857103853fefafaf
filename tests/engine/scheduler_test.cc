// SPDX-License-Identifier: Apache-2.0
// The coordinator's scheduler on a random-weight model: a long prompt is prefilled a chunk per
// step while running requests keep getting a token every step; a cancelled request's KV pages
// return at the next step; admission reserves whole generations (queue while full, refuse what
// can never fit); correction passes run at the requested interval, exactly as correct() between
// decode steps; requests sharing steps produce what they produce alone; refusals are clear.
#include "runtime/engine/scheduler.h"

#include <chrono>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <thread>

#include "tests/testing/model_config.h"
#include "tests/testing/testing.h"

namespace tidal::engine {
namespace {

model::ModelConfig config4() {
  testing::TinyLlama t;
  t.layers = 4;
  t.head_dim = 8;
  t.context = 256;
  t.vocab = 48;
  t.inter = 48;
  return testing::tiny_llama(t);
}

std::unique_ptr<Engine> make_engine(int64_t max_batch = 8, int64_t kv_capacity = 0,
                                    int64_t prefill_chunk = 16) {
  model::LlamaWeights w;
  EXPECT_TRUE(model::init_random_llama_weights(config4(), 31, &w).ok());
  for (const model::LayerWeights& l : w.layers) {  // sharper attention: sparse != dense
    for (TensorView t : {l.wq, l.wk}) {
      for (int64_t i = 0; i < t.numel(); ++i) t.data_as<float>()[i] *= 25.0f;
    }
  }
  EngineConfig cfg;
  cfg.page_size = 8;
  cfg.max_batch = max_batch;
  cfg.kv_capacity = kv_capacity;
  cfg.prefill_chunk = prefill_chunk;
  std::unique_ptr<Engine> e;
  const Status st = Engine::create(config4(), std::move(w), cfg, &e);
  EXPECT_TRUE(st.ok()) << st.to_string();
  return e;
}

GenerationRequest request(int64_t prompt_len, int32_t salt, int64_t max_new,
                          model::AttentionKind kind = model::AttentionKind::kFull) {
  GenerationRequest r;
  for (int64_t i = 0; i < prompt_len; ++i)
    r.prompt.push_back(int32_t((i * 5 + salt * 11) % 47 + 1));
  r.stop.max_new_tokens = max_new;
  r.stop.ignore_eos = true;
  r.sampling.temperature = 0.8f;
  r.sampling.seed = uint64_t(salt);
  r.attention.kind = kind;
  r.attention.tidal.budget = 8;
  r.attention.tidal.reselect_layers = std::vector<int64_t>{3};
  r.attention.quest.budget = 16;
  r.attention.quest.page_size = 8;
  return r;
}

// Collects each request's tokens and finish, and which requests got a token in each round.
struct Recorder {
  std::map<std::string, std::vector<int32_t>> tokens;
  std::map<std::string, GenerationResult> results;
  std::map<std::string, Status> status;
  std::vector<std::vector<std::string>> rounds{1};
  GenerationCallback callback(const std::string& name) {
    return [this, name](const GenerationEvent& ev) {
      if (ev.finished) {
        results[name] = *ev.result;
        status[name] = ev.status;
      } else {
        tokens[name].push_back(ev.token);
        rounds.back().push_back(name);
      }
      return true;
    };
  }
  void next_round() { rounds.emplace_back(); }
};

void submit(Scheduler& s, Recorder& rec, const std::string& name, GenerationRequest r) {
  RequestHandle h = 0;
  const Status st = s.submit(std::move(r), name, rec.callback(name), &h);
  ASSERT_TRUE(st.ok()) << st.to_string();
}

void run(Scheduler& s, Recorder& rec) {
  while (s.step()) rec.next_round();
}

std::vector<int32_t> solo(const GenerationRequest& r, int64_t max_batch = 8) {
  auto e = make_engine(max_batch);
  Scheduler s(*e, nullptr);
  Recorder rec;
  submit(s, rec, "solo", r);
  run(s, rec);
  return rec.tokens["solo"];
}

TEST(Scheduler, LongPromptDoesNotStallRunningStreams) {
  auto e = make_engine(/*max_batch=*/4, 0, /*prefill_chunk=*/16);
  Scheduler s(*e, nullptr);
  Recorder rec;
  submit(s, rec, "a", request(5, 1, 40));
  submit(s, rec, "b", request(7, 2, 40, model::AttentionKind::kTidal));
  for (int i = 0; i < 3; ++i) {  // both running
    ASSERT_TRUE(s.step());
    rec.next_round();
  }
  submit(s, rec, "long", request(100, 3, 4));  // 7 chunks of 16
  int rounds_with_prefill = 0;
  while (rec.tokens["long"].empty()) {
    ASSERT_TRUE(s.step());
    const std::vector<std::string>& got = rec.rounds.back();
    // Every step of the long prefill also decoded the running requests.
    EXPECT_EQ(std::count(got.begin(), got.end(), "a"), 1);
    EXPECT_EQ(std::count(got.begin(), got.end(), "b"), 1);
    rec.next_round();
    ++rounds_with_prefill;
  }
  EXPECT_EQ(rounds_with_prefill, 7);
  EXPECT_GE(s.stats().mixed_steps, 7);
  run(s, rec);
  EXPECT_EQ(rec.tokens["a"], solo(request(5, 1, 40)));
  EXPECT_EQ(rec.tokens["b"], solo(request(7, 2, 40, model::AttentionKind::kTidal)));
  EXPECT_EQ(rec.tokens["long"], solo(request(100, 3, 4)));
  EXPECT_EQ(e->kv_tokens_in_use(), 0);
}

TEST(Scheduler, CancelFreesKvAtTheNextStep) {
  auto e = make_engine();
  Scheduler s(*e, nullptr);
  Recorder rec;
  submit(s, rec, "keep", request(20, 4, 30));
  submit(s, rec, "drop", request(60, 5, 100));
  for (int i = 0; i < 8; ++i) s.step();
  ASSERT_FALSE(rec.tokens["drop"].empty());
  const int64_t held = e->kv_tokens_in_use();
  EXPECT_TRUE(s.cancel("drop"));
  EXPECT_FALSE(s.cancel("nobody"));
  s.step();  // the cancellation is taken before anything else is planned
  EXPECT_EQ(rec.results["drop"].finish, FinishReason::kCancelled);
  EXPECT_TRUE(rec.status["drop"].ok());
  // Its 8 pages (64 rows) are back; "keep" took at most one more page meanwhile.
  EXPECT_LE(e->kv_tokens_in_use(), held - 56);
  EXPECT_EQ(s.stats().cancelled, 1);
  run(s, rec);
  EXPECT_EQ(rec.tokens["keep"], solo(request(20, 4, 30)));
  EXPECT_EQ(e->kv_tokens_in_use(), 0);
}

TEST(Scheduler, StatsSeenFromATokenShowItsRequestRunning) {
  // A client that got a token and then reads the statistics (as one that disconnects and waits
  // for its pages to come back) must not see the state from before the request started.
  auto e = make_engine();
  Scheduler s(*e, nullptr);
  std::vector<SchedulerStats> seen;
  RequestHandle h = 0;
  auto on_event = [&s, &seen](const GenerationEvent& ev) {
    if (!ev.finished) seen.push_back(s.stats());
    return true;
  };
  // A prompt of one chunk: its first token comes from the step that admitted it.
  ASSERT_TRUE(s.submit(request(5, 6, 12), "watched", on_event, &h).ok());
  while (s.step()) {
  }
  ASSERT_EQ(seen.size(), 12u);
  for (size_t i = 0; i < seen.size(); ++i) {
    EXPECT_EQ(seen[i].running, 1) << "token " << i;
    EXPECT_EQ(seen[i].queued, 0) << "token " << i;
    const int64_t rows = 5 + int64_t(i);  // cached when token i is sampled
    EXPECT_GE(seen[i].kv_pages_used, (rows + 7) / 8) << "token " << i;
  }
  EXPECT_EQ(s.stats().running, 0);
  EXPECT_EQ(s.stats().kv_pages_used, 0);
}

TEST(Scheduler, ReserveAdmissionQueuesWhileFullAndRefusesTheImpossible) {
  // 64 tokens of KV: one request of 20 + 40 rows at a time.
  auto e = make_engine(/*max_batch=*/4, /*kv_capacity=*/64);
  Scheduler s(*e, nullptr);
  Recorder rec;
  for (int i = 0; i < 3; ++i) submit(s, rec, "r" + std::to_string(i), request(20, 6 + i, 41));
  s.step();
  EXPECT_EQ(s.stats().running, 1);
  EXPECT_EQ(s.stats().queued, 2);
  EXPECT_EQ(s.stats().kv_pages_reserved, 8);
  run(s, rec);
  for (int i = 0; i < 3; ++i) {
    const std::string n = "r" + std::to_string(i);
    EXPECT_EQ(rec.results[n].finish, FinishReason::kLength) << n;
    EXPECT_EQ(rec.tokens[n], solo(request(20, 6 + i, 41))) << n;
  }
  RequestHandle h;
  const Status big = s.submit(request(65, 1, 1), "big", rec.callback("big"), &h);
  EXPECT_EQ(big.code(), StatusCode::kOutOfMemory);
  EXPECT_NE(big.message().find("KV cache capacity of 64 tokens"), std::string::npos)
      << big.message();
  // A generation longer than the whole cache is admitted (its prompt fits) and runs out.
  submit(s, rec, "long", request(20, 9, 200));
  run(s, rec);
  EXPECT_EQ(rec.results["long"].finish, FinishReason::kKvCapacity);
  EXPECT_EQ(e->kv_tokens_in_use(), 0);
}

// max_new_tokens is any int64 >= 1 on the wire. The reservation of one near INT64_MAX is the
// whole context, not a sum that overflows (it once wrapped to a negative reservation, which
// let every later request in past the cache's capacity).
TEST(Scheduler, ReserveAdmissionOfAHugeMaxNewTokensDoesNotOverflow) {
  auto e = make_engine(/*max_batch=*/4, /*kv_capacity=*/64);
  Scheduler s(*e, nullptr);
  Recorder rec;
  submit(s, rec, "huge", request(20, 6, std::numeric_limits<int64_t>::max()));
  submit(s, rec, "next", request(20, 7, 41));
  s.step();
  EXPECT_EQ(s.stats().running, 1);
  EXPECT_EQ(s.stats().queued, 1);
  EXPECT_EQ(s.stats().kv_pages_reserved, 8);  // the whole cache (the context is 256 rows)
  EXPECT_TRUE(s.cancel("huge"));
  run(s, rec);
  EXPECT_EQ(rec.results["next"].finish, FinishReason::kLength);
  EXPECT_EQ(rec.tokens["next"], solo(request(20, 7, 41)));
  EXPECT_EQ(s.stats().kv_pages_reserved, 0);
  EXPECT_EQ(e->kv_tokens_in_use(), 0);
}

TEST(Scheduler, CorrectionPassesRunAtTheInterval) {
  auto e = make_engine();
  GenerationRequest r = request(12, 10, 30, model::AttentionKind::kTidal);
  r.attention.correction_interval = 4;
  r.sampling.temperature = 0;
  Scheduler s(*e, nullptr);
  Recorder rec;
  submit(s, rec, "c", r);
  submit(s, rec, "other", request(9, 11, 30, model::AttentionKind::kQuest));
  run(s, rec);
  // 29 decode steps: passes after steps 4, 8, ..., 28 (the last token ends the request first).
  EXPECT_EQ(rec.results["c"].stats.correction_passes, 7);
  EXPECT_EQ(rec.results["c"].stats.correction_tokens, 28);
  EXPECT_EQ(s.stats().correction_passes, 7);
  // The same as decode() and correct() one after another (the loop before the scheduler).
  auto ref = make_engine();
  SeqId id;
  SequenceOptions o;
  o.attention = r.attention;
  o.sampling = r.sampling;
  ASSERT_TRUE(ref->add_sequence(r.prompt, o, &id).ok());
  int32_t t = -1;
  ASSERT_TRUE(ref->prefill(id, TensorView(), &t).ok());
  std::vector<int32_t> want = {t}, next;
  for (int step = 1; step < 30; ++step) {
    ASSERT_TRUE(ref->decode({id}, {t}, TensorView(), &next).ok());
    t = next[0];
    want.push_back(t);
    if (step % 4 == 0 && step < 29) {
      ASSERT_TRUE(ref->correct(id, 4).ok());
    }
  }
  EXPECT_EQ(rec.tokens["c"], want);
}

TEST(Scheduler, RefusalsAreClear) {
  auto e = make_engine();
  Scheduler s(*e, nullptr);
  Recorder rec;
  submit(s, rec, "x", request(4, 1, 5));
  RequestHandle h;
  Status st = s.submit(request(4, 1, 5), "x", rec.callback("x2"), &h);
  EXPECT_EQ(st.code(), StatusCode::kAlreadyExists);
  EXPECT_NE(st.message().find("request id 'x' is already running"), std::string::npos);
  GenerationRequest bad = request(4, 1, 5, model::AttentionKind::kTidal);
  bad.attention.tidal.budget = 1;
  EXPECT_EQ(s.submit(bad, "y", rec.callback("y"), &h).code(), StatusCode::kInvalidArgument);
  bad = request(4, 1, 5);
  bad.stop.max_new_tokens = -1;
  EXPECT_EQ(s.submit(bad, "y", rec.callback("y"), &h).code(), StatusCode::kInvalidArgument);
  bad = request(4, 1, 5);
  bad.sampling.top_p = 0;
  st = s.submit(bad, "y", rec.callback("y"), &h);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("top_p must be in (0, 1]"), std::string::npos) << st.message();
  bad = request(300, 1, 5);
  EXPECT_EQ(s.submit(bad, "y", rec.callback("y"), &h).code(), StatusCode::kOutOfRange);
  run(s, rec);
  submit(s, rec, "x", request(4, 1, 5));  // the name is free again once it ended
  s.stop_admitting();
  st = s.submit(request(4, 1, 5), "z", rec.callback("z"), &h);
  EXPECT_EQ(st.code(), StatusCode::kUnavailable);
  run(s, rec);
  EXPECT_EQ(s.stats().finished, 2);
}

// A request whose end has been delivered holds no place in the queue: a client that sends its
// next request once it has seen the last one end (here, from the finished event itself, which
// is the earliest it can) is not refused under max_queue 1. It once was ("the server holds 1
// requests, its limit") while the scheduler's thread had not yet returned from that event.
TEST(Scheduler, AnEndedRequestLeavesTheQueueBeforeItsClientSeesTheEnd) {
  auto e = make_engine();
  SchedulerOptions o;
  o.max_queue = 1;
  Scheduler s(*e, nullptr, o);
  Recorder rec;
  std::vector<Status> resubmitted;
  std::function<GenerationCallback(int)> chained = [&](int i) -> GenerationCallback {
    const std::string name = "r" + std::to_string(i);
    GenerationCallback record = rec.callback(name);
    return [&, i, record](const GenerationEvent& ev) {
      record(ev);
      if (ev.finished && i < 3) {
        RequestHandle h = 0;
        resubmitted.push_back(s.submit(request(4, 2 + i, 3), "", chained(i + 1), &h));
      }
      return true;
    };
  };
  RequestHandle h = 0;
  ASSERT_TRUE(s.submit(request(4, 1, 3), "", chained(0), &h).ok());
  run(s, rec);
  for (const Status& st : resubmitted) EXPECT_TRUE(st.ok()) << st.to_string();
  ASSERT_EQ(resubmitted.size(), 3u);
  for (int i = 0; i < 4; ++i) {
    const std::string name = "r" + std::to_string(i);
    EXPECT_EQ(rec.tokens[name].size(), 3u) << name;
    EXPECT_EQ(rec.results[name].finish, FinishReason::kLength) << name;
  }
  // While a request is live the limit holds.
  ASSERT_TRUE(s.submit(request(4, 9, 3), "live", rec.callback("live"), &h).ok());
  const Status full = s.submit(request(4, 9, 3), "", rec.callback("x"), &h);
  EXPECT_EQ(full.code(), StatusCode::kUnavailable);
  EXPECT_NE(full.message().find("the server holds 1 requests, its limit"), std::string::npos)
      << full.message();
  run(s, rec);
  EXPECT_EQ(s.stats().finished, 5);
  EXPECT_EQ(e->kv_tokens_in_use(), 0);
}

// Many requests from many threads, stepped by the scheduler's own thread: every output equals
// its solo run, and the KV cache is empty afterwards.
TEST(Scheduler, ThreadedMixedLoadEqualsSoloRuns) {
  auto e = make_engine(/*max_batch=*/6, 0, /*prefill_chunk=*/16);
  Scheduler s(*e, nullptr);
  s.start();
  EXPECT_EQ(s.stats().tokens_per_second, 0);
  const model::AttentionKind kinds[] = {model::AttentionKind::kFull, model::AttentionKind::kTidal,
                                        model::AttentionKind::kQuest};
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 12; ++i) {
    reqs.push_back(request(3 + 9 * (i % 5), 20 + i, 10 + i % 4, kinds[i % 3]));
    if (i % 4 == 1) reqs.back().attention.correction_interval = 3;
  }
  std::mutex mu;
  std::map<int, std::vector<int32_t>> got;
  std::vector<std::thread> threads;
  for (int i = 0; i < 12; ++i) {
    threads.emplace_back([&, i] {
      RequestHandle h;
      const Status st = s.submit(
          reqs[size_t(i)], "t" + std::to_string(i),
          [&, i](const GenerationEvent& ev) {
            std::lock_guard<std::mutex> lock(mu);
            if (!ev.finished) got[i].push_back(ev.token);
            return true;
          },
          &h);
      EXPECT_TRUE(st.ok()) << st.to_string();
    });
  }
  for (std::thread& t : threads) t.join();
  ASSERT_TRUE(s.wait_idle(60));
  s.stop();
  EXPECT_GT(s.stats().tokens_per_second, 0);
  for (int i = 0; i < 12; ++i) EXPECT_EQ(got[i], solo(reqs[size_t(i)])) << i;
  EXPECT_EQ(s.stats().finished, 12);
  EXPECT_EQ(s.stats().generated_tokens, 12 * 10 + 3 * (0 + 1 + 2 + 3));
  EXPECT_EQ(s.stats().kv_pages_used, 0);
  EXPECT_EQ(e->kv_tokens_in_use(), 0);
}

}  // namespace
}  // namespace tidal::engine

namespace tidal::engine {
namespace {

// Idle, the scheduler's thread still refreshes the statistics: the rate decays to 0.
TEST(Scheduler, RateDecaysWhileIdle) {
  auto e = make_engine();
  SchedulerOptions o;
  o.rate_window_seconds = 0.5;
  Scheduler s(*e, nullptr, o);
  s.start();
  RequestHandle h;
  ASSERT_TRUE(s.submit(request(4, 1, 20), "", [](const GenerationEvent&) { return true; }, &h).ok());
  ASSERT_TRUE(s.wait_idle(60));
  const auto t0 = std::chrono::steady_clock::now();
  while (s.stats().tokens_per_second > 0 &&
         std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(s.stats().tokens_per_second, 0);
  EXPECT_EQ(s.stats().generated_tokens, 20);
}

}  // namespace
}  // namespace tidal::engine
