// SPDX-License-Identifier: Apache-2.0
// Linear layer without bias, in the PyTorch / HF weight layout: out = in @ weight^T.
#pragma once

#include "runtime/tensor.h"

namespace tidal::kernels {

// out:    [num_tokens, out_features]
// in:     [num_tokens, in_features]
// weight: [out_features, in_features]
void linear(TensorView out, TensorView in, TensorView weight);

namespace ref {
void linear(TensorView out, TensorView in, TensorView weight);
}  // namespace ref

}  // namespace tidal::kernels
