// SPDX-License-Identifier: Apache-2.0
// Llama forward, top to bottom as in transformers' LlamaForCausalLM: embedding; per layer
// RMSNorm -> q/k/v -> RoPE -> KV append -> attention -> o_proj -> residual -> RMSNorm -> SwiGLU
// MLP -> residual; final norm; LM head on the rows that need logits.
#include "model/llama.h"

#include <cmath>
#include <utility>

#include "kernels/embedding_lookup.h"
#include "kernels/linear.h"
#include "kernels/paged_attention.h"
#include "kernels/paged_kv_append.h"
#include "kernels/residual_add.h"
#include "kernels/rms_norm.h"
#include "kernels/rotary_embedding.h"
#include "kernels/silu_and_mul.h"

namespace tidal::model {
namespace {

void carve(const ModelConfig& c, int64_t t, int64_t l, BumpAllocator& a, LlamaWorkspace* ws) {
  ws->x = a.allocate(DType::kF32, {t, c.hidden});
  ws->xn = a.allocate(DType::kF32, {t, c.hidden});
  ws->q = a.allocate(DType::kF32, {t, c.num_heads, c.head_dim});
  ws->k = a.allocate(DType::kF32, {t, c.num_kv_heads, c.head_dim});
  ws->v = a.allocate(DType::kF32, {t, c.num_kv_heads, c.head_dim});
  ws->attn = a.allocate(DType::kF32, {t, c.num_heads, c.head_dim});
  ws->proj = a.allocate(DType::kF32, {t, c.hidden});
  ws->gate = a.allocate(DType::kF32, {t, c.inter});
  ws->up = a.allocate(DType::kF32, {t, c.inter});
  ws->last = a.allocate(DType::kF32, {l, c.hidden});
  ws->inv_freq = a.allocate(DType::kF32, {c.head_dim / 2});
  ws->max_tokens = t;
  ws->max_logits = l;
}

// A [rows, heads * head_dim] view of a [rows, heads, head_dim] tensor (and back): the
// projections see heads flattened.
TensorView flat(TensorView t) {
  return make_view(t.data, t.dtype, {t.size(0), t.size(1) * t.size(2)}, t.device);
}

}  // namespace

size_t LlamaWorkspace::bytes_for(const ModelConfig& config, int64_t max_tokens,
                                 int64_t max_logits) {
  BumpAllocator plan = BumpAllocator::planner();
  LlamaWorkspace ws;
  carve(config, max_tokens, max_logits, plan, &ws);
  return plan.used();
}

Status LlamaWorkspace::create(const ModelConfig& config, int64_t max_tokens, int64_t max_logits,
                              LlamaWorkspace* out) {
  HostArena arena;
  TIDAL_RETURN_IF_ERROR(
      HostArena::create(bytes_for(config, max_tokens, max_logits), "workspace", &arena));
  BumpAllocator alloc = arena.allocator();
  carve(config, max_tokens, max_logits, alloc, out);
  const std::vector<float> freq = rope_inv_freq(config.rope, config.head_dim);
  for (size_t i = 0; i < freq.size(); ++i) out->inv_freq.data_as<float>()[i] = freq[i];
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
                   const std::vector<KvLayer>& kv, const LlamaWorkspace& ws, TensorView logits) {
  namespace k = kernels;
  const int64_t n = batch.tokens.size(0);
  const int64_t num_logits = batch.logit_rows.size(0);
  TIDAL_CHECK(n >= 1 && n <= ws.max_tokens, "llama_forward: token count exceeds the workspace");
  TIDAL_CHECK(num_logits <= ws.max_logits, "llama_forward: logit rows exceed the workspace");
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
    k::paged_kv_append(kv[size_t(l)].k, kv[size_t(l)].v, batch.block_tables, batch.seq_ids,
                       batch.positions, key, val);
    kernels::PagedAttentionParams ap;
    ap.out = attn;
    ap.q = q;
    ap.k_cache = kv[size_t(l)].k;
    ap.v_cache = kv[size_t(l)].v;
    ap.block_tables = batch.block_tables;
    ap.seq_ids = batch.seq_ids;
    ap.positions = batch.positions;
    k::paged_attention(ap);
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
