// SPDX-License-Identifier: Apache-2.0
#include "kernels/quest.h"

#include <algorithm>
#include <string>
#include <vector>

#include "kernels/dispatch.h"
#include "kernels/fp8_e4m3.h"
#include "runtime/tensor_access.h"

namespace tidal::kernels {
namespace {

int32_t i32_at(const TensorView& t, int64_t i0, int64_t i1 = 0, int64_t i2 = 0) {
  return t.data_as<int32_t>()[offset_of(t, i0, i1, i2)];
}

void check_bounds(const TensorView& key_max, const TensorView& key_min,
                  const TensorView& block_tables, int64_t page_size, const char* op) {
  TIDAL_CHECK(
      key_max.rank == 3 && same_shape(key_max, key_min) && key_max.dtype == key_min.dtype &&
          key_max.is_contiguous() && key_min.is_contiguous(),
      std::string(op) + ": key_max, key_min must be contiguous [num_pages, num_kv_heads, head_dim]");
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

void quest_metadata_update(const QuestMetadataParams& p, [[maybe_unused]] Stream stream) {
  const char* op = "quest_metadata_update";
  check_bounds(p.key_max, p.key_min, p.block_tables, p.page_size, op);
  TIDAL_CHECK(p.k.rank == 3 && p.k.size(1) == p.key_max.size(1) &&
                  p.k.size(2) == p.key_max.size(2) && p.k.dtype == p.key_max.dtype &&
                  p.k.is_contiguous(),
              "quest_metadata_update: k must be contiguous [num_tokens, num_kv_heads, head_dim] "
              "of the bounds' dtype");
  check_per_token(p.seq_ids, p.k.size(0), DType::kI32, op, "seq_ids");
  check_per_token(p.positions, p.k.size(0), DType::kI32, op, "positions");
  if (on_cuda(op, {p.key_max, p.key_min, p.block_tables, p.seq_ids, p.positions, p.k})) {
    TIDAL_CUDA_CALL(op, cuda::quest_metadata_update(p, stream));
    return;
  }
  ref::quest_metadata_update(p);
}

void quest_page_scores(const QuestPageScoresParams& p, [[maybe_unused]] Stream stream) {
  const char* op = "quest_page_scores";
  check_bounds(p.key_max, p.key_min, p.block_tables, p.page_size, op);
  TIDAL_CHECK(p.q.rank == 3 && p.q.size(2) == p.key_max.size(2) && p.q.dtype == p.key_max.dtype &&
                  p.q.is_contiguous(),
              "quest_page_scores: q must be contiguous [num_tokens, num_heads, head_dim] of the "
              "bounds' dtype");
  TIDAL_CHECK(p.q.size(1) % p.key_max.size(1) == 0,
              "quest_page_scores: num_heads must be a multiple of num_kv_heads");
  TIDAL_CHECK(p.out.rank == 3 && p.out.dtype == DType::kF32 && p.out.is_contiguous() &&
                  p.out.size(0) == p.q.size(0) && p.out.size(1) == p.q.size(1),
              "quest_page_scores: out must be contiguous f32 [num_tokens, num_heads, max_pages]");
  check_per_token(p.seq_ids, p.q.size(0), DType::kI32, op, "seq_ids");
  check_per_token(p.lengths, p.q.size(0), DType::kI32, op, "lengths");
  check_per_token(p.roles, p.q.size(0), DType::kU8, op, "roles");
  if (on_cuda(op, {p.out, p.q, p.key_max, p.key_min, p.block_tables, p.seq_ids, p.lengths,
                   p.roles})) {
    TIDAL_CUDA_CALL(op, cuda::quest_page_scores(p, stream));
    return;
  }
  ref::quest_page_scores(p);
}

void expand_pages(const ExpandPagesParams& p, [[maybe_unused]] Stream stream) {
  const char* op = "expand_pages";
  TIDAL_CHECK(p.page_size >= 1, "expand_pages: page_size must be >= 1");
  TIDAL_CHECK(p.pages.rank == 3 && p.positions.rank == 3,
              "expand_pages: pages and positions must be [num_tokens, max_lists, ...]");
  const int64_t tokens = p.pages.size(0), lists = p.pages.size(1);
  check_shape(p.pages, {tokens, lists, p.pages.size(2)}, DType::kI32, op, "pages");
  check_shape(p.page_counts, {tokens, lists}, DType::kI32, op, "page_counts");
  check_shape(p.positions, {tokens, lists, p.positions.size(2)}, DType::kI32, op, "positions");
  check_shape(p.counts, {tokens, lists}, DType::kI32, op, "counts");
  check_per_token(p.lengths, tokens, DType::kI32, op, "lengths");
  check_per_token(p.num_lists, tokens, DType::kI32, op, "num_lists");
  check_per_token(p.roles, tokens, DType::kU8, op, "roles");
  if (on_cuda(op, {p.positions, p.counts, p.pages, p.page_counts, p.lengths, p.num_lists,
                   p.roles})) {
    TIDAL_CUDA_CALL(op, cuda::expand_pages(p, stream));
    return;
  }
  ref::expand_pages(p);
}

// Tokens are folded in order, so several tokens of one page in one call (a prefill chunk) work
// as long as each sequence's tokens come in ascending position order.
void ref::quest_metadata_update(const QuestMetadataParams& p) {
  std::vector<float> row(size_t(p.k.size(2)));
  std::vector<uint8_t> codes(size_t(p.k.size(2)));
  for (int64_t t = 0; t < p.k.size(0); ++t) {
    const int32_t seq = i32_at(p.seq_ids, t), pos = i32_at(p.positions, t);
    TIDAL_CHECK(pos >= 0, "quest_metadata_update: negative position");
    const int64_t page = physical_page(p.block_tables, seq, pos / p.page_size,
                                       p.key_max.size(0), "quest_metadata_update");
    const bool fresh = pos % p.page_size == 0;
    for (int64_t h = 0; h < p.k.size(1); ++h) {
      for (int64_t d = 0; d < p.k.size(2); ++d) row[size_t(d)] = get_f32(p.k, t, h, d);
      if (p.fp8_keys) {
        const float scale = quantize_e4m3_row(row.data(), p.k.size(2), codes.data());
        dequantize_e4m3_row(codes.data(), scale, p.k.size(2), row.data());
      }
      for (int64_t d = 0; d < p.k.size(2); ++d) {
        const float x = row[size_t(d)];
        set_f32(p.key_max, page, h, d, fresh ? x : std::max(get_f32(p.key_max, page, h, d), x));
        set_f32(p.key_min, page, h, d, fresh ? x : std::min(get_f32(p.key_min, page, h, d), x));
      }
    }
  }
}

// Quest's bound (reference/TIDALDECODE.md §5): for any key k with min <= k <= max element-wise,
// q_i * k_i <= max(q_i * max_i, q_i * min_i), so U >= q . k. Unscaled, like Quest's.
void ref::quest_page_scores(const QuestPageScoresParams& p) {
  const int64_t group = p.q.size(1) / p.key_max.size(1);
  for (int64_t t = 0; t < p.q.size(0); ++t) {
    if (TokenRole(p.roles.data_as<uint8_t>()[t]) != TokenRole::kQuest) continue;
    const int32_t seq = i32_at(p.seq_ids, t);
    const int64_t n = i32_at(p.lengths, t);
    TIDAL_CHECK(n >= 1, "quest_page_scores: lengths must be >= 1");
    const int64_t full_pages = (n - 1) / p.page_size;
    TIDAL_CHECK(full_pages < p.out.size(2), "quest_page_scores: pages beyond out's max_pages");
    for (int64_t lp = 0; lp < full_pages; ++lp) {
      const int64_t page =
          physical_page(p.block_tables, seq, lp, p.key_max.size(0), "quest_page_scores");
      for (int64_t h = 0; h < p.q.size(1); ++h) {
        const int64_t kvh = h / group;
        double u = 0.0;
        for (int64_t d = 0; d < p.q.size(2); ++d) {
          const double qd = get_f32(p.q, t, h, d);
          u += std::max(qd * get_f32(p.key_max, page, kvh, d),
                        qd * get_f32(p.key_min, page, kvh, d));
        }
        set_f32(p.out, t, h, lp, float(u));
      }
    }
  }
}

void ref::expand_pages(const ExpandPagesParams& p) {
  int32_t* out = p.positions.data_as<int32_t>();
  for (int64_t t = 0; t < p.pages.size(0); ++t) {
    if (TokenRole(p.roles.data_as<uint8_t>()[t]) != TokenRole::kQuest) continue;
    const int64_t pos = i32_at(p.lengths, t) - 1;
    const int64_t lists = i32_at(p.num_lists, t);
    TIDAL_CHECK(pos >= 0, "expand_pages: lengths must be >= 1");
    TIDAL_CHECK(lists >= 1 && lists <= p.pages.size(1), "expand_pages: num_lists out of range");
    for (int64_t l = 0; l < lists; ++l) {
      const int64_t num = i32_at(p.page_counts, t, l);
      TIDAL_CHECK(num >= 0 && num <= p.pages.size(2),
                  "expand_pages: page count outside 0..max_page_budget");
      int64_t count = 0, prev = -1;
      for (int64_t i = 0; i < num; ++i) {
        const int64_t page = i32_at(p.pages, t, l, i);
        TIDAL_CHECK(page > prev, "expand_pages: pages must be ascending and distinct");
        TIDAL_CHECK(page <= pos / p.page_size, "expand_pages: page after the current one");
        prev = page;
        const int64_t last = std::min(page * p.page_size + p.page_size - 1, pos);
        for (int64_t j = page * p.page_size; j <= last; ++j) {
          TIDAL_CHECK(count < p.positions.size(2), "expand_pages: positions beyond max_budget");
          out[offset_of(p.positions, t, l, count++)] = int32_t(j);
        }
      }
      p.counts.data_as<int32_t>()[offset_of(p.counts, t, l)] = int32_t(count);
      for (int64_t i = count; i < p.positions.size(2); ++i) {
        out[offset_of(p.positions, t, l, i)] = -1;
      }
    }
  }
}

}  // namespace tidal::kernels
