// SPDX-License-Identifier: Apache-2.0
#include "kernels/rotary_embedding.h"

#include <cmath>

#include "kernels/dispatch.h"
#include "runtime/tensor_access.h"

namespace tidal::kernels {
namespace {

// Rotates every head of one token: x'[i] = x[i] cos - x[i+h] sin, x'[i+h] = x[i+h] cos + x[i] sin.
void rotate_token(TensorView x, int64_t t, int32_t position, TensorView inv_freq) {
  const int64_t half = x.size(2) / 2;
  for (int64_t i = 0; i < half; ++i) {
    const float angle = float(position) * get_f32(inv_freq, i);  // f32 product, as HF
    const double c = std::cos(double(angle));
    const double s = std::sin(double(angle));
    for (int64_t h = 0; h < x.size(1); ++h) {
      const double a = get_f32(x, t, h, i);
      const double b = get_f32(x, t, h, i + half);
      set_f32(x, t, h, i, float(a * c - b * s));
      set_f32(x, t, h, i + half, float(b * c + a * s));
    }
  }
}

}  // namespace

void rotary_embedding(TensorView q, TensorView k, TensorView positions, TensorView inv_freq,
                      [[maybe_unused]] Stream stream) {
  TIDAL_CHECK(q.rank == 3 && k.rank == 3 && positions.rank == 1 && inv_freq.rank == 1,
              "rotary_embedding: bad ranks");
  TIDAL_CHECK(q.size(0) == positions.size(0) && k.size(0) == positions.size(0),
              "rotary_embedding: q, k and positions disagree on num_tokens");
  TIDAL_CHECK(q.size(2) == k.size(2) && q.size(2) % 2 == 0 && inv_freq.size(0) == q.size(2) / 2,
              "rotary_embedding: head_dim must be even and inv_freq [head_dim / 2]");
  TIDAL_CHECK(positions.dtype == DType::kI32 && inv_freq.dtype == DType::kF32,
              "rotary_embedding: positions i32, inv_freq f32");
  TIDAL_CHECK(q.dtype == k.dtype && q.is_contiguous() && k.is_contiguous(),
              "rotary_embedding: q and k must share a dtype and be contiguous");
  if (on_cuda("rotary_embedding", {q, k, positions, inv_freq})) {
    TIDAL_CUDA_CALL("rotary_embedding", cuda::rotary_embedding(q, k, positions, inv_freq, stream));
    return;
  }
  ref::rotary_embedding(q, k, positions, inv_freq);
}

void ref::rotary_embedding(TensorView q, TensorView k, TensorView positions, TensorView inv_freq) {
  const int32_t* pos = positions.data_as<int32_t>();
  for (int64_t t = 0; t < positions.size(0); ++t) {
    rotate_token(q, t, pos[t * positions.stride[0]], inv_freq);
    rotate_token(k, t, pos[t * positions.stride[0]], inv_freq);
  }
}

}  // namespace tidal::kernels
