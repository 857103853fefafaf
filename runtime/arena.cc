// SPDX-License-Identifier: Apache-2.0
#include "runtime/arena.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

namespace tidal {

TensorView BumpAllocator::allocate(DType dtype, const std::vector<int64_t>& shape) {
  int64_t numel = 1;
  for (int64_t s : shape) {
    TIDAL_CHECK(s >= 0, "BumpAllocator::allocate: negative dimension");
    numel *= s;
  }
  const size_t bytes = size_t(numel) * dtype_size(dtype);
  const size_t begin = (offset_ + kArenaAlignment - 1) / kArenaAlignment * kArenaAlignment;
  offset_ = begin + bytes;
  if (counting()) return make_view(nullptr, dtype, shape, device_);
  TIDAL_CHECK(offset_ <= capacity_, "BumpAllocator::allocate: arena overflow (plan mismatch)");
  return make_view(base_ + begin, dtype, shape, device_);
}

Status HostArena::create(size_t bytes, const std::string& purpose, HostArena* out) {
  const size_t rounded = (bytes + kArenaAlignment - 1) / kArenaAlignment * kArenaAlignment;
  void* p = rounded ? std::aligned_alloc(kArenaAlignment, rounded) : nullptr;
  if (rounded && p == nullptr) {
    return out_of_memory("cannot allocate " + std::to_string(rounded) + " bytes for the " +
                         purpose + " arena");
  }
  if (p) std::memset(p, 0, rounded);
  HostArena arena;
  arena.data_ = p;
  arena.bytes_ = rounded;
  *out = std::move(arena);
  return ok_status();
}

HostArena::~HostArena() { std::free(data_); }

HostArena::HostArena(HostArena&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}

HostArena& HostArena::operator=(HostArena&& other) noexcept {
  if (this != &other) {
    std::free(data_);
    data_ = std::exchange(other.data_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

}  // namespace tidal
