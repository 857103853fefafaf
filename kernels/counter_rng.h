// SPDX-License-Identifier: Apache-2.0
// A counter-based random generator usable on host and device alike: value i of stream `seed` is a
// pure function of (seed, i), so a GPU thread draws element i without any state, and the CPU
// reference draws exactly the same bits. SplitMix64's finaliser (Steele et al., 2014).
#pragma once

#include <cstdint>

#include "kernels/host_device.h"

namespace tidal::kernels {

TIDAL_HOST_DEVICE uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The 64 random bits of draw `counter` of stream `seed`.
TIDAL_HOST_DEVICE uint64_t random_bits(uint64_t seed, uint64_t counter) {
  return mix64(seed + (counter + 1) * 0x9E3779B97F4A7C15ull);
}

// Uniform in [0, 1) with 53 random bits.
TIDAL_HOST_DEVICE double random_uniform(uint64_t seed, uint64_t counter) {
  return double(random_bits(seed, counter) >> 11) * (1.0 / 9007199254740992.0);
}

}  // namespace tidal::kernels
