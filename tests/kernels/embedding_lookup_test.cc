// SPDX-License-Identifier: Apache-2.0
#include "kernels/embedding_lookup.h"

#include "tests/testing/testing.h"

namespace tidal::kernels {
namespace {

TEST(EmbeddingLookupRef, CopiesRows) {
  const HostTensor table = HostTensor::from({3, 2}, {0, 1, 10, 11, 20, 21});
  int32_t ids[3] = {2, 0, 2};
  HostTensor out({3, 2}, DType::kF32);
  embedding_lookup(out.view(), table.view(), make_view(ids, DType::kI32, {3}), Stream{});
  EXPECT_TRUE(testing::all_close(testing::to_vector(out.view()), {20, 21, 0, 1, 20, 21}, 0, 0));
}

TEST(EmbeddingLookupRef, IdOutOfRangeIsABug) {
  const HostTensor table = HostTensor::from({1, 1}, {0});
  int32_t ids[1] = {1};
  HostTensor out({1, 1}, DType::kF32);
  EXPECT_DEATH(embedding_lookup(out.view(), table.view(), make_view(ids, DType::kI32, {1}), Stream{}),
               "out of range");
}

}  // namespace
}  // namespace tidal::kernels
