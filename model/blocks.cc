// SPDX-License-Identifier: Apache-2.0
// One layer's attention for the whole batch. Every op is launched once for all decode tokens and
// reads each token's role, length and lists from the step plan's device arrays, so a batch can
// mix `full`, `tidal` (any granularity, any re-selection layers) and `quest`, and one captured
// graph replays any context length. Ops that no token needs in this layer (layer_ops) are not
// launched at all.
#include "model/blocks.h"

#include "kernels/cache_rows.h"
#include "kernels/commit_selection.h"
#include "kernels/decode_attention.h"
#include "kernels/head_group_probs.h"
#include "kernels/prefill_attention.h"
#include "kernels/quest.h"
#include "kernels/topk_per_row.h"
#include "model/parallel_forward.h"

namespace tidal::model {
namespace {

namespace k = kernels;

// The first `rows` rows of a per-decode-token workspace buffer.
TensorView rows_of(TensorView t, int64_t rows) { return t.slice(0, rows); }

// Whether the selection's commit resolves the lists to cache rows for the sparse layers' decode
// attention (kernels/cache_rows.h): on one GPU, where every sparse layer's lists were committed
// by a selection layer of the same step, on this rank (a pipeline stage may receive them), and
// where every row of the cache fits an entry (decode_attention checks it; the positions serve a
// larger cache).
bool resolves_rows(const LlamaWorkspace& ws, const KvLayer& kv, const ForwardParallel* par) {
  return par == nullptr && ws.rows.data != nullptr && ws.rows.device.kind == DeviceKind::kCuda &&
         k::cache_rows_fit(kv.k.size(0), kv.k.size(1));
}

void quest_select(const ForwardBatch& b, const KvLayer& kv, LlamaWorkspace& ws, TensorView q,
                  TensorView roles, Stream stream) {
  const int64_t d = b.num_decode;
  const int64_t page_size = kv.k.size(1);
  TIDAL_CHECK(kv.key_max.data != nullptr, "attention: quest needs the KV cache's page bounds");
  k::QuestPageScoresParams s;
  s.out = rows_of(ws.page_scores, d);
  s.q = q;
  s.key_max = kv.key_max;
  s.key_min = kv.key_min;
  s.block_tables = b.block_tables;
  s.seq_ids = b.seq_ids.slice(0, d);
  s.lengths = b.lengths;
  s.roles = roles;
  s.page_size = page_size;
  k::quest_page_scores(s, stream);

  k::TopkPerRowParams t;
  t.indices = rows_of(ws.pages, d);
  t.counts = rows_of(ws.page_counts, d);
  t.scores = rows_of(ws.page_scores, d);
  t.lengths = b.page_lengths;
  t.budgets = b.page_budgets;
  t.num_lists = b.num_lists;
  t.roles = roles;
  t.active_roles = k::role_bit(k::TokenRole::kQuest);
  k::topk_per_row(t, ws.scratch, stream);

  k::ExpandPagesParams e;
  e.positions = rows_of(ws.lists, d);
  e.counts = rows_of(ws.counts, d);
  e.pages = rows_of(ws.pages, d);
  e.page_counts = rows_of(ws.page_counts, d);
  e.lengths = b.lengths;
  e.num_lists = b.num_lists;
  e.roles = roles;
  e.page_size = page_size;
  k::expand_pages(e, stream);
}

// After a selection layer's dense attention: scores -> lists later sparse layers read. Under
// tensor parallelism, lists whose heads span ranks are agreed on the way.
void select_lists(const ForwardBatch& b, int64_t layer, const KvLayer& kv, LlamaWorkspace& ws,
                  TensorView roles, Stream stream, ForwardParallel* par) {
  const int64_t d = b.num_decode;
  k::HeadGroupProbsParams g;
  g.scores = rows_of(ws.scores, d);
  if (ws.logits16.data != nullptr) g.logits16 = rows_of(ws.logits16, d);
  g.lse = rows_of(ws.lse, d);
  g.lengths = b.lengths;
  g.num_lists = b.num_lists;
  g.roles = roles;
  if (par != nullptr) g.agreement = b.agreement;
  k::head_group_probs(g, stream);
  if (par != nullptr) agree_exact(*par, b, layer, ws, stream);

  k::TopkPerRowParams t;
  t.indices = rows_of(ws.new_lists, d);
  t.counts = rows_of(ws.new_counts, d);
  t.scores = rows_of(ws.scores, d);
  t.lengths = b.lengths;
  t.budgets = b.budgets;
  t.num_lists = b.num_lists;
  t.roles = roles;
  t.active_roles = k::kSelectingRoles;
  k::topk_per_row(t, ws.scratch, stream);
  if (par != nullptr) agree_approx(*par, b, layer, ws, stream);

  k::CommitSelectionParams c;
  c.lists = rows_of(ws.lists, d);
  c.counts = rows_of(ws.counts, d);
  c.new_lists = rows_of(ws.new_lists, d);
  c.new_counts = rows_of(ws.new_counts, d);
  c.num_lists = b.num_lists;
  c.roles = roles;
  c.seq_ids = b.seq_ids.slice(0, d);
  c.overlap = ws.overlap;
  if (resolves_rows(ws, kv, par)) {
    c.rows = rows_of(ws.rows, d);
    c.block_tables = b.block_tables;
    c.lengths = b.lengths;
    c.prior_lens = b.prior_lens;
    c.page_size = kv.k.size(1);
  }
  k::commit_selection(c, stream);
}

void decode_layer(int64_t layer, const ForwardBatch& b, const KvLayer& kv, LlamaWorkspace& ws,
                  TensorView q, TensorView out, Stream stream, ForwardParallel* par) {
  const int64_t d = b.num_decode;
  const TensorView roles = b.roles.select(layer);
  const uint8_t ops = b.layer_ops[layer];
  if (ops & kLayerQuest) quest_select(b, kv, ws, q, roles, stream);
  k::DecodeAttentionParams p;
  p.out = out;
  p.q = q;
  p.k_cache = kv.k;
  p.v_cache = kv.v;
  p.k_scale = kv.k_scale;
  p.v_scale = kv.v_scale;
  p.block_tables = b.block_tables;
  p.seq_ids = b.seq_ids.slice(0, d);
  p.lengths = b.lengths;
  p.roles = roles;
  p.indices = rows_of(ws.lists, d);
  p.counts = rows_of(ws.counts, d);
  p.num_lists = b.num_lists;
  p.merge_counters = ws.merge_counters;
  p.prior_lens = b.prior_lens;  // (kernels/decode_attention.h: the launch order it relies on)
  p.lists_only = (ops & kLayerListsOnly) != 0;
  p.head_lists = (ops & kLayerHeadLists) != 0;
  if (p.lists_only && resolves_rows(ws, kv, par)) p.rows = rows_of(ws.rows, d);
  if (ops & kLayerSelects) {
    p.logits = rows_of(ws.scores, d);
    if (ws.logits16.data != nullptr) p.logits16 = rows_of(ws.logits16, d);
    p.lse = rows_of(ws.lse, d);
  }
  k::decode_attention(p, ws.scratch, stream);
  if (!(ops & kLayerSelects)) return;
  // One rank, no attention timing (whose hook brackets the layer's launches on `stream`): the
  // selection runs beside the rest of the layer, whose next reader of the lists (and of the
  // scratch top-k shares with decode attention) comes after the join (llama_forward).
  SideStream* side = par == nullptr && !b.attention_hook ? ws.side_stream.get() : nullptr;
  if (side == nullptr) {
    select_lists(b, layer, kv, ws, roles, stream, par);
    return;
  }
  side->fork(stream);
  select_lists(b, layer, kv, ws, roles, side->stream(), par);
}

}  // namespace

void attention_layer(const ModelConfig& /*config*/, int64_t layer, const ForwardBatch& b,
                     const KvLayer& kv, LlamaWorkspace& ws, TensorView q, TensorView out,
                     Stream stream, ForwardParallel* par) {
  const int64_t num_tokens = q.size(0), d = b.num_decode;
  if (d > 0) decode_layer(layer, b, kv, ws, q.slice(0, d), out.slice(0, d), stream, par);
  if (num_tokens > d) {
    k::PrefillAttentionParams p;
    p.out = out.slice(d, num_tokens);
    p.q = q.slice(d, num_tokens);
    p.k_cache = kv.k;
    p.v_cache = kv.v;
    p.k_scale = kv.k_scale;
    p.v_scale = kv.v_scale;
    p.block_tables = b.block_tables;
    p.query_starts = b.query_starts;
    p.seq_ids = b.prefill_seq_ids;
    p.context_lens = b.context_lens;
    p.max_query_len = b.max_query_len;
    k::prefill_attention(p, stream);
  }
}

}  // namespace tidal::model
