// SPDX-License-Identifier: Apache-2.0
#include "model/weights.h"

#include <cmath>
#include <cstring>
#include <random>
#include <utility>

#include "runtime/tensor_access.h"

namespace tidal::model {
namespace {

// Carves every weight from `alloc` in a fixed order; run in count-only mode to size the arena.
void carve(const ModelConfig& c, BumpAllocator& alloc, LlamaWeights* w) {
  w->embed = alloc.allocate(DType::kF32, {c.vocab, c.hidden});
  w->layers.resize(size_t(c.num_layers));
  for (LayerWeights& l : w->layers) {
    l.input_norm = alloc.allocate(DType::kF32, {c.hidden});
    l.wq = alloc.allocate(DType::kF32, {c.q_dim(), c.hidden});
    l.wk = alloc.allocate(DType::kF32, {c.kv_dim(), c.hidden});
    l.wv = alloc.allocate(DType::kF32, {c.kv_dim(), c.hidden});
    l.wo = alloc.allocate(DType::kF32, {c.hidden, c.q_dim()});
    l.post_norm = alloc.allocate(DType::kF32, {c.hidden});
    l.w_gate = alloc.allocate(DType::kF32, {c.inter, c.hidden});
    l.w_up = alloc.allocate(DType::kF32, {c.inter, c.hidden});
    l.w_down = alloc.allocate(DType::kF32, {c.hidden, c.inter});
  }
  w->final_norm = alloc.allocate(DType::kF32, {c.hidden});
  w->lm_head = c.tie_word_embeddings ? w->embed : alloc.allocate(DType::kF32, {c.vocab, c.hidden});
}

Status allocate(const ModelConfig& config, LlamaWeights* out) {
  TIDAL_RETURN_IF_ERROR(config.validate());
  Arena arena;
  TIDAL_RETURN_IF_ERROR(Arena::create(llama_weight_bytes(config), "weights", Device{}, &arena));
  BumpAllocator alloc = arena.allocator();
  carve(config, alloc, out);
  out->arena = std::move(arena);
  return ok_status();
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// Copies checkpoint tensor `name` into `dst` (f32), checking presence, shape and dtype.
Status load_tensor(const SafetensorsCheckpoint& ckpt, const std::string& name, TensorView dst) {
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
  float* out = dst.data_as<float>();
  const int64_t n = dst.numel();
  if (t->dtype == DType::kF32) {
    std::memcpy(out, t->data, size_t(n) * 4);  // the mapping may be unaligned for float loads
    return ok_status();
  }
  for (int64_t i = 0; i < n; ++i) {
    uint16_t bits;
    std::memcpy(&bits, t->data + 2 * i, 2);
    out[i] = t->dtype == DType::kF16 ? f16_to_f32(f16{bits}) : bf16_to_f32(bf16{bits});
  }
  return ok_status();
}

void fill_normal(TensorView t, std::mt19937_64& rng, float stddev) {
  std::normal_distribution<float> dist(0.0f, stddev);
  float* p = t.data_as<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = dist(rng);
}

void fill_ones(TensorView t) {
  float* p = t.data_as<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = 1.0f;
}

}  // namespace

size_t llama_weight_bytes(const ModelConfig& config) {
  BumpAllocator plan = BumpAllocator::planner();
  LlamaWeights w;
  carve(config, plan, &w);
  return plan.used();
}

Status load_llama_weights(const ModelConfig& config, const SafetensorsCheckpoint& checkpoint,
                          LlamaWeights* out) {
  TIDAL_RETURN_IF_ERROR(allocate(config, out));
  TIDAL_RETURN_IF_ERROR(load_tensor(checkpoint, "model.embed_tokens.weight", out->embed));
  for (size_t i = 0; i < out->layers.size(); ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    const LayerWeights& l = out->layers[i];
    const std::pair<const char*, TensorView> tensors[] = {
        {"input_layernorm.weight", l.input_norm}, {"self_attn.q_proj.weight", l.wq},
        {"self_attn.k_proj.weight", l.wk},        {"self_attn.v_proj.weight", l.wv},
        {"self_attn.o_proj.weight", l.wo},        {"post_attention_layernorm.weight", l.post_norm},
        {"mlp.gate_proj.weight", l.w_gate},       {"mlp.up_proj.weight", l.w_up},
        {"mlp.down_proj.weight", l.w_down},
    };
    for (const auto& [name, view] : tensors) {
      TIDAL_RETURN_IF_ERROR(load_tensor(checkpoint, p + name, view));
    }
  }
  TIDAL_RETURN_IF_ERROR(load_tensor(checkpoint, "model.norm.weight", out->final_norm));
  if (!config.tie_word_embeddings) {
    TIDAL_RETURN_IF_ERROR(load_tensor(checkpoint, "lm_head.weight", out->lm_head));
  }
  return ok_status();
}

Status init_random_llama_weights(const ModelConfig& config, uint64_t seed, LlamaWeights* out) {
  TIDAL_RETURN_IF_ERROR(allocate(config, out));
  std::mt19937_64 rng(seed);
  // GPT-2 style init: 0.02, with the residual projections scaled by 1/sqrt(2 * num_layers).
  const float residual = 0.02f / std::sqrt(2.0f * float(config.num_layers));
  fill_normal(out->embed, rng, 0.02f);
  for (const LayerWeights& l : out->layers) {
    fill_ones(l.input_norm);
    fill_normal(l.wq, rng, 0.02f);
    fill_normal(l.wk, rng, 0.02f);
    fill_normal(l.wv, rng, 0.02f);
    fill_normal(l.wo, rng, residual);
    fill_ones(l.post_norm);
    fill_normal(l.w_gate, rng, 0.02f);
    fill_normal(l.w_up, rng, 0.02f);
    fill_normal(l.w_down, rng, residual);
  }
  fill_ones(out->final_norm);
  if (!config.tie_word_embeddings) fill_normal(out->lm_head, rng, 0.02f);
  return ok_status();
}

}  // namespace tidal::model
