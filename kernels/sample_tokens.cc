// SPDX-License-Identifier: Apache-2.0
#include "kernels/sample_tokens.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

#include "kernels/counter_rng.h"
#include "kernels/dispatch.h"

namespace tidal::kernels {

size_t sample_tokens_workspace_size(const SampleParams& p) {
  if (p.logits.device.kind != DeviceKind::kCuda) return 0;
#if TIDAL_WITH_CUDA
  return cuda::sample_tokens_workspace_size(p);
#else
  no_cuda_build("sample_tokens");
#endif
}

void sample_tokens(const SampleParams& p, TensorView workspace, [[maybe_unused]] Stream stream) {
  const char* op = "sample_tokens";
  TIDAL_CHECK(p.logits.rank == 2 && p.logits.dtype == DType::kF32 && p.logits.stride[1] == 1,
              "sample_tokens: logits must be f32 [num_rows, vocab] with dense rows");
  const int64_t rows = p.logits.size(0);
  check_per_token(p.tokens, rows, DType::kI32, op, "tokens");
  check_per_token(p.temperature, rows, DType::kF32, op, "temperature");
  check_per_token(p.top_k, rows, DType::kI32, op, "top_k");
  check_per_token(p.top_p, rows, DType::kF32, op, "top_p");
  check_per_token(p.min_p, rows, DType::kF32, op, "min_p");
  check_per_token(p.seeds, rows, DType::kI64, op, "seeds");
  check_per_token(p.counters, rows, DType::kI64, op, "counters");
  if (on_cuda(op, {p.tokens, p.logits, p.temperature, p.top_k, p.top_p, p.min_p, p.seeds,
                   p.counters})) {
    TIDAL_CHECK(workspace.nbytes() >= sample_tokens_workspace_size(p),
                "sample_tokens: workspace too small");
    TIDAL_CUDA_CALL(op, cuda::sample_tokens(p, workspace, stream));
    return;
  }
  ref::sample_tokens(p);
}

void ref::sample_tokens(const SampleParams& p) {
  const int64_t vocab = p.logits.size(1);
  std::vector<float> w(static_cast<size_t>(vocab)), sorted;
  std::vector<uint8_t> keep(static_cast<size_t>(vocab));
  for (int64_t r = 0; r < p.logits.size(0); ++r) {
    const float* x = p.logits.data_as<float>() + r * p.logits.stride[0];
    const float temperature = p.temperature.data_as<float>()[r];
    int32_t* out = p.tokens.data_as<int32_t>() + r;
    TIDAL_CHECK(temperature >= 0.0f, "sample_tokens: negative temperature");
    if (!std::all_of(x, x + vocab, [](float v) { return std::isfinite(v); })) {
      *out = kNonFiniteLogits;
      continue;
    }
    const int64_t best = std::max_element(x, x + vocab) - x;  // the first of equal maxima
    if (temperature == 0.0f) {
      *out = int32_t(best);
      continue;
    }
    const float z_max = x[best] / temperature;
    for (int64_t i = 0; i < vocab; ++i) w[size_t(i)] = std::exp(x[i] / temperature - z_max);
    std::fill(keep.begin(), keep.end(), uint8_t(1));
    const int32_t top_k = p.top_k.data_as<int32_t>()[r];
    if (top_k > 0 && top_k < vocab) {
      sorted.assign(x, x + vocab);
      std::nth_element(sorted.begin(), sorted.begin() + (top_k - 1), sorted.end(),
                       std::greater<float>());
      const float kth = sorted[size_t(top_k - 1)];
      for (int64_t i = 0; i < vocab; ++i) keep[size_t(i)] = x[i] >= kth;
    }
    const float top_p = p.top_p.data_as<float>()[r];
    if (top_p < 1.0f) {
      sorted.clear();
      double total = 0.0;
      for (int64_t i = 0; i < vocab; ++i) {
        if (!keep[size_t(i)]) continue;
        sorted.push_back(w[size_t(i)]);
        total += w[size_t(i)];
      }
      std::sort(sorted.begin(), sorted.end(), std::greater<float>());
      // tau: the largest weight whose "w >= tau" set holds top_p of the mass (ties all count).
      float tau = sorted.back();
      double mass = 0.0;
      for (size_t i = 0; i < sorted.size(); ++i) {
        mass += sorted[i];
        const bool group_end = i + 1 == sorted.size() || sorted[i + 1] != sorted[i];
        if (group_end && mass >= double(top_p) * total) {
          tau = sorted[i];
          break;
        }
      }
      for (int64_t i = 0; i < vocab; ++i) keep[size_t(i)] &= w[size_t(i)] >= tau;
    }
    const float min_p = p.min_p.data_as<float>()[r];
    if (min_p > 0.0f) {
      for (int64_t i = 0; i < vocab; ++i) keep[size_t(i)] &= w[size_t(i)] >= min_p;
    }
    double kept_mass = 0.0;
    int64_t last = best;
    for (int64_t i = 0; i < vocab; ++i) {
      if (!keep[size_t(i)]) continue;
      kept_mass += w[size_t(i)];
      last = i;
    }
    const double u = random_uniform(uint64_t(p.seeds.data_as<int64_t>()[r]),
                                    uint64_t(p.counters.data_as<int64_t>()[r]));
    const double threshold = u * kept_mass;
    double running = 0.0;
    *out = int32_t(last);
    for (int64_t i = 0; i < vocab; ++i) {
      if (!keep[size_t(i)]) continue;
      running += w[size_t(i)];
      if (running > threshold) {
        *out = int32_t(i);
        break;
      }
    }
  }
}

}  // namespace tidal::kernels
