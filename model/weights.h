// SPDX-License-Identifier: Apache-2.0
// Llama weights in one arena on one device (f32 on the CPU reference path, bf16 on a GPU by
// default): loaded from a safetensors checkpoint with every tensor's presence, shape and dtype
// checked against the ModelConfig, or generated deterministically for random-weight runs. The
// q, k and v projections are stored as one [q_dim + 2 * kv_dim, hidden] matrix, and the gate and
// up projections as one [2 * inter, hidden] matrix, so each decode GEMV streams them in one pass.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/safetensors.h"
#include "model/shard.h"
#include "runtime/arena.h"
#include "runtime/status.h"
#include "runtime/tensor.h"

namespace tidal::model {

struct LayerWeights {
  TensorView input_norm;  // [hidden]
  TensorView w_qkv;       // [q_dim + 2 * kv_dim, hidden]: q_proj rows, then k_proj, then v_proj
  TensorView wq;          // [num_heads * head_dim, hidden]: rows of w_qkv
  TensorView wk;          // [num_kv_heads * head_dim, hidden]: rows of w_qkv
  TensorView wv;          // [num_kv_heads * head_dim, hidden]: rows of w_qkv
  TensorView wo;          // [hidden, num_heads * head_dim]
  TensorView post_norm;   // [hidden]
  TensorView w_gate_up;   // [2 * inter, hidden]: gate_proj rows, then up_proj rows
  TensorView w_down;      // [hidden, inter]

  TensorView w_gate() const { return w_gate_up.slice(0, w_gate_up.size(0) / 2); }
  TensorView w_up() const { return w_gate_up.slice(w_gate_up.size(0) / 2, w_gate_up.size(0)); }
};

// Under a ModelShard the shapes are the local config's (ModelShard::local) and only the shard's
// parts exist: the embedding on the first stage, the layers of the stage (the others' views
// empty), the final norm and LM head on the last stage.
struct LlamaWeights {
  TensorView embed;  // [vocab, hidden]
  std::vector<LayerWeights> layers;
  TensorView final_norm;  // [hidden]
  TensorView lm_head;     // [vocab, hidden]; the embedding itself when tied (and on one stage)
  Arena arena;            // owns everything above

  size_t bytes() const { return arena.bytes(); }
};

// Where weights live and in which dtype. Default: f32 on the CPU (the reference path).
struct WeightPlacement {
  DType dtype = DType::kF32;  // f32, f16 or bf16
  Device device;              // the arena's device
  // The part of the model this rank holds (tensor / pipeline parallel): only its slices are read
  // from the checkpoint. Default: null, the whole model.
  const ModelShard* shard = nullptr;
};

// Loads every tensor the config needs (HF names: model.embed_tokens.weight,
// model.layers.N.self_attn.q_proj.weight, ...; lm_head.weight unless tied) from the checkpoint,
// converting F32/F16/BF16 to the placement's dtype. Under a shard, reads only the shard's rows
// and columns (parallel/sharding.h) from the mapped files. Errors name the tensor: missing,
// wrong shape, wrong dtype.
Status load_llama_weights(const ModelConfig& config, const SafetensorsCheckpoint& checkpoint,
                          LlamaWeights* out, const WeightPlacement& placement = {});

// Deterministic random weights (kernels::fill_random, on the placement's device: a GPU makes 16
// GB in well under a second): normal(0, 0.02) matrices, the residual projections (o_proj,
// down_proj) scaled by 1 / sqrt(2 * num_layers), unit norms. For presets and benchmarks. Under
// a shard each rank holds its part of the whole model's draw (the whole tensor is drawn into
// scratch on the placement's device, then the part copied), so every tp x pp layout of a seed
// is the same model as one rank's.
Status init_random_llama_weights(const ModelConfig& config, uint64_t seed, LlamaWeights* out,
                                 const WeightPlacement& placement = {});

// Bytes the weight arena of `config` (of `shard` of it, when given) takes in `dtype` (a count-only
// pass of the carving code).
size_t llama_weight_bytes(const ModelConfig& config, DType dtype,
                          const ModelShard* shard = nullptr);

}  // namespace tidal::model
