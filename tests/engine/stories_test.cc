// SPDX-License-Identifier: Apache-2.0
// The whole model against golden outputs of Hugging Face transformers on stories260K (a real
// trained Llama with GQA), plus metamorphic checks: chunked prefill equals token-by-token
// decoding, batched decode equals solo runs.
#include <cmath>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "model/tokenizer.h"
#include "runtime/engine/engine.h"
#include "runtime/engine/generate.h"
#include "tests/testing/generation.h"
#include "tests/testing/testing.h"

namespace tidal::engine {
namespace {

constexpr const char* kModel = "models/stories260K/hf";
constexpr const char* kGolden = "models/stories260K/greedy_from_BOS_256.txt";

std::unique_ptr<Engine> load_stories(EngineConfig config = EngineConfig()) {
  std::unique_ptr<Engine> engine;
  const Status st = Engine::load(testing::shared_path(kModel), config, &engine);
  EXPECT_TRUE(st.ok()) << st.to_string();
  return engine;
}

// The golden file holds the text, then a line "ids: [403, 407, ...]".
void read_golden(std::string* text, std::vector<int32_t>* ids) {
  const std::string all = testing::read_file(testing::shared_path(kGolden));
  const size_t at = all.rfind("ids: [");
  ASSERT_NE(at, std::string::npos);
  *text = all.substr(0, at);
  if (!text->empty() && text->back() == '\n') text->pop_back();  // the separator line break
  const std::regex number("[0-9]+");
  const std::string list = all.substr(at);
  for (auto it = std::sregex_iterator(list.begin(), list.end(), number);
       it != std::sregex_iterator(); ++it) {
    ids->push_back(std::stoi(it->str()));
  }
}

TEST(Stories, LogitsAfterBosMatchTransformers) {
  TIDAL_SKIP_WITHOUT_SHARED(kModel);
  auto engine = load_stories();
  ASSERT_TRUE(engine);
  SeqId id;
  ASSERT_TRUE(engine->add_sequence({1}, &id).ok());
  std::vector<float> logits(512);
  ASSERT_TRUE(engine->prefill(id, make_view(logits.data(), DType::kF32, {512})).ok());
  const std::vector<float> want = {-6.22291f, 8.40434f, -6.22374f, -6.22254f, -6.22195f};
  EXPECT_TRUE(testing::all_close({logits.begin(), logits.begin() + 5}, want, 1e-4f, 0));
}

TEST(Stories, Greedy256FromBosMatchesGoldenIdsAndText) {
  TIDAL_SKIP_WITHOUT_SHARED(kModel);
  std::string text;
  std::vector<int32_t> ids;
  read_golden(&text, &ids);
  ASSERT_EQ(ids.size(), 256u);
  auto engine = load_stories();
  ASSERT_TRUE(engine);
  EXPECT_EQ(testing::greedy_tokens(*engine, {1}, 256), ids);

  std::unique_ptr<model::Tokenizer> tok;
  ASSERT_TRUE(model::Tokenizer::load_from_dir(testing::shared_path(kModel), &tok).ok());
  GenerationRequest req;
  req.prompt = {1};
  req.sampling.temperature = 0;
  req.stop.max_new_tokens = 256;
  std::string streamed;
  std::vector<GenerationResult> results;
  ASSERT_TRUE(generate(
                  *engine, {req}, tok.get(),
                  [&](const GenerationEvent& ev) {
                    streamed += ev.text;
                    return true;
                  },
                  &results)
                  .ok());
  EXPECT_EQ(results[0].text, text);
  EXPECT_EQ(streamed, text);
}

TEST(Stories, EveryPolicyWithBudgetCoveringTheContextGivesTheGoldenText) {
  TIDAL_SKIP_WITHOUT_SHARED(kModel);
  std::string text;
  std::vector<int32_t> ids;
  read_golden(&text, &ids);
  auto engine = load_stories();
  ASSERT_TRUE(engine);
  for (model::Granularity g : {model::Granularity::kPerQueryHead, model::Granularity::kPerKvHead,
                               model::Granularity::kShared}) {
    for (std::vector<int64_t> reselect : {std::vector<int64_t>{}, {3}, {4}}) {
      model::AttentionPolicy p;
      p.kind = model::AttentionKind::kTidal;
      p.tidal.budget = 512;
      p.tidal.granularity = g;
      p.tidal.reselect_layers = reselect;
      EXPECT_EQ(testing::greedy_tokens(*engine, {1}, 256, p), ids) << model::granularity_name(g);
    }
  }
  model::AttentionPolicy q;
  q.kind = model::AttentionKind::kQuest;
  q.quest.budget = 512;
  EXPECT_EQ(testing::greedy_tokens(*engine, {1}, 256, q), ids);
}

TEST(Stories, ChunkedPrefillEqualsTokenByToken) {
  TIDAL_SKIP_WITHOUT_SHARED(kModel);
  std::string text;
  std::vector<int32_t> golden;
  read_golden(&text, &golden);
  std::vector<int32_t> prompt = {1};
  prompt.insert(prompt.end(), golden.begin(), golden.begin() + 199);  // 200 tokens
  EngineConfig chunked;
  chunked.prefill_chunk = 64;  // 64 + 64 + 64 + 8
  auto a = load_stories(chunked);
  auto b = load_stories();
  ASSERT_TRUE(a && b);

  // a: prefill the whole prompt. b: prefill BOS, then feed every prompt token as a decode step.
  SeqId sa, sb;
  std::vector<float> la(512), lb(512);
  ASSERT_TRUE(a->add_sequence(prompt, &sa).ok());
  ASSERT_TRUE(a->prefill(sa, make_view(la.data(), DType::kF32, {512})).ok());
  ASSERT_TRUE(b->add_sequence({prompt[0]}, &sb).ok());
  ASSERT_TRUE(b->prefill(sb, make_view(lb.data(), DType::kF32, {512})).ok());
  for (size_t i = 1; i < prompt.size(); ++i) {
    ASSERT_TRUE(b->decode({sb}, {prompt[i]}, make_view(lb.data(), DType::kF32, {1, 512})).ok());
  }
  EXPECT_TRUE(testing::all_close(la, lb, 1e-4f, 1e-4f));
  // And both continue identically.
  std::vector<int32_t> ta, tb;
  for (int step = 0; step < 32; ++step) {
    ta.push_back(argmax(make_view(la.data(), DType::kF32, {512})));
    tb.push_back(argmax(make_view(lb.data(), DType::kF32, {512})));
    ASSERT_TRUE(a->decode({sa}, {ta.back()}, make_view(la.data(), DType::kF32, {1, 512})).ok());
    ASSERT_TRUE(b->decode({sb}, {tb.back()}, make_view(lb.data(), DType::kF32, {1, 512})).ok());
  }
  EXPECT_EQ(ta, tb);
  EXPECT_TRUE(testing::all_close(la, lb, 1e-4f, 1e-4f));
}

TEST(Stories, BatchedDecodeEqualsSoloRuns) {
  TIDAL_SKIP_WITHOUT_SHARED(kModel);
  const std::vector<std::vector<int32_t>> prompts = {
      {1}, {1, 403, 407, 261, 378}, {1, 346, 306, 414, 263, 304, 341, 443, 317}};
  auto engine = load_stories();
  ASSERT_TRUE(engine);
  std::vector<std::vector<int32_t>> solo;
  for (const auto& p : prompts) solo.push_back(testing::greedy_tokens(*engine, p, 48));

  std::vector<GenerationRequest> reqs(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    reqs[i].prompt = prompts[i];
    reqs[i].sampling.temperature = 0;
    reqs[i].stop.max_new_tokens = 48;
    reqs[i].stop.ignore_eos = true;
  }
  std::vector<GenerationResult> results;
  ASSERT_TRUE(generate(
                  *engine, reqs, nullptr, [](const GenerationEvent&) { return true; }, &results)
                  .ok());
  for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(results[i].tokens, solo[i]) << i;
  EXPECT_EQ(engine->kv_tokens_in_use(), 0);  // every page returned
}

}  // namespace
}  // namespace tidal::engine
