// SPDX-License-Identifier: Apache-2.0
// Residual connection: out = a + b (out may alias a).
#pragma once

#include "runtime/tensor.h"

namespace tidal::kernels {

// out, a, b: [num_tokens, hidden]
void residual_add(TensorView out, TensorView a, TensorView b);

namespace ref {
void residual_add(TensorView out, TensorView a, TensorView b);
}  // namespace ref

}  // namespace tidal::kernels
