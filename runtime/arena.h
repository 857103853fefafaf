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
  static BumpAllocator planner() { return BumpAllocator(); }

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

// An owning host arena: one anonymous mapping (zero pages committed lazily, so a large KV arena
// costs memory only as it fills), released on destruction. Move-only.
class HostArena {
 public:
  HostArena() = default;
  // Maps `bytes` (zero-filled). Fails with kOutOfMemory instead of throwing.
  static Status create(size_t bytes, const std::string& purpose, HostArena* out);
  ~HostArena();
  HostArena(HostArena&& other) noexcept;
  HostArena& operator=(HostArena&& other) noexcept;
  HostArena(const HostArena&) = delete;
  HostArena& operator=(const HostArena&) = delete;

  BumpAllocator allocator() const { return BumpAllocator(data_, bytes_, Device{}); }
  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace tidal
