// SPDX-License-Identifier: Apache-2.0
// TensorView shape, stride and sub-view arithmetic.
#include "runtime/tensor.h"

#include <gtest/gtest.h>

#include "runtime/tensor_access.h"

namespace tidal {
namespace {

TEST(TensorView, ContiguousStridesAndSelect) {
  float data[24];
  for (int i = 0; i < 24; ++i) data[i] = float(i);
  const TensorView v = make_view(data, DType::kF32, {2, 3, 4});
  EXPECT_EQ(v.numel(), 24);
  EXPECT_EQ(v.stride[0], 12);
  EXPECT_EQ(v.stride[2], 1);
  EXPECT_TRUE(v.is_contiguous());
  EXPECT_EQ(get_f32(v, 1, 2, 3), 23.0f);
  const TensorView row = v.select(1);
  EXPECT_EQ(row.rank, 2);
  EXPECT_EQ(get_f32(row, 0, 1), 13.0f);
  const TensorView rows = v.slice(1, 2);
  EXPECT_EQ(rows.size(0), 1);
  EXPECT_EQ(get_f32(rows, 0, 0, 0), 12.0f);
  EXPECT_EQ(v.describe(), "[2, 3, 4] f32");
}

TEST(TensorView, NonContiguousView) {
  float data[6] = {0, 1, 2, 3, 4, 5};
  TensorView v = make_view(data, DType::kF32, {3, 2});
  // Transposed view [2, 3].
  TensorView t = v;
  t.shape[0] = 2;
  t.shape[1] = 3;
  t.stride[0] = 1;
  t.stride[1] = 2;
  EXPECT_FALSE(t.is_contiguous());
  EXPECT_EQ(get_f32(t, 1, 2), 5.0f);
  EXPECT_EQ(get_f32(t, 0, 1), 2.0f);
}

TEST(TensorView, TypedAccessChecksDtype) {
  HostTensor t({2}, DType::kBF16);
  EXPECT_NE(t.view().data_as<bf16>(), nullptr);
  EXPECT_DEATH(t.view().data_as<float>(), "dtype");
}

TEST(HostTensor, FromValues) {
  const HostTensor t = HostTensor::from({2, 2}, {1, 2, 3, 4});
  EXPECT_EQ(t.at(3), 4.0f);
  EXPECT_EQ(t.view().nbytes(), 16u);
}

}  // namespace
}  // namespace tidal
