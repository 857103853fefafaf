// SPDX-License-Identifier: Apache-2.0
#include "kernels/rms_norm.h"

#include <cmath>

#include "kernels/dispatch.h"
#include "runtime/tensor_access.h"

namespace tidal::kernels {

void rms_norm(TensorView out, TensorView in, TensorView weight, float eps) {
  TIDAL_CHECK(in.rank == 2 && weight.rank == 1 && same_shape(out, in), "rms_norm: bad shapes");
  TIDAL_CHECK(in.size(1) == weight.size(0), "rms_norm: weight must be [hidden]");
  require_cpu("rms_norm", {out, in, weight});
  ref::rms_norm(out, in, weight, eps);
}

void ref::rms_norm(TensorView out, TensorView in, TensorView weight, float eps) {
  const int64_t hidden = in.size(1);
  for (int64_t r = 0; r < in.size(0); ++r) {
    double sum_sq = 0.0;
    for (int64_t i = 0; i < hidden; ++i) {
      const double x = get_f32(in, r, i);
      sum_sq += x * x;
    }
    // HF LlamaRMSNorm: x * rsqrt(mean(x^2) + eps), then * weight.
    const double inv_rms = 1.0 / std::sqrt(sum_sq / double(hidden) + double(eps));
    for (int64_t i = 0; i < hidden; ++i) {
      const float normed = round_to(out.dtype, float(get_f32(in, r, i) * inv_rms));
      set_f32(out, r, i, float(double(normed) * get_f32(weight, i)));
    }
  }
}

}  // namespace tidal::kernels
