// SPDX-License-Identifier: Apache-2.0
#include "model/weights.h"

#include <cmath>
#include <cstring>
#include <utility>

#include "kernels/counter_rng.h"
#include "kernels/fill_random.h"
#include "runtime/device.h"
#include "runtime/tensor_access.h"

namespace tidal::model {
namespace {

// Carves every weight from `alloc` in a fixed order; run in count-only mode to size the arena.
void carve(const ModelConfig& c, DType dt, BumpAllocator& alloc, LlamaWeights* w) {
  w->embed = alloc.allocate(dt, {c.vocab, c.hidden});
  w->layers.resize(size_t(c.num_layers));
  for (LayerWeights& l : w->layers) {
    l.input_norm = alloc.allocate(dt, {c.hidden});
    l.wq = alloc.allocate(dt, {c.q_dim(), c.hidden});
    l.wk = alloc.allocate(dt, {c.kv_dim(), c.hidden});
    l.wv = alloc.allocate(dt, {c.kv_dim(), c.hidden});
    l.wo = alloc.allocate(dt, {c.hidden, c.q_dim()});
    l.post_norm = alloc.allocate(dt, {c.hidden});
    l.w_gate_up = alloc.allocate(dt, {2 * c.inter, c.hidden});
    l.w_down = alloc.allocate(dt, {c.hidden, c.inter});
  }
  w->final_norm = alloc.allocate(dt, {c.hidden});
  w->lm_head = c.tie_word_embeddings ? w->embed : alloc.allocate(dt, {c.vocab, c.hidden});
}

Status allocate(const ModelConfig& config, const WeightPlacement& placement, LlamaWeights* out) {
  TIDAL_RETURN_IF_ERROR(config.validate());
  if (placement.dtype != DType::kF32 && placement.dtype != DType::kF16 &&
      placement.dtype != DType::kBF16) {
    return invalid_argument(std::string("weights must be f32, f16 or bf16, not ") +
                            dtype_name(placement.dtype));
  }
  Arena arena;
  TIDAL_RETURN_IF_ERROR(Arena::create(llama_weight_bytes(config, placement.dtype), "weights",
                                      placement.device, &arena));
  BumpAllocator alloc = arena.allocator();
  carve(config, placement.dtype, alloc, out);
  out->arena = std::move(arena);
  return ok_status();
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// Copies checkpoint tensor `name` into `dst` (any float dtype, any device), checking presence,
// shape and dtype. `staging` is reused host memory for the conversion.
Status load_tensor(const SafetensorsCheckpoint& ckpt, const std::string& name, TensorView dst,
                   std::vector<uint8_t>* staging) {
  const SafetensorsTensor* t = ckpt.find(name);
  if (t == nullptr) return not_found("checkpoint has no tensor '" + name + "'");
  const std::vector<int64_t> want(dst.shape, dst.shape + dst.rank);
  if (t->shape != want) {
    return invalid_argument("tensor '" + name + "' has shape " + shape_string(t->shape) +
                            ", the config needs " + shape_string(want));
  }
  if (t->dtype != DType::kF32 && t->dtype != DType::kF16 && t->dtype != DType::kBF16) {
    return invalid_argument("tensor '" + name + "' has dtype " + dtype_name(t->dtype) +
                            "; weights must be F32, F16 or BF16");
  }
  const int64_t n = dst.numel();
  staging->resize(dst.nbytes());
  if (t->dtype == dst.dtype) {
    std::memcpy(staging->data(), t->data, dst.nbytes());  // the mapping may be unaligned
  } else {
    const size_t in_size = dtype_size(t->dtype);
    for (int64_t i = 0; i < n; ++i) {
      alignas(4) uint8_t raw[4];
      std::memcpy(raw, t->data + in_size * size_t(i), in_size);
      store_f32(staging->data(), dst.dtype, i, load_f32(raw, t->dtype, 0));
    }
  }
  copy_bytes(dst.data, dst.device, staging->data(), Device{}, dst.nbytes(), Stream{});
  stream_synchronize(Stream{});  // the staging buffer is reused by the next tensor
  return ok_status();
}

}  // namespace

size_t llama_weight_bytes(const ModelConfig& config, DType dtype) {
  BumpAllocator plan = BumpAllocator::planner();
  LlamaWeights w;
  carve(config, dtype, plan, &w);
  return plan.used();
}

Status load_llama_weights(const ModelConfig& config, const SafetensorsCheckpoint& checkpoint,
                          LlamaWeights* out, const WeightPlacement& placement) {
  TIDAL_RETURN_IF_ERROR(allocate(config, placement, out));
  std::vector<uint8_t> staging;
  auto load = [&](const std::string& name, TensorView dst) {
    return load_tensor(checkpoint, name, dst, &staging);
  };
  TIDAL_RETURN_IF_ERROR(load("model.embed_tokens.weight", out->embed));
  for (size_t i = 0; i < out->layers.size(); ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    const LayerWeights& l = out->layers[i];
    const std::pair<const char*, TensorView> tensors[] = {
        {"input_layernorm.weight", l.input_norm}, {"self_attn.q_proj.weight", l.wq},
        {"self_attn.k_proj.weight", l.wk},        {"self_attn.v_proj.weight", l.wv},
        {"self_attn.o_proj.weight", l.wo},        {"post_attention_layernorm.weight", l.post_norm},
        {"mlp.gate_proj.weight", l.w_gate()},     {"mlp.up_proj.weight", l.w_up()},
        {"mlp.down_proj.weight", l.w_down},
    };
    for (const auto& [name, view] : tensors) TIDAL_RETURN_IF_ERROR(load(p + name, view));
  }
  TIDAL_RETURN_IF_ERROR(load("model.norm.weight", out->final_norm));
  if (!config.tie_word_embeddings) TIDAL_RETURN_IF_ERROR(load("lm_head.weight", out->lm_head));
  return ok_status();
}

Status init_random_llama_weights(const ModelConfig& config, uint64_t seed, LlamaWeights* out,
                                 const WeightPlacement& placement) {
  TIDAL_RETURN_IF_ERROR(allocate(config, placement, out));
  // GPT-2 style init: 0.02, with the residual projections scaled by 1/sqrt(2 * num_layers).
  // Every tensor draws from its own stream (seed + its index), so the values do not depend on
  // the device or the order of the fills.
  const float residual = 0.02f / std::sqrt(2.0f * float(config.num_layers));
  uint64_t stream_id = 0;
  auto normal = [&](TensorView t, float stddev) {
    kernels::fill_random(t, kernels::random_bits(seed, stream_id++), 0.0f, stddev, Stream{});
  };
  auto ones = [&](TensorView t) { kernels::fill_random(t, 0, 1.0f, 0.0f, Stream{}); };
  normal(out->embed, 0.02f);
  for (const LayerWeights& l : out->layers) {
    ones(l.input_norm);
    normal(l.wq, 0.02f);
    normal(l.wk, 0.02f);
    normal(l.wv, 0.02f);
    normal(l.wo, residual);
    ones(l.post_norm);
    normal(l.w_gate_up, 0.02f);
    normal(l.w_down, residual);
  }
  ones(out->final_norm);
  if (!config.tie_word_embeddings) normal(out->lm_head, 0.02f);
  stream_synchronize(Stream{});
  return ok_status();
}

}  // namespace tidal::model
