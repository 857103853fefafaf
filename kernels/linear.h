// SPDX-License-Identifier: Apache-2.0
// Linear layer without bias, in the PyTorch / HF weight layout: out = in @ weight^T.
#pragma once

#include "kernels/paged_kv_append.h"
#include "runtime/stream.h"
#include "runtime/tensor.h"

namespace tidal::kernels {

// out:    [num_tokens, out_features], contiguous; the dtype of `in`, or f32 (the LM head's logits)
// in:     [num_tokens, in_features], row stride >= in_features
// weight: [out_features, in_features], contiguous, the dtype of `in`
// Accumulates in f32 (double in ref::). On the GPU, few tokens (decode) take a GEMV that streams
// the weight once at full bandwidth; more take cuBLASLt. The cuBLASLt handle and its workspace are
// made on the first call on a device, so that call must not be inside a graph capture.
void linear(TensorView out, TensorView in, TensorView weight, Stream stream);

// Several projections of one input whose weights are stacked by rows (the fused QKV projection):
// out0 = in @ weight[0, n0)^T, out1 = in @ weight[n0, n0 + n1)^T, out2 = in @ weight[n0 + n1,
// n0 + n1 + n2)^T, exactly linear() on each row block. On the GPU few tokens (decode) take one
// GEMV launch that streams the whole stacked weight once; more take cuBLASLt per block.
// out0, out1, out2: [num_tokens, n_i] (n_i >= 0), contiguous, the dtype of `in`
// in:               [num_tokens, in_features], row stride >= in_features
// weight:           [n0 + n1 + n2, in_features], contiguous, the dtype of `in`
void linear_split(TensorView out0, TensorView out1, TensorView out2, TensorView in,
                  TensorView weight, Stream stream);

// A Llama MLP's fused gate_up projection and its SwiGLU: act = silu(in @ weight[0, inter)^T) *
// (in @ weight[inter, 2 inter)^T), each projection rounded to in's dtype first; exactly linear()
// into gate_up, then silu_and_mul() of its two column halves. On the GPU few tokens (decode) take
// one GEMV launch that writes act (gate_up is not touched); more take that pair of calls.
// act:     [num_tokens, inter], contiguous, in's dtype
// in:      [num_tokens, in_features], row stride >= in_features
// weight:  [2 inter, in_features], contiguous, in's dtype
// gate_up: [num_tokens, 2 inter], contiguous, in's dtype: scratch (contents unspecified after)
void linear_swiglu(TensorView act, TensorView in, TensorView weight, TensorView gate_up,
                   Stream stream);

// An attention block's QKV projection, RoPE and KV append: linear_split of in and weight into
// p.rope_q (q), p.k and p.v (each [num_tokens, heads, head_dim], contiguous, heads * head_dim
// columns of the stacked weight in that order), then paged_kv_append(p), which rotates q and k and
// appends k and v; exactly that pair of calls. On the GPU, decode shapes with a cache of in's
// dtype, or an FP8 cache and p.append_counters, take one GEMV launch whose epilogue rotates and
// appends; the rest (prefill, FP8 caches without counters) take the pair. p.rope_q is required.
void linear_qkv_append(const PagedKvAppendParams& p, TensorView in, TensorView weight,
                       Stream stream);

namespace ref {
void linear(TensorView out, TensorView in, TensorView weight);
void linear_swiglu(TensorView act, TensorView in, TensorView weight, TensorView gate_up);
void linear_split(TensorView out0, TensorView out1, TensorView out2, TensorView in,
                  TensorView weight);
}  // namespace ref

namespace cuda {
void linear(TensorView out, TensorView in, TensorView weight, Stream stream);
// The decode shapes (1 to kGemvMaxTokens tokens, in_features and inter > 0) as one GEMV launch;
// false (nothing launched) for the others, which linear_swiglu() runs as linear + silu_and_mul.
bool linear_swiglu(TensorView act, TensorView in, TensorView weight, Stream stream);
void linear_split(TensorView out0, TensorView out1, TensorView out2, TensorView in,
                  TensorView weight, Stream stream);
// The decode shapes (1 to kGemvMaxTokens tokens, in_features > 0, a cache of in's dtype or an FP8
// cache with p.append_counters, (head_dim / 2) % 8 == 0) as one GEMV launch; false (nothing
// launched) for the others, which linear_qkv_append() runs as linear_split + paged_kv_append.
bool linear_qkv_append(const PagedKvAppendParams& p, TensorView in, TensorView weight,
                       Stream stream);
}  // namespace cuda

}  // namespace tidal::kernels
