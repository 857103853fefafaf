// SPDX-License-Identifier: Apache-2.0
#include "launch/presets.h"

namespace tidal::launch {

Status launch_preset(const std::string& name, model::ModelConfig* out) {
  if (name != "tiny") {
    const Status st = model::model_config_preset(name, out);
    if (st.ok() || st.code() != StatusCode::kNotFound) return st;
    return not_found(st.message() + " (or tiny, a CPU smoke-test shape)");
  }
  *out = model::tiny_smoke_config();
  return ok_status();
}

}  // namespace tidal::launch
