// SPDX-License-Identifier: Apache-2.0
// Which part of a Llama model one rank of a tensor x pipeline parallel job holds (DESIGN.md §6):
// its pipeline stage's layers, and within them its tensor-parallel slices (parallel/sharding.h):
// query and KV heads, FFN columns, vocabulary rows. The forward of a shard runs on the "local"
// config, whose head, FFN and vocabulary counts are the shard's (layer indices stay the model's).
#pragma once

#include <cstdint>

#include "model/config.h"
#include "parallel/sharding.h"
#include "parallel/topology.h"
#include "runtime/status.h"

namespace tidal::model {

struct ModelShard {
  parallel::ParallelConfig parallel;  // tp x pp; Default: 1 x 1, the whole model
  parallel::RankCoords coords;        // this rank's place in it
  int64_t layer_begin = 0;            // this stage's layers [layer_begin, layer_end)
  int64_t layer_end = 0;
  parallel::HeadShard heads;  // query heads, KV heads (split or replicated)
  parallel::Slice inter;      // FFN columns
  parallel::Slice vocab;      // rows of the embedding and the LM head
  bool vocab_split = false;   // vocab is a proper part (false: replicated, tp does not divide it)

  bool first_stage() const { return coords.pp_rank == 0; }
  bool last_stage() const { return coords.pp_rank == parallel.pp_size - 1; }
  bool holds_layer(int64_t layer) const { return layer >= layer_begin && layer < layer_end; }
  int tp_size() const { return parallel.tp_size; }
  // The config this rank's forward runs: num_heads, num_kv_heads, inter and vocab are the
  // shard's counts; everything else (hidden, head_dim, num_layers, ...) the model's.
  ModelConfig local(const ModelConfig& model) const;
};

// The shard of `coords` under `parallel`. Errors (invalid_argument, naming the sizes): tp does
// not divide the query heads or the FFN width, KV heads and tp divide neither way, or there are
// more stages than layers.
Status make_model_shard(const ModelConfig& model, const parallel::ParallelConfig& parallel,
                        parallel::RankCoords coords, ModelShard* out);

// The whole model on one rank.
ModelShard whole_model(const ModelConfig& model);

}  // namespace tidal::model
