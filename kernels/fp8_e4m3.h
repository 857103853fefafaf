// SPDX-License-Identifier: Apache-2.0
// FP8 e4m3 (OCP "E4M3FN", CUDA's __nv_fp8_e4m3): 1 sign, 4 exponent (bias 7), 3 mantissa bits;
// no infinities; S.1111.111 is NaN; largest finite +-448; smallest normal 2^-6, subnormals
// down to 2^-9. Host reference conversions, exact in both directions:
// - e4m3 -> f32 is exact (every code is an f32); 0x7F / 0xFF decode to NaN.
// - f32 -> e4m3 rounds to nearest, ties to even, and saturates: any |x| >= 448, infinities
//   included, gives +-448 (CUDA's __NV_SATFINITE); NaN gives 0x7F (sign dropped, like CUDA's);
//   -0 gives 0x80.
//
// The FP8 KV cache (kernels/paged_kv_common.h) stores K and V rows as e4m3 codes with one f32
// scale per (token, KV head) row: value = decode(code) * scale. The scale is a power of two,
// the smallest with amax / scale <= 448, so a row's largest element stays normal and every
// dequantized value code * 2^e is exact in f32 and bf16 (a code has 4 significant bits).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/host_device.h"

namespace tidal::kernels {

constexpr float kE4m3Max = 448.0f;

namespace detail {
// The value of a code from its fields.
inline float e4m3_decode(uint8_t code) {
  const float sign = (code & 0x80) ? -1.0f : 1.0f;
  const int exp = (code >> 3) & 0xF, mant = code & 0x7;
  if (exp == 0xF && mant == 0x7) return NAN;
  if (exp == 0) return sign * std::ldexp(float(mant), -9);  // subnormal: mant * 2^-9
  return sign * std::ldexp(float(8 + mant), exp - 10);      // 1.mant * 2^(exp - 7)
}
// Every code's value, built once: the CPU path decodes a K/V row per key it reads, and a table
// lookup costs a load where e4m3_decode costs two ldexp calls.
struct E4m3Table {
  float value[256];
  E4m3Table() {
    for (int c = 0; c < 256; ++c) value[c] = e4m3_decode(uint8_t(c));
  }
};
inline const float* e4m3_values() {
  static const E4m3Table table;
  return table.value;
}
}  // namespace detail

inline float e4m3_to_f32(uint8_t code) { return detail::e4m3_values()[code]; }

inline uint8_t f32_to_e4m3(float x) {
  if (std::isnan(x)) return 0x7F;
  const uint8_t sign = std::signbit(x) ? 0x80 : 0x00;
  const float a = std::fabs(x);
  if (a >= kE4m3Max) return uint8_t(sign | 0x7E);
  if (a < 0.015625f) {  // below 2^-6: subnormal, quantum 2^-9; 8 * 2^-9 is the smallest normal
    return uint8_t(sign | int(std::nearbyint(a * 512.0f)));  // exact scaling, RNE (default mode)
  }
  int e2 = 0;
  std::frexp(a, &e2);      // a = f * 2^e2, f in [0.5, 1): a in [2^(e2-1), 2^e2)
  const int exp = e2 - 1;  // unbiased, -6..8
  int m = int(std::nearbyint(std::ldexp(a, 3 - exp)));  // 8..16, exact scaling, RNE
  int biased = exp + 7;
  if (m == 16) {  // rounded up into the next binade (a < 448, so never past 448)
    m = 8;
    biased += 1;
  }
  return uint8_t(sign | (biased << 3) | (m - 8));
}

// The KV rows' scale for a row whose largest |element| is `amax`: the smallest power of two
// 2^e with amax / 2^e <= 448 (1 for an all-zero or non-finite row; e >= -126, so it stays a
// normal f32).
// One definition for the CPU reference and the kernels (the codes must agree bit for bit).
TIDAL_HOST_DEVICE float e4m3_row_scale(float amax) {
  using std::isfinite;
  if (!(amax > 0.0f) || !isfinite(amax)) return 1.0f;
  int e = 0;
  frexpf(amax / kE4m3Max, &e);  // a guess within one of the answer; exact tests follow
  while (ldexpf(amax, -e) > kE4m3Max) ++e;
  while (e > -126 && ldexpf(amax, 1 - e) <= kE4m3Max) --e;
  if (e < -126) e = -126;
  return ldexpf(1.0f, e);
}

// Quantizes n values into codes and returns the row's scale (dividing by a power of two is exact
// unless it underflows, so encode(x / scale) is the one rounding).
inline float quantize_e4m3_row(const float* x, int64_t n, uint8_t* codes) {
  float amax = 0.0f;
  for (int64_t i = 0; i < n; ++i) amax = std::fmax(amax, std::fabs(x[i]));
  const float scale = e4m3_row_scale(amax);
  for (int64_t i = 0; i < n; ++i) codes[i] = f32_to_e4m3(x[i] / scale);
  return scale;
}

// The values a quantized row holds: decode(code) * scale (exact).
inline void dequantize_e4m3_row(const uint8_t* codes, float scale, int64_t n, float* out) {
  const float* values = detail::e4m3_values();
  for (int64_t i = 0; i < n; ++i) out[i] = values[codes[i]] * scale;
}

}  // namespace tidal::kernels
