// SPDX-License-Identifier: Apache-2.0
#include "kernels/residual_add.h"

#include "kernels/dispatch.h"
#include "runtime/tensor_access.h"

namespace tidal::kernels {

void residual_add(TensorView out, TensorView a, TensorView b, [[maybe_unused]] Stream stream) {
  TIDAL_CHECK(out.rank == 2 && same_shape(out, a) && same_shape(out, b),
              "residual_add: out, a and b must have one shape");
  TIDAL_CHECK(out.dtype == a.dtype && (b.dtype == out.dtype || b.dtype == DType::kF32) &&
                  out.is_contiguous() && a.is_contiguous() && b.is_contiguous(),
              "residual_add: one dtype (b: or f32), contiguous views");
  if (on_cuda("residual_add", {out, a, b})) {
    TIDAL_CUDA_CALL("residual_add", cuda::residual_add(out, a, b, stream));
    return;
  }
  ref::residual_add(out, a, b);
}

void ref::residual_add(TensorView out, TensorView a, TensorView b) {
  for (int64_t t = 0; t < out.size(0); ++t) {
    for (int64_t i = 0; i < out.size(1); ++i) {
      const float y = round_to(out.dtype, get_f32(b, t, i));  // as if stored in out's dtype
      set_f32(out, t, i, float(double(get_f32(a, t, i)) + double(y)));
    }
  }
}

}  // namespace tidal::kernels
