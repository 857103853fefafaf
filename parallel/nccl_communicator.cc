// SPDX-License-Identifier: Apache-2.0
// NCCL implementation of Communicator and its bootstrap over a host communicator (the
// ncclUniqueId broadcast that llm.c's multi_gpu_config_init and FasterTransformer's
// nccl_utils.cc do over MPI).
#include "parallel/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <cstring>
#include <string>

#include "runtime/check.h"

// NCCL failures after start-up are device failures: they abort with the call, location and
// NCCL's own words (STYLE.md rule 17).
#define TIDAL_NCCL_CHECK(call)                                                       \
  do {                                                                               \
    const ncclResult_t tidal_nccl_err_ = (call);                                     \
    if (tidal_nccl_err_ != ncclSuccess)                                              \
      ::tidal::fatal(__FILE__, __LINE__, #call, nccl_error_string(tidal_nccl_err_)); \
  } while (0)

#define TIDAL_CUDA_RT_CHECK(call)                                                     \
  do {                                                                                \
    const cudaError_t tidal_cuda_err_ = (call);                                       \
    if (tidal_cuda_err_ != cudaSuccess)                                               \
      ::tidal::fatal(__FILE__, __LINE__, #call, cudaGetErrorString(tidal_cuda_err_)); \
  } while (0)

namespace tidal::parallel {
namespace {

std::string nccl_error_string(ncclResult_t r) {
  std::string s =
      std::string("NCCL error ") + std::to_string(int(r)) + ": " + ncclGetErrorString(r);
  // ncclGetLastError takes the communicator since 2.13; a null one gives the last error of the
  // process, which is what a failing call just set.
  const char* last = ncclGetLastError(nullptr);
  if (last != nullptr && last[0] != '\0') s += " (" + std::string(last) + ")";
  return s;
}

ncclDataType_t nccl_type(DType dtype) {
  switch (dtype) {
    case DType::kF32: return ncclFloat32;
    case DType::kF16: return ncclFloat16;
    case DType::kBF16: return ncclBfloat16;
    case DType::kI32: return ncclInt32;
    case DType::kI64: return ncclInt64;
    case DType::kU8: return ncclUint8;
  }
  TIDAL_CHECK(false, "nccl_type: unknown dtype");
}

ncclComm_t handle(void* comm) { return static_cast<ncclComm_t>(comm); }
cudaStream_t raw(Stream s) { return static_cast<cudaStream_t>(s.handle); }

void check_device(const TensorView& t, int device, const char* op) {
  TIDAL_CHECK(t.numel() == 0 || (t.device.kind == DeviceKind::kCuda && t.device.index == device),
              std::string("NcclCommunicator::") + op + ": views must be on CUDA device " +
                  std::to_string(device) + ", got " + t.describe());
}

}  // namespace

Status NcclCommunicator::create(Communicator& bootstrap, int device,
                                std::unique_ptr<NcclCommunicator>* out) {
  // A rank that cannot set up its device (or rank 0 its unique id) still takes part in every
  // bootstrap collective below, and every rank learns of any failure before ncclCommInitRank:
  // a rank that returned early would leave the others waiting there, and itself in the caller's
  // next collective (agree_status), for ever.
  Status local = ok_status();
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || device < 0 || device >= count) {
    cudaGetLastError();  // clear the sticky "no device" error
    local = unavailable("NCCL: no CUDA device " + std::to_string(device) + " (" +
                        std::to_string(count) + " visible)");
  } else if (const cudaError_t set = cudaSetDevice(device); set != cudaSuccess) {
    local = unavailable("NCCL: cannot use CUDA device " + std::to_string(device) + ": " +
                        cudaGetErrorString(set));
  }
  ncclUniqueId id;
  std::memset(&id, 0, sizeof(id));
  if (bootstrap.rank() == 0 && local.ok()) {
    const ncclResult_t r = ncclGetUniqueId(&id);
    if (r != ncclSuccess) {
      local = unavailable("NCCL: rank 0 could not make a unique id: " + nccl_error_string(r));
    }
  }
  int32_t failed = local.ok() ? 0 : 1;
  bootstrap.all_reduce(make_view(&failed, DType::kI32, {1}));  // ranks that failed, summed
  if (!local.ok()) return local;
  if (failed != 0) {
    return unavailable("NCCL: " + std::to_string(failed) + " of " +
                       std::to_string(bootstrap.size()) +
                       " ranks could not set up their CUDA device or the unique id");
  }
  bootstrap.broadcast(make_view(&id, DType::kU8, {int64_t(sizeof(id))}), 0);
  ncclComm_t comm = nullptr;
  const ncclResult_t r = ncclCommInitRank(&comm, bootstrap.size(), id, bootstrap.rank());
  if (r != ncclSuccess) {
    return unavailable("NCCL: ncclCommInitRank on device " + std::to_string(device) + ": " +
                       nccl_error_string(r));
  }
  out->reset(new NcclCommunicator(comm, device, bootstrap.rank(), bootstrap.size()));
  return ok_status();
}

NcclCommunicator::NcclCommunicator(void* comm, int device, int rank, int size)
    : Communicator(rank, size), comm_(comm), device_(device) {
  TIDAL_CUDA_RT_CHECK(cudaMalloc(&scratch_, sizeof(int32_t)));
  cudaStream_t s = nullptr;
  TIDAL_CUDA_RT_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  own_stream_ = s;
}

NcclCommunicator::~NcclCommunicator() {
  cudaStreamSynchronize(static_cast<cudaStream_t>(own_stream_));
  ncclCommDestroy(handle(comm_));
  cudaStreamDestroy(static_cast<cudaStream_t>(own_stream_));
  cudaFree(scratch_);
}

void NcclCommunicator::do_all_reduce(TensorView buf, Stream stream) {
  check_device(buf, device_, "all_reduce");
  if (buf.numel() == 0) return;
  TIDAL_NCCL_CHECK(ncclAllReduce(buf.data, buf.data, size_t(buf.numel()), nccl_type(buf.dtype),
                                 ncclSum, handle(comm_), raw(stream)));
}

void NcclCommunicator::do_all_gather(TensorView out, TensorView in, bool /*in_place*/,
                                     Stream stream) {
  check_device(out, device_, "all_gather");
  check_device(in, device_, "all_gather");
  if (in.numel() == 0) return;
  // NCCL recognises the in-place case itself (sendbuff == recvbuff + rank * count).
  TIDAL_NCCL_CHECK(ncclAllGather(in.data, out.data, size_t(in.numel()), nccl_type(in.dtype),
                                 handle(comm_), raw(stream)));
}

void NcclCommunicator::do_broadcast(TensorView buf, int root, Stream stream) {
  check_device(buf, device_, "broadcast");
  if (buf.numel() == 0) return;
  TIDAL_NCCL_CHECK(ncclBroadcast(buf.data, buf.data, size_t(buf.numel()), nccl_type(buf.dtype),
                                 root, handle(comm_), raw(stream)));
}

void NcclCommunicator::do_send(TensorView in, int peer, Stream stream) {
  check_device(in, device_, "send");
  if (in.numel() == 0) return;
  TIDAL_NCCL_CHECK(
      ncclSend(in.data, size_t(in.numel()), nccl_type(in.dtype), peer, handle(comm_), raw(stream)));
}

void NcclCommunicator::do_recv(TensorView out, int peer, Stream stream) {
  check_device(out, device_, "recv");
  if (out.numel() == 0) return;
  TIDAL_NCCL_CHECK(ncclRecv(out.data, size_t(out.numel()), nccl_type(out.dtype), peer,
                            handle(comm_), raw(stream)));
}

void NcclCommunicator::do_barrier() { any_rank(false); }

bool NcclCommunicator::any_rank(bool mine) {
  const cudaStream_t s = static_cast<cudaStream_t>(own_stream_);
  const int32_t flag = mine ? 1 : 0;
  int32_t sum = 0;
  TIDAL_CUDA_RT_CHECK(cudaMemcpyAsync(scratch_, &flag, sizeof(flag), cudaMemcpyHostToDevice, s));
  TIDAL_NCCL_CHECK(ncclAllReduce(scratch_, scratch_, 1, ncclInt32, ncclSum, handle(comm_), s));
  TIDAL_CUDA_RT_CHECK(cudaMemcpyAsync(&sum, scratch_, sizeof(sum), cudaMemcpyDeviceToHost, s));
  TIDAL_CUDA_RT_CHECK(cudaStreamSynchronize(s));
  return sum > 0;
}

std::shared_ptr<void> NcclCommunicator::do_alloc_registered(size_t bytes) {
  if (size() == 1) return nullptr;  // nothing to register with
  TIDAL_CUDA_RT_CHECK(cudaSetDevice(device_));
  void* p = nullptr;
  const ncclResult_t alloc = ncclMemAlloc(&p, bytes);
  if (any_rank(alloc != ncclSuccess)) {
    if (alloc == ncclSuccess) ncclMemFree(p);
    return nullptr;
  }
  ncclWindow_t win = nullptr;
  const ncclResult_t reg =
      ncclCommWindowRegister(handle(comm_), p, bytes, &win, NCCL_WIN_COLL_SYMMETRIC);
  if (any_rank(reg != ncclSuccess || win == nullptr)) {
    if (reg == ncclSuccess && win != nullptr) ncclCommWindowDeregister(handle(comm_), win);
    ncclMemFree(p);
    return nullptr;
  }
  void* comm = comm_;
  return std::shared_ptr<void>(p, [comm, win](void* q) {
    ncclCommWindowDeregister(handle(comm), win);
    ncclMemFree(q);
  });
}

std::unique_ptr<Communicator> NcclCommunicator::do_split(int color, int key) {
  ncclComm_t group = nullptr;
  TIDAL_NCCL_CHECK(ncclCommSplit(handle(comm_), color, key, &group, nullptr));
  TIDAL_CHECK(group != nullptr, "NcclCommunicator::split: NCCL returned no communicator");
  int rank = 0, size = 0;
  TIDAL_NCCL_CHECK(ncclCommUserRank(group, &rank));
  TIDAL_NCCL_CHECK(ncclCommCount(group, &size));
  return std::unique_ptr<Communicator>(new NcclCommunicator(group, device_, rank, size));
}

}  // namespace tidal::parallel
