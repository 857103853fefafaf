// SPDX-License-Identifier: Apache-2.0
// Element access for reference (ref::) code and tests: read or write any float dtype as f32
// through strides. Slow by design; never used on a hot path.
#pragma once

#include <cstdint>

#include "runtime/tensor.h"

namespace tidal {

inline float load_f32(const void* base, DType dtype, int64_t i) {
  switch (dtype) {
    case DType::kF32: return static_cast<const float*>(base)[i];
    case DType::kF16: return f16_to_f32(static_cast<const f16*>(base)[i]);
    case DType::kBF16: return bf16_to_f32(static_cast<const bf16*>(base)[i]);
    default: TIDAL_CHECK(false, "load_f32: not a float dtype");
  }
}

inline void store_f32(void* base, DType dtype, int64_t i, float v) {
  switch (dtype) {
    case DType::kF32: static_cast<float*>(base)[i] = v; return;
    case DType::kF16: static_cast<f16*>(base)[i] = f32_to_f16(v); return;
    case DType::kBF16: static_cast<bf16*>(base)[i] = f32_to_bf16(v); return;
    default: TIDAL_CHECK(false, "store_f32: not a float dtype");
  }
}

inline int64_t offset_of(const TensorView& t, int64_t i0, int64_t i1 = 0, int64_t i2 = 0,
                         int64_t i3 = 0) {
  return i0 * t.stride[0] + i1 * t.stride[1] + i2 * t.stride[2] + i3 * t.stride[3];
}

// get_f32(t, i, j, ...) reads element (i, j, ...) of a view of rank >= the number of indices.
inline float get_f32(const TensorView& t, int64_t i0, int64_t i1 = 0, int64_t i2 = 0,
                     int64_t i3 = 0) {
  return load_f32(t.data, t.dtype, offset_of(t, i0, i1, i2, i3));
}

// The `n` elements of `t` from element offset `offset` (a dense row) as f32: a pointer into `t`
// itself for f32, else `scratch` (>= n floats) holding the converted values. The same values
// get_f32 reads, without a dtype switch per element.
inline const float* row_f32(const TensorView& t, int64_t offset, int64_t n, float* scratch) {
  if (t.dtype == DType::kF32) return static_cast<const float*>(t.data) + offset;
  for (int64_t i = 0; i < n; ++i) scratch[i] = load_f32(t.data, t.dtype, offset + i);
  return scratch;
}

inline void set_f32(const TensorView& t, int64_t i0, int64_t i1, int64_t i2, int64_t i3, float v) {
  store_f32(t.data, t.dtype, offset_of(t, i0, i1, i2, i3), v);
}
inline void set_f32(const TensorView& t, int64_t i0, float v) { set_f32(t, i0, 0, 0, 0, v); }
inline void set_f32(const TensorView& t, int64_t i0, int64_t i1, float v) {
  set_f32(t, i0, i1, 0, 0, v);
}
inline void set_f32(const TensorView& t, int64_t i0, int64_t i1, int64_t i2, float v) {
  set_f32(t, i0, i1, i2, 0, v);
}

}  // namespace tidal
