// SPDX-License-Identifier: Apache-2.0
// RMSNorm over the last dim: out = in / sqrt(mean(in^2) + eps) * weight (Llama's norm).
#pragma once

#include "runtime/tensor.h"

namespace tidal::kernels {

// out:    [num_tokens, hidden]
// in:     [num_tokens, hidden], last dim dense
// weight: [hidden]
// Requires: float dtypes, CPU views (the CUDA twin lands with the CUDA issue).
void rms_norm(TensorView out, TensorView in, TensorView weight, float eps);

namespace ref {  // Plain C++: the test oracle.
void rms_norm(TensorView out, TensorView in, TensorView weight, float eps);
}  // namespace ref

}  // namespace tidal::kernels
