// SPDX-License-Identifier: Apache-2.0
#include "runtime/engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

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

double Sampler::uniform() { return double(rng_() >> 11) * 0x1.0p-53; }

int32_t Sampler::sample(TensorView logits) {
  if (params_.greedy()) return argmax(logits);
  const float* x = logits.data_as<float>();
  const int64_t vocab = logits.size(0);
  // Candidates sorted by logit, descending (ties: lower id first), then softmax over them.
  std::vector<int32_t> ids(static_cast<size_t>(vocab));
  std::iota(ids.begin(), ids.end(), 0);
  std::stable_sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) {
    return x[a * logits.stride[0]] > x[b * logits.stride[0]];
  });
  size_t keep = ids.size();
  if (params_.top_k > 0) keep = std::min(keep, size_t(params_.top_k));
  const double max_logit = double(x[ids[0] * logits.stride[0]]) / params_.temperature;
  std::vector<double> prob(keep);
  double total = 0.0;
  for (size_t i = 0; i < keep; ++i) {
    prob[i] = std::exp(double(x[ids[i] * logits.stride[0]]) / params_.temperature - max_logit);
    total += prob[i];
  }
  for (double& p : prob) p /= total;
  if (params_.top_p < 1.0f) {  // smallest prefix whose mass reaches top_p
    double mass = 0.0;
    size_t n = 0;
    while (n < keep && mass < double(params_.top_p)) mass += prob[n++];
    keep = std::max<size_t>(n, 1);
  }
  if (params_.min_p > 0.0f) {
    const double floor = double(params_.min_p) * prob[0];
    size_t n = 1;
    while (n < keep && prob[n] >= floor) ++n;
    keep = n;
  }
  double kept_mass = 0.0;
  for (size_t i = 0; i < keep; ++i) kept_mass += prob[i];
  double r = uniform() * kept_mass;
  for (size_t i = 0; i < keep; ++i) {
    r -= prob[i];
    if (r < 0.0) return ids[i];
  }
  return ids[keep - 1];
}

}  // namespace tidal::engine
