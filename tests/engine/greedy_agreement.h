// SPDX-License-Identifier: Apache-2.0
// Greedy generation of the embedded model (model/tidal-tiny-16k) under an engine configuration
// and an attention policy, and how two token sequences agree: shared by the FP8 KV tests of the
// CPU and CUDA engines.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "runtime/engine/engine.h"
#include "tests/testing/generation.h"
#include "tests/testing/testing.h"

namespace tidal::engine::testing_greedy {

inline const std::string kDir = std::string(TIDAL_SOURCE_DIR) + "/model/tidal-tiny-16k";

// The 53-token prompt of the model's eval.json greedy reference.
inline std::vector<int32_t> eval_prompt() {
  const auto eval = nlohmann::json::parse(testing::read_file(kDir + "/eval.json"));
  return eval.at("reference_greedy_64").at("prompt_ids").get<std::vector<int32_t>>();
}

// Full attention, TidalDecode (K = 32) and Quest (K = 32), by name.
inline std::vector<std::pair<const char*, model::AttentionPolicy>> policies_k32() {
  model::AttentionPolicy full, tidal, quest;
  tidal.kind = model::AttentionKind::kTidal;
  tidal.tidal.budget = 32;
  quest.kind = model::AttentionKind::kQuest;
  quest.quest.budget = 32;
  return {{"full", full}, {"tidal", tidal}, {"quest", quest}};
}

// `n` greedy tokens of the embedded model loaded with `cfg`.
inline std::vector<int32_t> greedy(const EngineConfig& cfg, const std::vector<int32_t>& prompt,
                                   const model::AttentionPolicy& policy, int64_t n) {
  std::unique_ptr<Engine> engine;
  const Status st = Engine::load(kDir, cfg, &engine);
  EXPECT_TRUE(st.ok()) << st.to_string();
  if (!st.ok()) return {};
  return testing::greedy_tokens(*engine, prompt, n, policy);
}

// Positions where `got` equals `want`, and the first that differs (want.size() when none does).
struct Agreement {
  int64_t same = 0, first = 0;
};
inline Agreement agreement(const std::vector<int32_t>& got, const std::vector<int32_t>& want) {
  Agreement a{0, int64_t(testing::agreeing_prefix(got, want))};
  for (size_t i = 0; i < want.size() && i < got.size(); ++i) a.same += got[i] == want[i];
  return a;
}

}  // namespace tidal::engine::testing_greedy
