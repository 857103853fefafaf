// SPDX-License-Identifier: Apache-2.0
// Model shapes by name for the commands that run seeded random weights instead of a checkpoint
// (`tidal bench --preset`, `tidal serve --preset`): the presets of model/config.h plus `tiny`, a
// Llama-3-shaped model small enough for smoke runs on the CPU reference path.
#pragma once

#include <string>

#include "model/config.h"
#include "runtime/status.h"

namespace tidal::launch {

// The config of preset `name` (llama2-7b, llama3-8b, llama3.1-8b, llama-64l or tiny); an unknown
// name is an error listing the known ones.
Status launch_preset(const std::string& name, model::ModelConfig* out);

}  // namespace tidal::launch
