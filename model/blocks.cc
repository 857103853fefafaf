// SPDX-License-Identifier: Apache-2.0
// Per-token routing of a layer's attention. Runs of prefill tokens go to one dense call; decode
// tokens (one per sequence) follow their sequence's policy (reference/TIDALDECODE.md §1.6):
//   dense:  o = dense_attn(q, cache[0:n])
//   select: o, S = dense_attn_with_logits(q, cache[0:n]); I = topk(S, K-1 of 0..n-2) ++ [n-1]
//   sparse: o = gather_attn(q, cache, I)      (I from the latest selection layer of this step)
//   quest:  pages = topk(bounds(q), K/P-1 of earlier pages) ++ [current]; o = gather over them
#include "model/blocks.h"

#include <algorithm>
#include <vector>

#include "kernels/gather_attention.h"
#include "kernels/head_group_probs.h"
#include "kernels/paged_attention.h"
#include "kernels/quest.h"
#include "kernels/topk_per_row.h"

namespace tidal::model {
namespace {

// The views of one token (rows [t, t+1)) that every attention op takes.
struct TokenViews {
  TensorView q, out, seq_ids, positions;
};

TokenViews token_views(const ForwardBatch& b, TensorView q, TensorView out, int64_t begin,
                       int64_t end) {
  return TokenViews{q.slice(begin, end), out.slice(begin, end), b.seq_ids.slice(begin, end),
                    b.positions.slice(begin, end)};
}

// [1, rows, cols] view of the first `rows` x `cols` corner of `buf`'s plane `row`.
TensorView corner(TensorView buf, int64_t row, int64_t rows, int64_t cols) {
  TensorView v = buf.slice(row, row + 1);
  v.shape[1] = rows;
  v.shape[2] = cols;
  return v;
}

// [1, rows] view of the first `rows` entries of `buf`'s row `row`.
TensorView corner2(TensorView buf, int64_t row, int64_t rows) {
  TensorView v = buf.slice(row, row + 1);
  v.shape[1] = rows;
  return v;
}

// KV rows one list of `count` positions reads: lists narrower than the KV heads (shared) are
// read once per KV head; per-query-head lists each read their own rows.
int64_t list_rows(const ModelConfig& c, int64_t lists, int64_t count) {
  return count * (lists < c.num_kv_heads ? c.num_kv_heads / lists : 1);
}

class LayerAttention {
 public:
  LayerAttention(const ModelConfig& c, const ForwardBatch& b, const KvLayer& kv, LlamaWorkspace& ws)
      : c_(c), b_(b), kv_(kv), ws_(ws) {}

  void dense(const TokenViews& v, TensorView logits) {
    kernels::PagedAttentionParams p;
    p.out = v.out;
    p.q = v.q;
    p.k_cache = kv_.k;
    p.v_cache = kv_.v;
    p.block_tables = b_.block_tables;
    p.seq_ids = v.seq_ids;
    p.positions = v.positions;
    p.logits = logits;
    kernels::paged_attention(p);
  }

  void gather(const TokenViews& v, TensorView indices, TensorView counts) {
    kernels::GatherAttentionParams p;
    p.out = v.out;
    p.q = v.q;
    p.k_cache = kv_.k;
    p.v_cache = kv_.v;
    p.block_tables = b_.block_tables;
    p.seq_ids = v.seq_ids;
    p.indices = indices;
    p.counts = counts;
    kernels::gather_attention(p);
  }

  // A selection layer: dense attention that keeps its logits, then top-k per list.
  void select(const TokenViews& v, int64_t row, int64_t n, const SequenceAttention& sa) {
    const TidalParams& tp = sa.policy->tidal;
    const int64_t heads = c_.num_heads;
    const int64_t lists = num_lists(tp.granularity, c_);
    const TensorView logits = corner(ws_.logits, row, heads, n);
    dense(v, logits);
    TensorView scores = logits.select(0);
    if (lists != heads) {  // per-KV-head or shared: softmax, summed over each group of heads
      const TensorView probs = corner(ws_.group_probs, row, lists, n);
      int32_t len = int32_t(n);
      kernels::head_group_probs(probs, logits, make_view(&len, DType::kI32, {1}), heads / lists);
      scores = probs.select(0);
    }
    const bool had = ws_.has_selection[size_t(row)];
    if (had) std::copy_n(sel(row), heads * ws_.shape.max_budget, prev_sel(row));
    TensorView lengths = corner2(ws_.lengths, row, lists).select(0);
    for (int64_t l = 0; l < lists; ++l) lengths.data_as<int32_t>()[l] = int32_t(n);
    kernels::TopkPerRowParams tk;
    tk.indices = corner(ws_.sel, row, lists, tp.budget).select(0);
    tk.counts = corner2(ws_.sel_counts, row, lists).select(0);
    tk.scores = scores;
    tk.lengths = lengths;
    tk.budget = tp.budget;
    kernels::topk_per_row(tk);
    ws_.has_selection[size_t(row)] = true;
    if (sa.stats == nullptr) return;
    sa.stats->rows[int(LayerRole::kSelect)] += n * c_.num_kv_heads;
    sa.stats->layer_steps[int(LayerRole::kSelect)] += 1;
    if (had) record_overlap(row, lists, sa.stats);
  }

  void sparse(const TokenViews& v, int64_t row, const SequenceAttention& sa) {
    TIDAL_CHECK(ws_.has_selection[size_t(row)], "attention: a sparse layer before any selection");
    const TidalParams& tp = sa.policy->tidal;
    const int64_t lists = num_lists(tp.granularity, c_);
    const TensorView counts = corner2(ws_.sel_counts, row, lists);
    gather(v, corner(ws_.sel, row, lists, tp.budget), counts);
    if (sa.stats == nullptr) return;
    for (int64_t l = 0; l < lists; ++l) {
      sa.stats->rows[int(LayerRole::kSparse)] += list_rows(c_, lists, counts.data_as<int32_t>()[l]);
    }
    sa.stats->layer_steps[int(LayerRole::kSparse)] += 1;
  }

  // Quest: page bounds of the full pages before the current one, top pages per query head (the
  // current page always kept), then gather over their tokens.
  void quest(const TokenViews& v, int64_t row, int64_t pos, const SequenceAttention& sa) {
    TIDAL_CHECK(kv_.key_max.data != nullptr, "attention: quest needs the KV cache's page bounds");
    const QuestParams& qp = sa.policy->quest;
    const int64_t heads = c_.num_heads, page = qp.page_size;
    const int64_t num_pages = pos / page + 1;
    const int64_t page_budget = qp.budget / page;
    const TensorView scores = corner(ws_.page_scores, row, heads, num_pages);
    kernels::quest_page_scores(scores, v.q, kv_.key_max, kv_.key_min, b_.block_tables, v.seq_ids,
                               v.positions, page);
    TensorView lengths = corner2(ws_.lengths, row, heads).select(0);
    for (int64_t h = 0; h < heads; ++h) lengths.data_as<int32_t>()[h] = int32_t(num_pages);
    kernels::TopkPerRowParams tk;
    tk.indices = corner(ws_.pages, row, heads, page_budget).select(0);
    tk.counts = corner2(ws_.page_counts, row, heads).select(0);
    tk.scores = scores.select(0);
    tk.lengths = lengths;
    tk.budget = page_budget;
    kernels::topk_per_row(tk);
    const TensorView positions = corner(ws_.sel, row, heads, page_budget * page);
    const TensorView counts = corner2(ws_.sel_counts, row, heads);
    kernels::expand_pages(positions, counts, corner(ws_.pages, row, heads, page_budget),
                          corner2(ws_.page_counts, row, heads), v.positions, page);
    gather(v, positions, counts);
    if (sa.stats == nullptr) return;
    sa.stats->quest_metadata_rows += 2 * (num_pages - 1) * c_.num_kv_heads;
    for (int64_t h = 0; h < heads; ++h) {
      sa.stats->rows[int(LayerRole::kQuest)] += counts.data_as<int32_t>()[h];
    }
    sa.stats->layer_steps[int(LayerRole::kQuest)] += 1;
  }

  // The lists this layer used (for a trace): selection state of `row`, by role.
  LayerTrace trace(int64_t layer, int64_t pos, int64_t row, LayerRole role,
                   const SequenceAttention& sa) {
    LayerTrace tr;
    tr.position = pos;
    tr.layer = layer;
    tr.role = role;
    if (role == LayerRole::kDense) return tr;
    const int64_t lists =
        role == LayerRole::kQuest ? c_.num_heads : num_lists(sa.policy->tidal.granularity, c_);
    const int32_t* counts = ws_.sel_counts.select(row).data_as<int32_t>();
    for (int64_t l = 0; l < lists; ++l) {
      const int32_t* p = sel(row) + l * ws_.shape.max_budget;
      tr.lists.emplace_back(p, p + counts[l]);
    }
    return tr;
  }

  void dense_decode(const TokenViews& v, int64_t n, const SequenceAttention* sa) {
    dense(v, TensorView());
    if (sa == nullptr || sa->stats == nullptr) return;
    sa->stats->rows[int(LayerRole::kDense)] += n * c_.num_kv_heads;
    sa->stats->layer_steps[int(LayerRole::kDense)] += 1;
  }

 private:
  int32_t* sel(int64_t row) { return ws_.sel.select(row).data_as<int32_t>(); }
  int32_t* prev_sel(int64_t row) { return ws_.prev_sel.select(row).data_as<int32_t>(); }

  // Share of each earlier list's positions that the new list keeps (position persistence).
  void record_overlap(int64_t row, int64_t lists, AttentionStats* stats) {
    const int64_t stride = ws_.shape.max_budget;
    const int32_t* counts = ws_.sel_counts.select(row).data_as<int32_t>();
    for (int64_t l = 0; l < lists; ++l) {
      const int32_t* now = sel(row) + l * stride;
      const int32_t* before = prev_sel(row) + l * stride;
      const int64_t n = counts[l];  // both selections keep min(n, K) positions
      int64_t kept = 0;
      for (int64_t i = 0; i < n; ++i) kept += std::binary_search(now, now + n, before[i]);
      stats->overlap_sum += n ? double(kept) / double(n) : 0.0;
      stats->overlap_count += 1;
    }
  }

  const ModelConfig& c_;
  const ForwardBatch& b_;
  const KvLayer& kv_;
  LlamaWorkspace& ws_;
};

bool is_decode(const ForwardBatch& b, int64_t t) {
  return b.decode.data != nullptr && b.decode.data_as<uint8_t>()[t] != 0;
}

}  // namespace

void attention_layer(const ModelConfig& c, int64_t layer, const ForwardBatch& b, const KvLayer& kv,
                     LlamaWorkspace& ws, TensorView q, TensorView out) {
  LayerAttention attn(c, b, kv, ws);
  const int64_t num_tokens = q.size(0);
  const int32_t* rows = b.seq_ids.data_as<int32_t>();
  const int32_t* positions = b.positions.data_as<int32_t>();
  if (layer == 0) std::fill(ws.has_selection.begin(), ws.has_selection.end(), false);
  int64_t t = 0;
  while (t < num_tokens) {
    if (!is_decode(b, t)) {  // a run of prefill tokens: dense, one call
      int64_t end = t + 1;
      while (end < num_tokens && !is_decode(b, end)) ++end;
      attn.dense(token_views(b, q, out, t, end), TensorView());
      t = end;
      continue;
    }
    const int64_t row = rows[t], pos = positions[t], n = pos + 1;
    const SequenceAttention* sa = b.attention ? &b.attention[row] : nullptr;
    const TokenViews v = token_views(b, q, out, t, t + 1);
    const LayerRole role = (sa == nullptr || sa->policy == nullptr)
                               ? LayerRole::kDense
                               : layer_role(*sa->policy, sa->reselect, layer);
    switch (role) {
      case LayerRole::kDense: attn.dense_decode(v, n, sa); break;
      case LayerRole::kSelect: attn.select(v, row, n, *sa); break;
      case LayerRole::kSparse: attn.sparse(v, row, *sa); break;
      case LayerRole::kQuest: attn.quest(v, row, pos, *sa); break;
    }
    if (sa != nullptr && sa->trace != nullptr)
      sa->trace->push_back(attn.trace(layer, pos, row, role, *sa));
    ++t;
  }
}

}  // namespace tidal::model
