// SPDX-License-Identifier: Apache-2.0
// stories260K (a real trained Llama with GQA, head_dim 8) on the GPU: in f32 it reproduces
// transformers' 256 greedy tokens and text from BOS and the CPU engine's logits; in bf16 its
// greedy run agrees with the golden ids for a leading stretch (bf16 drifts later, as expected).
#include <cstdio>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "model/tokenizer.h"
#include "runtime/engine/engine.h"
#include "runtime/engine/generate.h"
#include "tests/testing/engine_cuda.h"

namespace tidal::engine {
namespace {

constexpr const char* kModel = "models/stories260K/hf";
constexpr const char* kGolden = "models/stories260K/greedy_from_BOS_256.txt";
constexpr int64_t kVocab = 512;

std::unique_ptr<Engine> load_stories(const EngineConfig& config) {
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

std::vector<float> logits_after_bos(Engine& engine) {
  SeqId id;
  EXPECT_TRUE(engine.add_sequence({1}, &id).ok());
  std::vector<float> logits(kVocab);
  const Status st = engine.prefill(id, make_view(logits.data(), DType::kF32, {kVocab}));
  EXPECT_TRUE(st.ok()) << st.to_string();
  engine.release(id);
  return logits;
}

TEST(StoriesCuda, F32LogitsAfterBosMatchTheCpuEngineAndTransformers) {
  TIDAL_SKIP_WITHOUT_CUDA();
  TIDAL_SKIP_WITHOUT_SHARED(kModel);
  auto gpu = load_stories(testing::gpu_config(DType::kF32));
  auto cpu = load_stories(EngineConfig());
  ASSERT_TRUE(gpu && cpu);
  const std::vector<float> got = logits_after_bos(*gpu);
  EXPECT_TRUE(testing::all_close(got, logits_after_bos(*cpu), 1e-4f, 0));
  const std::vector<float> want = {-6.22291f, 8.40434f, -6.22374f, -6.22254f, -6.22195f};
  EXPECT_TRUE(testing::all_close({got.begin(), got.begin() + 5}, want, 1e-4f, 0));
}

TEST(StoriesCuda, F32Greedy256FromBosMatchesGoldenIdsAndText) {
  TIDAL_SKIP_WITHOUT_CUDA();
  TIDAL_SKIP_WITHOUT_SHARED(kModel);
  std::string text;
  std::vector<int32_t> ids;
  read_golden(&text, &ids);
  ASSERT_EQ(ids.size(), 256u);
  auto engine = load_stories(testing::gpu_config(DType::kF32));
  ASSERT_TRUE(engine);

  std::unique_ptr<model::Tokenizer> tok;
  ASSERT_TRUE(model::Tokenizer::load_from_dir(testing::shared_path(kModel), &tok).ok());
  GenerationRequest req;
  req.prompt = {1};
  req.sampling.temperature = 0;
  req.stop.max_new_tokens = 256;
  req.stop.ignore_eos = true;
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
  EXPECT_EQ(results[0].tokens, ids) << "first difference at token "
                                    << testing::agreeing_prefix(results[0].tokens, ids);
  EXPECT_EQ(results[0].text, text);
  EXPECT_EQ(streamed, text);
  EXPECT_GT(engine->graphs_captured(), 0);  // the decode steps replayed a graph
}

TEST(StoriesCuda, Bf16GreedyAgreesWithTheGoldenIdsForALeadingStretch) {
  TIDAL_SKIP_WITHOUT_CUDA();
  TIDAL_SKIP_WITHOUT_SHARED(kModel);
  std::string text;
  std::vector<int32_t> ids;
  read_golden(&text, &ids);
  auto engine = load_stories(testing::gpu_config(DType::kBF16));
  ASSERT_TRUE(engine);
  const std::vector<int32_t> got = testing::greedy_tokens(*engine, {1}, 256);
  ASSERT_EQ(got.size(), 256u);
  const size_t agree = testing::agreeing_prefix(got, ids);
  std::printf("stories260K bf16 on the GPU: %zu of 256 leading greedy tokens match the golden ids\n",
              agree);
  RecordProperty("bf16_agreeing_prefix", int(agree));
  EXPECT_GE(agree, 8u);
  for (int32_t t : got) EXPECT_TRUE(t >= 0 && t < kVocab) << t;
}

TEST(StoriesCuda, F32GreedyEqualsTheCpuEngine) {
  TIDAL_SKIP_WITHOUT_CUDA();
  TIDAL_SKIP_WITHOUT_SHARED(kModel);
  auto gpu = load_stories(testing::gpu_config(DType::kF32));
  auto cpu = load_stories(EngineConfig());
  ASSERT_TRUE(gpu && cpu);
  // From BOS and from a 9-token prompt (prefill of more than one token on both devices).
  for (const std::vector<int32_t>& prompt :
       {std::vector<int32_t>{1}, {1, 346, 306, 414, 263, 304, 341, 443, 317}}) {
    const std::vector<int32_t> want = testing::greedy_tokens(*cpu, prompt, 64);
    ASSERT_EQ(want.size(), 64u);
    const std::vector<int32_t> got = testing::greedy_tokens(*gpu, prompt, 64);
    EXPECT_EQ(got, want) << "prompt of " << prompt.size() << " tokens: first difference at token "
                         << testing::agreeing_prefix(got, want);
  }
}

}  // namespace
}  // namespace tidal::engine
