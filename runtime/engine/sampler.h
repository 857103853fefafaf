// SPDX-License-Identifier: Apache-2.0
// A request's sampling settings: greedy, or temperature -> top-k -> top-p -> min-p filtering
// followed by a seeded draw. The draw itself is kernels::sample_tokens, on the engine's device,
// a pure function of (seed, draw index): the same seed gives the same tokens on every run.
#pragma once

#include <cstdint>

#include "runtime/status.h"
#include "runtime/tensor.h"

namespace tidal::engine {

// Temperatures below this sample greedily, as in vLLM (its _SAMPLING_EPS): dividing logits by a
// smaller one can overflow f32 (1e-40 turns a logit of 1 into inf, and every weight into NaN),
// and the draw is the argmax anyway.
constexpr float kGreedyTemperature = 1e-5f;

struct SamplingParams {
  float temperature = 1.0f;  // 0 (or < kGreedyTemperature) = greedy (argmax, ties to the lowest
                             // id); Default: 1
  int32_t top_k = 0;         // keep the k most likely tokens; 0 = off; Default: 0
  float top_p = 1.0f;        // keep the smallest set with this much probability; (0, 1]; Default: 1
  float min_p = 0.0f;        // drop tokens below min_p * the top probability; [0, 1]; Default: 0
  uint64_t seed = 0;         // generator seed; Default: 0

  // Errors name the setting: negative or non-finite temperature, top_p outside (0, 1], negative
  // top_k, min_p outside [0, 1].
  Status validate() const;
  bool greedy() const { return temperature < kGreedyTemperature; }
};

// Index of the largest value (the lowest index among ties).
int32_t argmax(TensorView logits);

}  // namespace tidal::engine
