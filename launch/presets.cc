// SPDX-License-Identifier: Apache-2.0
#include "launch/presets.h"

#include <utility>

#include "runtime/check.h"

namespace tidal::launch {

Status launch_preset(const std::string& name, model::ModelConfig* out) {
  if (name != "tiny") {
    const Status st = model::model_config_preset(name, out);
    if (st.ok() || st.code() != StatusCode::kNotFound) return st;
    return not_found(st.message() + " (or tiny, a CPU smoke-test shape)");
  }
  model::ModelConfig c;
  TIDAL_CHECK(model::model_config_preset("llama3-8b", &c).ok(), "llama3-8b preset missing");
  c.name = "tiny";
  c.vocab = 4096;
  c.hidden = 256;
  c.inter = 768;
  c.num_layers = 4;
  c.num_heads = 8;
  c.num_kv_heads = 2;
  c.head_dim = 32;
  c.max_position_embeddings = 4096;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  *out = std::move(c);
  return ok_status();
}

}  // namespace tidal::launch
