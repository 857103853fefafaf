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

TEST(LinearRef, Bf16WithRowStrideAndF32Out) {
  // bf16 holds 1.5, -2, 2, 3 and 0.5 exactly; the input rows are the first two columns of a
  // [2, 4] buffer (row stride 4), and the logits-style output is f32.
  HostTensor w({1, 2}, DType::kBF16);
  set_f32(w.view(), 0, 0, 1.5f);
  set_f32(w.view(), 0, 1, -2.0f);
  HostTensor buffer({2, 4}, DType::kBF16);
  const float values[8] = {2, 3, 99, 99, 0.5f, -2, 99, 99};
  for (int i = 0; i < 8; ++i) set_f32(buffer.view(), i / 4, i % 4, values[i]);
  TensorView x = buffer.view();
  x.shape[1] = 2;
  HostTensor y({2, 1}, DType::kF32);
  linear(y.view(), x, w.view(), Stream{});
  EXPECT_EQ(y.at(0), 2 * 1.5f - 3 * 2.0f);
  EXPECT_EQ(y.at(1), 0.5f * 1.5f + 2 * 2.0f);
}

TEST(LinearRef, MixedDtypesAreRejected) {
  HostTensor w({1, 2}, DType::kBF16);
  const HostTensor x = HostTensor::from({1, 2}, {1, 2});  // f32 input, bf16 weight
  HostTensor y({1, 1}, DType::kF32);
  EXPECT_DEATH(linear(y.view(), x.view(), w.view(), Stream{}), "share a dtype");
}

}  // namespace
}  // namespace tidal::kernels
