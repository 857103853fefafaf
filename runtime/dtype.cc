// SPDX-License-Identifier: Apache-2.0
#include "runtime/dtype.h"

#include <cstring>

#include "runtime/check.h"

namespace tidal {
namespace {

uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

float bits_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::kF32: return 4;
    case DType::kF16: return 2;
    case DType::kBF16: return 2;
    case DType::kI32: return 4;
    case DType::kI64: return 8;
    case DType::kU8: return 1;
  }
  TIDAL_CHECK(false, "dtype_size: unknown dtype");
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kF32: return "f32";
    case DType::kF16: return "f16";
    case DType::kBF16: return "bf16";
    case DType::kI32: return "i32";
    case DType::kI64: return "i64";
    case DType::kU8: return "u8";
  }
  return "unknown";
}

float f16_to_f32(f16 h) {
  const uint32_t sign = uint32_t(h.bits & 0x8000u) << 16;
  const uint32_t exp = (h.bits >> 10) & 0x1fu;
  uint32_t mant = h.bits & 0x3ffu;
  if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (mant << 13));  // inf / NaN
  if (exp != 0) return bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
  if (mant == 0) return bits_f32(sign);  // signed zero
  // Subnormal: value = mant * 2^-24, exactly representable in f32.
  int e = -1;
  do {
    mant <<= 1;
    ++e;
  } while ((mant & 0x400u) == 0);
  mant &= 0x3ffu;
  return bits_f32(sign | uint32_t(112 - e) << 23 | (mant << 13));
}

f16 f32_to_f16(float f) {
  const uint32_t u = f32_bits(f);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  const uint32_t abs = u & 0x7fffffffu;
  if (abs >= 0x7f800000u) {  // inf or NaN (keep NaN quiet and non-zero)
    return f16{uint16_t(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u))};
  }
  if (abs >= 0x477ff000u) return f16{uint16_t(sign | 0x7c00u)};  // rounds to >= 65520: inf
  const int exp = int(abs >> 23) - 127;
  if (exp >= -14) {  // normal f16
    uint32_t mant = abs & 0x7fffffu;
    uint32_t half = (uint32_t(exp + 15) << 10) | (mant >> 13);
    const uint32_t rest = mant & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;  // nearest even (may carry)
    return f16{uint16_t(sign | half)};
  }
  if (exp < -25) return f16{sign};  // below half the smallest subnormal: zero
  // Subnormal f16: value / 2^-24, rounded to nearest even.
  const uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
  // value = mant * 2^(exp-23) and q = value / 2^-24 = mant * 2^(exp+1): drop -exp-1 bits.
  const int drop = -exp - 1;  // 14..24
  uint32_t q = mant >> drop;
  const uint32_t rest = mant & ((1u << drop) - 1u);
  const uint32_t halfway = 1u << (drop - 1);
  if (rest > halfway || (rest == halfway && (q & 1u))) ++q;
  return f16{uint16_t(sign | q)};
}

float bf16_to_f32(bf16 b) { return bits_f32(uint32_t(b.bits) << 16); }

bf16 f32_to_bf16(float f) {
  const uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{uint16_t((u >> 16) | 0x40u)};  // quiet NaN
  const uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
  return bf16{uint16_t((u + rounding) >> 16)};
}

float round_to(DType dtype, float f) {
  switch (dtype) {
    case DType::kF32: return f;
    case DType::kF16: return f16_to_f32(f32_to_f16(f));
    case DType::kBF16: return bf16_to_f32(f32_to_bf16(f));
    default: TIDAL_CHECK(false, "round_to: not a float dtype");
  }
}

}  // namespace tidal
