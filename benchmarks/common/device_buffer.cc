// SPDX-License-Identifier: Apache-2.0
#include "benchmarks/common/device_buffer.h"

#include <cstdlib>
#include <cstring>
#include <utility>

#include "runtime/check.h"

namespace tidal::bench {

DeviceBuffer::DeviceBuffer(Device device, std::vector<int64_t> shape, DType dtype) {
  view_ = make_view(nullptr, dtype, shape, device);
  const size_t bytes = view_.nbytes();
  if (bytes == 0) return;
  void* p = nullptr;
  if (device.kind == DeviceKind::kCuda) {
    const Status st = device_malloc(bytes, "kernel_bench tensor " + view_.describe(), &p);
    TIDAL_CHECK(st.ok(), st.message());
  } else {
    p = std::aligned_alloc(256, (bytes + 255) / 256 * 256);  // 256: as cudaMalloc aligns
    TIDAL_CHECK(p != nullptr, "DeviceBuffer: out of host memory for " + view_.describe());
  }
  view_.data = p;
}

DeviceBuffer::~DeviceBuffer() { release(); }

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept : view_(other.view_) {
  other.view_.data = nullptr;
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    release();
    view_ = other.view_;
    other.view_.data = nullptr;
  }
  return *this;
}

void DeviceBuffer::release() {
  if (view_.data == nullptr) return;
  if (view_.device.kind == DeviceKind::kCuda) {
    device_free(view_.data);
  } else {
    std::free(view_.data);
  }
  view_.data = nullptr;
}

DeviceBuffer DeviceBuffer::upload(Device device, const TensorView& host, Stream stream) {
  TIDAL_CHECK(host.on_cpu() && host.is_contiguous(), "DeviceBuffer::upload: contiguous host data");
  std::vector<int64_t> shape(host.shape, host.shape + host.rank);
  DeviceBuffer b(device, std::move(shape), host.dtype);
  copy_bytes(b.view_.data, device, host.data, Device{}, host.nbytes(), stream);
  stream_synchronize(stream);  // the host data may be freed or changed right after
  return b;
}

DeviceBuffer DeviceBuffer::filled(Device device, std::vector<int64_t> shape, DType dtype, int byte,
                                  Stream stream) {
  DeviceBuffer b(device, std::move(shape), dtype);
  b.fill(byte, stream);
  return b;
}

void DeviceBuffer::fill(int byte, Stream stream) const {
  fill_bytes(view_.data, view_.device, byte, view_.nbytes(), stream);
}

HostTensor DeviceBuffer::download(Stream stream) const {
  HostTensor h(std::vector<int64_t>(view_.shape, view_.shape + view_.rank), view_.dtype);
  copy_bytes(h.view().data, Device{}, view_.data, view_.device, view_.nbytes(), stream);
  stream_synchronize(stream);
  return h;
}

}  // namespace tidal::bench
