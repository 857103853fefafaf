// SPDX-License-Identifier: Apache-2.0
#include "tests/testing/device_tensor.h"

#include <cstring>
#include <utility>

#include "runtime/tensor_access.h"

namespace tidal::testing {

DeviceTensor::DeviceTensor(std::vector<int64_t> shape, DType dtype) {
  view_ = make_view(nullptr, dtype, shape, Device{DeviceKind::kCuda, 0});
  void* p = nullptr;
  const Status st = device_malloc(view_.nbytes(), "a test tensor", &p);
  TIDAL_CHECK(st.ok(), st.message());
  view_.data = p;
}

DeviceTensor::~DeviceTensor() {
  if (view_.data != nullptr) device_free(view_.data);
}

DeviceTensor::DeviceTensor(DeviceTensor&& other) noexcept : view_(std::exchange(other.view_, {})) {}

DeviceTensor& DeviceTensor::operator=(DeviceTensor&& other) noexcept {
  if (this != &other) {
    if (view_.data != nullptr) device_free(view_.data);
    view_ = std::exchange(other.view_, {});
  }
  return *this;
}

HostTensor convert(const TensorView& host, DType dtype) {
  std::vector<int64_t> shape(host.shape, host.shape + host.rank);
  HostTensor out(shape, dtype);
  const TensorView o = out.view();
  TIDAL_CHECK(host.is_contiguous(), "convert: host tensor must be contiguous");
  if (dtype == host.dtype) {
    std::memcpy(o.data, host.data, host.nbytes());
    return out;
  }
  for (int64_t i = 0; i < host.numel(); ++i) {
    store_f32(o.data, dtype, i, load_f32(host.data, host.dtype, i));
  }
  return out;
}

DeviceTensor DeviceTensor::from_host(const TensorView& host, DType dtype) {
  const HostTensor converted = convert(host, dtype);
  DeviceTensor d(std::vector<int64_t>(host.shape, host.shape + host.rank), dtype);
  copy_view(d.view(), converted.view(), Stream{});
  stream_synchronize(Stream{});
  return d;
}

DeviceTensor DeviceTensor::filled(std::vector<int64_t> shape, DType dtype, uint8_t byte) {
  DeviceTensor d(std::move(shape), dtype);
  fill_bytes(d.view().data, d.view().device, byte, d.view().nbytes(), Stream{});
  stream_synchronize(Stream{});
  return d;
}

HostTensor DeviceTensor::to_host() const {
  HostTensor h(std::vector<int64_t>(view_.shape, view_.shape + view_.rank), view_.dtype);
  stream_synchronize(Stream{});
  copy_view(h.view(), view_, Stream{});
  stream_synchronize(Stream{});
  return h;
}

std::vector<float> DeviceTensor::to_floats() const {
  const HostTensor h = to_host();
  std::vector<float> out(static_cast<size_t>(view_.numel()));
  for (size_t i = 0; i < out.size(); ++i) out[i] = load_f32(h.view().data, view_.dtype, int64_t(i));
  return out;
}

Tolerance tolerance(DType dtype) {
  switch (dtype) {
    case DType::kF32: return {1e-5f, 1e-4f};
    case DType::kF16: return {2e-3f, 2e-3f};
    case DType::kBF16: return {1e-2f, 1.6e-2f};
    default: return {0.0f, 0.0f};
  }
}

}  // namespace tidal::testing
