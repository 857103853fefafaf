// SPDX-License-Identifier: Apache-2.0
// Sub-views for tests of non-contiguous inputs (host or device memory alike): a column range of a
// matrix keeps its row stride, so it is the "row stride > cols" case every op with dense rows
// accepts; an element offset into a flat buffer gives a contiguous but misaligned view.
#pragma once

#include <cstdint>
#include <initializer_list>

#include "runtime/tensor.h"

namespace tidal::testing {

// Columns [begin, end) of a rank-2 view: same rows, same row stride.
inline TensorView columns(TensorView v, int64_t begin, int64_t end) {
  v.data = static_cast<uint8_t*>(v.data) + begin * int64_t(dtype_size(v.dtype));
  v.shape[1] = end - begin;
  return v;
}

// A contiguous view of `shape` starting `offset` elements into the buffer of `v`.
inline TensorView offset_view(const TensorView& v, int64_t offset,
                              std::initializer_list<int64_t> shape) {
  return make_view(static_cast<uint8_t*>(v.data) + offset * int64_t(dtype_size(v.dtype)), v.dtype,
                   shape, v.device);
}

}  // namespace tidal::testing
