// SPDX-License-Identifier: Apache-2.0
// Llama weights in one host arena (f32 on the CPU reference path): loaded from a safetensors
// checkpoint with every tensor's presence, shape and dtype checked against the ModelConfig, or
// generated deterministically for random-weight runs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/safetensors.h"
#include "runtime/arena.h"
#include "runtime/status.h"
#include "runtime/tensor.h"

namespace tidal::model {

struct LayerWeights {
  TensorView input_norm;  // [hidden]
  TensorView wq;          // [num_heads * head_dim, hidden]
  TensorView wk;          // [num_kv_heads * head_dim, hidden]
  TensorView wv;          // [num_kv_heads * head_dim, hidden]
  TensorView wo;          // [hidden, num_heads * head_dim]
  TensorView post_norm;   // [hidden]
  TensorView w_gate;      // [inter, hidden]
  TensorView w_up;        // [inter, hidden]
  TensorView w_down;      // [hidden, inter]
};

struct LlamaWeights {
  TensorView embed;  // [vocab, hidden]
  std::vector<LayerWeights> layers;
  TensorView final_norm;  // [hidden]
  TensorView lm_head;     // [vocab, hidden]; the embedding itself when tied
  Arena arena;        // owns everything above

  size_t bytes() const { return arena.bytes(); }
};

// Loads every tensor the config needs (HF names: model.embed_tokens.weight,
// model.layers.N.self_attn.q_proj.weight, ...; lm_head.weight unless tied) from the checkpoint,
// converting F32/F16/BF16 to f32. Errors name the tensor: missing, wrong shape, wrong dtype.
Status load_llama_weights(const ModelConfig& config, const SafetensorsCheckpoint& checkpoint,
                          LlamaWeights* out);

// Deterministic random weights (seeded): normal(0, 0.02) matrices scaled like a trained model,
// unit norms. For presets, benchmarks and the embedded stand-in model.
Status init_random_llama_weights(const ModelConfig& config, uint64_t seed, LlamaWeights* out);

// Bytes the f32 weight arena of `config` takes (a count-only pass of the same carving code).
size_t llama_weight_bytes(const ModelConfig& config);

}  // namespace tidal::model
