// SPDX-License-Identifier: Apache-2.0
// The engine's limits, each met with a clear outcome: sizes bounded and planned without overflow
// before anything is allocated; a plan that does not fit refused with the bytes it needs, the
// bytes there are and the device; running out of KV pages or of context as finish reasons;
// non-finite logits as an error naming the step; progress reported as a prefill advances.
#include <cmath>
#include <memory>
#include <string>

#include "runtime/engine/generate.h"
#include "tests/testing/model_config.h"
#include "tests/testing/testing.h"

namespace tidal::engine {
namespace {

model::ModelConfig tiny_config() { return testing::tiny_llama(testing::TinyLlama()); }

std::unique_ptr<Engine> tiny_engine(EngineConfig config, model::ModelConfig c = tiny_config(),
                                    int32_t nan_embedding_row = -1) {
  model::LlamaWeights w;
  EXPECT_TRUE(model::init_random_llama_weights(c, 3, &w).ok());
  if (nan_embedding_row >= 0) {
    float* row = w.embed.data_as<float>() + nan_embedding_row * c.hidden;
    for (int64_t i = 0; i < c.hidden; ++i) row[i] = std::nanf("");
  }
  std::unique_ptr<Engine> e;
  const Status st = Engine::create(c, std::move(w), config, &e);
  EXPECT_TRUE(st.ok()) << st.to_string();
  return e;
}

GenerationRequest request(std::vector<int32_t> prompt, int64_t n) {
  GenerationRequest r;
  r.prompt = std::move(prompt);
  r.stop.max_new_tokens = n;
  r.stop.ignore_eos = true;
  r.sampling.temperature = 0;
  return r;
}

Status run(Engine& e, const std::vector<GenerationRequest>& reqs,
           std::vector<GenerationResult>* out) {
  return generate(
      e, reqs, nullptr, [](const GenerationEvent&) { return true; }, out);
}

bool has(const Status& st, const std::string& what) {
  return st.message().find(what) != std::string::npos;
}

TEST(EngineLimits, EverySizeIsBoundedAndNamed) {
  const struct {
    const char* field;
    int64_t EngineConfig::*member;
    int64_t bad;
  } cases[] = {
      {"page_size", &EngineConfig::page_size, 100000000},
      {"page_size", &EngineConfig::page_size, 0},
      {"max_batch", &EngineConfig::max_batch, 1000000000},
      {"max_context", &EngineConfig::max_context, int64_t(1) << 40},
      {"kv_capacity", &EngineConfig::kv_capacity, -1},
      {"kv_capacity", &EngineConfig::kv_capacity, INT64_MAX},
      {"prefill_chunk", &EngineConfig::prefill_chunk, int64_t(1) << 31},
      {"max_budget", &EngineConfig::max_budget, 1},
  };
  for (const auto& c : cases) {
    EngineConfig cfg;
    cfg.*c.member = c.bad;
    const Status st = cfg.validate();
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << c.field << " " << c.bad;
    EXPECT_TRUE(has(st, std::string(c.field) + " " + std::to_string(c.bad) + " is out of range"))
        << st.message();
  }
  // Page ids are i32: a capacity of more pages than that is refused, naming it.
  EngineConfig cfg;
  cfg.kv_capacity = int64_t(1) << 36;
  EXPECT_TRUE(has(cfg.validate(), "page ids are i32")) << cfg.validate().message();
}

// add_random_sequence (the long-context benchmarks' path) refuses a length past the context
// with a clear error before it sizes anything for it: a huge length is not allocated first.
TEST(EngineLimits, RandomSequenceLengthIsCheckedBeforeAllocating) {
  std::unique_ptr<Engine> e = tiny_engine(EngineConfig());
  ASSERT_NE(e, nullptr);
  SeqId id = -1;
  for (int64_t n : {e->memory_plan().max_context + 1, INT64_MAX / 8, INT64_MAX}) {
    const Status st = e->add_random_sequence(n, SequenceOptions(), /*seed=*/1, &id);
    EXPECT_EQ(st.code(), StatusCode::kOutOfRange) << n << ": " << st.to_string();
    EXPECT_TRUE(has(st, "exceeds the context")) << st.message();
  }
  EXPECT_EQ(e->kv_tokens_in_use(), 0);
  // The engine serves the next request as before.
  ASSERT_TRUE(e->add_random_sequence(5, SequenceOptions(), /*seed=*/1, &id).ok());
  EXPECT_EQ(e->length(id), 5);
  e->release(id);
  EXPECT_EQ(e->kv_tokens_in_use(), 0);
}

// Stop strings are matched against every token on the scheduler's thread: their count and
// length are bounded (generate.h), at the bounds accepted, past them a clear error.
TEST(EngineLimits, StopStringsAreBoundedInCountAndLength) {
  StopConditions stop;
  stop.stop_strings.assign(kMaxStopStrings, std::string(kMaxStopStringBytes, 'x'));
  EXPECT_TRUE(stop.validate().ok());
  stop.stop_strings.push_back("y");
  Status st = stop.validate();
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(has(st, "at most 64 (got 65)")) << st.to_string();
  stop.stop_strings = {"end", std::string(kMaxStopStringBytes + 1, 'x')};
  st = stop.validate();
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(has(st, "at most 1024 bytes (got one of 1025)")) << st.to_string();
}

// The largest model and engine the bounds allow: planning takes no memory and no time, and the
// byte counts come out huge (saturated where they overflow), never wrapped to something small.
TEST(EngineLimits, AbsurdPlansAreHugeNotWrapped) {
  model::ModelConfig m = tiny_config();
  m.num_layers = 1024;
  m.num_heads = 1024;
  m.num_kv_heads = 1024;
  m.head_dim = 1024;
  m.hidden = 1024;
  m.vocab = int64_t(1) << 24;
  m.max_position_embeddings = int64_t(1) << 28;
  ASSERT_TRUE(m.validate().ok()) << m.validate().message();
  EngineConfig cfg;
  cfg.max_batch = kMaxBatch;
  cfg.page_size = kMaxPageSize;
  cfg.kv_capacity = kMaxKvCapacity;
  ASSERT_TRUE(cfg.validate().ok()) << cfg.validate().message();
  const MemoryPlan p = plan_memory(m, cfg, size_t(1) << 30);
  EXPECT_GT(p.total_bytes(), size_t(1) << 60);
  EXPECT_GE(p.kv_bytes, size_t(kMaxKvCapacity));
  const Status st = plan_fits(m, cfg, p);
  EXPECT_EQ(st.code(), StatusCode::kOutOfMemory);
  EXPECT_TRUE(has(st, "does not fit in cpu memory")) << st.message();
  EXPECT_TRUE(has(st, "1073741824 bytes (1.00 GiB) are available")) << st.message();
}

TEST(EngineLimits, NotFittingSaysWhatNeedsHowMuchAndWhere) {
  model::ModelConfig m;
  ASSERT_TRUE(model::model_config_preset("llama2-7b", &m).ok());
  EngineConfig cfg;
  cfg.max_batch = 1;
  const size_t gib = size_t(1) << 30;
  MemoryPlan p = plan_memory(m, cfg, 8 * gib);
  EXPECT_TRUE(p.kv_capped);
  EXPECT_EQ(p.kv_pages, 1);  // the smallest plan: one page
  Status st = plan_fits(m, cfg, p);
  EXPECT_EQ(st.code(), StatusCode::kOutOfMemory);
  EXPECT_TRUE(has(st, "it needs " + std::to_string(p.total_bytes()) + " bytes")) << st.message();
  EXPECT_TRUE(has(st, "8589934592 bytes (8.00 GiB) are available")) << st.message();
  EXPECT_TRUE(has(st, "the weights are the largest part")) << st.message();
  // An explicit KV capacity too large for the memory is named.
  cfg.kv_capacity = 1000000;
  p = plan_memory(m, cfg, 64 * gib);
  st = plan_fits(m, cfg, p);
  EXPECT_TRUE(has(st, "kv_capacity 1000000 tokens")) << st.message();
  // So is a batch whose workspace is the largest part.
  cfg.kv_capacity = 0;
  cfg.max_batch = 60000;
  st = plan_fits(m, cfg, plan_memory(m, cfg, 64 * gib));
  EXPECT_TRUE(has(st, "sized by max_batch 60000")) << st.message();
  // And what fits, fits.
  cfg.max_batch = 1;
  EXPECT_TRUE(plan_fits(m, cfg, plan_memory(m, cfg, 64 * gib)).ok());
}

// Engine::load refuses a plan that cannot fit before it reads the checkpoint (here there is
// none: the error is about memory, not about a missing model.safetensors).
TEST(EngineLimits, LoadRefusesBeforeReadingTheCheckpoint) {
  TIDAL_SKIP_WITHOUT_SHARED("models/stories260K/hf");
  const std::string dir = testing::temp_dir("nofit");
  testing::write_file(
      dir + "/config.json",
      testing::read_file(testing::shared_path("models/stories260K/hf/config.json")));
  EngineConfig cfg;
  cfg.page_size = kMaxPageSize;
  cfg.kv_capacity = kMaxKvCapacity;  // 2^40 tokens of 1280 bytes: no machine has that
  std::unique_ptr<Engine> e;
  const Status st = Engine::load(dir, cfg, &e);
  EXPECT_EQ(st.code(), StatusCode::kOutOfMemory) << st.message();
  EXPECT_TRUE(has(st, dir + ": does not fit in cpu memory")) << st.message();
  EXPECT_TRUE(has(st, "kv_capacity 1099511627776 tokens")) << st.message();
}

TEST(EngineLimits, RunningOutOfKvPagesIsAFinishReason) {
  EngineConfig cfg;
  cfg.page_size = 16;
  cfg.kv_capacity = 32;
  auto e = tiny_engine(cfg);
  std::vector<GenerationResult> r;
  ASSERT_TRUE(run(*e, {request({1, 2, 3, 4, 5}, 100)}, &r).ok());
  EXPECT_EQ(r[0].finish, FinishReason::kKvCapacity);
  EXPECT_EQ(r[0].cached_tokens, 32);
  EXPECT_EQ(r[0].tokens.size(), 28u);  // 5 + 27 fed = 32 rows; the 28th sampled is not fed
  EXPECT_EQ(std::string(finish_reason_name(r[0].finish)), "kv_capacity");

  // Two sequences share 3 pages: the one that finds no page ends, the other goes on and then
  // ends the same way; both cleanly.
  cfg.kv_capacity = 48;
  auto two = tiny_engine(cfg);
  ASSERT_TRUE(run(*two, {request({1, 2, 3}, 100), request({1, 4}, 100)}, &r).ok());
  EXPECT_EQ(r[0].finish, FinishReason::kKvCapacity);
  EXPECT_EQ(r[1].finish, FinishReason::kKvCapacity);
  EXPECT_EQ(r[1].cached_tokens, 16);  // its second page went to the first sequence
  EXPECT_EQ(r[0].cached_tokens, 48);  // then every page
  EXPECT_EQ(two->kv_tokens_in_use(), 0);
}

TEST(EngineLimits, ContextEndCountsTheCachedRows) {
  EngineConfig cfg;
  cfg.max_context = 16;
  auto e = tiny_engine(cfg);
  std::vector<GenerationResult> r;
  ASSERT_TRUE(run(*e, {request({1, 2, 3}, 100)}, &r).ok());
  EXPECT_EQ(r[0].finish, FinishReason::kContext);
  EXPECT_EQ(r[0].cached_tokens, 16);  // never more than the context
  EXPECT_EQ(r[0].tokens.size(), 14u);
}

TEST(EngineLimits, NonFiniteLogitsStopWithTheStep) {
  model::ModelConfig c = tiny_config();
  c.tie_word_embeddings = false;  // so only feeding token 7 poisons a step
  EngineConfig cfg;
  auto e = tiny_engine(cfg, c, /*nan_embedding_row=*/7);
  // In the prompt: the logits after it are NaN; the error names step 0 and the position.
  std::vector<GenerationResult> r;
  Status st = run(*e, {request({1, 7, 3}, 10)}, &r);
  EXPECT_EQ(st.code(), StatusCode::kInternal);
  EXPECT_TRUE(has(st,
                  "non-finite logits (NaN or infinity) at step 0 of the generation "
                  "(position 2)"))
      << st.message();
  // Fed in a decode step.
  SeqId id;
  ASSERT_TRUE(e->add_sequence({1, 2, 3}, &id).ok());
  int32_t first = -1;
  ASSERT_TRUE(e->prefill(id, TensorView(), &first).ok());
  std::vector<int32_t> next;
  ASSERT_TRUE(e->decode({id}, {5}, TensorView(), &next).ok());
  st = e->decode({id}, {7}, TensorView(), &next);
  EXPECT_TRUE(has(st, "sequence " + std::to_string(id) +
                          ": non-finite logits (NaN or "
                          "infinity) at step 2 of the generation (position 4)"))
      << st.message();
}

TEST(EngineLimits, PrefillReportsProgressChunkByChunk) {
  EngineConfig cfg;
  cfg.prefill_chunk = 16;
  auto e = tiny_engine(cfg);
  std::vector<std::pair<int64_t, int64_t>> calls;
  e->set_progress([&](int64_t done, int64_t total) { calls.emplace_back(done, total); });
  SeqId id;
  ASSERT_TRUE(e->add_sequence(std::vector<int32_t>(40, 3), &id).ok());
  ASSERT_TRUE(e->prefill(id, TensorView()).ok());
  const std::vector<std::pair<int64_t, int64_t>> want = {{0, 40}, {16, 40}, {32, 40}, {40, 40}};
  EXPECT_EQ(calls, want);
  calls.clear();
  ASSERT_TRUE(e->correct(id, 20).ok());  // corrections are not prefills
  EXPECT_TRUE(calls.empty());
}

}  // namespace
}  // namespace tidal::engine
