// SPDX-License-Identifier: Apache-2.0
// An engine made without Quest's page bounds (EngineConfig::quest_bounds = false): its plan and
// cache hold no bound rows, `full` and TidalDecode generate exactly what they generate with the
// bounds, and a Quest request is refused with a message that says why.
#include <memory>
#include <vector>

#include "runtime/engine/engine.h"
#include "runtime/engine/kv_cache.h"
#include "tests/engine/greedy_agreement.h"
#include "tests/testing/model_config.h"
#include "tests/testing/testing.h"

namespace tidal::engine {
namespace {

TEST(QuestBounds, OffLeavesTheBoundRowsOutOfThePlanAndTheCache) {
  testing::TinyLlama t;
  const model::ModelConfig c = testing::tiny_llama(t);  // 2 layers, 2 KV heads of 4
  EngineConfig cfg;
  cfg.max_batch = 2;
  cfg.max_context = 64;
  const MemoryPlan with = plan_memory(c, cfg, 0);
  cfg.quest_bounds = false;
  const MemoryPlan without = plan_memory(c, cfg, 0);
  // Two f32 bound rows per page, layer and KV head: 2 layers x 2 x 8 elements x 4 bytes.
  EXPECT_EQ(with.kv_bytes_per_page - without.kv_bytes_per_page, 2 * 2 * 8 * 4);
  EXPECT_EQ(without.kv_bytes_per_page, 16 * without.kv_bytes_per_token);
  EXPECT_EQ(without.kv_pages, with.kv_pages);
  EXPECT_LT(without.kv_bytes, with.kv_bytes);

  KvCacheConfig kc;
  kc.page_size = 4;
  kc.num_pages = 3;
  kc.quest_bounds = false;
  KvCache kv;
  ASSERT_TRUE(KvCache::create(c, kc, &kv).ok());
  EXPECT_EQ(kv.layers()[0].key_max.data, nullptr);
  EXPECT_EQ(kv.layers()[1].key_min.data, nullptr);
  EXPECT_NE(kv.layers()[0].k.data, nullptr);
  EXPECT_EQ(KvCache::bytes_per_page(c, 4, DType::kF32, -1, false, false),
            KvCache::bytes_per_page(c, 4, DType::kF32, -1, false, true) - size_t(2 * 2 * 8 * 4));
}

// The embedded model: 24 greedy tokens after its eval prompt, with and without the bounds.
TEST(QuestBounds, FullAndTidalGenerateTheSameTokensAndQuestIsRefused) {
  const std::vector<int32_t> prompt = testing_greedy::eval_prompt();
  EngineConfig cfg;
  cfg.max_batch = 1;
  cfg.max_context = 128;
  cfg.max_budget = 64;
  for (const auto& [name, policy] : testing_greedy::policies_k32()) {
    if (policy.kind == model::AttentionKind::kQuest) continue;
    cfg.quest_bounds = true;
    const std::vector<int32_t> with = testing_greedy::greedy(cfg, prompt, policy, 24);
    cfg.quest_bounds = false;
    const std::vector<int32_t> without = testing_greedy::greedy(cfg, prompt, policy, 24);
    ASSERT_EQ(with.size(), size_t(24)) << name;
    EXPECT_EQ(without, with) << name;
  }
  cfg.quest_bounds = false;
  std::unique_ptr<Engine> engine;
  ASSERT_TRUE(Engine::load(testing_greedy::kDir, cfg, &engine).ok());
  model::AttentionPolicy quest;
  quest.kind = model::AttentionKind::kQuest;
  quest.quest.budget = 32;
  SeqId id = 0;
  const Status st = engine->add_sequence(prompt, quest, &id);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.to_string().find("quest_bounds = false"), std::string::npos) << st.to_string();
}

}  // namespace
}  // namespace tidal::engine
