// SPDX-License-Identifier: Apache-2.0
// Greedy generation through generate() and prefix agreement of token sequences, for the engine
// tests of either device.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "runtime/engine/engine.h"
#include "runtime/engine/generate.h"

namespace tidal::testing {

// `n` tokens after `prompt` through generate() (EOS ignored) under `policy`: greedy, or sampled
// at `temperature` > 0 (seed 7).
inline std::vector<int32_t> generate_tokens(engine::Engine& e, const std::vector<int32_t>& prompt,
                                            int64_t n, const model::AttentionPolicy& policy,
                                            float temperature = 0.0f) {
  engine::GenerationRequest req;
  req.prompt = prompt;
  req.attention = policy;
  req.sampling.temperature = temperature;
  req.sampling.seed = 7;
  req.stop.max_new_tokens = n;
  req.stop.ignore_eos = true;
  std::vector<engine::GenerationResult> results;
  const Status st = engine::generate(
      e, {req}, nullptr, [](const engine::GenerationEvent&) { return true; }, &results);
  EXPECT_TRUE(st.ok()) << st.to_string();
  return results.empty() ? std::vector<int32_t>() : results[0].tokens;
}

// `n` greedy tokens after `prompt` (EOS ignored).
inline std::vector<int32_t> greedy_tokens(
    engine::Engine& e, const std::vector<int32_t>& prompt, int64_t n,
    const model::AttentionPolicy& policy = model::AttentionPolicy()) {
  return generate_tokens(e, prompt, n, policy);
}

// Leading positions where a and b agree.
inline size_t agreeing_prefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  return i;
}

}  // namespace tidal::testing
