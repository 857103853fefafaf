// SPDX-License-Identifier: Apache-2.0
// Device twins of kernels/fp8_e4m3.h (the FP8 KV cache's format): the same row scale and the same
// codes, bit for bit, so a GPU-written cache equals the CPU reference's.
// - e4m3 -> f16 / f32 is exact (cvt.rn.f16x2.e4m3x2, sm_89+: every code is an f16).
// - f32 -> e4m3 is cvt.rn.satfinite.e4m3x2.f32: round to nearest even, saturating to +-448, NaN to
//   0x7F, -0 to 0x80: the host's f32_to_e4m3.
// - the row scale is kernels/fp8_e4m3.h's e4m3_row_scale itself (one host / device definition).
#pragma once

#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cstdint>

#include "kernels/fp8_e4m3.h"

namespace tidal::kernels::cuda {

using ::tidal::kernels::e4m3_row_scale;

// x / scale as an e4m3 code (scale a power of two: the division is exact unless it underflows,
// and an underflowing quotient rounds to code 0 either way).
__device__ __forceinline__ uint8_t f32_to_e4m3(float x) {
  return uint8_t(__nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3));
}

__device__ __forceinline__ float e4m3_to_f32(uint8_t code) {
  const __half_raw h = __nv_cvt_fp8_to_halfraw(__nv_fp8_storage_t(code), __NV_E4M3);
  return __half2float(__half(h));
}

// Two codes (low byte first) as an f16 pair, low half first: the operand layout of mma.
__device__ __forceinline__ uint32_t e4m3x2_to_f16x2(uint16_t codes) {
  const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(__nv_fp8x2_storage_t(codes), __NV_E4M3);
  uint32_t out;
  memcpy(&out, &h, 4);
  return out;
}

}  // namespace tidal::kernels::cuda
