// SPDX-License-Identifier: Apache-2.0
#include "runtime/tensor.h"

#include <cstring>

#include "runtime/tensor_access.h"

namespace tidal {

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int d = 0; d < rank; ++d) n *= shape[d];
  return n;
}

bool TensorView::is_contiguous() const {
  int64_t expected = 1;
  for (int d = rank - 1; d >= 0; --d) {
    if (shape[d] != 1 && stride[d] != expected) return false;
    expected *= shape[d];
  }
  return true;
}

std::string TensorView::describe() const {
  std::string s = "[";
  for (int d = 0; d < rank; ++d) s += (d ? ", " : "") + std::to_string(shape[d]);
  return s + "] " + dtype_name(dtype);
}

TensorView TensorView::select(int64_t i) const {
  TIDAL_CHECK(rank >= 1 && i >= 0 && i < shape[0], "TensorView::select: index out of range");
  TensorView v = *this;
  v.data = static_cast<uint8_t*>(data) + i * stride[0] * int64_t(dtype_size(dtype));
  for (int d = 1; d < rank; ++d) {
    v.shape[d - 1] = shape[d];
    v.stride[d - 1] = stride[d];
  }
  v.rank = rank - 1;
  v.shape[v.rank] = 0;
  v.stride[v.rank] = 0;
  return v;
}

TensorView TensorView::slice(int64_t begin, int64_t end) const {
  TIDAL_CHECK(rank >= 1 && 0 <= begin && begin <= end && end <= shape[0],
              "TensorView::slice: range out of bounds");
  TensorView v = *this;
  v.data = static_cast<uint8_t*>(data) + begin * stride[0] * int64_t(dtype_size(dtype));
  v.shape[0] = end - begin;
  return v;
}

TensorView make_view(void* data, DType dtype, const std::vector<int64_t>& shape, Device device) {
  TIDAL_CHECK(shape.size() <= size_t(kMaxRank), "make_view: rank > 4");
  TensorView v;
  v.data = data;
  v.dtype = dtype;
  v.device = device;
  v.rank = int(shape.size());
  int64_t stride = 1;
  for (int d = v.rank - 1; d >= 0; --d) {
    v.shape[d] = shape[size_t(d)];
    v.stride[d] = stride;
    // Planning views (data null) may describe absurd sizes: saturate rather than overflow.
    if (__builtin_mul_overflow(stride, shape[size_t(d)], &stride)) stride = INT64_MAX;
  }
  return v;
}

TensorView make_view(void* data, DType dtype, std::initializer_list<int64_t> shape, Device device) {
  return make_view(data, dtype, std::vector<int64_t>(shape), device);
}

bool same_shape(const TensorView& a, const TensorView& b) {
  if (a.rank != b.rank) return false;
  for (int d = 0; d < a.rank; ++d) {
    if (a.shape[d] != b.shape[d]) return false;
  }
  return true;
}

HostTensor::HostTensor(std::vector<int64_t> shape, DType dtype)
    : shape_(std::move(shape)), dtype_(dtype) {
  int64_t n = 1;
  for (int64_t s : shape_) n *= s;
  bytes_.assign(size_t(n) * dtype_size(dtype), 0);
}

HostTensor HostTensor::from(std::vector<int64_t> shape, const std::vector<float>& values) {
  HostTensor t(std::move(shape), DType::kF32);
  TIDAL_CHECK(values.size() * 4 == t.bytes_.size(), "HostTensor::from: value count != shape");
  std::memcpy(t.bytes_.data(), values.data(), t.bytes_.size());
  return t;
}

TensorView HostTensor::view() const {
  return make_view(const_cast<uint8_t*>(bytes_.data()), dtype_, shape_);
}

float HostTensor::at(int64_t flat) const { return load_f32(view().data, dtype_, flat); }

}  // namespace tidal
