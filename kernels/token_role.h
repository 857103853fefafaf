// SPDX-License-Identifier: Apache-2.0
// What a decode token's attention does in one layer. The host decides it for every token and
// layer before a step (from each sequence's policy, DESIGN.md §7) and the step plan carries one
// byte per (layer, token) in device memory, so one launch per op serves a batch that mixes
// policies, and a captured graph replays any mix.
#pragma once

#include <cstdint>

namespace tidal::kernels {

enum class TokenRole : uint8_t {
  kDense = 0,     // dense attention over positions 0..n-1
  kSelect = 1,    // dense, and its logits pick the token's lists (first selection of the step)
  kReselect = 2,  // as kSelect, replacing lists picked earlier in the step (overlap is counted)
  kSparse = 3,    // attention over the token's lists only
  kQuest = 4,     // Quest: page bounds -> page top-k -> attention over the chosen pages' tokens
};

constexpr uint32_t role_bit(TokenRole r) { return 1u << uint32_t(r); }
// Roles whose dense attention writes logits and whose lists are picked after it.
constexpr uint32_t kSelectingRoles = role_bit(TokenRole::kSelect) | role_bit(TokenRole::kReselect);

constexpr bool is_selecting(TokenRole r) {
  return r == TokenRole::kSelect || r == TokenRole::kReselect;
}
// Roles that attend over a dense range 0..n-1 (rather than lists).
constexpr bool is_dense_range(TokenRole r) { return r == TokenRole::kDense || is_selecting(r); }

// A selecting token whose L = `lists` lists are each shared by a group of heads (1 <= L <
// num_heads, L divides num_heads: per-KV-head lists under GQA, shared lists): its lists are picked
// from the group's summed probabilities (head_group_probs), which are all its logits feed, so
// they may be kept as f16 (DecodeAttentionParams::logits16).
constexpr bool has_group_lists(int32_t lists, int32_t num_heads) {
  return lists >= 1 && lists < num_heads && num_heads % lists == 0;
}

}  // namespace tidal::kernels
