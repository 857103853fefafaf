// SPDX-License-Identifier: Apache-2.0
#include "kernels/rotary_embedding.h"

#include <cmath>

#include "tests/testing/testing.h"

namespace tidal::kernels {
namespace {

TEST(RotaryEmbeddingRef, RotatesHalves) {
  // head_dim 4: pairs (0, 2) and (1, 3). inv_freq {pi/2, 0}: at position 1 the first pair turns
  // by 90 degrees and the second not at all.
  HostTensor q = HostTensor::from({1, 1, 4}, {1, 2, 3, 4});
  HostTensor k = HostTensor::from({1, 1, 4}, {1, 0, 0, 1});
  const HostTensor inv_freq = HostTensor::from({2}, {float(M_PI / 2), 0.0f});
  int32_t pos[1] = {1};
  rotary_embedding(q.view(), k.view(), make_view(pos, DType::kI32, {1}), inv_freq.view(), Stream{});
  // x'[0] = x0 cos - x2 sin = -3; x'[2] = x2 cos + x0 sin = 1.
  EXPECT_TRUE(testing::all_close(testing::to_vector(q.view()), {-3, 2, 1, 4}, 1e-6f, 0));
  EXPECT_TRUE(testing::all_close(testing::to_vector(k.view()), {0, 0, 1, 1}, 1e-6f, 0));
}

TEST(RotaryEmbeddingRef, PositionZeroIsIdentityAndNormIsKept) {
  HostTensor q = testing::random_tensor({3, 2, 8}, 1);
  HostTensor k = testing::random_tensor({3, 1, 8}, 2);
  const std::vector<float> q0 = testing::to_vector(q.view());
  const HostTensor inv_freq = HostTensor::from({4}, {1.0f, 0.1f, 0.01f, 0.001f});
  int32_t pos[3] = {0, 7, 1000};
  rotary_embedding(q.view(), k.view(), make_view(pos, DType::kI32, {3}), inv_freq.view(), Stream{});
  const std::vector<float> q1 = testing::to_vector(q.view());
  for (int i = 0; i < 16; ++i) EXPECT_EQ(q1[i], q0[i]);  // token 0 at position 0
  for (int t = 1; t < 3; ++t) {                          // pair norms are preserved
    for (int h = 0; h < 2; ++h) {
      for (int i = 0; i < 4; ++i) {
        const int base = t * 16 + h * 8 + i;
        EXPECT_NEAR(std::hypot(q1[base], q1[base + 4]), std::hypot(q0[base], q0[base + 4]), 1e-5);
      }
    }
  }
}

}  // namespace
}  // namespace tidal::kernels
