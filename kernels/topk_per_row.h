// SPDX-License-Identifier: Apache-2.0
// Token (or page) selection with TidalDecode's budget semantics (reference/TIDALDECODE.md §1.4),
// for every list of every selecting token of a batch in one call: for a row with n scores and
// budget K, the K-1 highest scores among positions 0..n-2, plus position n-1 (the current token
// or page) always; sorted ascending; ties go to the lower position. When n <= K every position
// 0..n-1 is kept. On the GPU a radix select with each row spread over many blocks (a thread-block
// cluster a row up to 327K positions, a multi-block select past that), so a few rows of 100K+
// positions still fill the machine.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/token_role.h"
#include "runtime/stream.h"
#include "runtime/tensor.h"

namespace tidal::kernels {

struct TopkPerRowParams {
  // [num_tokens, max_lists, max_budget] i32, written for rows l < num_lists[t] of active tokens:
  // min(n, K) positions ascending, then -1 up to max_budget.
  TensorView indices;
  TensorView counts;  // [num_tokens, max_lists] i32, written: min(n, K)
  // [num_tokens, num_heads, max_len] f32; list l of token t reads row l * (num_heads / L),
  // L = num_lists[t], positions 0..n-1. Finite values (or -inf).
  TensorView scores;
  TensorView lengths;         // [num_tokens] i32, n >= 1 (<= max_len)
  TensorView budgets;         // [num_tokens] i32, K in [1, max_budget]
  TensorView num_lists;       // [num_tokens] i32, L; divides num_heads, <= max_lists
  TensorView roles;           // [num_tokens] u8
  uint32_t active_roles = 0;  // role_bit() mask: tokens whose role is in it are selected for
};

// Bytes of scratch the GPU launch needs; 0 on the CPU. Depends only on the shapes of `p`.
size_t topk_per_row_workspace_size(const TopkPerRowParams& p);

void topk_per_row(const TopkPerRowParams& p, TensorView workspace, Stream stream);

namespace ref {
void topk_per_row(const TopkPerRowParams& p);
}  // namespace ref

namespace cuda {
size_t topk_per_row_workspace_size(const TopkPerRowParams& p);
void topk_per_row(const TopkPerRowParams& p, TensorView workspace, Stream stream);
}  // namespace cuda

}  // namespace tidal::kernels
