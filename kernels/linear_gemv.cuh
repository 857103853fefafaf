// SPDX-License-Identifier: Apache-2.0
// The small-batch path of linear and linear_split (kernels/linear_gemv.cu): a GEMV that streams
// the weight once for up to kGemvMaxTokens tokens. Only kernels/linear.cu includes this.
#pragma once

#include <cuda_runtime.h>

#include "runtime/tensor.h"

namespace tidal::kernels::cuda {

// linear() takes the GEMV for num_tokens <= this (decode buckets 1, 2, 4, 8), cuBLASLt above.
constexpr int64_t kGemvMaxTokens = 8;

// The GEMV writes up to this many outputs, split by weight rows (the fused QKV projection).
constexpr int kGemvMaxOutputs = 3;

// out_s = in @ weight[rows of s]^T for any num_tokens (more than kGemvMaxTokens run as chunks of 8
// along the grid's y, each chunk streaming the weight again: correct but only the fallback for
// shapes cuBLASLt refuses). Output s takes the weight's rows [sum of the earlier widths, + its
// width); the widths add up to out_features. Views as linear() / linear_split() check them;
// in_features > 0. Launched as a programmatic dependent launch (kernels/pdl.cuh): the weights'
// first loads are issued before the kernel waits for the kernel that writes `in`.
// outs:   num_outs in [1, kGemvMaxOutputs] views [num_tokens, width_s], contiguous, one dtype
//         (that of in, or f32)
// in:     [num_tokens, in_features], dense rows
// weight: [out_features, in_features], contiguous
void linear_gemv(const TensorView* outs, int num_outs, TensorView in, TensorView weight,
                 cudaStream_t stream);

}  // namespace tidal::kernels::cuda
