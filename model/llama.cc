// SPDX-License-Identifier: Apache-2.0
// Llama forward, top to bottom as in transformers' LlamaForCausalLM: embedding; per layer
// RMSNorm -> q/k/v -> RoPE -> KV append -> attention -> o_proj -> residual -> RMSNorm -> SwiGLU
// MLP -> residual; final norm; LM head on the rows that need logits.
#include "model/llama.h"

#include <cmath>
#include <utility>

#include "kernels/embedding_lookup.h"
#include "kernels/linear.h"
#include "kernels/paged_kv_append.h"
#include "kernels/quest.h"
#include "kernels/residual_add.h"
#include "kernels/rms_norm.h"
#include "kernels/rotary_embedding.h"
#include "kernels/silu_and_mul.h"
#include "model/blocks.h"

namespace tidal::model {
namespace {

void carve(const ModelConfig& c, const WorkspaceShape& s, BumpAllocator& a, LlamaWorkspace* ws) {
  const int64_t t = s.max_tokens, r = s.max_seqs, h = c.num_heads;
  const int64_t max_pages = (s.max_context + s.page_size - 1) / s.page_size;
  ws->x = a.allocate(DType::kF32, {t, c.hidden});
  ws->xn = a.allocate(DType::kF32, {t, c.hidden});
  ws->q = a.allocate(DType::kF32, {t, h, c.head_dim});
  ws->k = a.allocate(DType::kF32, {t, c.num_kv_heads, c.head_dim});
  ws->v = a.allocate(DType::kF32, {t, c.num_kv_heads, c.head_dim});
  ws->attn = a.allocate(DType::kF32, {t, h, c.head_dim});
  ws->proj = a.allocate(DType::kF32, {t, c.hidden});
  ws->gate = a.allocate(DType::kF32, {t, c.inter});
  ws->up = a.allocate(DType::kF32, {t, c.inter});
  ws->last = a.allocate(DType::kF32, {r, c.hidden});
  ws->inv_freq = a.allocate(DType::kF32, {c.head_dim / 2});
  ws->logits = a.allocate(DType::kF32, {r, h, s.max_context});
  ws->group_probs = a.allocate(DType::kF32, {r, h, s.max_context});
  ws->sel = a.allocate(DType::kI32, {r, h, s.max_budget});
  ws->sel_counts = a.allocate(DType::kI32, {r, h});
  ws->prev_sel = a.allocate(DType::kI32, {r, h, s.max_budget});
  ws->page_scores = a.allocate(DType::kF32, {r, h, max_pages});
  ws->pages = a.allocate(DType::kI32, {r, h, max_pages});
  ws->page_counts = a.allocate(DType::kI32, {r, h});
  ws->lengths = a.allocate(DType::kI32, {r, h});
  ws->shape = s;
}

// A [rows, heads * head_dim] view of a [rows, heads, head_dim] tensor (and back): the
// projections see heads flattened.
TensorView flat(TensorView t) {
  return make_view(t.data, t.dtype, {t.size(0), t.size(1) * t.size(2)}, t.device);
}

}  // namespace

size_t LlamaWorkspace::bytes_for(const ModelConfig& config, const WorkspaceShape& shape) {
  BumpAllocator plan = BumpAllocator::planner();
  LlamaWorkspace ws;
  carve(config, shape, plan, &ws);
  return plan.used();
}

Status LlamaWorkspace::create(const ModelConfig& config, const WorkspaceShape& shape,
                              LlamaWorkspace* out) {
  if (shape.max_tokens < 1 || shape.max_seqs < 1 || shape.max_context < 1 || shape.max_budget < 1 ||
      shape.page_size < 1 || shape.max_seqs > shape.max_tokens) {
    return invalid_argument("workspace: every size must be >= 1 and max_seqs <= max_tokens");
  }
  Arena arena;
  TIDAL_RETURN_IF_ERROR(Arena::create(bytes_for(config, shape), "workspace", Device{}, &arena));
  BumpAllocator alloc = arena.allocator();
  carve(config, shape, alloc, out);
  const std::vector<float> freq = rope_inv_freq(config.rope, config.head_dim);
  for (size_t i = 0; i < freq.size(); ++i) out->inv_freq.data_as<float>()[i] = freq[i];
  out->has_selection.assign(size_t(shape.max_seqs), false);
  out->arena = std::move(arena);
  return ok_status();
}

std::vector<float> rope_inv_freq(const RopeConfig& rope, int64_t head_dim) {
  // transformers: inv_freq = 1 / theta ** (arange(0, d, 2).float() / d), in f32.
  std::vector<float> inv(size_t(head_dim / 2));
  for (int64_t i = 0; i < head_dim / 2; ++i) {
    const float exponent = float(2 * i) / float(head_dim);
    inv[size_t(i)] = 1.0f / std::pow(rope.theta, exponent);
  }
  if (rope.type == RopeType::kDefault) return inv;
  // llama3 scaling (transformers _compute_llama3_parameters): long wavelengths are divided by
  // `factor`, short ones kept, the band between interpolated smoothly.
  const float old_ctx = float(rope.original_max_position_embeddings);
  const float low_wavelen = old_ctx / rope.low_freq_factor;
  const float high_wavelen = old_ctx / rope.high_freq_factor;
  for (float& f : inv) {
    const float wavelen = 2.0f * float(M_PI) / f;
    if (wavelen > low_wavelen) {
      f = f / rope.factor;
    } else if (wavelen >= high_wavelen) {
      const float smooth = (old_ctx / wavelen - rope.low_freq_factor) /
                           (rope.high_freq_factor - rope.low_freq_factor);
      f = (1.0f - smooth) * f / rope.factor + smooth * f;
    }
  }
  return inv;
}

void llama_forward(const ModelConfig& c, const LlamaWeights& w, const ForwardBatch& batch,
                   const std::vector<KvLayer>& kv, LlamaWorkspace& ws, TensorView logits) {
  namespace k = kernels;
  const int64_t n = batch.tokens.size(0);
  const int64_t num_logits = batch.logit_rows.size(0);
  TIDAL_CHECK(n >= 1 && n <= ws.shape.max_tokens,
              "llama_forward: token count exceeds the workspace");
  TIDAL_CHECK(num_logits <= ws.shape.max_seqs, "llama_forward: logit rows exceed the workspace");
  TIDAL_CHECK(batch.block_tables.size(0) <= ws.shape.max_seqs,
              "llama_forward: sequence rows exceed the workspace");
  TIDAL_CHECK(kv.size() == size_t(c.num_layers), "llama_forward: one KV layer per model layer");
  const TensorView x = ws.x.slice(0, n), xn = ws.xn.slice(0, n), proj = ws.proj.slice(0, n);
  const TensorView q = ws.q.slice(0, n), key = ws.k.slice(0, n), val = ws.v.slice(0, n);
  const TensorView attn = ws.attn.slice(0, n);
  const TensorView gate = ws.gate.slice(0, n), up = ws.up.slice(0, n);

  k::embedding_lookup(x, w.embed, batch.tokens);
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const LayerWeights& lw = w.layers[size_t(l)];
    // Attention block.
    k::rms_norm(xn, x, lw.input_norm, c.rms_norm_eps);
    k::linear(flat(q), xn, lw.wq);
    k::linear(flat(key), xn, lw.wk);
    k::linear(flat(val), xn, lw.wv);
    k::rotary_embedding(q, key, batch.positions, ws.inv_freq);
    const KvLayer& cache = kv[size_t(l)];
    k::paged_kv_append(cache.k, cache.v, batch.block_tables, batch.seq_ids, batch.positions, key,
                       val);
    if (cache.key_max.data != nullptr) {  // Quest page bounds follow every appended key
      k::quest_metadata_update(cache.key_max, cache.key_min, batch.block_tables, batch.seq_ids,
                               batch.positions, key, cache.k.size(1));
    }
    attention_layer(c, l, batch, cache, ws, q, attn);
    k::linear(proj, flat(attn), lw.wo);
    k::residual_add(x, x, proj);
    // MLP block.
    k::rms_norm(xn, x, lw.post_norm, c.rms_norm_eps);
    k::linear(gate, xn, lw.w_gate);
    k::linear(up, xn, lw.w_up);
    k::silu_and_mul(gate, gate, up);
    k::linear(proj, gate, lw.w_down);
    k::residual_add(x, x, proj);
  }
  // Final norm and LM head, only on the rows that need logits.
  if (num_logits == 0) return;
  const TensorView last = ws.last.slice(0, num_logits);
  const TensorView last_in = ws.xn.slice(0, num_logits);
  const int32_t* rows = batch.logit_rows.data_as<int32_t>();
  for (int64_t r = 0; r < num_logits; ++r) {
    TIDAL_CHECK(rows[r] >= 0 && rows[r] < n, "llama_forward: logit row out of range");
    const float* src = x.data_as<float>() + int64_t(rows[r]) * x.stride[0];
    float* dst = last_in.data_as<float>() + r * last_in.stride[0];
    for (int64_t i = 0; i < c.hidden; ++i) dst[i] = src[i];
  }
  k::rms_norm(last, last_in, w.final_norm, c.rms_norm_eps);
  k::linear(logits, last, w.lm_head);
}

}  // namespace tidal::model
