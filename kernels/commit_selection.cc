// SPDX-License-Identifier: Apache-2.0
#include "kernels/commit_selection.h"

#include <algorithm>

#include "kernels/dispatch.h"

namespace tidal::kernels {

void commit_selection(const CommitSelectionParams& p, [[maybe_unused]] Stream stream) {
  const char* op = "commit_selection";
  TIDAL_CHECK(p.lists.rank == 3,
              "commit_selection: lists must be [num_tokens, max_lists, max_budget]");
  const int64_t tokens = p.lists.size(0), lists = p.lists.size(1), budget = p.lists.size(2);
  check_shape(p.lists, {tokens, lists, budget}, DType::kI32, op, "lists");
  check_shape(p.new_lists, {tokens, lists, budget}, DType::kI32, op, "new_lists");
  check_shape(p.counts, {tokens, lists}, DType::kI32, op, "counts");
  check_shape(p.new_counts, {tokens, lists}, DType::kI32, op, "new_counts");
  check_per_token(p.num_lists, tokens, DType::kI32, op, "num_lists");
  check_per_token(p.roles, tokens, DType::kU8, op, "roles");
  check_per_token(p.seq_ids, tokens, DType::kI32, op, "seq_ids");
  check_shape(p.overlap, {p.overlap.size(0), 2}, DType::kI64, op, "overlap");
  if (p.rows.data != nullptr) {
    check_shape(p.rows, {tokens, lists, budget}, DType::kI32, op, "rows");
    TIDAL_CHECK(p.block_tables.rank == 2 && p.block_tables.dtype == DType::kI32 &&
                    p.block_tables.data != nullptr,
                "commit_selection: rows need block_tables [num_rows, max_pages] i32");
    check_per_token(p.lengths, tokens, DType::kI32, op, "lengths");
    if (p.prior_lens.data != nullptr) {
      check_per_token(p.prior_lens, tokens, DType::kI32, op, "prior_lens");
    }
    TIDAL_CHECK(p.page_size >= 1, "commit_selection: rows need page_size >= 1");
  }
  if (on_cuda(op, {p.lists, p.counts, p.new_lists, p.new_counts, p.num_lists, p.roles, p.seq_ids,
                   p.overlap, p.rows, p.block_tables, p.lengths, p.prior_lens})) {
    TIDAL_CUDA_CALL(op, cuda::commit_selection(p, stream));
    return;
  }
  ref::commit_selection(p);
}

namespace {

// CommitSelectionParams::rows of list l of token t.
void resolve_rows(const CommitSelectionParams& p, int64_t t, int64_t l, const int32_t* list,
                  int32_t count) {
  const int64_t budget = p.rows.size(2);
  int32_t* rows = p.rows.data_as<int32_t>() + (t * p.rows.size(1) + l) * budget;
  const int32_t seq = p.seq_ids.data_as<int32_t>()[t];
  if (seq < 0 || seq >= p.block_tables.size(0)) {
    std::fill(rows, rows + budget, kNoCacheRow);
    return;
  }
  const int32_t* table = p.block_tables.data_as<int32_t>() + seq * p.block_tables.stride[0];
  // Positions past the block table are out of range (decode attention caps n likewise).
  const int32_t n = int32_t(std::min<int64_t>(p.lengths.data_as<int32_t>()[t],
                                              p.block_tables.size(1) * p.page_size));
  const int32_t prior = p.prior_lens.data != nullptr ? p.prior_lens.data_as<int32_t>()[t] : 0;
  resolve_cache_rows(table, p.block_tables.stride[1], list, count, budget, n, int32_t(p.page_size),
                     prior, rows);
}

}  // namespace

void ref::commit_selection(const CommitSelectionParams& p) {
  const int64_t max_lists = p.lists.size(1), budget = p.lists.size(2);
  for (int64_t t = 0; t < p.lists.size(0); ++t) {
    const auto role = TokenRole(p.roles.data_as<uint8_t>()[t]);
    if (!is_selecting(role)) continue;
    const int64_t lists = p.num_lists.data_as<int32_t>()[t];
    const int32_t row = p.seq_ids.data_as<int32_t>()[t];
    TIDAL_CHECK(lists >= 1 && lists <= max_lists, "commit_selection: num_lists out of range");
    TIDAL_CHECK(row >= 0 && row < p.overlap.size(0), "commit_selection: seq id out of range");
    for (int64_t l = 0; l < lists; ++l) {
      int32_t* old_list = p.lists.data_as<int32_t>() + (t * max_lists + l) * budget;
      const int32_t* new_list = p.new_lists.data_as<int32_t>() + (t * max_lists + l) * budget;
      int32_t* old_count = p.counts.data_as<int32_t>() + t * max_lists + l;
      const int32_t new_count = p.new_counts.data_as<int32_t>()[t * max_lists + l];
      if (role == TokenRole::kReselect) {
        int64_t kept = 0;
        for (int32_t i = 0; i < *old_count; ++i) {
          kept += std::binary_search(new_list, new_list + new_count, old_list[i]);
        }
        p.overlap.data_as<int64_t>()[2 * row] += kept;
        p.overlap.data_as<int64_t>()[2 * row + 1] += *old_count;
      }
      if (p.rows.data != nullptr) resolve_rows(p, t, l, new_list, new_count);
      std::copy(new_list, new_list + budget, old_list);
      *old_count = new_count;
    }
  }
}

}  // namespace tidal::kernels
