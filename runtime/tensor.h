// SPDX-License-Identifier: Apache-2.0
// TensorView: a non-owning view (pointer + dtype + device + shape/strides in elements), the
// currency type of every op. Lifetime: the caller keeps the storage alive; a view never frees
// anything. Trivially copyable; pass by value. HostTensor owns host memory (tests, load time).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "runtime/check.h"
#include "runtime/dtype.h"

namespace tidal {

enum class DeviceKind : uint8_t { kCpu, kCuda };

struct Device {
  DeviceKind kind = DeviceKind::kCpu;
  int index = 0;  // CUDA ordinal; 0 for the CPU
};

constexpr int kMaxRank = 4;

struct TensorView {
  void* data = nullptr;
  DType dtype = DType::kF32;
  Device device;
  int rank = 0;
  int64_t shape[kMaxRank] = {};
  int64_t stride[kMaxRank] = {};  // elements, not bytes

  int64_t size(int dim) const { return shape[dim < 0 ? dim + rank : dim]; }
  int64_t numel() const;
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype); }
  bool is_contiguous() const;
  bool on_cpu() const { return device.kind == DeviceKind::kCpu; }
  // "[2, 3] f32".
  std::string describe() const;

  // Typed pointer. Checks the dtype in every build: a wrong T is a bug, not a warning.
  template <typename T>
  T* data_as() const {
    TIDAL_CHECK(dtype == dtype_of<T>(),
                std::string("TensorView::data_as: tensor is ") + dtype_name(dtype));
    return static_cast<T*>(data);
  }

  // The sub-view of index `i` along dimension 0 (rank drops by one).
  TensorView select(int64_t i) const;
  // Rows [begin, end) along dimension 0.
  TensorView slice(int64_t begin, int64_t end) const;
};

// A contiguous view over `data` with the given shape.
TensorView make_view(void* data, DType dtype, std::initializer_list<int64_t> shape,
                     Device device = Device{});
TensorView make_view(void* data, DType dtype, const std::vector<int64_t>& shape,
                     Device device = Device{});

bool same_shape(const TensorView& a, const TensorView& b);

// Owning, move-only host tensor (contiguous), for tests, tools and load time.
class HostTensor {
 public:
  HostTensor() = default;
  HostTensor(std::vector<int64_t> shape, DType dtype);
  // f32 tensor holding `values` (must have the shape's element count).
  static HostTensor from(std::vector<int64_t> shape, const std::vector<float>& values);
  HostTensor(HostTensor&&) = default;
  HostTensor& operator=(HostTensor&&) = default;
  HostTensor(const HostTensor&) = delete;
  HostTensor& operator=(const HostTensor&) = delete;

  TensorView view() const;
  const std::vector<int64_t>& shape() const { return shape_; }
  DType dtype() const { return dtype_; }
  // Element access as f32 (any float dtype), by flat index.
  float at(int64_t flat) const;

 private:
  std::vector<int64_t> shape_;
  DType dtype_ = DType::kF32;
  std::vector<uint8_t> bytes_;
};

}  // namespace tidal
