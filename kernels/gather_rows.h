// SPDX-License-Identifier: Apache-2.0
// Row gather: out[r] = in[rows[r]]. The forward uses it to pick the hidden rows whose logits are
// wanted (the last token of each prefill chunk, every decode token).
#pragma once

#include "runtime/stream.h"
#include "runtime/tensor.h"

namespace tidal::kernels {

// out:  [num_rows, cols], contiguous
// in:   [num_in, cols], row stride >= cols, the dtype of out
// rows: [num_rows] i32, each in [0, num_in)
void gather_rows(TensorView out, TensorView in, TensorView rows, Stream stream);

namespace ref {
void gather_rows(TensorView out, TensorView in, TensorView rows);
}  // namespace ref

namespace cuda {
void gather_rows(TensorView out, TensorView in, TensorView rows, Stream stream);
}  // namespace cuda

}  // namespace tidal::kernels
