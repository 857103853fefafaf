// SPDX-License-Identifier: Apache-2.0
// Rotary position embedding in the rotate-half convention of HF checkpoints (pairs i and
// i + head_dim/2; DESIGN.md §10), applied in place to q and k.
#pragma once

#include "runtime/stream.h"
#include "runtime/tensor.h"

namespace tidal::kernels {

// q:         [num_tokens, num_heads, head_dim], rotated in place
// k:         [num_tokens, num_kv_heads, head_dim], rotated in place
// positions: [num_tokens] i32, the token positions
// inv_freq:  [head_dim / 2] f32, per-pair frequencies (scaling already applied)
// The angle is float(position) * inv_freq computed in f32, as transformers computes it, so
// logits match HF to rounding at every context length.
void rotary_embedding(TensorView q, TensorView k, TensorView positions, TensorView inv_freq, Stream stream);

namespace ref {
void rotary_embedding(TensorView q, TensorView k, TensorView positions, TensorView inv_freq);
}  // namespace ref

namespace cuda {
void rotary_embedding(TensorView q, TensorView k, TensorView positions, TensorView inv_freq, Stream stream);
}  // namespace cuda

}  // namespace tidal::kernels
