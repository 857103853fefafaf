// SPDX-License-Identifier: Apache-2.0
// Owning memory for a benchmark's tensors on the device under test: device memory on a CUDA
// device, host memory on the CPU (whose ops run their ref:: twins), so one case body serves
// both. Benchmarks cannot link tests/testing's DeviceTensor; this is the small part they need.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/device.h"
#include "runtime/stream.h"
#include "runtime/tensor.h"

namespace tidal::bench {

// A contiguous tensor on `device`. Move-only; aborts with the allocator's message when the
// memory cannot be had (a benchmark that does not fit is a configuration error).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(Device device, std::vector<int64_t> shape, DType dtype);  // contents undefined
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  // A copy of contiguous host data (same dtype and shape) on `device`; waits for the copy.
  static DeviceBuffer upload(Device device, const TensorView& host, Stream stream);
  // A buffer whose every byte is `byte` (0xFF poisons floats with NaN and ints with -1, so an
  // output the kernel forgot to write shows up as wrong).
  static DeviceBuffer filled(Device device, std::vector<int64_t> shape, DType dtype, int byte,
                             Stream stream);

  TensorView view() const { return view_; }
  // Queues a byte fill of the whole buffer on `stream`.
  void fill(int byte, Stream stream) const;
  // The contents as a host tensor of the same dtype and shape; waits for the stream.
  HostTensor download(Stream stream) const;

 private:
  void release();
  TensorView view_;
};

}  // namespace tidal::bench
