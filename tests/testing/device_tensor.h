// SPDX-License-Identifier: Apache-2.0
// GPU test helpers: a skip for machines without a CUDA device, an owning device tensor made from
// host data (converted to any dtype), read back as f32, and the per-dtype tolerance table every
// GPU-vs-reference comparison uses (STYLE.md rule 29).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "runtime/device.h"
#include "runtime/tensor.h"

namespace tidal::testing {

// Owning device memory with a contiguous view. Move-only.
class DeviceTensor {
 public:
  DeviceTensor() = default;
  DeviceTensor(std::vector<int64_t> shape, DType dtype);  // contents undefined
  ~DeviceTensor();
  DeviceTensor(DeviceTensor&& other) noexcept;
  DeviceTensor& operator=(DeviceTensor&& other) noexcept;
  DeviceTensor(const DeviceTensor&) = delete;
  DeviceTensor& operator=(const DeviceTensor&) = delete;

  // A device copy of `host` (any dtype) converted to `dtype` (float dtypes convert through f32;
  // integer tensors must keep their dtype).
  static DeviceTensor from_host(const TensorView& host, DType dtype);
  static DeviceTensor from_host(const TensorView& host) { return from_host(host, host.dtype); }
  // A device tensor of `shape` filled with `byte` in every byte (0xFF: poisons floats with NaN
  // and ints with -1, so an unwritten output shows).
  static DeviceTensor filled(std::vector<int64_t> shape, DType dtype, uint8_t byte);

  TensorView view() const { return view_; }
  // The contents as f32 (float dtypes) in row-major order.
  std::vector<float> to_floats() const;
  // The contents as a host tensor of the same dtype and shape.
  HostTensor to_host() const;

 private:
  TensorView view_;
};

// The same data as a host tensor in another float dtype (what the GPU computes on, so a
// reference fed this input rounds its inputs as the kernel does).
HostTensor convert(const TensorView& host, DType dtype);

// |got - want| <= atol + rtol * |want| per dtype of the kernel's inputs and outputs.
struct Tolerance {
  float atol;
  float rtol;
};
Tolerance tolerance(DType dtype);

}  // namespace tidal::testing

// Skips the current test when no CUDA device is visible (or the build has no CUDA).
#define TIDAL_SKIP_WITHOUT_CUDA()                                                   \
  do {                                                                              \
    if (!::tidal::cuda_available()) GTEST_SKIP() << "no CUDA device on this machine"; \
  } while (0)
