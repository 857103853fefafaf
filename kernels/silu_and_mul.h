// SPDX-License-Identifier: Apache-2.0
// SwiGLU activation: out = silu(gate) * up, with silu(x) = x / (1 + exp(-x)).
#pragma once

#include "runtime/tensor.h"

namespace tidal::kernels {

// out:  [num_tokens, inter]
// gate: [num_tokens, inter]
// up:   [num_tokens, inter]
void silu_and_mul(TensorView out, TensorView gate, TensorView up);

namespace ref {
void silu_and_mul(TensorView out, TensorView gate, TensorView up);
}  // namespace ref

}  // namespace tidal::kernels
