// SPDX-License-Identifier: Apache-2.0
// Token sampling on the device, one row per sequence, with per-row settings, so a decode step
// ends on the GPU and only the sampled ids come back. Exactly, for a row:
//  0. a row holding a NaN or an infinity gets kNonFiniteLogits (-1): no token can be drawn
//     from it, and the caller learns it from the ids it reads back anyway (no extra copy).
//  1. temperature == 0: the argmax (the lowest id among equal maxima). Done.
//  2. w_i = exp(l_i / T - max_j l_j / T) in f32 (the top token has w = 1).
//  3. top_k > 0: keep ids whose logit >= the k-th largest logit (ties at the cut are kept).
//  4. top_p < 1: of the kept, keep ids with w_i >= tau, tau the largest kept weight for which the
//     kept ids with w >= tau carry at least top_p of the kept mass.
//  5. min_p > 0: of the kept, keep ids with w_i >= min_p.
//  6. u = random_uniform(seed, counter) (kernels/counter_rng.h), r = u * (kept mass); the answer
//     is the lowest kept id at which the running kept mass, in id order, exceeds r (the highest
//     kept id if rounding leaves none).
// The draw is a pure function of (seed, counter): the same seed and settings give the same
// tokens on every run; GPU and CPU differ only where f32 sums round differently at a boundary.
#pragma once

#include <cstddef>
#include <cstdint>

#include "runtime/stream.h"
#include "runtime/tensor.h"

namespace tidal::kernels {

// The id written for a row whose logits are not all finite.
constexpr int32_t kNonFiniteLogits = -1;

struct SampleParams {
  TensorView tokens;       // [num_rows] i32, written (kNonFiniteLogits for a non-finite row)
  TensorView logits;       // [num_rows, vocab] f32, row stride >= vocab
  TensorView temperature;  // [num_rows] f32, >= 0
  TensorView top_k;        // [num_rows] i32, >= 0 (0: off)
  TensorView top_p;        // [num_rows] f32, in (0, 1]
  TensorView min_p;        // [num_rows] f32, in [0, 1]
  TensorView seeds;        // [num_rows] i64, the request's seed (its u64 bits)
  TensorView counters;     // [num_rows] i64, which draw of the request this is: 0, 1, 2, ...
};

size_t sample_tokens_workspace_size(const SampleParams& p);  // bytes on the GPU; 0 on the CPU

void sample_tokens(const SampleParams& p, TensorView workspace, Stream stream);

namespace ref {
void sample_tokens(const SampleParams& p);
}  // namespace ref

namespace cuda {
size_t sample_tokens_workspace_size(const SampleParams& p);
void sample_tokens(const SampleParams& p, TensorView workspace, Stream stream);
}  // namespace cuda

}  // namespace tidal::kernels
