// SPDX-License-Identifier: Apache-2.0
// NcclCommunicator: the Communicator over NCCL, for tensors on GPUs (DESIGN.md §3: NCCL moves
// tensors, MPI bootstraps and carries the control plane). One rank per GPU. Exists only when
// built with TIDAL_WITH_NCCL=ON; nccl.h stays inside the .cc (the handle is held opaquely, as
// Stream holds a cudaStream_t), so launch/ and tests include this header without NCCL's.
#pragma once

#if !TIDAL_WITH_NCCL
#error "parallel/nccl_communicator.h needs TIDAL_WITH_NCCL=ON: this tidal_parallel has no NCCL"
#endif

#include <memory>

#include "parallel/communicator.h"
#include "runtime/status.h"

namespace tidal::parallel {

class NcclCommunicator final : public Communicator {
 public:
  // Collective over `bootstrap`, a communicator over host buffers (an MpiCommunicator, or a
  // SingleRankCommunicator for a one-process group): its rank 0 makes an ncclUniqueId and
  // broadcasts it, and every rank joins with bootstrap's rank and size, on CUDA device `device`
  // (made current). Errors: unavailable when the device or NCCL cannot be initialized.
  static Status create(Communicator& bootstrap, int device, std::unique_ptr<NcclCommunicator>* out);
  ~NcclCommunicator() override;

  int device() const { return device_; }

 private:
  NcclCommunicator(void* comm, int device, int rank, int size);

  // Views must be on this communicator's CUDA device. Calls are enqueued on the stream and
  // return without waiting (NCCL semantics); send/recv match in order per peer.
  void do_all_reduce(TensorView buf, Stream stream) override;
  void do_all_gather(TensorView out, TensorView in, bool in_place, Stream stream) override;
  void do_broadcast(TensorView buf, int root, Stream stream) override;
  void do_send(TensorView in, int peer, Stream stream) override;
  void do_recv(TensorView out, int peer, Stream stream) override;
  // any_rank(false): an all-reduce of one int on a private stream, then a synchronize of it.
  void do_barrier() override;
  // ncclCommSplit: the new group shares this one's device.
  std::unique_ptr<Communicator> do_split(int color, int key) override;
  // ncclMemAlloc + ncclCommWindowRegister(NCCL_WIN_COLL_SYMMETRIC); null on any rank's failure.
  std::shared_ptr<void> do_alloc_registered(size_t bytes) override;
  // Collective: whether any rank passes true (an all-reduce on the private stream).
  bool any_rank(bool mine);

  void* comm_ = nullptr;  // ncclComm_t
  int device_ = 0;
  void* scratch_ = nullptr;     // one int on the device, for barrier()
  void* own_stream_ = nullptr;  // cudaStream_t for barrier()
};

}  // namespace tidal::parallel
