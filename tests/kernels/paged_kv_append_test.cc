// SPDX-License-Identifier: Apache-2.0
#include "kernels/paged_kv_append.h"

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
