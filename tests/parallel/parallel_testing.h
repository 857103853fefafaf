// SPDX-License-Identifier: Apache-2.0
// Helpers for the engine tests under mpirun: the communicators of a tp x pp layout over
// MPI_COMM_WORLD, a small random GQA checkpoint with head_dim 128 written to disk (so every rank
// loads its shard of the same weights), and traces flattened for comparison across ranks.
// Generation through generate(): tests/testing/generation.h.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/attention_policy.h"
#include "model/llama.h"
#include "parallel/mpi_communicator.h"
#include "runtime/engine/engine.h"
#include "tests/testing/generation.h"

namespace tidal::testing {

// The communicators of one layout, and the Distributed the engines take.
struct ParallelLayout {
  std::unique_ptr<parallel::MpiCommunicator> world;
  parallel::ParallelGroups groups;
  engine::Distributed dist;

  // Collective over MPI_COMM_WORLD. Requires tp * pp == its size.
  ParallelLayout(int tp, int pp);
  int rank() const { return world->rank(); }
  std::string name() const;
};

// The layouts the world size allows, among tp 2, pp 2, tp 2 x pp 2, tp 4, pp 4, tp 8, tp 4 x pp 2,
// tp 2 x pp 4.
std::vector<std::pair<int, int>> layouts_for_world(int world_size);

// Writes (once per rank, identical bytes on every rank) a 4-layer random Llama with `heads` query
// heads over `kv` KV heads, head_dim 128, hidden 256, untied LM head, 512 positions; q/k scaled up
// so attention is sharp and sparse attention differs from dense. Returns its directory.
std::string write_gqa128_model(int rank, int64_t heads = 4, int64_t kv = 2);

// A trace as integers: per entry position, layer, role, list count, then each list's length and
// positions.
std::vector<int32_t> flatten(const std::vector<model::LayerTrace>& trace);
// Every rank's flattened vector, on every rank.
std::vector<std::vector<int32_t>> all_gather_vectors(parallel::MpiCommunicator& world,
                                                     const std::vector<int32_t>& mine);

model::AttentionPolicy tidal_policy(int64_t budget, model::Granularity g,
                                    model::Agreement a = model::Agreement::kApprox);
model::AttentionPolicy quest_policy(int64_t budget);

}  // namespace tidal::testing
