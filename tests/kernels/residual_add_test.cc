// SPDX-License-Identifier: Apache-2.0
#include "kernels/residual_add.h"

#include "tests/testing/testing.h"

namespace tidal::kernels {
namespace {

TEST(ResidualAddRef, KnownValuesInPlace) {
  HostTensor a = HostTensor::from({1, 3}, {1.0f, -2.0f, 0.5f});
  const HostTensor b = HostTensor::from({1, 3}, {1.0f, 2.0f, 0.25f});
  residual_add(a.view(), a.view(), b.view(), Stream{});  // out aliases a, as the forward uses it
  EXPECT_TRUE(testing::all_close(testing::to_vector(a.view()), {2.0f, 0.0f, 0.75f}, 0, 0));
}

}  // namespace
}  // namespace tidal::kernels
