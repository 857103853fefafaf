// SPDX-License-Identifier: Apache-2.0
// Argument checks shared by every Communicator (done once here, so implementations trust their
// inputs), the single-rank communicator, and the TP/PP group split.
#include "parallel/communicator.h"

#include <cstdint>
#include <cstring>
#include <string>
#include <utility>

#include "runtime/check.h"
#include "runtime/device.h"

namespace tidal::parallel {
namespace {

void check_buffer(const TensorView& t, const char* op) {
  TIDAL_CHECK(t.rank >= 0 && t.rank <= kMaxRank, std::string(op) + ": bad rank");
  TIDAL_CHECK(t.is_contiguous(), std::string(op) + ": view " + t.describe() + " is not contiguous");
  TIDAL_CHECK(t.data != nullptr || t.numel() == 0, std::string(op) + ": null data");
}

bool reducible(DType dtype) {
  switch (dtype) {
    case DType::kF32:
    case DType::kF16:
    case DType::kBF16:
    case DType::kI32:
    case DType::kI64: return true;
    case DType::kU8: return false;
  }
  return false;
}

}  // namespace

Communicator::Communicator(int rank, int size) : rank_(rank), size_(size) {
  TIDAL_CHECK(size >= 1 && rank >= 0 && rank < size, "Communicator: rank outside [0, size)");
}

void Communicator::all_reduce(TensorView buf, Stream stream) {
  check_buffer(buf, "all_reduce");
  TIDAL_CHECK(reducible(buf.dtype),
              std::string("all_reduce: cannot sum dtype ") + dtype_name(buf.dtype));
  do_all_reduce(buf, stream);
}

void Communicator::all_gather(TensorView out, TensorView in, Stream stream) {
  check_buffer(out, "all_gather out");
  check_buffer(in, "all_gather in");
  const std::string shapes = "all_gather: out " + out.describe() + ", in " + in.describe() + ", " +
                             std::to_string(size_) + " ranks";
  TIDAL_CHECK(in.rank >= 1 && out.rank == in.rank && out.dtype == in.dtype,
              shapes + ": need equal dtypes and ranks >= 1");
  TIDAL_CHECK(out.device.kind == in.device.kind && out.device.index == in.device.index,
              shapes + ": different devices");
  TIDAL_CHECK(out.shape[0] == in.shape[0] * size_, shapes + ": out rows != size * in rows");
  for (int d = 1; d < in.rank; ++d) TIDAL_CHECK(out.shape[d] == in.shape[d], shapes);

  // MPI and NCCL forbid aliased buffers except the exact "own slot" case, which they name
  // MPI_IN_PLACE / in-place; detect it here so callers may gather into one buffer.
  // Compared as integers: relational operators on pointers into different objects are unspecified.
  const uintptr_t out_begin = reinterpret_cast<uintptr_t>(out.data);
  const uintptr_t in_begin = reinterpret_cast<uintptr_t>(in.data);
  const size_t in_bytes = in.nbytes();
  const bool in_place = in_bytes > 0 && in_begin == out_begin + size_t(rank_) * in_bytes;
  const bool overlap =
      in_bytes > 0 && in_begin < out_begin + out.nbytes() && out_begin < in_begin + in_bytes;
  TIDAL_CHECK(in_place || !overlap, shapes + ": in overlaps out other than at this rank's rows");
  do_all_gather(out, in, in_place, stream);
}

void Communicator::broadcast(TensorView buf, int root, Stream stream) {
  check_buffer(buf, "broadcast");
  TIDAL_CHECK(root >= 0 && root < size_, "broadcast: root " + std::to_string(root) +
                                             " outside [0, " + std::to_string(size_) + ")");
  do_broadcast(buf, root, stream);
}

void Communicator::send(TensorView in, int peer, Stream stream) {
  check_buffer(in, "send");
  TIDAL_CHECK(
      peer >= 0 && peer < size_ && peer != rank_,
      "send: peer " + std::to_string(peer) + " is not another rank of " + std::to_string(size_));
  do_send(in, peer, stream);
}

void Communicator::recv(TensorView out, int peer, Stream stream) {
  check_buffer(out, "recv");
  TIDAL_CHECK(
      peer >= 0 && peer < size_ && peer != rank_,
      "recv: peer " + std::to_string(peer) + " is not another rank of " + std::to_string(size_));
  do_recv(out, peer, stream);
}

void Communicator::barrier() { do_barrier(); }

std::unique_ptr<Communicator> Communicator::split(int color, int key) {
  TIDAL_CHECK(color >= 0, "split: color must be >= 0");
  std::unique_ptr<Communicator> group = do_split(color, key);
  TIDAL_CHECK(group != nullptr, "split: implementation returned no group");
  return group;
}

std::shared_ptr<void> Communicator::alloc_registered(size_t bytes) {
  TIDAL_CHECK(bytes > 0, "alloc_registered: zero bytes");
  return do_alloc_registered(bytes);
}

void SingleRankCommunicator::do_all_gather(TensorView out, TensorView in, bool in_place,
                                           Stream stream) {
  if (in_place || in.nbytes() == 0) return;
  copy_bytes(out.data, out.device, in.data, in.device, in.nbytes(), stream);
}

void SingleRankCommunicator::do_send(TensorView, int, Stream) {
  TIDAL_CHECK(false, "SingleRankCommunicator: send has no peer");  // the base check catches this
}

void SingleRankCommunicator::do_recv(TensorView, int, Stream) {
  TIDAL_CHECK(false, "SingleRankCommunicator: recv has no peer");
}

std::unique_ptr<Communicator> SingleRankCommunicator::do_split(int, int) {
  return std::make_unique<SingleRankCommunicator>();
}

Status make_parallel_groups(Communicator& world, const ParallelConfig& cfg, ParallelGroups* out) {
  TIDAL_RETURN_IF_ERROR(cfg.validate());
  if (cfg.world_size() != world.size()) {
    return invalid_argument("tp_size " + std::to_string(cfg.tp_size) + " x pp_size " +
                            std::to_string(cfg.pp_size) + " = " + std::to_string(cfg.world_size()) +
                            " ranks, but the world has " + std::to_string(world.size()));
  }
  const RankCoords me = coords_of(cfg, world.rank());
  // Color names the group, key orders it: the TP group of stage p is colored p and ranked by
  // tp_rank; the PP group of tensor slice t is colored t and ranked by pp_rank.
  ParallelGroups groups;
  groups.tp = world.split(/*color=*/me.pp_rank, /*key=*/me.tp_rank);
  groups.pp = world.split(/*color=*/me.tp_rank, /*key=*/me.pp_rank);
  TIDAL_CHECK(groups.tp->rank() == me.tp_rank && groups.tp->size() == cfg.tp_size &&
                  groups.pp->rank() == me.pp_rank && groups.pp->size() == cfg.pp_size,
              "make_parallel_groups: split did not produce topology.h's layout");
  *out = std::move(groups);
  return ok_status();
}

}  // namespace tidal::parallel
