// SPDX-License-Identifier: Apache-2.0
// The generation loop on a tiny random-weight model: stop conditions, seeds, queueing beyond
// max_batch and the KV capacity, cancellation, and clear errors for bad requests.
#include "runtime/engine/generate.h"

#include <memory>

#include "tests/testing/model_config.h"
#include "tests/testing/testing.h"

namespace tidal::engine {
namespace {

model::ModelConfig tiny_config() {
  // 2 layers, 4 query heads over 2 KV heads of 4, context 64, vocab 40.
  return testing::tiny_llama(testing::TinyLlama());
}

std::unique_ptr<Engine> tiny_engine(EngineConfig config = EngineConfig()) {
  model::LlamaWeights w;
  EXPECT_TRUE(model::init_random_llama_weights(tiny_config(), 3, &w).ok());
  std::unique_ptr<Engine> e;
  const Status st = Engine::create(tiny_config(), std::move(w), config, &e);
  EXPECT_TRUE(st.ok()) << st.to_string();
  return e;
}

GenerationRequest request(std::vector<int32_t> prompt, int64_t n, float temperature = 0,
                          uint64_t seed = 0) {
  GenerationRequest r;
  r.prompt = std::move(prompt);
  r.stop.max_new_tokens = n;
  r.stop.ignore_eos = true;
  r.sampling.temperature = temperature;
  r.sampling.seed = seed;
  return r;
}

Status run(Engine& e, const std::vector<GenerationRequest>& reqs,
           std::vector<GenerationResult>* out) {
  return generate(
      e, reqs, nullptr, [](const GenerationEvent&) { return true; }, out);
}

TEST(Generate, MaxNewTokensAndSeeds) {
  auto e = tiny_engine();
  std::vector<GenerationResult> a, b, c;
  ASSERT_TRUE(run(*e, {request({1, 5, 7}, 20, 1.0f, 11)}, &a).ok());
  ASSERT_TRUE(run(*e, {request({1, 5, 7}, 20, 1.0f, 11)}, &b).ok());
  ASSERT_TRUE(run(*e, {request({1, 5, 7}, 20, 1.0f, 12)}, &c).ok());
  EXPECT_EQ(a[0].tokens.size(), 20u);
  EXPECT_EQ(a[0].finish, FinishReason::kLength);
  EXPECT_EQ(a[0].tokens, b[0].tokens);  // same seed, same output
  EXPECT_NE(a[0].tokens, c[0].tokens);  // another seed, another output
  EXPECT_EQ(a[0].prompt_tokens, 3);
}

// A temperature too small to divide by in f32 (1e-40 turns a logit of 1 into inf, and every
// weight into NaN) samples greedily, as vLLM does below 1e-5; it drew the last id of the vocab.
TEST(Generate, TinyTemperatureIsGreedy) {
  auto e = tiny_engine();
  std::vector<GenerationResult> greedy, tiny, small;
  ASSERT_TRUE(run(*e, {request({1, 5, 7}, 12)}, &greedy).ok());
  ASSERT_TRUE(run(*e, {request({1, 5, 7}, 12, 1e-40f, 3)}, &tiny).ok());
  ASSERT_TRUE(run(*e, {request({1, 5, 7}, 12, 1e-6f, 3)}, &small).ok());
  EXPECT_EQ(tiny[0].tokens, greedy[0].tokens);
  EXPECT_EQ(small[0].tokens, greedy[0].tokens);
}

TEST(Generate, EosStopsUnlessIgnored) {
  auto e = tiny_engine();
  std::vector<GenerationResult> r;
  ASSERT_TRUE(run(*e, {request({1, 9}, 5)}, &r).ok());
  GenerationRequest req = request({1, 9}, 5);
  req.stop.ignore_eos = false;
  req.stop.eos_ids = {r[0].tokens[2]};  // the third greedy token becomes the EOS
  std::vector<GenerationResult> s;
  ASSERT_TRUE(run(*e, {req}, &s).ok());
  EXPECT_EQ(s[0].finish, FinishReason::kEos);
  EXPECT_LE(s[0].tokens.size(), 3u);
  EXPECT_EQ(s[0].tokens.back(), r[0].tokens[2]);
}

TEST(Generate, ContextLimitEndsTheRequest) {
  EngineConfig cfg;
  cfg.max_context = 16;
  auto e = tiny_engine(cfg);
  std::vector<GenerationResult> r;
  ASSERT_TRUE(run(*e, {request({1, 2, 3, 4, 5, 6}, 100)}, &r).ok());
  EXPECT_EQ(r[0].finish, FinishReason::kContext);
  EXPECT_EQ(r[0].tokens.size(), 11u);  // 6 + 10 fed = 16 cached, the 11th sampled is not fed
}

TEST(Generate, QueuesBeyondMaxBatchAndKvCapacity) {
  EngineConfig cfg;
  cfg.max_batch = 2;
  cfg.page_size = 4;
  cfg.kv_capacity = 40;  // room for two 20-token sequences at a time
  auto e = tiny_engine(cfg);
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 5; ++i) reqs.push_back(request({1, int32_t(3 + i)}, 12));
  std::vector<GenerationResult> together;
  ASSERT_TRUE(run(*e, reqs, &together).ok());
  for (size_t i = 0; i < reqs.size(); ++i) {
    std::vector<GenerationResult> solo;
    ASSERT_TRUE(run(*e, {reqs[i]}, &solo).ok());
    EXPECT_EQ(together[i].tokens, solo[0].tokens) << "request " << i;
  }
  EXPECT_EQ(e->kv_tokens_in_use(), 0);
}

TEST(Generate, CallbackCancels) {
  auto e = tiny_engine();
  std::vector<GenerationResult> r;
  int seen = 0;
  ASSERT_TRUE(generate(
                  *e, {request({1}, 50)}, nullptr,
                  [&](const GenerationEvent& ev) { return ev.finished || ++seen < 4; }, &r)
                  .ok());
  EXPECT_EQ(r[0].finish, FinishReason::kCancelled);
  EXPECT_EQ(r[0].tokens.size(), 4u);
}

TEST(Generate, BadRequestsGetClearErrors) {
  EngineConfig cfg;
  cfg.kv_capacity = 16;
  cfg.page_size = 4;
  cfg.max_batch = 1;
  auto e = tiny_engine(cfg);
  std::vector<GenerationResult> r;
  std::vector<int32_t> long_prompt(65, 3);
  Status st = run(*e, {request(long_prompt, 4)}, &r);
  EXPECT_EQ(st.code(), StatusCode::kOutOfRange);
  EXPECT_NE(st.message().find("exceeds the context of 64 tokens"), std::string::npos)
      << st.message();

  std::vector<int32_t> kv_prompt(20, 3);
  st = run(*e, {request(kv_prompt, 4)}, &r);
  EXPECT_EQ(st.code(), StatusCode::kOutOfMemory);
  EXPECT_NE(st.message().find("KV cache capacity of 16 tokens"), std::string::npos) << st.message();

  GenerationRequest bad = request({1}, 4, 1.0f);
  bad.sampling.top_p = 0;
  st = run(*e, {bad}, &r);
  EXPECT_NE(st.message().find("top_p must be in (0, 1]"), std::string::npos) << st.message();
  bad = request({1}, 4, -0.5f);
  EXPECT_NE(run(*e, {bad}, &r).message().find("temperature"), std::string::npos);
  EXPECT_NE(run(*e, {request({}, 4)}, &r).message().find("at least one token"), std::string::npos);
  EXPECT_NE(run(*e, {request({99}, 4)}, &r).message().find("outside the vocabulary"),
            std::string::npos);
  GenerationRequest stops = request({1}, 4);
  stops.stop.stop_strings = {"x"};
  EXPECT_NE(run(*e, {stops}, &r).message().find("need a tokenizer"), std::string::npos);
}

// An error names the request it belongs to only when generate() ran several: `tidal generate`
// runs one, and its policy errors read "request 0: quest --budget 8 is below one page" where
// the engine found them (--preset, --tp/--pp) but "quest --budget 8 ..." where the command had
// checked the policy before loading (--model on one process).
TEST(Generate, ErrorsNameTheRequestOnlyAmongSeveral) {
  auto e = tiny_engine();
  std::vector<GenerationResult> r;
  GenerationRequest policy = request({1}, 4);
  policy.attention.kind = model::AttentionKind::kQuest;
  policy.attention.quest.budget = 8;
  GenerationRequest sampling = request({1}, 4, 1.0f);
  sampling.sampling.top_p = 0;
  GenerationRequest vocab = request({99}, 4);
  GenerationRequest stops = request({1}, 4);
  stops.stop.stop_strings = {"x"};
  const struct {
    const GenerationRequest* bad;
    const char* message;  // how it starts
  } cases[] = {
      {&policy, "quest budget 8 is below one page of 16 tokens"},
      {&sampling, "top_p must be in (0, 1]"},
      {&vocab, "prompt token id 99 is outside the vocabulary"},
      {&stops, "stop strings need a tokenizer"},
  };
  for (const auto& c : cases) {
    Status st = run(*e, {*c.bad}, &r);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << c.message;
    EXPECT_EQ(st.message().rfind(c.message, 0), 0u) << st.message();
    st = run(*e, {request({1}, 4), *c.bad}, &r);
    EXPECT_EQ(st.message().rfind(std::string("request 1: ") + c.message, 0), 0u) << st.message();
  }
  EXPECT_EQ(e->kv_tokens_in_use(), 0);
}

}  // namespace
}  // namespace tidal::engine

namespace tidal::engine {
namespace {

TEST(MemoryPlan, AutomaticKvCapacityFitsAvailableMemory) {
  const model::ModelConfig c = tiny_config();
  EngineConfig cfg;  // automatic: 8 sequences x 64 tokens = 512 tokens wanted
  const MemoryPlan unbounded = plan_memory(c, cfg, 0);
  EXPECT_EQ(unbounded.kv_capacity_tokens, 512);
  EXPECT_FALSE(unbounded.kv_capped);
  // 2 layers x (K + V) x 2 kv heads x 4 dims x 4 bytes = 128 bytes a token.
  EXPECT_EQ(unbounded.kv_bytes_per_token, 128);
  // A page: 16 tokens of 128 bytes, plus Quest's max and min rows (2 x 128 / 2 bytes a layer).
  const size_t page_bytes = 16 * 128 + 2 * 2 * 2 * 4 * 4;
  // 92% of the memory is planned; 7 pages fit, one of them the padding page of graph buckets.
  const size_t tight =
      size_t(double(unbounded.weight_bytes + unbounded.workspace_bytes + 7 * page_bytes + 100) /
             0.92) +
      1;
  const MemoryPlan capped = plan_memory(c, cfg, tight);
  EXPECT_TRUE(capped.kv_capped);
  EXPECT_EQ(capped.kv_capacity_tokens, 96);  // 6 whole pages of 16 for sequences
  cfg.kv_capacity = 300;                     // explicit: taken as asked
  EXPECT_EQ(plan_memory(c, cfg, tight).kv_capacity_tokens, 304);
}

// The automatic capacity holds max_batch sequences of the whole context. A sequence holds whole
// pages, so with a page size that does not divide the context (or exceeds it) that is max_batch x
// ceil(context / page_size) pages, not max_batch x context tokens rounded up to pages: with
// 128-token pages and a 64-token context, 4 sequences got 2 pages and a third was refused.
TEST(MemoryPlan, AutomaticKvCapacityHoldsMaxBatchWholeContexts) {
  const model::ModelConfig c = tiny_config();  // context 64
  EngineConfig cfg;
  cfg.max_batch = 4;
  for (const auto& [page, pages] : {std::pair<int64_t, int64_t>{16, 16}, {48, 8}, {128, 4}}) {
    cfg.page_size = page;
    const MemoryPlan p = plan_memory(c, cfg, 0);
    EXPECT_EQ(p.kv_pages, pages) << "page_size " << page;
    EXPECT_EQ(p.kv_capacity_tokens, pages * page) << "page_size " << page;
  }
  auto e = tiny_engine(cfg);  // 128-token pages
  ASSERT_NE(e, nullptr);
  for (int i = 0; i < 4; ++i) {
    SeqId id = -1;
    const Status st = e->add_sequence(std::vector<int32_t>(64, 3), &id);
    EXPECT_TRUE(st.ok()) << "sequence " << i << ": " << st.to_string();
  }
  // An explicit capacity is taken as asked, in whole pages.
  cfg.kv_capacity = 200;
  EXPECT_EQ(plan_memory(c, cfg, 0).kv_pages, 2);
}

}  // namespace
}  // namespace tidal::engine
