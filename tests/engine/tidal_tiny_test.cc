// SPDX-License-Identifier: Apache-2.0
// The embedded model (model/tidal-tiny-16k, trained by model/training/train_tidal_tiny.py): the
// engine's 64 greedy tokens equal transformers' fp32 run recorded in its eval.json, from the
// prompt text through this repository's tokenizer.
#include <memory>
#include <nlohmann/json.hpp>

#include "model/tokenizer.h"
#include "runtime/engine/engine.h"
#include "runtime/engine/generate.h"
#include "tests/testing/testing.h"

namespace tidal::engine {
namespace {

const std::string kDir = std::string(TIDAL_SOURCE_DIR) + "/model/tidal-tiny-16k";

TEST(TidalTiny, GreedyContinuationMatchesTransformers) {
  const auto eval = nlohmann::json::parse(testing::read_file(kDir + "/eval.json"));
  const auto& ref = eval.at("reference_greedy_64");
  const std::vector<int32_t> want_prompt = ref.at("prompt_ids").get<std::vector<int32_t>>();
  const std::vector<int32_t> want = ref.at("fp32_cpu").get<std::vector<int32_t>>();

  std::unique_ptr<model::Tokenizer> tok;
  ASSERT_TRUE(model::Tokenizer::load_from_dir(kDir, &tok).ok());
  GenerationRequest req;
  ASSERT_TRUE(tok->encode(ref.at("prompt").get<std::string>(), true, &req.prompt).ok());
  EXPECT_EQ(req.prompt, want_prompt);

  std::unique_ptr<Engine> engine;
  const Status st = Engine::load(kDir, EngineConfig(), &engine);
  ASSERT_TRUE(st.ok()) << st.to_string();
  req.sampling.temperature = 0;
  req.stop.max_new_tokens = int64_t(want.size());
  req.stop.ignore_eos = true;
  std::vector<GenerationResult> results;
  ASSERT_TRUE(generate(
                  *engine, {req}, tok.get(), [](const GenerationEvent&) { return true; }, &results)
                  .ok());
  EXPECT_EQ(results[0].tokens, want);
  EXPECT_EQ(results[0].text, ref.at("fp32_cpu_text").get<std::string>());
}

}  // namespace
}  // namespace tidal::engine
