// SPDX-License-Identifier: Apache-2.0
// Communicator: the one collective interface (STYLE.md rule 3) that tensor- and pipeline-parallel
// code calls, over TensorView. MpiCommunicator (mpi_communicator.h) serves the CPU path and the
// control plane, the NCCL one GPUs; SingleRankCommunicator is the one-process case, so tp = pp = 1
// runs the same code with no MPI at all.
#pragma once

#include <memory>

#include "parallel/topology.h"
#include "runtime/status.h"
#include "runtime/stream.h"
#include "runtime/tensor.h"

namespace tidal::parallel {

// Every call except rank/size/send/recv is collective: all ranks of the group make the same calls
// in the same order, with matching dtypes and shapes. A mismatch is a bug (it hangs or aborts),
// never a Status. The public methods check their arguments completely and abort on a bad one,
// then call the implementation's do_* hook, which may trust them.
// Streams: a data call is ordered on `stream` (NCCL enqueues it there and returns at once; MPI,
// whose buffers live on the host, completes it before returning and ignores the stream). Either
// way, later work on the same stream sees the result, and the host may read or reuse the buffers
// after synchronizing the stream.
class Communicator {
 public:
  virtual ~Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const { return rank_; }  // 0 .. size() - 1 within this group
  int size() const { return size_; }

  // buf: any shape, contiguous; f32, f16, bf16, i32 or i64. Elementwise sum over the ranks, in
  // place; every rank ends with the same bits. 16-bit floats are summed in f32 and rounded after
  // each addition, as NCCL does.
  void all_reduce(TensorView buf, Stream stream = Stream{});
  // in:  [n, ...], contiguous.
  // out: [size() * n, ...], contiguous, in's dtype.
  // Rank r's `in` lands in rows [r * n, (r + 1) * n) of every rank's `out`.
  // `in` may be exactly this rank's rows of `out` (in place); any other overlap is a bug.
  void all_gather(TensorView out, TensorView in, Stream stream = Stream{});
  // buf: contiguous, the same shape on every rank; afterwards every rank holds root's contents.
  void broadcast(TensorView buf, int root, Stream stream = Stream{});
  // Point to point, blocking until the peer has taken the data (synchronous mode), so a cycle of
  // sends deadlocks at every size rather than only above an eager threshold; order calls (or
  // alternate by rank parity) to avoid one. Requires: peer != rank(); the peer's recv has the same
  // dtype and element count.
  void send(TensorView in, int peer, Stream stream = Stream{});
  void recv(TensorView out, int peer, Stream stream = Stream{});
  // Blocks the host until every rank has reached it (and, for NCCL, until this rank's queued
  // communication has finished).
  void barrier();
  // Collective: ranks passing the same color (>= 0) form one new group, ordered by (key, rank).
  std::unique_ptr<Communicator> split(int color, int key);
  // Collective (every rank of the group, the same `bytes`): device memory for the data of this
  // group's collectives that the transport registers with every rank, so that collectives on it
  // take its low-latency path. NCCL: ncclMemAlloc'd and registered as a symmetric window
  // (NCCL >= 2.27's symmetric kernels; every rank must then pass views at the same offsets).
  // Null when the transport has no such path or the registration failed (a rank that fails makes
  // every rank fall back): callers then use memory of their own. The memory lives as long as the
  // returned handle, which must not outlive the communicator.
  std::shared_ptr<void> alloc_registered(size_t bytes);

 protected:
  Communicator(int rank, int size);

 private:
  virtual void do_all_reduce(TensorView buf, Stream stream) = 0;
  // in_place: `in` is this rank's rows of `out`.
  virtual void do_all_gather(TensorView out, TensorView in, bool in_place, Stream stream) = 0;
  virtual void do_broadcast(TensorView buf, int root, Stream stream) = 0;
  virtual void do_send(TensorView in, int peer, Stream stream) = 0;
  virtual void do_recv(TensorView out, int peer, Stream stream) = 0;
  virtual void do_barrier() = 0;
  virtual std::unique_ptr<Communicator> do_split(int color, int key) = 0;
  virtual std::shared_ptr<void> do_alloc_registered(size_t /*bytes*/) { return nullptr; }

  int rank_;
  int size_;
};

// The group of one process: collectives are identities (all_gather copies, on the stream for
// device views), send/recv cannot be called (there is no peer). Used when the engine runs
// without MPI or NCCL, and to bootstrap a one-rank NCCL communicator.
class SingleRankCommunicator final : public Communicator {
 public:
  SingleRankCommunicator() : Communicator(0, 1) {}

 private:
  void do_all_reduce(TensorView, Stream) override {}
  void do_all_gather(TensorView out, TensorView in, bool in_place, Stream stream) override;
  void do_broadcast(TensorView, int, Stream) override {}
  void do_send(TensorView, int, Stream) override;
  void do_recv(TensorView, int, Stream) override;
  void do_barrier() override {}
  std::unique_ptr<Communicator> do_split(int color, int key) override;
};

// This rank's groups under ParallelConfig's layout (topology.h): `tp` holds the tp_size
// contiguous ranks of its pipeline stage, ranked by tp_rank; `pp` the pp_size ranks with its
// tp_rank (stride tp_size), ranked by pp_rank.
struct ParallelGroups {
  std::unique_ptr<Communicator> tp;
  std::unique_ptr<Communicator> pp;
};

// Collective over `world`. Errors: invalid_argument when cfg is invalid or cfg.world_size() !=
// world.size(); every rank holds the same cfg, so every rank returns the error and none is left
// waiting in a split.
Status make_parallel_groups(Communicator& world, const ParallelConfig& cfg, ParallelGroups* out);

}  // namespace tidal::parallel
