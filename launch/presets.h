// SPDX-License-Identifier: Apache-2.0
// Model shapes by name for the commands that run seeded random weights instead of a checkpoint
// (`tidal bench --preset`, `tidal serve --preset`, `tidal generate --preset`): the presets of
// model/config.h plus `tiny`, a Llama-3-shaped model small enough for smoke runs on the CPU
// reference path.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "model/config.h"
#include "runtime/engine/engine.h"
#include "runtime/status.h"

namespace tidal::launch {

// The config of preset `name` (llama2-7b, llama3-8b, llama3.1-8b, llama-64l or tiny); an unknown
// name is an error listing the known ones.
Status launch_preset(const std::string& name, model::ModelConfig* out);

// An engine over `c` (a preset's shape) with random weights drawn from `seed`: the plan is
// checked before any weight is made. Under config.distributed (collective: every rank calls it)
// each rank draws its shard of the same whole draw (ranks given different seeds are refused),
// and a rank's failure (not fitting included) fails all. Errors name engine settings (max_context, kv_capacity, ...), not flags.
Status create_random_engine(const model::ModelConfig& c, uint64_t seed,
                            const engine::EngineConfig& config,
                            std::unique_ptr<engine::Engine>* out);

// An engine over preset `name` with random weights drawn from `seed` (create_random_engine, its
// errors naming the flags). Positions past the preset's trained context only extrapolate RoPE,
// so config.max_context may ask for more. Under config.distributed every tp x pp layout runs one
// rank's model, and every failure is agreed over the ranks (an unknown name on one rank too).
Status create_preset_engine(const std::string& name, uint64_t seed,
                            const engine::EngineConfig& config,
                            std::unique_ptr<engine::Engine>* out);

}  // namespace tidal::launch
