// SPDX-License-Identifier: Apache-2.0
#include "runtime/device.h"

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <utility>

#if TIDAL_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace tidal {
namespace {

std::atomic<bool> g_sync_after_launch{false};

void copy_host_rows(void* dst, size_t dst_pitch, const void* src, size_t src_pitch,
                    size_t row_bytes, size_t rows) {
  for (size_t r = 0; r < rows; ++r) {
    std::memmove(static_cast<uint8_t*>(dst) + r * dst_pitch,
                 static_cast<const uint8_t*>(src) + r * src_pitch, row_bytes);
  }
}

#if TIDAL_WITH_CUDA
void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) fatal(__FILE__, __LINE__, what, cudaGetErrorString(err));
}
cudaStream_t raw(Stream s) { return static_cast<cudaStream_t>(s.handle); }
#endif

#if !TIDAL_WITH_CUDA
[[noreturn]] void no_cuda(const char* what) {
  fatal(__FILE__, __LINE__, what, "this build of Tidal has no CUDA support (TIDAL_WITH_CUDA=OFF)");
}
#endif

}  // namespace

void set_sync_after_launch(bool on) { g_sync_after_launch = on; }
bool sync_after_launch() { return g_sync_after_launch; }

#if TIDAL_WITH_CUDA

int cuda_device_count() {
  static const int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();  // no driver or no device: clear the error, report none
      return 0;
    }
    return n;
  }();
  return count;
}

Status cuda_device_info(int device, DeviceInfo* out) {
  if (device < 0 || device >= cuda_device_count()) {
    return unavailable("no CUDA device " + std::to_string(device) + " (" +
                       std::to_string(cuda_device_count()) + " visible)");
  }
  cudaDeviceProp prop;
  check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  out->name = prop.name;
  out->sm_count = prop.multiProcessorCount;
  out->cc_major = prop.major;
  out->cc_minor = prop.minor;
  out->l2_bytes = size_t(prop.l2CacheSize);
  out->smem_per_block_optin = prop.sharedMemPerBlockOptin;
  int current = 0;
  check(cudaGetDevice(&current), "cudaGetDevice");
  check(cudaSetDevice(device), "cudaSetDevice");
  check(cudaMemGetInfo(&out->free_bytes, &out->total_bytes), "cudaMemGetInfo");
  check(cudaSetDevice(current), "cudaSetDevice");
  check(cudaDriverGetVersion(&out->driver_version), "cudaDriverGetVersion");
  check(cudaRuntimeGetVersion(&out->runtime_version), "cudaRuntimeGetVersion");
  return ok_status();
}

Status set_cuda_device(int device) {
  if (device < 0 || device >= cuda_device_count()) {
    return unavailable("no CUDA device " + std::to_string(device) + " (" +
                       std::to_string(cuda_device_count()) + " visible)");
  }
  check(cudaSetDevice(device), "cudaSetDevice");
  return ok_status();
}

Status device_malloc(size_t bytes, const std::string& purpose, void** out) {
  *out = nullptr;
  if (bytes == 0) return ok_status();
  const cudaError_t err = cudaMalloc(out, bytes);
  if (err != cudaSuccess) {
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    return out_of_memory("cannot allocate " + std::to_string(bytes) + " bytes of device memory for " +
                         purpose + " (" + std::to_string(free_b) + " of " +
                         std::to_string(total_b) + " bytes free): " + cudaGetErrorString(err));
  }
  return ok_status();
}

void device_free(void* p) {
  if (p != nullptr) check(cudaFree(p), "cudaFree");
}

Status pinned_malloc(size_t bytes, void** out) {
  *out = nullptr;
  if (bytes == 0) return ok_status();
  if (cuda_device_count() == 0) {  // no GPU: plain memory serves the CPU path
    *out = std::malloc(bytes);
    return *out ? ok_status() : out_of_memory("cannot allocate " + std::to_string(bytes) + " bytes");
  }
  if (cudaMallocHost(out, bytes) != cudaSuccess) {
    cudaGetLastError();
    return out_of_memory("cannot allocate " + std::to_string(bytes) + " bytes of pinned memory");
  }
  return ok_status();
}

void pinned_free(void* p) {
  if (p == nullptr) return;
  if (cuda_device_count() == 0) return std::free(p);
  check(cudaFreeHost(p), "cudaFreeHost");
}

void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes,
                Stream stream) {
  if (bytes == 0) return;
  if (dst_device.kind == DeviceKind::kCpu && src_device.kind == DeviceKind::kCpu) {
    std::memmove(dst, src, bytes);
    return;
  }
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, raw(stream)), "cudaMemcpyAsync");
}

void copy_rows(void* dst, Device dst_device, size_t dst_pitch, const void* src, Device src_device,
               size_t src_pitch, size_t row_bytes, size_t rows, Stream stream) {
  if (rows == 0 || row_bytes == 0) return;
  if (rows == 1 || (dst_pitch == row_bytes && src_pitch == row_bytes)) {
    copy_bytes(dst, dst_device, src, src_device, row_bytes * rows, stream);
    return;
  }
  TIDAL_CHECK(dst_pitch >= row_bytes && src_pitch >= row_bytes,
              "copy_rows: a pitch shorter than a row");
  if (dst_device.kind == DeviceKind::kCpu && src_device.kind == DeviceKind::kCpu) {
    copy_host_rows(dst, dst_pitch, src, src_pitch, row_bytes, rows);
    return;
  }
  check(cudaMemcpy2DAsync(dst, dst_pitch, src, src_pitch, row_bytes, rows, cudaMemcpyDefault,
                          raw(stream)),
        "cudaMemcpy2DAsync");
}

void fill_bytes(void* dst, Device device, int value, size_t bytes, Stream stream) {
  if (bytes == 0) return;
  if (device.kind == DeviceKind::kCpu) {
    std::memset(dst, value, bytes);
    return;
  }
  check(cudaMemsetAsync(dst, value, bytes, raw(stream)), "cudaMemsetAsync");
}

Status stream_create(Stream* out) {
  cudaStream_t s = nullptr;
  if (cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) != cudaSuccess) {
    cudaGetLastError();
    return unavailable("cannot create a CUDA stream");
  }
  out->handle = s;
  return ok_status();
}

void stream_destroy(Stream stream) {
  if (stream.handle != nullptr) check(cudaStreamDestroy(raw(stream)), "cudaStreamDestroy");
}

void stream_synchronize(Stream stream) {
  if (cuda_device_count() == 0) return;
  check(cudaStreamSynchronize(raw(stream)), "cudaStreamSynchronize");
}

bool stream_capturing(Stream stream) {
  if (cuda_device_count() == 0) return false;
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  check(cudaStreamIsCapturing(raw(stream), &st), "cudaStreamIsCapturing");
  return st != cudaStreamCaptureStatusNone;
}

Event::Event() {
  cudaEvent_t e = nullptr;
  check(cudaEventCreate(&e), "cudaEventCreate");
  event_ = e;
}

Event::~Event() {
  if (event_ != nullptr) cudaEventDestroy(static_cast<cudaEvent_t>(event_));
}

void Event::record(Stream stream) {
  check(cudaEventRecord(static_cast<cudaEvent_t>(event_), raw(stream)), "cudaEventRecord");
}

void Event::synchronize() {
  check(cudaEventSynchronize(static_cast<cudaEvent_t>(event_)), "cudaEventSynchronize");
}

float Event::elapsed_ms_since(const Event& start) const {
  float ms = 0;
  check(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start.event_),
                             static_cast<cudaEvent_t>(event_)),
        "cudaEventElapsedTime");
  return ms;
}

Status SideStream::create(bool high_priority, std::unique_ptr<SideStream>* out) {
  std::unique_ptr<SideStream> s(new SideStream());
  int least = 0, greatest = 0;
  cudaStream_t stream = nullptr;
  if (cudaDeviceGetStreamPriorityRange(&least, &greatest) != cudaSuccess ||
      cudaStreamCreateWithPriority(&stream, cudaStreamNonBlocking,
                                   high_priority ? greatest : least) != cudaSuccess) {
    cudaGetLastError();
    return unavailable("cannot create a CUDA stream");
  }
  s->stream_.handle = stream;  // the destructor releases what was made
  for (void** event : {&s->fork_event_, &s->join_event_}) {
    cudaEvent_t e = nullptr;
    if (cudaEventCreateWithFlags(&e, cudaEventDisableTiming) != cudaSuccess) {
      cudaGetLastError();
      return unavailable("cannot create a CUDA event");
    }
    *event = e;
  }
  *out = std::move(s);
  return ok_status();
}

SideStream::~SideStream() {
  if (join_event_ != nullptr) cudaEventDestroy(static_cast<cudaEvent_t>(join_event_));
  if (fork_event_ != nullptr) cudaEventDestroy(static_cast<cudaEvent_t>(fork_event_));
  if (stream_.handle != nullptr) cudaStreamDestroy(raw(stream_));
}

void SideStream::fork(Stream main) {
  check(cudaEventRecord(static_cast<cudaEvent_t>(fork_event_), raw(main)), "cudaEventRecord");
  check(cudaStreamWaitEvent(raw(stream_), static_cast<cudaEvent_t>(fork_event_), 0),
        "cudaStreamWaitEvent");
  forked_ = true;
}

void SideStream::join(Stream main) {
  if (!forked_) return;
  check(cudaEventRecord(static_cast<cudaEvent_t>(join_event_), raw(stream_)), "cudaEventRecord");
  check(cudaStreamWaitEvent(raw(main), static_cast<cudaEvent_t>(join_event_), 0),
        "cudaStreamWaitEvent");
  forked_ = false;
}

Graph::~Graph() {
  if (exec_ != nullptr) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_));
}

Graph::Graph(Graph&& other) noexcept : exec_(std::exchange(other.exec_, nullptr)) {}

Graph& Graph::operator=(Graph&& other) noexcept {
  if (this != &other) {
    if (exec_ != nullptr) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_));
    exec_ = std::exchange(other.exec_, nullptr);
  }
  return *this;
}

void Graph::begin_capture(Stream stream) {
  check(cudaStreamBeginCapture(raw(stream), cudaStreamCaptureModeThreadLocal),
        "cudaStreamBeginCapture");
}

Graph Graph::end_capture(Stream stream) {
  cudaGraph_t graph = nullptr;
  check(cudaStreamEndCapture(raw(stream), &graph), "cudaStreamEndCapture");
  cudaGraphExec_t exec = nullptr;
  // Kernel nodes keep the priority of the stream they were captured from (SideStream's work
  // before the main stream's), not the launch stream's.
  check(cudaGraphInstantiate(&exec, graph, cudaGraphInstantiateFlagUseNodePriority),
        "cudaGraphInstantiate");
  check(cudaGraphDestroy(graph), "cudaGraphDestroy");
  Graph g;
  g.exec_ = exec;
  return g;
}

void Graph::launch(Stream stream) const {
  TIDAL_CHECK(exec_ != nullptr, "Graph::launch: not captured");
  check(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec_), raw(stream)), "cudaGraphLaunch");
}

#else  // !TIDAL_WITH_CUDA

int cuda_device_count() { return 0; }
Status cuda_device_info(int device, DeviceInfo*) {
  return unavailable("no CUDA device " + std::to_string(device) + ": built without CUDA");
}
Status set_cuda_device(int device) { return cuda_device_info(device, nullptr); }
Status device_malloc(size_t bytes, const std::string& purpose, void** out) {
  *out = nullptr;
  if (bytes == 0) return ok_status();
  return unavailable("cannot allocate device memory for " + purpose + ": built without CUDA");
}
void device_free(void* p) {
  if (p != nullptr) no_cuda("device_free");
}
Status pinned_malloc(size_t bytes, void** out) {
  *out = bytes ? std::malloc(bytes) : nullptr;
  return (*out || !bytes) ? ok_status() : out_of_memory("cannot allocate " + std::to_string(bytes));
}
void pinned_free(void* p) { std::free(p); }
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes,
                Stream) {
  if (dst_device.kind != DeviceKind::kCpu || src_device.kind != DeviceKind::kCpu) {
    no_cuda("copy_bytes");
  }
  if (bytes) std::memmove(dst, src, bytes);
}
void copy_rows(void* dst, Device dst_device, size_t dst_pitch, const void* src, Device src_device,
               size_t src_pitch, size_t row_bytes, size_t rows, Stream) {
  if (dst_device.kind != DeviceKind::kCpu || src_device.kind != DeviceKind::kCpu) {
    no_cuda("copy_rows");
  }
  if (rows == 0 || row_bytes == 0) return;
  TIDAL_CHECK(rows == 1 || (dst_pitch >= row_bytes && src_pitch >= row_bytes),
              "copy_rows: a pitch shorter than a row");
  copy_host_rows(dst, dst_pitch, src, src_pitch, row_bytes, rows);
}
void fill_bytes(void* dst, Device device, int value, size_t bytes, Stream) {
  if (device.kind != DeviceKind::kCpu) no_cuda("fill_bytes");
  if (bytes) std::memset(dst, value, bytes);
}
Status stream_create(Stream* out) {
  *out = Stream{};
  return ok_status();
}
void stream_destroy(Stream) {}
void stream_synchronize(Stream) {}
bool stream_capturing(Stream) { return false; }
Event::Event() {}
Event::~Event() {}
void Event::record(Stream) { no_cuda("Event::record"); }
void Event::synchronize() { no_cuda("Event::synchronize"); }
float Event::elapsed_ms_since(const Event&) const { no_cuda("Event::elapsed_ms_since"); }
Status SideStream::create(bool, std::unique_ptr<SideStream>* out) {
  out->reset();
  return unavailable("no side stream: built without CUDA");
}
SideStream::~SideStream() {}
void SideStream::fork(Stream) { no_cuda("SideStream::fork"); }
void SideStream::join(Stream) {
  if (forked_) no_cuda("SideStream::join");
}
Graph::~Graph() {}
Graph::Graph(Graph&& other) noexcept : exec_(std::exchange(other.exec_, nullptr)) {}
Graph& Graph::operator=(Graph&& other) noexcept {
  exec_ = std::exchange(other.exec_, nullptr);
  return *this;
}
void Graph::begin_capture(Stream) { no_cuda("Graph::begin_capture"); }
Graph Graph::end_capture(Stream) { no_cuda("Graph::end_capture"); }
void Graph::launch(Stream) const { no_cuda("Graph::launch"); }

#endif  // TIDAL_WITH_CUDA

void copy_view(TensorView dst, TensorView src, Stream stream) {
  TIDAL_CHECK(dst.dtype == src.dtype && dst.numel() == src.numel(),
              "copy_view: dtype or element count differ (" + dst.describe() + " <- " +
                  src.describe() + ")");
  TIDAL_CHECK(dst.is_contiguous() && src.is_contiguous(), "copy_view: views must be contiguous");
  copy_bytes(dst.data, dst.device, src.data, src.device, dst.nbytes(), stream);
}

}  // namespace tidal
