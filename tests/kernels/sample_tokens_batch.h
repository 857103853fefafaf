// SPDX-License-Identifier: Apache-2.0
// Rows of logits with per-row sampling settings for sample_tokens tests (CPU and GPU suites):
// the views of one call, over host vectors the test owns.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/sample_tokens.h"
#include "runtime/tensor.h"

namespace tidal::kernels::sample_testing {

struct Setting {
  float temperature = 1.0f;
  int32_t top_k = 0;
  float top_p = 1.0f;
  float min_p = 0.0f;
};

struct Rows {
  int64_t rows, vocab, stride;  // rows of logits `stride` >= vocab floats apart
  std::vector<float> logits;    // [rows, stride]: ids past vocab are padding no sampler reads
  std::vector<float> temperature, top_p, min_p;
  std::vector<int32_t> top_k, tokens;
  std::vector<int64_t> seeds, counters;

  Rows(int64_t r, int64_t v, int64_t logit_stride = 0)
      : rows(r),
        vocab(v),
        stride(logit_stride > 0 ? logit_stride : v),
        logits(size_t(r * stride)),
        temperature(size_t(r), 1.0f),
        top_p(size_t(r), 1.0f),
        min_p(size_t(r), 0.0f),
        top_k(size_t(r), 0),
        tokens(size_t(r), -7),
        seeds(size_t(r), 0),
        counters(size_t(r), 0) {}
  void set(int64_t r, const Setting& s) {
    temperature[size_t(r)] = s.temperature;
    top_k[size_t(r)] = s.top_k;
    top_p[size_t(r)] = s.top_p;
    min_p[size_t(r)] = s.min_p;
  }
  // Host views of the call (tokens written into `tokens`).
  SampleParams params() {
    SampleParams p;
    p.tokens = make_view(tokens.data(), DType::kI32, {rows});
    p.logits = make_view(logits.data(), DType::kF32, {rows, stride});
    p.logits.shape[1] = vocab;
    p.temperature = make_view(temperature.data(), DType::kF32, {rows});
    p.top_k = make_view(top_k.data(), DType::kI32, {rows});
    p.top_p = make_view(top_p.data(), DType::kF32, {rows});
    p.min_p = make_view(min_p.data(), DType::kF32, {rows});
    p.seeds = make_view(seeds.data(), DType::kI64, {rows});
    p.counters = make_view(counters.data(), DType::kI64, {rows});
    return p;
  }
  std::vector<int32_t> sample_ref() {
    ref::sample_tokens(params());
    return tokens;
  }
};

}  // namespace tidal::kernels::sample_testing
