// SPDX-License-Identifier: Apache-2.0
// Arenas: one allocation per purpose (weights, workspace, KV cache), carved into views by a
// bump allocator. The same carving code runs first in count-only mode (ArenaPlanner) to size the
// arena, then for real, so the plan and the layout cannot disagree (llm.c malloc_and_point).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/status.h"
#include "runtime/tensor.h"

namespace tidal {

constexpr size_t kArenaAlignment = 256;  // bytes; also suits cp.async / TMA on the GPU side

// A bump allocator over a byte range. With a null base it only counts (planning mode).
class BumpAllocator {
 public:
  BumpAllocator() = default;
  BumpAllocator(void* base, size_t capacity, Device device)
      : base_(static_cast<uint8_t*>(base)), capacity_(capacity), device_(device) {}
  // Count-only allocator: every allocation succeeds and only advances the offset.
  static BumpAllocator planner(Device device = Device{}) {
    BumpAllocator a;
    a.device_ = device;
    return a;
  }

  // A contiguous view of `shape`, aligned to kArenaAlignment. Aborts when a real arena
  // overflows: its size came from a planning pass over the same calls, so that is a bug.
  TensorView allocate(DType dtype, const std::vector<int64_t>& shape);
  size_t used() const { return offset_; }
  bool counting() const { return base_ == nullptr; }

 private:
  uint8_t* base_ = nullptr;
  size_t capacity_ = 0;
  size_t offset_ = 0;
  Device device_;
};

// Bytes of host memory the OS reports as available (MemAvailable), or 0 when unknown.
size_t available_host_memory();

// An owning arena on one device, released on destruction. Move-only.
// On the host: one anonymous mapping (zero pages committed lazily, so a large KV arena costs
// memory only as it fills). On a GPU: one cudaMalloc (contents undefined until written).
class Arena {
 public:
  Arena() = default;
  // Fails with kOutOfMemory (naming the purpose and the bytes) instead of throwing.
  static Status create(size_t bytes, const std::string& purpose, Device device, Arena* out);
  ~Arena();
  Arena(Arena&& other) noexcept;
  Arena& operator=(Arena&& other) noexcept;
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  BumpAllocator allocator() const { return BumpAllocator(data_, bytes_, device_); }
  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

 private:
  void release();

  void* data_ = nullptr;
  size_t bytes_ = 0;
  Device device_;
};

}  // namespace tidal
