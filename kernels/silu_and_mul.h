// SPDX-License-Identifier: Apache-2.0
// SwiGLU activation: out = silu(gate) * up, with silu(x) = x / (1 + exp(-x)).
#pragma once

#include "runtime/stream.h"
#include "runtime/tensor.h"

namespace tidal::kernels {

// out:  [num_tokens, inter], contiguous
// gate: [num_tokens, inter], row stride >= inter
// up:   [num_tokens, inter], row stride >= inter
// gate and up may be the two column halves of one [num_tokens, 2 * inter] tensor (the fused
// gate_up projection). One dtype for all three; f32 arithmetic.
void silu_and_mul(TensorView out, TensorView gate, TensorView up, Stream stream);

namespace ref {
void silu_and_mul(TensorView out, TensorView gate, TensorView up);
}  // namespace ref

namespace cuda {
void silu_and_mul(TensorView out, TensorView gate, TensorView up, Stream stream);
}  // namespace cuda

}  // namespace tidal::kernels
