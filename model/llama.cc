// SPDX-License-Identifier: Apache-2.0
// Llama forward, top to bottom as in transformers' LlamaForCausalLM: embedding; per layer
// RMSNorm -> q/k/v (one stacked projection) -> RoPE -> KV append -> attention -> o_proj -> residual
// + RMSNorm -> SwiGLU MLP (gate and up in one GEMM); final residual + norm; LM head on the rows
// that need logits. Every residual add is fused into the RMSNorm that follows it.
#include "model/llama.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>

#include "kernels/block_table_update.h"
#include "kernels/decode_attention.h"
#include "kernels/embedding_lookup.h"
#include "kernels/gather_rows.h"
#include "kernels/linear.h"
#include "kernels/paged_kv_append.h"
#include "kernels/quest.h"
#include "kernels/residual_add.h"
#include "kernels/rms_norm.h"
#include "kernels/rotary_embedding.h"
#include "kernels/sample_tokens.h"
#include "kernels/topk_per_row.h"
#include "model/blocks.h"
#include "model/parallel_forward.h"
#include "runtime/device.h"
#include "runtime/size_math.h"

namespace tidal::model {
namespace {

// A [rows, heads * head_dim] view of a [rows, heads, head_dim] tensor: the projections see
// heads flattened.
TensorView flat(TensorView t) {
  return make_view(t.data, t.dtype, {t.size(0), t.size(1) * t.size(2)}, t.device);
}

int64_t max_pages(const WorkspaceShape& s) {
  return ceil_div(s.max_context, s.page_size);
}
// A score row's length in memory: positions rounded up to 4 floats, so every row starts 16-byte
// aligned and topk_per_row and head_group_probs take their 16-byte loads (a row pitch of
// 1048600 + 1 floats sent llama3-8b's 2^20-position top-k down the scalar path: 154 us against
// ~60, H200, benchmarks/results/PERF_NOTES.md). The kernels read the pitch from the view.
int64_t score_pitch(int64_t positions) { return (positions + 3) / 4 * 4; }

// The A/B switches of three step-level choices, for measuring what each buys
// (benchmarks/results/PERF_NOTES.md), as TIDAL_PDL=0 does for programmatic launches:
// TIDAL_LOGITS16=0 keeps every selecting token's logits f32 (no logits16: the selection then
// rounds as before it), TIDAL_FP8_QKV_APPEND=0 appends to FP8 caches in a launch of their own
// (no append_counters: the same bytes), both read once per process; TIDAL_SIDE_STREAM=0 queues
// the selection and the page-bound updates on the main stream (no LlamaWorkspace::side_stream:
// the same launches), =low on a side stream of the lowest priority.
bool switched_off(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && std::strcmp(v, "0") == 0;
}

int64_t max_page_budget(const WorkspaceShape& s) {
  return std::max<int64_t>(1, s.max_budget / s.page_size);
}

// Scratch the ops of a step need at most (each op's workspace_size on the largest shapes).
size_t scratch_bytes(const ModelConfig& c, const LlamaWorkspace& ws) {
  const WorkspaceShape& s = ws.shape;
  kernels::DecodeAttentionParams a;
  a.k_cache = make_view(nullptr, s.dtype, {1, s.page_size, c.num_kv_heads, c.head_dim}, s.device);
  a.v_cache = a.k_cache;
  a.logits = ws.scores;
  a.lse = ws.lse;
  a.indices = ws.lists;
  a.counts = ws.counts;
  a.block_tables = make_view(nullptr, DType::kI32, {s.num_rows, max_pages(s)}, s.device);
  // Every decode count a step may have: the split count grows as tokens fall (one wave of
  // blocks), and tokens x splits, rounded, is not largest at max_decode (3 tokens may need more
  // than 8). Both cache formats: the split count follows the split kernel's residency, which
  // differs between a cache of the activations' dtype and an FP8 (u8) one (tidal-tiny-16k's
  // FP8 niah at 16K overran a scratch sized for the bf16 cache; H100, tenth session).
  size_t bytes = 0;
  for (const DType cache : {s.dtype, DType::kU8}) {
    a.k_cache.dtype = a.v_cache.dtype = cache;
    for (int64_t n = 1; n <= s.max_decode; ++n) {
      a.out = ws.attn.slice(0, n);
      a.q = ws.q.slice(0, n);
      bytes = std::max(bytes, kernels::decode_attention_workspace_size(a));
    }
  }
  kernels::TopkPerRowParams t;
  t.indices = ws.new_lists;
  t.counts = ws.new_counts;
  t.scores = ws.scores;
  bytes = std::max(bytes, kernels::topk_per_row_workspace_size(t));
  t.indices = ws.pages;
  t.counts = ws.page_counts;
  t.scores = ws.page_scores;
  bytes = std::max(bytes, kernels::topk_per_row_workspace_size(t));
  kernels::SampleParams sp;
  sp.logits = ws.logits;
  sp.tokens = ws.sampled;
  return std::max(bytes, kernels::sample_tokens_workspace_size(sp));
}

void carve(const ModelConfig& c, const WorkspaceShape& s, BumpAllocator& a, LlamaWorkspace* ws) {
  const int64_t t = s.max_tokens, d = s.max_decode, h = c.num_heads;
  const DType dt = s.dtype;
  ws->shape = s;
  ws->x = a.allocate(dt, {t, c.hidden});
  ws->xn = a.allocate(dt, {t, c.hidden});
  ws->q = a.allocate(dt, {t, h, c.head_dim});
  ws->k = a.allocate(dt, {t, c.num_kv_heads, c.head_dim});
  ws->v = a.allocate(dt, {t, c.num_kv_heads, c.head_dim});
  ws->attn = a.allocate(dt, {t, h, c.head_dim});
  ws->proj = a.allocate(dt, {t, c.hidden});
  ws->gate_up = a.allocate(dt, {t, 2 * c.inter});
  ws->act = a.allocate(dt, {t, c.inter});
  ws->last = a.allocate(dt, {s.max_logits, c.hidden});
  ws->logits = a.allocate(DType::kF32, {s.max_logits, c.vocab});
  ws->sampled = a.allocate(DType::kI32, {s.max_logits});
  ws->inv_freq = a.allocate(DType::kF32, {c.head_dim / 2});
  ws->scores = a.allocate(DType::kF32, {d, h, score_pitch(s.max_context)});
  ws->logits16 = a.allocate(DType::kF16, {d, h, score_pitch(s.max_context)});
  ws->lse = a.allocate(DType::kF32, {d, h});
  ws->lists = a.allocate(DType::kI32, {d, h, s.max_budget});
  ws->counts = a.allocate(DType::kI32, {d, h});
  ws->new_lists = a.allocate(DType::kI32, {d, h, s.max_budget});
  ws->new_counts = a.allocate(DType::kI32, {d, h});
  // Read only by GPU launches (model/blocks.cc resolves_rows).
  if (s.device.kind == DeviceKind::kCuda) ws->rows = a.allocate(DType::kI32, {d, h, s.max_budget});
  ws->page_scores = a.allocate(DType::kF32, {d, h, score_pitch(max_pages(s))});
  ws->pages = a.allocate(DType::kI32, {d, h, max_page_budget(s)});
  ws->page_counts = a.allocate(DType::kI32, {d, h});
  ws->overlap = a.allocate(DType::kI64, {s.num_rows, 2});
  ws->scratch = a.allocate(DType::kU8, {int64_t(scratch_bytes(c, *ws))});
  ws->merge_counters = a.allocate(DType::kI32, {d * h});
  ws->append_counters = a.allocate(DType::kI32, {t, c.num_kv_heads, 2});
}

Status check_shape(const WorkspaceShape& s) {
  if (s.max_tokens < 1 || s.max_decode < 1 || s.max_logits < 1 || s.num_rows < 1 ||
      s.max_context < 1 || s.max_budget < 1 || s.page_size < 1 || s.max_decode > s.max_tokens) {
    return invalid_argument("workspace: every size must be >= 1 and max_decode <= max_tokens");
  }
  return ok_status();
}

}  // namespace

size_t LlamaWorkspace::bytes_for(const ModelConfig& config, const WorkspaceShape& shape) {
  BumpAllocator plan = BumpAllocator::planner(shape.device);
  LlamaWorkspace ws;
  carve(config, shape, plan, &ws);
  return plan.used();
}

Status LlamaWorkspace::create(const ModelConfig& config, const WorkspaceShape& shape,
                              LlamaWorkspace* out) {
  TIDAL_RETURN_IF_ERROR(check_shape(shape));
  Arena arena;
  TIDAL_RETURN_IF_ERROR(Arena::create(bytes_for(config, shape), "workspace", shape.device, &arena));
  BumpAllocator alloc = arena.allocator();
  carve(config, shape, alloc, out);
  const std::vector<float> freq = rope_inv_freq(config.rope, config.head_dim);
  copy_bytes(out->inv_freq.data, shape.device, freq.data(), Device{}, freq.size() * 4, Stream{});
  fill_bytes(out->overlap.data, shape.device, 0, out->overlap.nbytes(), Stream{});
  fill_bytes(out->merge_counters.data, shape.device, 0, out->merge_counters.nbytes(), Stream{});
  fill_bytes(out->append_counters.data, shape.device, 0, out->append_counters.nbytes(), Stream{});
  stream_synchronize(Stream{});
  static const bool no_logits16 = switched_off("TIDAL_LOGITS16");
  static const bool no_fused_fp8 = switched_off("TIDAL_FP8_QKV_APPEND");
  if (no_logits16) out->logits16 = TensorView{};
  if (no_fused_fp8) out->append_counters = TensorView{};
  // Read at every create, not once, so that tests can build an engine of each kind.
  const char* side_stream = std::getenv("TIDAL_SIDE_STREAM");
  const std::string mode = side_stream != nullptr ? side_stream : "";
  if (shape.device.kind == DeviceKind::kCuda && mode != "0") {
    std::unique_ptr<SideStream> side;
    TIDAL_RETURN_IF_ERROR(SideStream::create(mode != "low", &side));
    out->side_stream = std::move(side);
  }
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

namespace {

kernels::PagedKvAppendParams append_params(const KvLayer& cache, const ForwardBatch& batch,
                                           TensorView key, TensorView value, TensorView rope_q,
                                           TensorView inv_freq) {
  return {cache.k, cache.v,       batch.block_tables, batch.seq_ids, batch.positions, key,
          value,   cache.k_scale, cache.v_scale,      rope_q,        inv_freq};
}

// Quest's page bounds follow every appended key (when the cache keeps them).
void update_page_bounds(const KvLayer& cache, const ForwardBatch& batch, TensorView key,
                        Stream stream) {
  if (cache.key_max.data == nullptr) return;
  kernels::quest_metadata_update(
      {cache.key_max, cache.key_min, batch.block_tables, batch.seq_ids, batch.positions, key,
       cache.k.size(1), cache.k_scale.data != nullptr},
      stream);
}

}  // namespace

void append_to_cache(const KvLayer& cache, const ForwardBatch& batch, TensorView key,
                     TensorView value, TensorView rope_q, TensorView inv_freq, Stream stream) {
  // RoPE on q and k, then k and v into the cache: one launch on the GPU.
  kernels::paged_kv_append(append_params(cache, batch, key, value, rope_q, inv_freq), stream);
  update_page_bounds(cache, batch, key, stream);
}

void llama_forward(const ModelConfig& c, const LlamaWeights& w, const ForwardBatch& batch,
                   const std::vector<KvLayer>& kv, LlamaWorkspace& ws, Stream stream,
                   ForwardParallel* par) {
  namespace k = kernels;
  const int64_t n = batch.tokens.size(0);
  const int64_t num_logits = batch.logit_rows.size(0);
  TIDAL_CHECK(n >= 1 && n <= ws.shape.max_tokens,
              "llama_forward: token count exceeds the workspace");
  TIDAL_CHECK(batch.num_decode <= ws.shape.max_decode,
              "llama_forward: decode tokens exceed the workspace");
  TIDAL_CHECK(num_logits <= ws.shape.max_logits, "llama_forward: logit rows exceed the workspace");
  TIDAL_CHECK(kv.size() == size_t(c.num_layers), "llama_forward: one KV layer per model layer");
  TIDAL_CHECK(batch.num_decode == 0 || batch.layer_ops != nullptr,
              "llama_forward: decode tokens need layer_ops");
  const TensorView x = ws.x.slice(0, n), xn = ws.xn.slice(0, n), proj = ws.proj.slice(0, n);
  const TensorView q = ws.q.slice(0, n), key = ws.k.slice(0, n), val = ws.v.slice(0, n);
  const TensorView attn = ws.attn.slice(0, n);
  const TensorView gate_up = ws.gate_up.slice(0, n), act = ws.act.slice(0, n);
  // The row-parallel projections' output. Under TP with 16-bit activations, f32 partial sums:
  // all-reduced in f32 and rounded once by the norm (or add) that takes them, as one rank rounds
  // its whole sum, so the residual stream differs from one rank's only where the f32 sums' order
  // moves a rounding (ParallelBuffers::partial).
  const bool f32_partials = par != nullptr && par->buffers != nullptr &&
                            par->buffers->partial.data != nullptr && par->tp != nullptr &&
                            par->tp->size() > 1;
  const TensorView delta = f32_partials ? par->buffers->partial.slice(0, n) : proj;

  // A pipeline stage runs its own layers; the residual stream it starts from includes every
  // earlier layer's output.
  const int64_t first = par != nullptr ? par->shard.layer_begin : 0;
  const int64_t end = par != nullptr ? par->shard.layer_end : c.num_layers;
  // An ordinary launch follows the update (the embedding lookup, or the stage's receive), so
  // every later kernel starts after it completed: decode attention may read the block tables
  // before its programmatic wait (DecodeAttentionParams::prior_lens).
  k::block_table_update(batch.block_tables, batch.page_updates, stream);
  if (par == nullptr) {
    k::embedding_lookup(x, w.embed, batch.tokens, stream);
  } else {
    stage_input(*par, c, w, batch, ws, x, stream);
  }
  // Work beside the layer on ws.side_stream (a selection layer's list commit, attention_layer; the
  // page bounds, below) is joined by the next layer's first launch, or the final norm: it reads
  // or writes nothing the rest of its layer does, and the next layer rewrites the keys the bounds
  // read and reads the lists.
  const auto join_side = [&ws, stream] {
    if (ws.side_stream != nullptr) ws.side_stream->join(stream);
  };
  for (int64_t l = first; l < end; ++l) {
    const LayerWeights& lw = w.layers[size_t(l)];
    join_side();
    // Attention block (the previous layer's MLP output joins the residual here).
    if (l == first) {
      k::rms_norm(xn, x, lw.input_norm, c.rms_norm_eps, stream);
    } else {
      k::fused_add_rms_norm(xn, x, delta, lw.input_norm, c.rms_norm_eps, stream);
    }
    // q, k, v, RoPE and the append: one GEMV at decode.
    const KvLayer& cache = kv[size_t(l)];
    k::PagedKvAppendParams append = append_params(cache, batch, key, val, q, ws.inv_freq);
    append.append_counters = ws.append_counters;
    // The plan and block tables are complete (the ordinary launch after the update, above), and
    // inv_freq is written once at create.
    append.plan_complete = true;
    k::linear_qkv_append(append, xn, lw.w_qkv, stream);
    // Quest's page scores read the bounds in later steps, and in this layer when a token of it runs
    // Quest (after a correction chunk may have rewritten its pages): only a decode-only step's
    // layer without Quest tokens updates them beside the layer (on one rank, as the selection).
    SideStream* side = par == nullptr ? ws.side_stream.get() : nullptr;
    if (side != nullptr && cache.key_max.data != nullptr && n == batch.num_decode &&
        !(batch.layer_ops[l] & kLayerQuest)) {
      side->fork(stream);
      update_page_bounds(cache, batch, key, side->stream());
    } else {
      update_page_bounds(cache, batch, key, stream);
    }
    if (batch.attention_hook) batch.attention_hook(l, false);
    attention_layer(c, l, batch, cache, ws, q, attn, stream, par);
    if (batch.attention_hook) batch.attention_hook(l, true);
    k::linear(delta, flat(attn), lw.wo, stream);
    if (par != nullptr) tp_all_reduce(*par, delta, stream);  // row-parallel: partial sums
    // MLP block.
    k::fused_add_rms_norm(xn, x, delta, lw.post_norm, c.rms_norm_eps, stream);
    k::linear_swiglu(act, xn, lw.w_gate_up, gate_up, stream);  // one GEMV at decode
    k::linear(delta, act, lw.w_down, stream);
    if (par != nullptr) tp_all_reduce(*par, delta, stream);
  }
  join_side();
  if (par != nullptr && !par->shard.last_stage()) {
    k::residual_add(x, x, delta, stream);  // the next stage starts from the whole residual
    stage_output(*par, batch, ws, x, stream);
    return;
  }
  // Final residual and norm; LM head only on the rows that need logits.
  k::fused_add_rms_norm(xn, x, delta, w.final_norm, c.rms_norm_eps, stream);
  if (num_logits == 0) return;
  const TensorView last = ws.last.slice(0, num_logits);
  k::gather_rows(last, xn, batch.logit_rows, stream);
  k::linear(ws.logits.slice(0, num_logits), last, w.lm_head, stream);
}

}  // namespace tidal::model
