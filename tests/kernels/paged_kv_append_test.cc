// SPDX-License-Identifier: Apache-2.0
#include "kernels/paged_kv_append.h"

#include <cmath>

#include "runtime/tensor_access.h"
#include "tests/testing/testing.h"

namespace tidal::kernels {
namespace {

TEST(PagedKvAppendRef, WritesThroughTheBlockTable) {
  // 3 pages of 2 slots, 1 KV head, head_dim 1. Sequence 0 owns pages {2, 0}.
  HostTensor kc({3, 2, 1, 1}, DType::kF32), vc({3, 2, 1, 1}, DType::kF32);
  int32_t table[2] = {2, 0};
  int32_t seq[3] = {0, 0, 0}, pos[3] = {0, 1, 2};
  const HostTensor k = HostTensor::from({3, 1, 1}, {10, 11, 12});
  const HostTensor v = HostTensor::from({3, 1, 1}, {20, 21, 22});
  paged_kv_append(PagedKvAppendParams{kc.view(), vc.view(), make_view(table, DType::kI32, {1, 2}),
                                      make_view(seq, DType::kI32, {3}),
                                      make_view(pos, DType::kI32, {3}), k.view(), v.view()},
                  Stream{});
  // Positions 0, 1 -> page 2 slots 0, 1; position 2 -> page 0 slot 0.
  EXPECT_TRUE(testing::all_close(testing::to_vector(kc.view()), {12, 0, 0, 0, 10, 11}, 0, 0));
  EXPECT_TRUE(testing::all_close(testing::to_vector(vc.view()), {22, 0, 0, 0, 20, 21}, 0, 0));
}

// rope_q set: q and k are rotated in place first (rotary_embedding's contract), and the rotated
// k is what the cache gets. head_dim 2: one pair, angle = position * inv_freq[0].
TEST(PagedKvAppendRef, RopeFirstRotatesQAndTheAppendedKey) {
  HostTensor kc({1, 2, 1, 2}, DType::kF32), vc({1, 2, 1, 2}, DType::kF32);
  int32_t table[1] = {0}, seq[1] = {0}, pos[1] = {1};
  HostTensor q = HostTensor::from({1, 1, 2}, {1, 0});
  HostTensor k = HostTensor::from({1, 1, 2}, {0, 2});
  const HostTensor v = HostTensor::from({1, 1, 2}, {5, 6});
  const HostTensor freq = HostTensor::from({1}, {0.5f});
  PagedKvAppendParams p{kc.view(), vc.view(), make_view(table, DType::kI32, {1, 1}),
                        make_view(seq, DType::kI32, {1}), make_view(pos, DType::kI32, {1}),
                        k.view(), v.view()};
  p.rope_q = q.view();
  p.rope_inv_freq = freq.view();
  paged_kv_append(p, Stream{});
  const float c = float(std::cos(0.5)), s = float(std::sin(0.5));
  // (a, b) -> (a c - b s, b c + a s): q = (1, 0) -> (c, s); k = (0, 2) -> (-2 s, 2 c).
  EXPECT_TRUE(testing::all_close(testing::to_vector(q.view()), {c, s}, 1e-6f, 1e-6f));
  EXPECT_TRUE(testing::all_close(testing::to_vector(k.view()), {-2 * s, 2 * c}, 1e-6f, 1e-6f));
  EXPECT_TRUE(testing::all_close(testing::to_vector(kc.view()), {0, 0, -2 * s, 2 * c}, 0, 0));
  EXPECT_TRUE(testing::all_close(testing::to_vector(vc.view()), {0, 0, 5, 6}, 0, 0));
}

TEST(PagedKvAppendRef, RopeNeedsMatchingShapes) {
  HostTensor kc({1, 2, 1, 2}, DType::kF32), vc({1, 2, 1, 2}, DType::kF32);
  int32_t table[1] = {0}, seq[1] = {0}, pos[1] = {0};
  const HostTensor k = HostTensor::from({1, 1, 2}, {0, 2});
  const HostTensor q = HostTensor::from({1, 1, 4}, {1, 0, 0, 0});  // head_dim 4, not k's 2
  const HostTensor freq = HostTensor::from({1}, {0.5f});
  PagedKvAppendParams p{kc.view(), vc.view(), make_view(table, DType::kI32, {1, 1}),
                        make_view(seq, DType::kI32, {1}), make_view(pos, DType::kI32, {1}),
                        k.view(), k.view()};
  p.rope_q = q.view();
  p.rope_inv_freq = freq.view();
  EXPECT_DEATH(paged_kv_append(p, Stream{}), "rope_q must be");
}

TEST(PagedKvAppendRef, PositionBeyondTableIsABug) {
  HostTensor kc({1, 2, 1, 1}, DType::kF32), vc({1, 2, 1, 1}, DType::kF32);
  int32_t table[1] = {0}, seq[1] = {0}, pos[1] = {2};
  const HostTensor k = HostTensor::from({1, 1, 1}, {1});
  const PagedKvAppendParams p{kc.view(),
                              vc.view(),
                              make_view(table, DType::kI32, {1, 1}),
                              make_view(seq, DType::kI32, {1}),
                              make_view(pos, DType::kI32, {1}),
                              k.view(),
                              k.view()};
  EXPECT_DEATH(paged_kv_append(p, Stream{}), "block table");
}

}  // namespace
}  // namespace tidal::kernels
