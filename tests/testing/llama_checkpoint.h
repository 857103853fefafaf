// SPDX-License-Identifier: Apache-2.0
// A Llama model's weights as the F32 safetensors entries of an HF checkpoint (tests that write a
// checkpoint and load it back: the loader, sharded loading).
#pragma once

#include <string>
#include <vector>

#include "model/config.h"
#include "model/weights.h"
#include "tests/testing/safetensors_writer.h"

namespace tidal::testing {

// Every tensor of `c` under its HF name, from the f32 host weights `w`; lm_head only when the
// embeddings are not tied.
inline std::vector<TestTensor> llama_tensors(const model::ModelConfig& c,
                                             const model::LlamaWeights& w) {
  std::vector<TestTensor> out;
  auto add = [&](const std::string& name, TensorView v) {
    std::vector<float> data(v.data_as<float>(), v.data_as<float>() + v.numel());
    out.push_back({name, "F32", std::vector<int64_t>(v.shape, v.shape + v.rank), bytes_of(data)});
  };
  add("model.embed_tokens.weight", w.embed);
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    const model::LayerWeights& lw = w.layers[size_t(l)];
    add(p + "input_layernorm.weight", lw.input_norm);
    add(p + "self_attn.q_proj.weight", lw.wq);
    add(p + "self_attn.k_proj.weight", lw.wk);
    add(p + "self_attn.v_proj.weight", lw.wv);
    add(p + "self_attn.o_proj.weight", lw.wo);
    add(p + "post_attention_layernorm.weight", lw.post_norm);
    add(p + "mlp.gate_proj.weight", lw.w_gate());
    add(p + "mlp.up_proj.weight", lw.w_up());
    add(p + "mlp.down_proj.weight", lw.w_down);
  }
  add("model.norm.weight", w.final_norm);
  if (!c.tie_word_embeddings) add("lm_head.weight", w.lm_head);
  return out;
}

}  // namespace tidal::testing
