// SPDX-License-Identifier: Apache-2.0
#include "kernels/gather_rows.h"

#include "kernels/dispatch.h"
#include "runtime/tensor_access.h"

namespace tidal::kernels {

void gather_rows(TensorView out, TensorView in, TensorView rows, [[maybe_unused]] Stream stream) {
  TIDAL_CHECK(out.rank == 2 && in.rank == 2 && rows.rank == 1 && rows.dtype == DType::kI32,
              "gather_rows: out [num_rows, cols], in [num_in, cols], rows i32 [num_rows]");
  TIDAL_CHECK(out.size(0) == rows.size(0) && out.size(1) == in.size(1) && out.dtype == in.dtype,
              "gather_rows: shapes or dtypes disagree");
  TIDAL_CHECK(out.is_contiguous() && in.stride[1] == 1 && rows.is_contiguous(),
              "gather_rows: out contiguous, in with dense rows");
  if (on_cuda("gather_rows", {out, in, rows})) {
    TIDAL_CUDA_CALL("gather_rows", cuda::gather_rows(out, in, rows, stream));
    return;
  }
  ref::gather_rows(out, in, rows);
}

void ref::gather_rows(TensorView out, TensorView in, TensorView rows) {
  const int32_t* r = rows.data_as<int32_t>();
  for (int64_t i = 0; i < out.size(0); ++i) {
    TIDAL_CHECK(r[i] >= 0 && r[i] < in.size(0), "gather_rows: row out of range");
    for (int64_t c = 0; c < out.size(1); ++c) set_f32(out, i, c, get_f32(in, r[i], c));
  }
}

}  // namespace tidal::kernels
