// SPDX-License-Identifier: Apache-2.0
#include "kernels/gather_rows.h"

#include "tests/testing/testing.h"

namespace tidal::kernels {
namespace {

TEST(GatherRowsRef, CopiesRowsThroughTheirStride) {
  // in: the first two columns of a [3, 3] buffer (row stride 3); rows may repeat.
  const HostTensor buffer = HostTensor::from({3, 3}, {0, 1, 99, 10, 11, 99, 20, 21, 99});
  TensorView in = buffer.view();
  in.shape[1] = 2;
  int32_t rows[4] = {2, 0, 2, 1};
  HostTensor out({4, 2}, DType::kF32);
  gather_rows(out.view(), in, make_view(rows, DType::kI32, {4}), Stream{});
  EXPECT_TRUE(
      testing::all_close(testing::to_vector(out.view()), {20, 21, 0, 1, 20, 21, 10, 11}, 0, 0));
}

TEST(GatherRowsRef, NoRowsIsANoOp) {
  const HostTensor in = HostTensor::from({1, 2}, {1, 2});
  HostTensor out({0, 2}, DType::kF32);
  int32_t rows[1] = {0};
  gather_rows(out.view(), in.view(), make_view(rows, DType::kI32, {0}), Stream{});
  EXPECT_EQ(out.view().numel(), 0);
}

TEST(GatherRowsRef, RowOutOfRangeIsABug) {
  const HostTensor in = HostTensor::from({2, 1}, {0, 1});
  HostTensor out({1, 1}, DType::kF32);
  int32_t rows[1] = {2};
  EXPECT_DEATH(gather_rows(out.view(), in.view(), make_view(rows, DType::kI32, {1}), Stream{}),
               "out of range");
  rows[0] = -1;
  EXPECT_DEATH(gather_rows(out.view(), in.view(), make_view(rows, DType::kI32, {1}), Stream{}),
               "out of range");
}

}  // namespace
}  // namespace tidal::kernels
