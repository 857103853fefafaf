// SPDX-License-Identifier: Apache-2.0
#include "kernels/linear.h"

#include "runtime/tensor_access.h"
#include "tests/testing/testing.h"

namespace tidal::kernels {
namespace {

TEST(LinearRef, KnownValues) {
  const HostTensor x = HostTensor::from({2, 3}, {1, 2, 3, -1, 0, 2});
  const HostTensor w = HostTensor::from({2, 3}, {1, 0, 1, 0.5f, 0.5f, 0.5f});  // [out=2, in=3]
  HostTensor y({2, 2}, DType::kF32);
  linear(y.view(), x.view(), w.view(), Stream{});
  EXPECT_TRUE(testing::all_close(testing::to_vector(y.view()), {4, 3, 1, 0.5f}, 0, 0));
}

TEST(LinearRef, Bf16WeightsAndStridedInput) {
  // bf16 weights hold 1.5 and -2 exactly; the input is every other column of a [1, 4] row.
  HostTensor w({1, 2}, DType::kBF16);
  set_f32(w.view(), 0, 0, 1.5f);
  set_f32(w.view(), 0, 1, -2.0f);
  float row[4] = {2, 99, 3, 99};
  TensorView x = make_view(row, DType::kF32, {1, 2});
  x.stride[1] = 2;
  HostTensor y({1, 1}, DType::kF32);
  linear(y.view(), x, w.view(), Stream{});
  EXPECT_EQ(y.at(0), 2 * 1.5f - 3 * 2.0f);
}

}  // namespace
}  // namespace tidal::kernels
