// SPDX-License-Identifier: Apache-2.0
// RMSNorm over the last dim (HF LlamaRMSNorm): out = round(in / sqrt(mean(in^2) + eps)) * weight,
// and the form fused with the residual add that precedes every norm in the Llama block.
#pragma once

#include "runtime/stream.h"
#include "runtime/tensor.h"

namespace tidal::kernels {

// out:    [num_tokens, hidden], contiguous
// in:     [num_tokens, hidden], row stride >= hidden
// weight: [hidden]
// One float dtype for all three. The normalised value is rounded to the dtype before the weight
// multiply, as transformers does (`.to(input_dtype)` before `weight *`).
void rms_norm(TensorView out, TensorView in, TensorView weight, float eps, Stream stream);

// residual += delta (rounded to the residual's dtype), then out = rms_norm(residual, weight).
// out, residual, delta: [num_tokens, hidden], contiguous; weight: [hidden]; one dtype, except that
// delta may be f32 under a 16-bit residual: a row-parallel projection's partial sums all-reduced
// in f32 (model/parallel_forward.h), rounded to the residual's dtype before the add, so the result
// is the one the rounded delta gives.
void fused_add_rms_norm(TensorView out, TensorView residual, TensorView delta, TensorView weight,
                        float eps, Stream stream);

namespace ref {  // Plain C++: the test oracle.
void rms_norm(TensorView out, TensorView in, TensorView weight, float eps);
void fused_add_rms_norm(TensorView out, TensorView residual, TensorView delta, TensorView weight,
                        float eps);
}  // namespace ref

namespace cuda {
void rms_norm(TensorView out, TensorView in, TensorView weight, float eps, Stream stream);
void fused_add_rms_norm(TensorView out, TensorView residual, TensorView delta, TensorView weight,
                        float eps, Stream stream);
}  // namespace cuda

}  // namespace tidal::kernels
