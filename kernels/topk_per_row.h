// SPDX-License-Identifier: Apache-2.0
// Token (or page) selection, TidalDecode's budget semantics (reference/TIDALDECODE.md §1.4):
// for each row with n valid scores, the budget-1 highest scores among positions 0..n-2, plus
// position n-1 (the current token or page) always; sorted ascending; ties go to the lower
// position. When n <= budget every position 0..n-1 is kept.
#pragma once

#include <cstdint>

#include "runtime/tensor.h"

namespace tidal::kernels {

struct TopkPerRowParams {
  TensorView indices;  // [rows, budget] i32, written; entries past counts[r] are set to -1
  TensorView counts;   // [rows] i32, written: min(n, budget)
  TensorView scores;   // [rows, max_len] f32; only the first lengths[r] entries of a row are read
  TensorView lengths;  // [rows] i32, n of each row, 1 <= n <= max_len
  int64_t budget = 0;  // >= 1
};

void topk_per_row(const TopkPerRowParams& p);

namespace ref {
void topk_per_row(const TopkPerRowParams& p);
}  // namespace ref

}  // namespace tidal::kernels
