// SPDX-License-Identifier: Apache-2.0
#include "runtime/engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace tidal::engine {

Status SamplingParams::validate() const {
  if (!std::isfinite(temperature) || temperature < 0.0f) {
    return invalid_argument("temperature must be a finite number >= 0 (got " +
                            std::to_string(temperature) + ")");
  }
  if (!(top_p > 0.0f && top_p <= 1.0f)) {
    return invalid_argument("top_p must be in (0, 1] (got " + std::to_string(top_p) + ")");
  }
  if (top_k < 0) return invalid_argument("top_k must be >= 0 (got " + std::to_string(top_k) + ")");
  if (!(min_p >= 0.0f && min_p <= 1.0f)) {
    return invalid_argument("min_p must be in [0, 1] (got " + std::to_string(min_p) + ")");
  }
  return ok_status();
}

int32_t argmax(TensorView logits) {
  TIDAL_CHECK(logits.rank == 1 && logits.size(0) > 0, "argmax: logits must be [vocab]");
  const float* x = logits.data_as<float>();
  int32_t best = 0;
  for (int64_t i = 1; i < logits.size(0); ++i) {
    if (x[i * logits.stride[0]] > x[best * logits.stride[0]]) best = int32_t(i);
  }
  return best;
}

}  // namespace tidal::engine
