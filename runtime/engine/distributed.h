// SPDX-License-Identifier: Apache-2.0
// One rank of a tensor x pipeline parallel job (DESIGN.md §3, §6): its communicators, and the
// control plane between rank 0, which runs the engine's host side (sequences, pages, step plans),
// and every other rank, which serves the steps rank 0 broadcasts. Rank 0 broadcasts one buffer
// per step: a command header followed by the step plan's bytes.
#pragma once

#include <cstdint>
#include <string>

#include "parallel/communicator.h"
#include "parallel/topology.h"
#include "runtime/status.h"

namespace tidal::engine {

// Made by whoever starts the ranks (launch/, tests) and outliving every engine that uses it.
struct Distributed {
  parallel::ParallelConfig parallel;        // tp x pp; its world size is world->size()
  parallel::Communicator* world = nullptr;  // control plane, host buffers (MPI)
  // Data plane, buffers on the engine's device (NCCL on GPUs, MPI on the CPU path); the groups
  // of parallel::make_parallel_groups.
  parallel::Communicator* tp = nullptr;
  parallel::Communicator* pp = nullptr;

  int rank() const { return world->rank(); }
  parallel::RankCoords coords() const { return parallel::coords_of(parallel, rank()); }
  Status validate() const;
};

// Collective over `world`: every rank passes its own outcome and all return the same one: ok when
// every rank's is, else the lowest failing rank's error, as "rank R: <message>" (with the number
// of other failing ranks). So a rank that fails to load makes every rank stop, with the cause,
// its message whole.
Status agree_status(parallel::Communicator& world, const Status& mine);

// Collective over `world`: every rank passes its own value of something all ranks must share and
// all get the same answer: the lowest rank whose value differs from rank 0's, or -1 when none
// does; then *rank0 and *theirs (when not null) hold the two values, for the caller's message.
int rank_differing_from_rank0(parallel::Communicator& world, int64_t mine, int64_t* rank0,
                              int64_t* theirs);
// ... of a text (a flag's list, whole).
int rank_differing_from_rank0(parallel::Communicator& world, const std::string& mine,
                              std::string* rank0, std::string* theirs);

// What rank 0 asks of the others with each broadcast.
enum class Command : int32_t {
  kStep = 1,           // run the step plan that follows
  kRandomKv = 2,       // fill the plan's prefill positions with random K/V (benchmarks)
  kStats = 3,          // sum the position-persistence counters over the ranks
  kResetCounters = 4,  // zero one sequence row's counters (a new sequence took the row)
  kShutdown = 5,       // leave Engine::serve
};

// The head of every control broadcast (kCommandBytes, the plan follows).
struct CommandHeader {
  int32_t command = 0;
  int32_t logit_rows = 0;  // kStep: logit rows whose values rank 0 wants back
  // kStep: micro-batches, whether graphs may replay (rank 0's verdict); kRandomKv: seed, length;
  // kResetCounters: row.
  int64_t args[3] = {};
};
constexpr size_t kCommandBytes = 64;
static_assert(sizeof(CommandHeader) <= kCommandBytes, "command header too large");

}  // namespace tidal::engine
