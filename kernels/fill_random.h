// SPDX-License-Identifier: Apache-2.0
// Deterministic normal random fill, on either device: element i of a contiguous view gets
// mean + std * z_i, z_i a Box-Muller normal from draws 2i and 2i+1 of stream `seed`
// (kernels/counter_rng.h). Random weights for the presets and a random KV cache for `tidal bench`
// are made on the GPU this way, with no host copy; the CPU twin gives the same values to f32
// rounding.
#pragma once

#include <cstdint>

#include "runtime/stream.h"
#include "runtime/tensor.h"

namespace tidal::kernels {

// out: any contiguous float tensor. std == 0 fills the constant `mean`.
void fill_random(TensorView out, uint64_t seed, float mean, float std, Stream stream);

namespace ref {
void fill_random(TensorView out, uint64_t seed, float mean, float std);
}  // namespace ref

namespace cuda {
void fill_random(TensorView out, uint64_t seed, float mean, float std, Stream stream);
}  // namespace cuda

}  // namespace tidal::kernels
