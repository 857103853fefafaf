// SPDX-License-Identifier: Apache-2.0
#include "runtime/arena.h"

#include <sys/mman.h>

#include <cstdio>
#include <cstring>
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

size_t available_host_memory() {
  std::FILE* f = std::fopen("/proc/meminfo", "r");
  if (f == nullptr) return 0;
  char line[256];
  size_t kib = 0;
  while (std::fgets(line, sizeof(line), f) != nullptr) {
    unsigned long long v = 0;
    if (std::sscanf(line, "MemAvailable: %llu kB", &v) == 1) {
      kib = size_t(v);
      break;
    }
  }
  std::fclose(f);
  return kib * 1024;
}

Status HostArena::create(size_t bytes, const std::string& purpose, HostArena* out) {
  const size_t rounded = (bytes + kArenaAlignment - 1) / kArenaAlignment * kArenaAlignment;
  void* p = nullptr;
  if (rounded > 0) {
    // Page-aligned, zero-filled on first touch; MAP_NORESERVE: capacity is planned, not committed.
    p = mmap(nullptr, rounded, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
             -1, 0);
    if (p == MAP_FAILED) {
      return out_of_memory("cannot allocate " + std::to_string(rounded) + " bytes for the " +
                           purpose + " arena");
    }
  }
  HostArena arena;
  arena.data_ = p;
  arena.bytes_ = rounded;
  *out = std::move(arena);
  return ok_status();
}

HostArena::~HostArena() {
  if (data_ != nullptr) munmap(data_, bytes_);
}

HostArena::HostArena(HostArena&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}

HostArena& HostArena::operator=(HostArena&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) munmap(data_, bytes_);
    data_ = std::exchange(other.data_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

}  // namespace tidal
