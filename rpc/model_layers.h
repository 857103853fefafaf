// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tidal::rpc {

// The model's own TidalDecode selection layers (its tidal_policy.json, written by `tidal
// calibrate`): a tidal request that sets neither sparse_start nor reselect_layers takes them.
// Unset (`found` false): the depth-scaled rule applies.
struct ModelLayers {
  bool found = false;
  int64_t sparse_start = 2;
  std::vector<int64_t> reselect_layers;
  std::string source;  // the file, for logs and GetModelInfo
};

}  // namespace tidal::rpc
