// SPDX-License-Identifier: Apache-2.0
#include "kernels/gather_attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/dispatch.h"
#include "kernels/paged_kv_common.h"
#include "runtime/tensor_access.h"

namespace tidal::kernels {

void gather_attention(const GatherAttentionParams& p) {
  check_paged_kv(p.k_cache, p.v_cache, p.block_tables, "gather_attention");
  TIDAL_CHECK(p.q.rank == 3 && same_shape(p.out, p.q) && p.q.size(2) == p.k_cache.size(3),
              "gather_attention: q and out must be [num_tokens, num_heads, head_dim]");
  TIDAL_CHECK(p.q.size(1) % p.k_cache.size(2) == 0,
              "gather_attention: num_heads must be a multiple of num_kv_heads");
  const int64_t num_tokens = p.q.size(0);
  TIDAL_CHECK(
      p.seq_ids.rank == 1 && p.seq_ids.dtype == DType::kI32 && p.seq_ids.size(0) == num_tokens,
      "gather_attention: seq_ids must be i32 [num_tokens]");
  TIDAL_CHECK(p.indices.rank == 3 && p.indices.dtype == DType::kI32 &&
                  p.indices.size(0) == num_tokens && p.indices.size(1) >= 1 &&
                  p.indices.size(2) >= 1,
              "gather_attention: indices must be i32 [num_tokens, num_lists, budget]");
  TIDAL_CHECK(p.q.size(1) % p.indices.size(1) == 0,
              "gather_attention: num_heads must be a multiple of num_lists");
  TIDAL_CHECK(p.counts.rank == 2 && p.counts.dtype == DType::kI32 &&
                  p.counts.size(0) == num_tokens && p.counts.size(1) == p.indices.size(1),
              "gather_attention: counts must be i32 [num_tokens, num_lists]");
  require_cpu("gather_attention",
              {p.out, p.q, p.k_cache, p.v_cache, p.block_tables, p.seq_ids, p.indices, p.counts});
  ref::gather_attention(p);
}

// reference/TIDALDECODE.md §1.5: o_h = sum_{j in I} softmax_j(q_h . k_j * scale) v_j, the
// softmax over the listed positions only.
void ref::gather_attention(const GatherAttentionParams& p) {
  const PagedKv kv{p.k_cache, p.v_cache, p.block_tables};
  const int64_t num_heads = p.q.size(1), head_dim = p.q.size(2);
  const int64_t kv_group = num_heads / p.k_cache.size(2);
  const int64_t list_group = num_heads / p.indices.size(1);
  const double scale = p.scale > 0 ? p.scale : 1.0 / std::sqrt(double(head_dim));
  const int32_t* indices = p.indices.data_as<int32_t>();
  const int32_t* counts = p.counts.data_as<int32_t>();
  std::vector<PagedSlot> slots;
  std::vector<double> scores;
  std::vector<double> acc(static_cast<size_t>(head_dim));
  for (int64_t t = 0; t < p.q.size(0); ++t) {
    const int32_t seq = p.seq_ids.data_as<int32_t>()[t * p.seq_ids.stride[0]];
    for (int64_t h = 0; h < num_heads; ++h) {
      const int64_t kvh = h / kv_group, list = h / list_group;
      const int64_t count = counts[t * p.counts.stride[0] + list * p.counts.stride[1]];
      TIDAL_CHECK(count >= 1 && count <= p.indices.size(2),
                  "gather_attention: list count outside 1..budget");
      slots.clear();
      scores.clear();
      double max_score = -INFINITY;
      for (int64_t i = 0; i < count; ++i) {
        const int32_t pos =
            indices[t * p.indices.stride[0] + list * p.indices.stride[1] + i * p.indices.stride[2]];
        const PagedSlot s = kv.slot(seq, pos);
        double dot = 0.0;
        for (int64_t d = 0; d < head_dim; ++d) {
          dot += double(get_f32(p.q, t, h, d)) * get_f32(p.k_cache, s.page, s.offset, kvh, d);
        }
        slots.push_back(s);
        scores.push_back(dot * scale);
        max_score = std::max(max_score, dot * scale);
      }
      double denom = 0.0;
      for (double& s : scores) {
        s = std::exp(s - max_score);
        denom += s;
      }
      acc.assign(size_t(head_dim), 0.0);
      for (size_t i = 0; i < slots.size(); ++i) {
        const double w = scores[i] / denom;
        for (int64_t d = 0; d < head_dim; ++d) {
          acc[size_t(d)] += w * get_f32(p.v_cache, slots[i].page, slots[i].offset, kvh, d);
        }
      }
      for (int64_t d = 0; d < head_dim; ++d) set_f32(p.out, t, h, d, float(acc[size_t(d)]));
    }
  }
}

}  // namespace tidal::kernels
