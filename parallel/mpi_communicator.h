// SPDX-License-Identifier: Apache-2.0
// MpiCommunicator: the Communicator over MPI, for the CPU reference path that CI runs under
// mpirun and for the control plane (DESIGN.md §3); and the bootstrap (mpi_init, MpiWorld) that
// launch/ and the MPI test main start ranks with. Exists only when built with TIDAL_WITH_MPI=ON.
#pragma once

#if !TIDAL_WITH_MPI
#error "parallel/mpi_communicator.h needs TIDAL_WITH_MPI=ON: this tidal_parallel has no MPI"
#endif

#include <mpi.h>

#include <climits>
#include <cstdint>
#include <memory>

#include "parallel/communicator.h"
#include "runtime/status.h"

namespace tidal::parallel {

// Prints expr, file:line, rank and MPI's error string, then aborts (as TIDAL_CHECK does).
[[noreturn]] void mpi_fatal(const char* file, int line, const char* expr, int error_code);

}  // namespace tidal::parallel

// Our communicators return MPI errors (MPI_ERRORS_RETURN) so that they end here, with a location.
#define TIDAL_MPI_CHECK(call)                                                  \
  do {                                                                         \
    const int tidal_mpi_err_ = (call);                                         \
    if (tidal_mpi_err_ != MPI_SUCCESS)                                         \
      ::tidal::parallel::mpi_fatal(__FILE__, __LINE__, #call, tidal_mpi_err_); \
  } while (0)

namespace tidal::parallel {

class MpiCommunicator final : public Communicator {
 public:
  // MPI counts are int: larger buffers travel in chunks of at most this many elements.
  static constexpr int64_t kMaxCount = INT_MAX;

  // A private duplicate of `comm`, so our messages never match the caller's. Collective over comm.
  // max_count (1 .. kMaxCount) caps the elements per MPI call; tests lower it to run the
  // chunked paths on small buffers. Requires: MPI initialized and not finalized.
  static std::unique_ptr<MpiCommunicator> dup(MPI_Comm comm, int64_t max_count = kMaxCount);
  // Frees the MPI communicator. Requires: MPI not yet finalized (destroy before MpiWorld).
  ~MpiCommunicator() override;

  // The underlying communicator, for control-plane calls the interface lacks (e.g. launch/
  // broadcasting the ncclUniqueId). Owned by this object.
  MPI_Comm comm() const { return comm_; }

 private:
  MpiCommunicator(MPI_Comm owned, int64_t max_count);

  // Views must be on the CPU: this MPI is not assumed CUDA-aware.
  // The stream is ignored: every call completes before it returns.
  void do_all_reduce(TensorView buf, Stream stream) override;
  void do_all_gather(TensorView out, TensorView in, bool in_place, Stream stream) override;
  void do_broadcast(TensorView buf, int root, Stream stream) override;
  void do_send(TensorView in, int peer, Stream stream) override;
  void do_recv(TensorView out, int peer, Stream stream) override;
  void do_barrier() override;
  std::unique_ptr<Communicator> do_split(int color, int key) override;

  MPI_Comm comm_;
  int64_t max_count_;
  MPI_Op f16_sum_ = MPI_OP_NULL;  // MPI has no 16-bit float types: user ops over MPI_UINT16_T
  MPI_Op bf16_sum_ = MPI_OP_NULL;
};

// MPI for this process, as mpi_init set it up. Finalizes MPI on destruction if mpi_init
// initialized it (not if MPI was already running). Destroy every other MpiCommunicator first.
class MpiWorld {
 public:
  MpiWorld() = default;
  ~MpiWorld();
  MpiWorld(const MpiWorld&) = delete;
  MpiWorld& operator=(const MpiWorld&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  // Rank and rank count on this node (MPI_COMM_TYPE_SHARED): local rank -> GPU ordinal.
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  // A duplicate of MPI_COMM_WORLD. Requires: mpi_init succeeded.
  MpiCommunicator& comm() const;

 private:
  friend Status mpi_init(int* argc, char*** argv, MpiWorld* out);

  int rank_ = 0;
  int size_ = 0;
  int local_rank_ = 0;
  int local_size_ = 0;
  bool owns_mpi_ = false;
  std::unique_ptr<MpiCommunicator> comm_;
};

// Initializes MPI with MPI_THREAD_SERIALIZED (any one thread at a time may call MPI: the
// coordinator need not run on main), or adopts an MPI already initialized, then fills `out` and
// sets the rank that fatal() prints. argc/argv may be null. Errors: unavailable when MPI fails to
// start, was already finalized, or cannot give SERIALIZED. Requires: `out` fresh.
Status mpi_init(int* argc, char*** argv, MpiWorld* out);

}  // namespace tidal::parallel
