// SPDX-License-Identifier: Apache-2.0
// Element types, and the host-side 16-bit float storage types with exact conversions, so the
// CPU build never includes cuda_fp16.h (.cu files map them to __half / __nv_bfloat16).
#pragma once

#include <cstddef>
#include <cstdint>

namespace tidal {

enum class DType : uint8_t { kF32, kF16, kBF16, kI32, kI64, kU8 };

// Bytes per element.
size_t dtype_size(DType dtype);
// "f32", "f16", "bf16", "i32", "i64", "u8".
const char* dtype_name(DType dtype);

// IEEE binary16 storage. Conversions are exact in both directions (f32 -> f16 rounds to nearest
// even, with overflow to infinity and gradual underflow to subnormals).
struct f16 {
  uint16_t bits = 0;
};
// bfloat16 storage: the top 16 bits of an f32. f32 -> bf16 rounds to nearest even; NaN stays NaN.
struct bf16 {
  uint16_t bits = 0;
};

float f16_to_f32(f16 h);
f16 f32_to_f16(float f);
float bf16_to_f32(bf16 b);
bf16 f32_to_bf16(float f);

// Rounds f to the precision of `dtype` (identity for f32): the reference path uses this wherever
// a kernel stores an intermediate in a 16-bit type.
float round_to(DType dtype, float f);

template <typename T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() {
  return DType::kF32;
}
template <>
constexpr DType dtype_of<f16>() {
  return DType::kF16;
}
template <>
constexpr DType dtype_of<bf16>() {
  return DType::kBF16;
}
template <>
constexpr DType dtype_of<int32_t>() {
  return DType::kI32;
}
template <>
constexpr DType dtype_of<int64_t>() {
  return DType::kI64;
}
template <>
constexpr DType dtype_of<uint8_t>() {
  return DType::kU8;
}
template <>
constexpr DType dtype_of<const float>() {
  return DType::kF32;
}
template <>
constexpr DType dtype_of<const f16>() {
  return DType::kF16;
}
template <>
constexpr DType dtype_of<const bf16>() {
  return DType::kBF16;
}
template <>
constexpr DType dtype_of<const int32_t>() {
  return DType::kI32;
}
template <>
constexpr DType dtype_of<const int64_t>() {
  return DType::kI64;
}
template <>
constexpr DType dtype_of<const uint8_t>() {
  return DType::kU8;
}

}  // namespace tidal
