// SPDX-License-Identifier: Apache-2.0
#include "kernels/residual_add.h"

#include "tests/testing/device_tensor.h"
#include "tests/testing/testing.h"

namespace tidal::kernels {
namespace {

TEST(ResidualAddRef, KnownValuesInPlace) {
  HostTensor a = HostTensor::from({1, 3}, {1.0f, -2.0f, 0.5f});
  const HostTensor b = HostTensor::from({1, 3}, {1.0f, 2.0f, 0.25f});
  residual_add(a.view(), a.view(), b.view(), Stream{});  // out aliases a, as the forward uses it
  EXPECT_TRUE(testing::all_close(testing::to_vector(a.view()), {2.0f, 0.0f, 0.75f}, 0, 0));
}

// An f32 addend (a row-parallel projection's partial sums reduced in f32) is rounded to out's
// dtype first: the same result as its rounded copy.
TEST(ResidualAddRef, AnF32AddendEqualsItsRoundedCopy) {
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    const HostTensor a = testing::convert(testing::random_tensor({2, 19}, 31, 4.0f).view(), dtype);
    const HostTensor b = testing::random_tensor({2, 19}, 32);
    const HostTensor rounded = testing::convert(b.view(), dtype);
    HostTensor from_f32({2, 19}, dtype), from_rounded({2, 19}, dtype);
    residual_add(from_f32.view(), a.view(), b.view(), Stream{});
    residual_add(from_rounded.view(), a.view(), rounded.view(), Stream{});
    EXPECT_EQ(testing::to_vector(from_f32.view()), testing::to_vector(from_rounded.view()))
        << dtype_name(dtype);
  }
}

}  // namespace
}  // namespace tidal::kernels
