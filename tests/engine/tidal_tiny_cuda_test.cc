// SPDX-License-Identifier: Apache-2.0
// The embedded model (model/tidal-tiny-16k: 10 layers, 4 query heads over 1 KV head of 64) on
// the GPU: in f32 its 64 greedy tokens and its logits after the prompt equal transformers' fp32
// run recorded in eval.json; in bf16 the greedy run agrees for a leading stretch.
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/tokenizer.h"
#include "runtime/engine/engine.h"
#include "runtime/engine/generate.h"
#include "tests/testing/engine_cuda.h"

namespace tidal::engine {
namespace {

const std::string kDir = std::string(TIDAL_SOURCE_DIR) + "/model/tidal-tiny-16k";

struct Reference {
  std::string prompt;
  std::vector<int32_t> prompt_ids;
  std::vector<int32_t> greedy;  // transformers fp32, 64 tokens
  std::string text;
  std::vector<int32_t> top5_ids;  // logits after the last prompt token: the five largest
  std::vector<float> top5_logits;
};

Reference reference() {
  const auto eval = nlohmann::json::parse(testing::read_file(kDir + "/eval.json"));
  const auto& ref = eval.at("reference_greedy_64");
  Reference r;
  r.prompt = ref.at("prompt").get<std::string>();
  r.prompt_ids = ref.at("prompt_ids").get<std::vector<int32_t>>();
  r.greedy = ref.at("fp32_cpu").get<std::vector<int32_t>>();
  r.text = ref.at("fp32_cpu_text").get<std::string>();
  const auto& top5 = ref.at("fp32_cpu_last_prompt_logits_top5");
  r.top5_ids = top5.at("ids").get<std::vector<int32_t>>();
  r.top5_logits = top5.at("logits").get<std::vector<float>>();
  return r;
}

std::unique_ptr<Engine> load_tiny(DType dtype) {
  EngineConfig config = testing::gpu_config(dtype);
  config.max_batch = 1;
  config.max_context = 256;  // prompt 53 + 64: no need for the model's 16K
  std::unique_ptr<Engine> engine;
  const Status st = Engine::load(kDir, config, &engine);
  EXPECT_TRUE(st.ok()) << st.to_string();
  return engine;
}

TEST(TidalTinyCuda, F32GreedyContinuationAndLogitsMatchTransformers) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const Reference ref = reference();
  std::unique_ptr<model::Tokenizer> tok;
  ASSERT_TRUE(model::Tokenizer::load_from_dir(kDir, &tok).ok());
  GenerationRequest req;
  ASSERT_TRUE(tok->encode(ref.prompt, true, &req.prompt).ok());
  ASSERT_EQ(req.prompt, ref.prompt_ids);
  auto engine = load_tiny(DType::kF32);
  ASSERT_TRUE(engine);

  // The logits after the prompt: transformers' five largest, within f32 export parity.
  const int64_t vocab = engine->model_config().vocab;
  SeqId id;
  ASSERT_TRUE(engine->add_sequence(req.prompt, &id).ok());
  std::vector<float> logits(static_cast<size_t>(vocab));
  ASSERT_TRUE(engine->prefill(id, make_view(logits.data(), DType::kF32, {vocab})).ok());
  engine->release(id);
  std::vector<float> got_top5;
  for (int32_t t : ref.top5_ids) got_top5.push_back(logits[size_t(t)]);
  EXPECT_TRUE(testing::all_close(got_top5, ref.top5_logits, 1e-3f, 1e-4f));
  EXPECT_EQ(testing::argmax_of(logits), ref.top5_ids[0]);

  req.sampling.temperature = 0;
  req.stop.max_new_tokens = int64_t(ref.greedy.size());
  req.stop.ignore_eos = true;
  std::vector<GenerationResult> results;
  ASSERT_TRUE(generate(
                  *engine, {req}, tok.get(), [](const GenerationEvent&) { return true; }, &results)
                  .ok());
  EXPECT_EQ(results[0].tokens, ref.greedy)
      << "first difference at token " << testing::agreeing_prefix(results[0].tokens, ref.greedy);
  EXPECT_EQ(results[0].text, ref.text);
}

TEST(TidalTinyCuda, Bf16GreedyAgreesWithTransformersForALeadingStretch) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const Reference ref = reference();
  auto engine = load_tiny(DType::kBF16);
  ASSERT_TRUE(engine);
  const std::vector<int32_t> got =
      testing::greedy_tokens(*engine, ref.prompt_ids, int64_t(ref.greedy.size()));
  ASSERT_EQ(got.size(), ref.greedy.size());
  const size_t agree = testing::agreeing_prefix(got, ref.greedy);
  std::printf("tidal-tiny-16k bf16 on the GPU: %zu of %zu leading greedy tokens match fp32\n",
              agree, ref.greedy.size());
  RecordProperty("bf16_agreeing_prefix", int(agree));
  EXPECT_GE(agree, 8u);
}

}  // namespace
}  // namespace tidal::engine
