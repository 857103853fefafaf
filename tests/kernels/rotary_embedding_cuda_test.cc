// SPDX-License-Identifier: Apache-2.0
// rotary_embedding on the GPU against ref:: on the same (dtype-rounded) inputs, with Llama-3's
// frequencies (theta 500000) at positions up to 2^20 (angles ~1e6 rad, where an f32 cos/sin of
// the angle would be off in the third digit).
#include <cmath>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/rotary_embedding.h"
#include "tests/testing/device_tensor.h"
#include "tests/testing/testing.h"

namespace tidal::kernels {
namespace {

using testing::DeviceTensor;

struct RopeCase {
  const char* name;
  int64_t tokens, heads, kv_heads, head_dim;
  int32_t max_position;
};

const RopeCase kCases[] = {
    {"one", 1, 1, 1, 2, 0},
    {"head_dim_6", 2, 3, 1, 6, 100},  // half 3: the scalar path
    {"head_dim_8", 5, 8, 4, 8, 512},  // stories260K: half 4 is a 16-byte vector only for f32
    {"head_dim_64", 7, 4, 2, 64, 4096},
    {"llama3_prefill_37", 37, 32, 8, 128, 131071},
    {"llama2_decode_16", 16, 32, 32, 128, 4095},
    {"long_context_1m", 9, 32, 8, 128, 1 << 20},
};

// inv_freq[i] = 1 / theta^(2i / head_dim), as transformers computes it (in f32).
HostTensor llama_inv_freq(int64_t head_dim, double theta) {
  std::vector<float> f(size_t(head_dim / 2));
  for (size_t i = 0; i < f.size(); ++i) {
    f[i] = float(1.0 / std::pow(theta, double(2 * i) / double(head_dim)));
  }
  return HostTensor::from({head_dim / 2}, f);
}

class RotaryEmbeddingCuda : public ::testing::TestWithParam<std::tuple<RopeCase, DType>> {};

TEST_P(RotaryEmbeddingCuda, MatchesRef) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const auto& [c, dtype] = GetParam();
  HostTensor q =
      testing::convert(testing::random_tensor({c.tokens, c.heads, c.head_dim}, 1).view(), dtype);
  HostTensor k =
      testing::convert(testing::random_tensor({c.tokens, c.kv_heads, c.head_dim}, 2).view(), dtype);
  const HostTensor inv_freq = llama_inv_freq(c.head_dim, 500000.0);
  std::mt19937 rng(3);
  std::vector<int32_t> pos(size_t(c.tokens));
  for (auto& p : pos) p = int32_t(rng() % uint32_t(c.max_position + 1));
  pos[0] = c.max_position;  // the extreme, and 0, always present
  if (c.tokens > 1) pos[1] = 0;
  const TensorView h_pos = make_view(pos.data(), DType::kI32, {c.tokens});

  DeviceTensor d_q = DeviceTensor::from_host(q.view());
  DeviceTensor d_k = DeviceTensor::from_host(k.view());
  const DeviceTensor d_pos = DeviceTensor::from_host(h_pos);
  const DeviceTensor d_freq = DeviceTensor::from_host(inv_freq.view());
  ref::rotary_embedding(q.view(), k.view(), h_pos, inv_freq.view());
  rotary_embedding(d_q.view(), d_k.view(), d_pos.view(), d_freq.view(), Stream{});
  const testing::Tolerance tol = testing::tolerance(dtype);
  EXPECT_TRUE(testing::all_close(d_q.to_floats(), testing::to_vector(q.view()), tol.atol, tol.rtol))
      << "q";
  EXPECT_TRUE(testing::all_close(d_k.to_floats(), testing::to_vector(k.view()), tol.atol, tol.rtol))
      << "k";
}

INSTANTIATE_TEST_SUITE_P(Shapes, RotaryEmbeddingCuda,
                         ::testing::Combine(::testing::ValuesIn(kCases),
                                            ::testing::Values(DType::kF32, DType::kF16,
                                                              DType::kBF16)),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param).name) + "_" +
                                  dtype_name(std::get<1>(info.param));
                         });

}  // namespace
}  // namespace tidal::kernels
