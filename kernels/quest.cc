// SPDX-License-Identifier: Apache-2.0
#include "kernels/quest.h"

#include <algorithm>
#include <string>

#include "kernels/dispatch.h"
#include "runtime/tensor_access.h"

namespace tidal::kernels {
namespace {

int32_t i32_at(const TensorView& t, int64_t i0, int64_t i1 = 0, int64_t i2 = 0) {
  return t.data_as<int32_t>()[offset_of(t, i0, i1, i2)];
}

void check_tokens(const TensorView& seq_ids, const TensorView& positions, int64_t num_tokens,
                  const char* op) {
  TIDAL_CHECK(seq_ids.rank == 1 && positions.rank == 1 && seq_ids.size(0) == num_tokens &&
                  positions.size(0) == num_tokens && seq_ids.dtype == DType::kI32 &&
                  positions.dtype == DType::kI32,
              std::string(op) + ": seq_ids and positions must be i32 [num_tokens]");
}

void check_bounds(const TensorView& key_max, const TensorView& key_min,
                  const TensorView& block_tables, int64_t page_size, const char* op) {
  TIDAL_CHECK(
      key_max.rank == 3 && same_shape(key_max, key_min) && key_max.dtype == DType::kF32 &&
          key_min.dtype == DType::kF32,
      std::string(op) + ": key_max, key_min must be f32 [num_pages, num_kv_heads, head_dim]");
  TIDAL_CHECK(block_tables.rank == 2 && block_tables.dtype == DType::kI32,
              std::string(op) + ": block_tables must be i32 [num_seqs, max_pages]");
  TIDAL_CHECK(page_size >= 1, std::string(op) + ": page_size must be >= 1");
}

// The metadata row of logical page `page` of block-table row `seq`.
int64_t physical_page(const TensorView& block_tables, int64_t seq, int64_t page, int64_t num_pages,
                      const char* op) {
  TIDAL_CHECK(seq >= 0 && seq < block_tables.size(0),
              std::string(op) + ": sequence row out of range");
  TIDAL_CHECK(page >= 0 && page < block_tables.size(1),
              std::string(op) + ": position beyond the block table");
  const int32_t id = i32_at(block_tables, seq, page);
  TIDAL_CHECK(id >= 0 && id < num_pages, std::string(op) + ": page id out of range");
  return id;
}

}  // namespace

void quest_metadata_update(TensorView key_max, TensorView key_min, TensorView block_tables,
                           TensorView seq_ids, TensorView positions, TensorView k,
                           int64_t page_size) {
  check_bounds(key_max, key_min, block_tables, page_size, "quest_metadata_update");
  TIDAL_CHECK(k.rank == 3 && k.size(1) == key_max.size(1) && k.size(2) == key_max.size(2),
              "quest_metadata_update: k must be [num_tokens, num_kv_heads, head_dim]");
  check_tokens(seq_ids, positions, k.size(0), "quest_metadata_update");
  require_cpu("quest_metadata_update", {key_max, key_min, block_tables, seq_ids, positions, k});
  ref::quest_metadata_update(key_max, key_min, block_tables, seq_ids, positions, k, page_size);
}

void quest_page_scores(TensorView out, TensorView q, TensorView key_max, TensorView key_min,
                       TensorView block_tables, TensorView seq_ids, TensorView positions,
                       int64_t page_size) {
  check_bounds(key_max, key_min, block_tables, page_size, "quest_page_scores");
  TIDAL_CHECK(q.rank == 3 && q.size(2) == key_max.size(2),
              "quest_page_scores: q must be [num_tokens, num_heads, head_dim]");
  TIDAL_CHECK(q.size(1) % key_max.size(1) == 0,
              "quest_page_scores: num_heads must be a multiple of num_kv_heads");
  TIDAL_CHECK(out.rank == 3 && out.dtype == DType::kF32 && out.size(0) == q.size(0) &&
                  out.size(1) == q.size(1),
              "quest_page_scores: out must be f32 [num_tokens, num_heads, max_pages]");
  check_tokens(seq_ids, positions, q.size(0), "quest_page_scores");
  require_cpu("quest_page_scores", {out, q, key_max, key_min, block_tables, seq_ids, positions});
  ref::quest_page_scores(out, q, key_max, key_min, block_tables, seq_ids, positions, page_size);
}

void expand_pages(TensorView positions_out, TensorView counts_out, TensorView pages,
                  TensorView page_counts, TensorView positions, int64_t page_size) {
  TIDAL_CHECK(page_size >= 1, "expand_pages: page_size must be >= 1");
  TIDAL_CHECK(pages.rank == 3 && pages.dtype == DType::kI32,
              "expand_pages: pages must be i32 [num_tokens, num_lists, page_budget]");
  const int64_t num_tokens = pages.size(0), num_lists = pages.size(1);
  TIDAL_CHECK(page_counts.rank == 2 && page_counts.dtype == DType::kI32 &&
                  page_counts.size(0) == num_tokens && page_counts.size(1) == num_lists,
              "expand_pages: page_counts must be i32 [num_tokens, num_lists]");
  TIDAL_CHECK(positions_out.rank == 3 && positions_out.dtype == DType::kI32 &&
                  positions_out.size(0) == num_tokens && positions_out.size(1) == num_lists,
              "expand_pages: positions_out must be i32 [num_tokens, num_lists, max_positions]");
  // Every listed page may be full: room for page_budget whole pages.
  TIDAL_CHECK(positions_out.size(2) >= pages.size(2) * page_size,
              "expand_pages: max_positions must be >= page_budget * page_size");
  TIDAL_CHECK(counts_out.rank == 2 && counts_out.dtype == DType::kI32 &&
                  counts_out.size(0) == num_tokens && counts_out.size(1) == num_lists,
              "expand_pages: counts_out must be i32 [num_tokens, num_lists]");
  TIDAL_CHECK(
      positions.rank == 1 && positions.dtype == DType::kI32 && positions.size(0) == num_tokens,
      "expand_pages: positions must be i32 [num_tokens]");
  require_cpu("expand_pages", {positions_out, counts_out, pages, page_counts, positions});
  ref::expand_pages(positions_out, counts_out, pages, page_counts, positions, page_size);
}

// Tokens are folded in order, so several tokens of one page in one call (a prefill chunk) work
// as long as each sequence's tokens come in ascending position order.
void ref::quest_metadata_update(TensorView key_max, TensorView key_min, TensorView block_tables,
                                TensorView seq_ids, TensorView positions, TensorView k,
                                int64_t page_size) {
  for (int64_t t = 0; t < k.size(0); ++t) {
    const int32_t seq = i32_at(seq_ids, t), pos = i32_at(positions, t);
    TIDAL_CHECK(pos >= 0, "quest_metadata_update: negative position");
    const int64_t page =
        physical_page(block_tables, seq, pos / page_size, key_max.size(0), "quest_metadata_update");
    const bool fresh = pos % page_size == 0;
    for (int64_t h = 0; h < k.size(1); ++h) {
      for (int64_t d = 0; d < k.size(2); ++d) {
        const float x = get_f32(k, t, h, d);
        set_f32(key_max, page, h, d, fresh ? x : std::max(get_f32(key_max, page, h, d), x));
        set_f32(key_min, page, h, d, fresh ? x : std::min(get_f32(key_min, page, h, d), x));
      }
    }
  }
}

// Quest's bound (reference/TIDALDECODE.md §5): for any key k with min <= k <= max element-wise,
// q_i * k_i <= max(q_i * max_i, q_i * min_i), so U >= q . k. Unscaled, like Quest's.
void ref::quest_page_scores(TensorView out, TensorView q, TensorView key_max, TensorView key_min,
                            TensorView block_tables, TensorView seq_ids, TensorView positions,
                            int64_t page_size) {
  const int64_t group = q.size(1) / key_max.size(1);
  for (int64_t t = 0; t < q.size(0); ++t) {
    const int32_t seq = i32_at(seq_ids, t), pos = i32_at(positions, t);
    TIDAL_CHECK(pos >= 0, "quest_page_scores: negative position");
    const int64_t full_pages = pos / page_size;
    TIDAL_CHECK(full_pages <= out.size(2), "quest_page_scores: pages beyond out's max_pages");
    for (int64_t lp = 0; lp < full_pages; ++lp) {
      const int64_t page =
          physical_page(block_tables, seq, lp, key_max.size(0), "quest_page_scores");
      for (int64_t h = 0; h < q.size(1); ++h) {
        const int64_t kvh = h / group;
        double u = 0.0;
        for (int64_t d = 0; d < q.size(2); ++d) {
          const double qd = get_f32(q, t, h, d);
          u += std::max(qd * get_f32(key_max, page, kvh, d), qd * get_f32(key_min, page, kvh, d));
        }
        set_f32(out, t, h, lp, float(u));
      }
    }
  }
}

void ref::expand_pages(TensorView positions_out, TensorView counts_out, TensorView pages,
                       TensorView page_counts, TensorView positions, int64_t page_size) {
  int32_t* out = positions_out.data_as<int32_t>();
  for (int64_t t = 0; t < pages.size(0); ++t) {
    const int32_t pos = i32_at(positions, t);
    TIDAL_CHECK(pos >= 0, "expand_pages: negative position");
    for (int64_t l = 0; l < pages.size(1); ++l) {
      const int64_t num = i32_at(page_counts, t, l);
      TIDAL_CHECK(num >= 0 && num <= pages.size(2),
                  "expand_pages: page count outside 0..page_budget");
      int64_t count = 0, prev = -1;
      for (int64_t i = 0; i < num; ++i) {
        const int64_t page = i32_at(pages, t, l, i);
        TIDAL_CHECK(page > prev, "expand_pages: pages must be ascending and distinct");
        TIDAL_CHECK(page <= pos / page_size, "expand_pages: page after the current one");
        prev = page;
        const int64_t last = std::min(page * page_size + page_size - 1, int64_t(pos));
        for (int64_t j = page * page_size; j <= last; ++j) {
          out[offset_of(positions_out, t, l, count++)] = int32_t(j);
        }
      }
      counts_out.data_as<int32_t>()[offset_of(counts_out, t, l)] = int32_t(count);
      for (int64_t i = count; i < positions_out.size(2); ++i) {
        out[offset_of(positions_out, t, l, i)] = -1;
      }
    }
  }
}

}  // namespace tidal::kernels
