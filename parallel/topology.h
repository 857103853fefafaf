// SPDX-License-Identifier: Apache-2.0
// TP/PP rank arithmetic (DESIGN.md §6): tensor-parallel groups are contiguous ranks, pipeline
// groups strided, as TensorRT-LLM's mapping. rank = pp_rank * tp_size + tp_rank.
#pragma once

#include <cstdint>
#include <string>

#include "runtime/status.h"

namespace tidal::parallel {

struct ParallelConfig {
  int tp_size = 1;  // ranks that split heads / FFN columns; Default: 1
  int pp_size = 1;  // pipeline stages (contiguous layer ranges); Default: 1

  int world_size() const { return tp_size * pp_size; }
  Status validate() const {
    if (tp_size < 1 || pp_size < 1) {
      return invalid_argument("tp_size and pp_size must be >= 1 (got tp " +
                              std::to_string(tp_size) + ", pp " + std::to_string(pp_size) + ")");
    }
    return ok_status();
  }
};

struct RankCoords {
  int tp_rank = 0;
  int pp_rank = 0;
};

inline RankCoords coords_of(const ParallelConfig& cfg, int rank) {
  return RankCoords{rank % cfg.tp_size, rank / cfg.tp_size};
}

inline int rank_of(const ParallelConfig& cfg, RankCoords c) {
  return c.pp_rank * cfg.tp_size + c.tp_rank;
}

// Layers [begin, end) owned by pipeline stage `pp_rank`: contiguous, sizes differing by at most
// one, earlier stages taking the extra layers.
struct LayerRange {
  int64_t begin = 0;
  int64_t end = 0;
};

inline LayerRange stage_layers(int64_t num_layers, int pp_size, int pp_rank) {
  const int64_t base = num_layers / pp_size, extra = num_layers % pp_size;
  const int64_t begin = pp_rank * base + (pp_rank < extra ? pp_rank : extra);
  return LayerRange{begin, begin + base + (pp_rank < extra ? 1 : 0)};
}

}  // namespace tidal::parallel
