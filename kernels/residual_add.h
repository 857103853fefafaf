// SPDX-License-Identifier: Apache-2.0
// Residual connection: out = a + b (out may alias a).
#pragma once

#include "runtime/stream.h"
#include "runtime/tensor.h"

namespace tidal::kernels {

// out, a, b: [num_tokens, hidden]
void residual_add(TensorView out, TensorView a, TensorView b, Stream stream);

namespace ref {
void residual_add(TensorView out, TensorView a, TensorView b);
}  // namespace ref

namespace cuda {
void residual_add(TensorView out, TensorView a, TensorView b, Stream stream);
}  // namespace cuda

}  // namespace tidal::kernels
