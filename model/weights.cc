// SPDX-License-Identifier: Apache-2.0
#include "model/weights.h"

#include <cmath>
#include <cstring>
#include <set>
#include <utility>

#include "kernels/counter_rng.h"
#include "kernels/fill_random.h"
#include "runtime/device.h"
#include "runtime/tensor_access.h"

namespace tidal::model {
namespace {

// Carves every weight of `shard` (null: the whole model) from `alloc` in a fixed order; run in
// count-only mode to size the arena. Shapes are the shard's local ones.
void carve(const ModelConfig& model, DType dt, const ModelShard* shard, BumpAllocator& alloc,
           LlamaWeights* w) {
  const ModelShard s = shard != nullptr ? *shard : whole_model(model);
  const ModelConfig c = s.local(model);
  if (s.first_stage()) w->embed = alloc.allocate(dt, {c.vocab, c.hidden});
  w->layers.assign(size_t(c.num_layers), LayerWeights());
  for (int64_t i = s.layer_begin; i < s.layer_end; ++i) {
    LayerWeights& l = w->layers[size_t(i)];
    l.input_norm = alloc.allocate(dt, {c.hidden});
    // One matrix for the three projections (one decode GEMV); each is a block of its rows. Under
    // tensor parallelism the blocks are this rank's head slices (q, k, v loaded separately).
    l.w_qkv = alloc.allocate(dt, {c.q_dim() + 2 * c.kv_dim(), c.hidden});
    auto rows = [&](int64_t begin, int64_t end) {  // a planning pass has no data to offset
      return l.w_qkv.data != nullptr
                 ? l.w_qkv.slice(begin, end)
                 : make_view(nullptr, dt, {end - begin, c.hidden}, l.w_qkv.device);
    };
    l.wq = rows(0, c.q_dim());
    l.wk = rows(c.q_dim(), c.q_dim() + c.kv_dim());
    l.wv = rows(c.q_dim() + c.kv_dim(), c.q_dim() + 2 * c.kv_dim());
    l.wo = alloc.allocate(dt, {c.hidden, c.q_dim()});
    l.post_norm = alloc.allocate(dt, {c.hidden});
    l.w_gate_up = alloc.allocate(dt, {2 * c.inter, c.hidden});
    l.w_down = alloc.allocate(dt, {c.hidden, c.inter});
  }
  if (!s.last_stage()) return;
  w->final_norm = alloc.allocate(dt, {c.hidden});
  // Tied: the LM head is the embedding, shared when one stage holds both.
  w->lm_head =
      c.tie_word_embeddings && s.first_stage() ? w->embed : alloc.allocate(dt, {c.vocab, c.hidden});
}

Status allocate(const ModelConfig& config, const WeightPlacement& placement, LlamaWeights* out) {
  TIDAL_RETURN_IF_ERROR(config.validate());
  if (placement.dtype != DType::kF32 && placement.dtype != DType::kF16 &&
      placement.dtype != DType::kBF16) {
    return invalid_argument(std::string("weights must be f32, f16 or bf16, not ") +
                            dtype_name(placement.dtype));
  }
  Arena arena;
  TIDAL_RETURN_IF_ERROR(Arena::create(llama_weight_bytes(config, placement.dtype, placement.shard),
                                      "weights", placement.device, &arena));
  BumpAllocator alloc = arena.allocator();
  carve(config, placement.dtype, placement.shard, alloc, out);
  out->arena = std::move(arena);
  return ok_status();
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// Which part of a checkpoint tensor a weight holds: rows or columns [begin, begin + count) of
// dimension `dim` (count: the weight's size there); dim -1: all of it.
struct Part {
  int dim = -1;
  int64_t begin = 0;
};

// Where `part` of a tensor of shape `full` lies, for a weight `dst` of its size: `rows` runs of
// `cols` contiguous elements, `stride` apart, the first at element `first` of the whole tensor.
struct PartRuns {
  int64_t rows, cols, stride, first;
};

PartRuns part_runs(TensorView dst, const std::vector<int64_t>& full, Part part) {
  if (part.dim == 1) return {dst.size(0), dst.size(1), full[1], part.begin};
  const int64_t first = part.dim == 0 ? part.begin * (dst.rank > 1 ? dst.size(1) : 1) : 0;
  return {1, dst.numel(), 0, first};
}

// Copies `part` of checkpoint tensor `name` (of shape `full`) into `dst` (any float dtype, any
// device), checking presence, shape and dtype. `staging` is reused host memory for the
// conversion. Only the part's bytes of the mapping are read.
Status load_tensor(const SafetensorsCheckpoint& ckpt, const std::string& name, TensorView dst,
                   const std::vector<int64_t>& full, Part part, std::vector<uint8_t>* staging) {
  const SafetensorsTensor* t = ckpt.find(name);
  if (t == nullptr) return not_found("checkpoint has no tensor '" + name + "'");
  if (t->shape != full) {
    return invalid_argument(t->file + ": tensor '" + name + "' has shape " +
                            shape_string(t->shape) + ", the config needs " + shape_string(full));
  }
  if (t->dtype != DType::kF32 && t->dtype != DType::kF16 && t->dtype != DType::kBF16) {
    return invalid_argument(t->file + ": tensor '" + name + "' has dtype " + dtype_name(t->dtype) +
                            "; weights must be F32, F16 or BF16");
  }
  const auto [rows, cols, src_stride, first] = part_runs(dst, full, part);
  staging->resize(dst.nbytes());
  const size_t in_size = dtype_size(t->dtype), out_size = dtype_size(dst.dtype);
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* src = t->data + in_size * size_t(first + r * src_stride);
    uint8_t* out = staging->data() + out_size * size_t(r * cols);
    if (t->dtype == dst.dtype) {
      std::memcpy(out, src, size_t(cols) * out_size);  // the mapping may be unaligned
      continue;
    }
    for (int64_t i = 0; i < cols; ++i) {
      alignas(4) uint8_t raw[4];
      std::memcpy(raw, src + in_size * size_t(i), in_size);
      store_f32(out, dst.dtype, i, load_f32(raw, t->dtype, 0));
    }
  }
  copy_bytes(dst.data, dst.device, staging->data(), Device{}, dst.nbytes(), Stream{});
  stream_synchronize(Stream{});  // the staging buffer is reused by the next tensor
  return ok_status();
}

// Copies `part` of `whole` (a contiguous tensor of shape `full` in dst's dtype, on dst's device)
// into `dst` in one copy (a row part is one run; a column part a run per row, one 2-D copy).
void copy_part(TensorView dst, TensorView whole, const std::vector<int64_t>& full, Part part) {
  const size_t es = dtype_size(dst.dtype);
  const auto [rows, cols, stride, first] = part_runs(dst, full, part);
  const uint8_t* src = static_cast<const uint8_t*>(whole.data) + es * size_t(first);
  copy_rows(dst.data, dst.device, es * size_t(cols), src, whole.device, es * size_t(stride),
            es * size_t(cols), size_t(rows), Stream{});
}

// Every checkpoint tensor must be a weight the config places: a layer past num_hidden_layers or
// a bias would otherwise be dropped, loading a different model than the checkpoint's. Two kinds
// carry nothing and are skipped: RoPE inv_freq buffers (older conversions) and lm_head.weight of
// a tied model (the embedding stands in for it, as in transformers).
Status check_every_tensor_placed(const ModelConfig& c, const SafetensorsCheckpoint& ckpt) {
  static const char* const kLayerTensors[] = {
      "input_layernorm.weight",          "self_attn.q_proj.weight", "self_attn.k_proj.weight",
      "self_attn.v_proj.weight",         "self_attn.o_proj.weight", "mlp.gate_proj.weight",
      "post_attention_layernorm.weight", "mlp.up_proj.weight",      "mlp.down_proj.weight",
  };
  std::set<std::string> placed = {"model.embed_tokens.weight", "model.norm.weight",
                                  "lm_head.weight"};
  for (int64_t i = 0; i < c.num_layers; ++i) {
    for (const char* t : kLayerTensors)
      placed.insert("model.layers." + std::to_string(i) + "." + t);
  }
  const std::string buffer = "rotary_emb.inv_freq";
  for (const std::string& name : ckpt.names()) {
    if (placed.count(name) != 0) continue;
    if (name.size() >= buffer.size() &&
        name.compare(name.size() - buffer.size(), buffer.size(), buffer) == 0) {
      continue;
    }
    return invalid_argument(ckpt.find(name)->file + ": tensor '" + printable(name) +
                            "' is not a weight of the model the config describes (" +
                            std::to_string(c.num_layers) +
                            " layers ('num_hidden_layers'), no biases); loading without it would "
                            "give a different model than the checkpoint's");
  }
  return ok_status();
}

}  // namespace

size_t llama_weight_bytes(const ModelConfig& config, DType dtype, const ModelShard* shard) {
  BumpAllocator plan = BumpAllocator::planner();
  LlamaWeights w;
  carve(config, dtype, shard, plan, &w);
  return plan.used();
}

Status load_llama_weights(const ModelConfig& config, const SafetensorsCheckpoint& checkpoint,
                          LlamaWeights* out, const WeightPlacement& placement) {
  TIDAL_RETURN_IF_ERROR(allocate(config, placement, out));
  TIDAL_RETURN_IF_ERROR(check_every_tensor_placed(config, checkpoint));
  const ModelShard s = placement.shard != nullptr ? *placement.shard : whole_model(config);
  const ModelConfig& c = config;
  const int64_t hd = c.head_dim;
  std::vector<uint8_t> staging;
  auto load = [&](const std::string& name, TensorView dst, std::vector<int64_t> full, Part part) {
    return load_tensor(checkpoint, name, dst, full, part, &staging);
  };
  const Part all{}, vocab_rows{0, s.vocab.begin};
  if (s.first_stage()) {
    TIDAL_RETURN_IF_ERROR(
        load("model.embed_tokens.weight", out->embed, {c.vocab, c.hidden}, vocab_rows));
  }
  // Column-parallel projections take rows of the HF [out, in] matrices, row-parallel ones
  // columns (parallel/sharding.h); gate and up each give their slice to the fused matrix.
  const Part q_rows{0, s.heads.q_heads.begin * hd}, kv_rows{0, s.heads.kv_heads.begin * hd};
  const Part o_cols{1, s.heads.q_heads.begin * hd};
  const Part ffn_rows{0, s.inter.begin}, ffn_cols{1, s.inter.begin};
  for (int64_t i = s.layer_begin; i < s.layer_end; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    const LayerWeights& l = out->layers[size_t(i)];
    const struct {
      const char* name;
      TensorView view;
      std::vector<int64_t> full;
      Part part;
    } tensors[] = {
        {"input_layernorm.weight", l.input_norm, {c.hidden}, all},
        {"self_attn.q_proj.weight", l.wq, {c.q_dim(), c.hidden}, q_rows},
        {"self_attn.k_proj.weight", l.wk, {c.kv_dim(), c.hidden}, kv_rows},
        {"self_attn.v_proj.weight", l.wv, {c.kv_dim(), c.hidden}, kv_rows},
        {"self_attn.o_proj.weight", l.wo, {c.hidden, c.q_dim()}, o_cols},
        {"post_attention_layernorm.weight", l.post_norm, {c.hidden}, all},
        {"mlp.gate_proj.weight", l.w_gate(), {c.inter, c.hidden}, ffn_rows},
        {"mlp.up_proj.weight", l.w_up(), {c.inter, c.hidden}, ffn_rows},
        {"mlp.down_proj.weight", l.w_down, {c.hidden, c.inter}, ffn_cols},
    };
    for (const auto& t : tensors) TIDAL_RETURN_IF_ERROR(load(p + t.name, t.view, t.full, t.part));
  }
  if (!s.last_stage()) return ok_status();
  TIDAL_RETURN_IF_ERROR(load("model.norm.weight", out->final_norm, {c.hidden}, all));
  if (out->lm_head.data != out->embed.data) {
    const char* name = c.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight";
    TIDAL_RETURN_IF_ERROR(load(name, out->lm_head, {c.vocab, c.hidden}, vocab_rows));
  }
  return ok_status();
}

Status init_random_llama_weights(const ModelConfig& config, uint64_t seed, LlamaWeights* out,
                                 const WeightPlacement& placement) {
  TIDAL_RETURN_IF_ERROR(allocate(config, placement, out));
  const ModelShard s = placement.shard != nullptr ? *placement.shard : whole_model(config);
  const ModelConfig& c = config;
  // GPT-2 style init: 0.02, with the residual projections scaled by 1/sqrt(2 * num_layers).
  // Every tensor draws from its own stream (seed + its index), so the values do not depend on
  // the device or the order of the fills.
  const float residual = 0.02f / std::sqrt(2.0f * float(c.num_layers));
  // A shard's weight is a part of the whole model's tensor (the checkpoint loader's parts): the
  // whole tensor is drawn into scratch from the same stream, and the part copied out, so a
  // tp x pp run of a preset holds one rank's model. Scratch is made once, as large as the
  // largest tensor this rank takes a proper part of.
  const DType dt = placement.dtype;
  Arena scratch;
  auto draw_parts = [&](uint64_t bits, float stddev, const std::vector<int64_t>& full,
                        std::vector<std::pair<TensorView, Part>> parts) -> Status {
    int64_t full_numel = 1;
    for (int64_t d : full) full_numel *= d;
    bool drawn = false;  // the whole tensor is in scratch
    auto whole = [&] { return make_view(scratch.data(), dt, full, placement.device); };
    for (const auto& [dst, part] : parts) {
      if (dst.data == nullptr) continue;
      if (dst.numel() == full_numel) {  // the whole tensor (one part only)
        kernels::fill_random(dst, bits, 0.0f, stddev, Stream{});
        continue;
      }
      if (!drawn) {
        const size_t bytes = size_t(full_numel) * dtype_size(dt);
        if (scratch.bytes() < bytes) {
          stream_synchronize(Stream{});  // the copies out of the smaller scratch are done
          scratch = Arena();
          TIDAL_RETURN_IF_ERROR(Arena::create(bytes, "random weights (a shard's whole tensor)",
                                              placement.device, &scratch));
        }
        kernels::fill_random(whole(), bits, 0.0f, stddev, Stream{});
        drawn = true;
      }
      copy_part(dst, whole(), full, part);
    }
    return ok_status();
  };
  uint64_t stream_id = 0;
  auto normal = [&](float stddev, const std::vector<int64_t>& full,
                    std::vector<std::pair<TensorView, Part>> parts) {
    return draw_parts(kernels::random_bits(seed, stream_id++), stddev, full, std::move(parts));
  };
  auto ones = [&](TensorView t) {
    if (t.data != nullptr) kernels::fill_random(t, 0, 1.0f, 0.0f, Stream{});
  };
  const Part all{}, vocab_rows{0, s.vocab.begin};
  const int64_t hd = c.head_dim;
  const Part q_rows{0, s.heads.q_heads.begin * hd}, kv_rows{0, s.heads.kv_heads.begin * hd};
  const Part o_cols{1, s.heads.q_heads.begin * hd}, ffn_cols{1, s.inter.begin};
  // The fused gate_up draw is [gate; up]: a shard's gate rows and up rows are two parts of it.
  const Part gate_rows{0, s.inter.begin}, up_rows{0, c.inter + s.inter.begin};
  // Absent parts (another stage's) are empty views: filling them does nothing, and every
  // present tensor keeps its stream id whatever the shard.
  TIDAL_RETURN_IF_ERROR(normal(0.02f, {c.vocab, c.hidden}, {{out->embed, vocab_rows}}));
  for (const LayerWeights& l : out->layers) {
    ones(l.input_norm);
    TIDAL_RETURN_IF_ERROR(normal(0.02f, {c.q_dim(), c.hidden}, {{l.wq, q_rows}}));
    TIDAL_RETURN_IF_ERROR(normal(0.02f, {c.kv_dim(), c.hidden}, {{l.wk, kv_rows}}));
    TIDAL_RETURN_IF_ERROR(normal(0.02f, {c.kv_dim(), c.hidden}, {{l.wv, kv_rows}}));
    TIDAL_RETURN_IF_ERROR(normal(residual, {c.hidden, c.q_dim()}, {{l.wo, o_cols}}));
    ones(l.post_norm);
    const bool gate_up_whole = l.w_gate_up.data == nullptr || l.w_gate_up.size(0) == 2 * c.inter;
    if (gate_up_whole) {
      TIDAL_RETURN_IF_ERROR(normal(0.02f, {2 * c.inter, c.hidden}, {{l.w_gate_up, all}}));
    } else {
      TIDAL_RETURN_IF_ERROR(normal(0.02f, {2 * c.inter, c.hidden},
                                   {{l.w_gate(), gate_rows}, {l.w_up(), up_rows}}));
    }
    TIDAL_RETURN_IF_ERROR(normal(residual, {c.hidden, c.inter}, {{l.w_down, ffn_cols}}));
  }
  ones(out->final_norm);
  if (c.tie_word_embeddings && out->lm_head.data != out->embed.data) {
    stream_id = 0;  // a tied head on a stage without the embedding draws the embedding's values
  }
  if (out->lm_head.data != out->embed.data) {
    TIDAL_RETURN_IF_ERROR(normal(0.02f, {c.vocab, c.hidden}, {{out->lm_head, vocab_rows}}));
  }
  stream_synchronize(Stream{});
  return ok_status();
}

}  // namespace tidal::model
