// SPDX-License-Identifier: Apache-2.0
// Residual connection: out = a + b (out may alias a).
#pragma once

#include "runtime/stream.h"
#include "runtime/tensor.h"

namespace tidal::kernels {

// out, a, b: [num_tokens, hidden], contiguous, one dtype; b may be f32 under a 16-bit out (a
// row-parallel projection's partial sums all-reduced in f32), rounded to out's dtype before the
// add, so the result is the one the rounded b gives.
void residual_add(TensorView out, TensorView a, TensorView b, Stream stream);

namespace ref {
void residual_add(TensorView out, TensorView a, TensorView b);
}  // namespace ref

namespace cuda {
void residual_add(TensorView out, TensorView a, TensorView b, Stream stream);
}  // namespace cuda

}  // namespace tidal::kernels
