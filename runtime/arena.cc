// SPDX-License-Identifier: Apache-2.0
#include "runtime/arena.h"

#include <sys/mman.h>

#include <cstdio>
#include <cstring>
#include <utility>

#include "runtime/device.h"
#include "runtime/size_math.h"

namespace tidal {

TensorView BumpAllocator::allocate(DType dtype, const std::vector<int64_t>& shape) {
  // Saturating: a plan from absurd sizes comes out as SIZE_MAX bytes, never wraps to small.
  size_t bytes = dtype_size(dtype);
  for (int64_t s : shape) {
    TIDAL_CHECK(s >= 0, "BumpAllocator::allocate: negative dimension");
    bytes = sat_mul(bytes, size_t(s));
  }
  const size_t begin =
      sat_mul(sat_add(offset_, kArenaAlignment - 1) / kArenaAlignment, kArenaAlignment);
  offset_ = sat_add(begin, bytes);
  if (counting()) return make_view(nullptr, dtype, shape, device_);
  TIDAL_CHECK(offset_ <= capacity_ && offset_ != kSizeSaturated,
              "BumpAllocator::allocate: arena overflow (plan mismatch)");
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

Status Arena::create(size_t bytes, const std::string& purpose, Device device, Arena* out) {
  if (bytes > kSizeSaturated - kArenaAlignment) {
    return out_of_memory("the " + purpose + " arena's size overflows (its sizes are too large)");
  }
  const size_t rounded = (bytes + kArenaAlignment - 1) / kArenaAlignment * kArenaAlignment;
  void* p = nullptr;
  if (device.kind == DeviceKind::kCuda) {
    TIDAL_RETURN_IF_ERROR(set_cuda_device(device.index));
    TIDAL_RETURN_IF_ERROR(device_malloc(rounded, "the " + purpose + " arena", &p));
  } else if (rounded > 0) {
    // Page-aligned, zero-filled on first touch; MAP_NORESERVE: capacity is planned, not committed.
    p = mmap(nullptr, rounded, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
             -1, 0);
    if (p == MAP_FAILED) {
      return out_of_memory("cannot allocate " + std::to_string(rounded) + " bytes for the " +
                           purpose + " arena");
    }
  }
  Arena arena;
  arena.data_ = p;
  arena.bytes_ = rounded;
  arena.device_ = device;
  *out = std::move(arena);
  return ok_status();
}

void Arena::release() {
  if (data_ == nullptr) return;
  if (device_.kind == DeviceKind::kCuda) {
    device_free(data_);
  } else {
    munmap(data_, bytes_);
  }
  data_ = nullptr;
  bytes_ = 0;
}

Arena::~Arena() { release(); }

Arena::Arena(Arena&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      bytes_(std::exchange(other.bytes_, 0)),
      device_(other.device_) {}

Arena& Arena::operator=(Arena&& other) noexcept {
  if (this != &other) {
    release();
    data_ = std::exchange(other.data_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
    device_ = other.device_;
  }
  return *this;
}

}  // namespace tidal
