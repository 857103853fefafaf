// SPDX-License-Identifier: Apache-2.0
#include "kernels/silu_and_mul.h"

#include <cmath>

#include "kernels/dispatch.h"
#include "runtime/tensor_access.h"

namespace tidal::kernels {

void silu_and_mul(TensorView out, TensorView gate, TensorView up, [[maybe_unused]] Stream stream) {
  TIDAL_CHECK(out.rank == 2 && same_shape(out, gate) && same_shape(out, up),
              "silu_and_mul: out, gate and up must be [num_tokens, inter]");
  TIDAL_CHECK(out.dtype == gate.dtype && out.dtype == up.dtype && out.is_contiguous() &&
                  gate.stride[1] == 1 && up.stride[1] == 1,
              "silu_and_mul: one dtype; out contiguous, gate and up with dense rows");
  if (on_cuda("silu_and_mul", {out, gate, up})) {
    TIDAL_CUDA_CALL("silu_and_mul", cuda::silu_and_mul(out, gate, up, stream));
    return;
  }
  ref::silu_and_mul(out, gate, up);
}

void ref::silu_and_mul(TensorView out, TensorView gate, TensorView up) {
  for (int64_t t = 0; t < out.size(0); ++t) {
    for (int64_t i = 0; i < out.size(1); ++i) {
      const double g = get_f32(gate, t, i);
      const double silu = g / (1.0 + std::exp(-g));
      set_f32(out, t, i, float(silu * get_f32(up, t, i)));
    }
  }
}

}  // namespace tidal::kernels
