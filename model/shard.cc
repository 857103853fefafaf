// SPDX-License-Identifier: Apache-2.0
#include "model/shard.h"

#include <string>

#include "runtime/check.h"

namespace tidal::model {

ModelConfig ModelShard::local(const ModelConfig& model) const {
  ModelConfig c = model;
  c.num_heads = heads.q_heads.size;
  c.num_kv_heads = heads.kv_heads.size;
  c.inter = inter.size;
  c.vocab = vocab.size;
  return c;
}

Status make_model_shard(const ModelConfig& model, const parallel::ParallelConfig& parallel,
                        parallel::RankCoords coords, ModelShard* out) {
  TIDAL_RETURN_IF_ERROR(parallel.validate());
  TIDAL_RETURN_IF_ERROR(model.validate());
  if (parallel.pp_size > model.num_layers) {
    return invalid_argument("pp " + std::to_string(parallel.pp_size) + " exceeds the model's " +
                            std::to_string(model.num_layers) + " layers");
  }
  TIDAL_CHECK(coords.tp_rank >= 0 && coords.tp_rank < parallel.tp_size && coords.pp_rank >= 0 &&
                  coords.pp_rank < parallel.pp_size,
              "make_model_shard: coordinates outside the job");
  ModelShard s;
  s.parallel = parallel;
  s.coords = coords;
  const parallel::LayerRange layers =
      parallel::stage_layers(model.num_layers, parallel.pp_size, coords.pp_rank);
  s.layer_begin = layers.begin;
  s.layer_end = layers.end;
  TIDAL_RETURN_IF_ERROR(parallel::head_shard(model.num_heads, model.num_kv_heads, parallel.tp_size,
                                             coords.tp_rank, &s.heads));
  TIDAL_RETURN_IF_ERROR(
      parallel::inter_shard(model.inter, parallel.tp_size, coords.tp_rank, &s.inter));
  s.vocab = parallel::vocab_shard(model.vocab, parallel.tp_size, coords.tp_rank);
  s.vocab_split = s.vocab.size < model.vocab;
  *out = s;
  return ok_status();
}

ModelShard whole_model(const ModelConfig& model) {
  ModelShard s;  // 1 x 1, coordinates 0
  s.layer_end = model.num_layers;
  s.heads.q_heads = parallel::Slice{0, model.num_heads};
  s.heads.kv_heads = parallel::Slice{0, model.num_kv_heads};
  s.inter = parallel::Slice{0, model.inter};
  s.vocab = parallel::Slice{0, model.vocab};
  return s;
}

}  // namespace tidal::model
