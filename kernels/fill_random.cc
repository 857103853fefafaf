// SPDX-License-Identifier: Apache-2.0
#include "kernels/fill_random.h"

#include <cmath>

#include "kernels/counter_rng.h"
#include "kernels/dispatch.h"
#include "runtime/tensor_access.h"

namespace tidal::kernels {

void fill_random(TensorView out, uint64_t seed, float mean, float std,
                 [[maybe_unused]] Stream stream) {
  TIDAL_CHECK(out.is_contiguous(), "fill_random: out must be contiguous");
  TIDAL_CHECK(out.dtype == DType::kF32 || out.dtype == DType::kF16 || out.dtype == DType::kBF16,
              "fill_random: out must be a float tensor");
  if (on_cuda("fill_random", {out})) {
    TIDAL_CUDA_CALL("fill_random", cuda::fill_random(out, seed, mean, std, stream));
    return;
  }
  ref::fill_random(out, seed, mean, std);
}

void ref::fill_random(TensorView out, uint64_t seed, float mean, float std) {
  const int64_t n = out.numel();
  for (int64_t i = 0; i < n; ++i) {
    // Box-Muller: u1 in (0, 1] so the log is finite.
    const double u1 = 1.0 - random_uniform(seed, 2 * uint64_t(i));
    const double u2 = random_uniform(seed, 2 * uint64_t(i) + 1);
    const double z = std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
    store_f32(out.data, out.dtype, i, float(double(mean) + double(std) * z));
  }
}

}  // namespace tidal::kernels
