// SPDX-License-Identifier: Apache-2.0
// The small-batch path of linear (kernels/linear_gemv.cu): a GEMV that streams the weight once for
// up to kGemvMaxTokens tokens. Only kernels/linear.cu includes this.
#pragma once

#include <cuda_runtime.h>

#include "kernels/paged_kv_append.h"
#include "runtime/tensor.h"

namespace tidal::kernels::cuda {

// linear() takes the GEMV for num_tokens <= this (decode buckets 1, 2, 4, 8), cuBLASLt above.
constexpr int64_t kGemvMaxTokens = 8;

// linear_split's outputs at most (the fused QKV projection: q, k, v).
constexpr int kGemvMaxOutputs = 3;

// outs = in @ weight^T for any num_tokens (more than kGemvMaxTokens run as chunks of 8 along the
// grid's y, each chunk streaming the weight again: correct but only the fallback for shapes
// cuBLASLt refuses). The weight's rows are split over `num_outs` outputs in order (linear: one;
// linear_split: q, k, v), one launch for all. Views as linear() / linear_split() check them;
// in_features > 0.
// outs[i]: [num_tokens, n_i], contiguous, one dtype: in's or f32; sum of n_i = out_features
// in:      [num_tokens, in_features], dense rows
// weight:  [out_features, in_features], contiguous
void linear_gemv(const TensorView* outs, int num_outs, TensorView in, TensorView weight,
                 cudaStream_t stream);

// act = silu(in @ weight[0, inter)^T) * (in @ weight[inter, 2 inter)^T), each sum rounded to in's
// dtype first (linear_swiglu), in one launch. Views as linear_swiglu() checks them.
// act:    [num_tokens, inter], contiguous, in's dtype
// in:     [num_tokens, in_features], dense rows
// weight: [2 inter, in_features], contiguous
void linear_swiglu_gemv(TensorView act, TensorView in, TensorView weight, cudaStream_t stream);

// linear_split of in and weight into p.rope_q, p.k, p.v (flattened to [num_tokens, heads *
// head_dim]), then paged_kv_append(p) with RoPE, in one launch: exactly those two calls. Views as
// linear_qkv_append() checks them, and the shapes it takes (kernels/linear.cu): 1 to
// kGemvMaxTokens tokens, a cache of in's dtype or an FP8 cache with p.append_counters,
// (head_dim / 2) % 8 == 0.
void linear_qkv_append_gemv(const PagedKvAppendParams& p, TensorView in, TensorView weight,
                            cudaStream_t stream);

}  // namespace tidal::kernels::cuda
