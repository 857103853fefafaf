// SPDX-License-Identifier: Apache-2.0
#include "launch/presets.h"

#include <algorithm>
#include <string>
#include <utility>

#include "launch/flag_names.h"
#include "model/shard.h"
#include "model/weights.h"
#include "runtime/engine/distributed.h"

namespace tidal::launch {
namespace {

// Every rank draws its shard of one model: all must hold rank 0's seed. Collective over world.
Status same_seed(parallel::Communicator& world, uint64_t seed) {
  int64_t first = 0, theirs = 0;
  const int r = engine::rank_differing_from_rank0(world, int64_t(seed), &first, &theirs);
  if (r < 0) return ok_status();
  return invalid_argument("ranks differ in the weights' seed: rank 0 has " +
                          std::to_string(uint64_t(first)) + ", rank " + std::to_string(r) +
                          " has " + std::to_string(uint64_t(theirs)) +
                          "; every rank must be given the same model and settings");
}

}  // namespace

Status launch_preset(const std::string& name, model::ModelConfig* out) {
  if (name != "tiny") {
    const Status st = model::model_config_preset(name, out);
    if (st.ok() || st.code() != StatusCode::kNotFound) return st;
    return not_found(st.message() + " (or tiny, a CPU smoke-test shape)");
  }
  *out = model::tiny_smoke_config();
  return ok_status();
}

Status create_random_engine(const model::ModelConfig& c, uint64_t seed,
                            const engine::EngineConfig& config,
                            std::unique_ptr<engine::Engine>* out) {
  // The plan must fit before the weights are made; a rank whose shard does not fit stops them
  // all (its outcome is agreed with the others' before anything else is collective).
  const engine::Distributed* dist = config.distributed;
  if (dist != nullptr) TIDAL_RETURN_IF_ERROR(same_seed(*dist->world, seed));  // alike on all
  model::ModelShard shard = model::whole_model(c);
  Status made = engine::check_fits(c, config).with_context(c.name);
  if (made.ok() && dist != nullptr) {
    made = model::make_model_shard(c, dist->parallel, dist->coords(), &shard);
  }
  model::LlamaWeights w;
  model::WeightPlacement placement;
  placement.dtype = config.dtype;
  placement.device = config.device;
  placement.shard = &shard;
  if (made.ok()) made = model::init_random_llama_weights(c, seed, &w, placement);
  if (dist != nullptr) made = engine::agree_status(*dist->world, made);
  TIDAL_RETURN_IF_ERROR(made);
  return engine::Engine::create(c, std::move(w), config, out);  // agrees on its own failures
}

Status create_preset_engine(const std::string& name, uint64_t seed,
                            const engine::EngineConfig& config,
                            std::unique_ptr<engine::Engine>* out) {
  model::ModelConfig c;
  Status named = launch_preset(name, &c).with_context("--preset");
  // A rank given another name (mpirun's A : B) fails here alone: agreed before any collective.
  if (config.distributed != nullptr)
    named = engine::agree_status(*config.distributed->world, named);
  TIDAL_RETURN_IF_ERROR(named);
  c.max_position_embeddings = std::max(c.max_position_embeddings, config.max_context);
  return name_flags(create_random_engine(c, seed, config, out));
}

}  // namespace tidal::launch
