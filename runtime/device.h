// SPDX-License-Identifier: Apache-2.0
// The CUDA runtime behind a host-only interface: device discovery, memory, copies, streams,
// events and graphs. Built without CUDA (or without a driver) it reports no device, and the
// memory functions serve host memory only, so the CPU path links and runs anywhere.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "runtime/status.h"
#include "runtime/stream.h"
#include "runtime/tensor.h"

namespace tidal {

// Visible CUDA devices: 0 when built without CUDA, without a driver or without a GPU.
int cuda_device_count();
inline bool cuda_available() { return cuda_device_count() > 0; }

struct DeviceInfo {
  std::string name;            // "NVIDIA H200"
  int sm_count = 0;            // streaming multiprocessors
  int cc_major = 0, cc_minor = 0;
  size_t total_bytes = 0;      // device memory
  size_t free_bytes = 0;       // free now
  size_t l2_bytes = 0;
  size_t smem_per_block_optin = 0;  // shared memory a block may opt in to
  int driver_version = 0;      // e.g. 13000
  int runtime_version = 0;
};
Status cuda_device_info(int device, DeviceInfo* out);
// Makes `device` current for the calling thread.
Status set_cuda_device(int device);

// When true (launch/ sets it from TIDAL_SYNC_AFTER_LAUNCH=1, once), every kernel launch is
// followed by a stream synchronize outside graph capture, so a fault names its kernel.
void set_sync_after_launch(bool on);
bool sync_after_launch();

// Device memory. kOutOfMemory (with the purpose and size) when it cannot be had.
Status device_malloc(size_t bytes, const std::string& purpose, void** out);
void device_free(void* p);
// Page-locked host memory, so async copies are truly asynchronous and can be graph-captured.
Status pinned_malloc(size_t bytes, void** out);
void pinned_free(void* p);

// Copies `bytes` between any two places (host or device); async on the stream for the GPU.
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes,
                Stream stream);
// Copies `rows` runs of `row_bytes`, run r from src + r * src_pitch to dst + r * dst_pitch (one
// 2-D copy on the GPU; pitches are bytes, at least row_bytes unless rows == 1).
void copy_rows(void* dst, Device dst_device, size_t dst_pitch, const void* src, Device src_device,
               size_t src_pitch, size_t row_bytes, size_t rows, Stream stream);
// Copies a contiguous view into another of the same dtype and element count.
void copy_view(TensorView dst, TensorView src, Stream stream);
void fill_bytes(void* dst, Device device, int value, size_t bytes, Stream stream);

Status stream_create(Stream* out);
void stream_destroy(Stream stream);
void stream_synchronize(Stream stream);
bool stream_capturing(Stream stream);

// A CUDA event pair for timing (elapsed device time between two records on a stream).
class Event {
 public:
  Event();
  ~Event();
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  void record(Stream stream);
  void synchronize();
  // Milliseconds between `start` and this event (both recorded and complete).
  float elapsed_ms_since(const Event& start) const;

 private:
  void* event_ = nullptr;
};

// A second stream for work off a step's critical path (a selection layer's top-k and list commit
// beside its MLP): fork(main) queues it behind everything queued on `main` so far, join(main)
// queues `main` behind everything queued on it since the fork. Both hold during graph capture:
// a capture on `main` takes the side stream's work as a branch of the graph that rejoins it
// (every fork must be joined before the capture ends). With high_priority the stream has the
// device's highest priority (the lowest otherwise, the default streams'), so its blocks are
// scheduled before the waiting blocks of the main stream's kernels, in graphs too (Graph keeps
// each kernel node's captured priority). Not thread-safe; one per workspace. Built without CUDA,
// create() fails (unavailable).
class SideStream {
 public:
  static Status create(bool high_priority, std::unique_ptr<SideStream>* out);
  ~SideStream();
  SideStream(const SideStream&) = delete;
  SideStream& operator=(const SideStream&) = delete;

  Stream stream() const { return stream_; }
  void fork(Stream main);
  // No-op unless fork() was called since the last join().
  void join(Stream main);

 private:
  SideStream() = default;
  Stream stream_;
  void* fork_event_ = nullptr;  // cudaEvent_t, timing disabled
  void* join_event_ = nullptr;
  bool forked_ = false;
};

// A captured CUDA graph, instantiated and ready to launch. Move-only.
class Graph {
 public:
  Graph() = default;
  ~Graph();
  Graph(Graph&& other) noexcept;
  Graph& operator=(Graph&& other) noexcept;
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  // Everything queued on `stream` between begin_capture and end_capture becomes the graph.
  static void begin_capture(Stream stream);
  static Graph end_capture(Stream stream);
  void launch(Stream stream) const;
  bool valid() const { return exec_ != nullptr; }

 private:
  void* exec_ = nullptr;  // cudaGraphExec_t
};

}  // namespace tidal
