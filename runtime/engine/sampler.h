// SPDX-License-Identifier: Apache-2.0
// Token sampling: greedy, or temperature -> top-k -> top-p -> min-p filtering followed by a draw
// from a per-request seeded generator (the same seed gives the same tokens on every machine).
#pragma once

#include <cstdint>
#include <random>

#include "runtime/status.h"
#include "runtime/tensor.h"

namespace tidal::engine {

struct SamplingParams {
  float temperature = 1.0f;  // 0 = greedy (argmax, ties to the lowest id); Default: 1
  int32_t top_k = 0;         // keep the k most likely tokens; 0 = off; Default: 0
  float top_p = 1.0f;        // keep the smallest set with this much probability; (0, 1]; Default: 1
  float min_p = 0.0f;        // drop tokens below min_p * the top probability; [0, 1]; Default: 0
  uint64_t seed = 0;         // generator seed; Default: 0

  // Errors name the setting: negative or non-finite temperature, top_p outside (0, 1], negative
  // top_k, min_p outside [0, 1].
  Status validate() const;
  bool greedy() const { return temperature == 0.0f; }
};

class Sampler {
 public:
  // Requires: params.validate().ok().
  explicit Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {}

  // Picks a token from one row of logits [vocab] (f32).
  int32_t sample(TensorView logits);

 private:
  double uniform();  // in [0, 1), 53 random bits: identical on every platform

  SamplingParams params_;
  std::mt19937_64 rng_;
};

// Index of the largest value (the lowest index among ties).
int32_t argmax(TensorView logits);

}  // namespace tidal::engine
