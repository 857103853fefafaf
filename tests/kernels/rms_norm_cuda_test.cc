// SPDX-License-Identifier: Apache-2.0
// rms_norm and fused_add_rms_norm on the GPU against ref:: on the same (dtype-rounded) inputs.
#include <string>
#include <tuple>

#include "kernels/rms_norm.h"
#include "tests/testing/device_tensor.h"
#include "tests/testing/sub_views.h"
#include "tests/testing/testing.h"

namespace tidal::kernels {
namespace {

using testing::DeviceTensor;

struct NormCase {
  const char* name;
  int64_t tokens, hidden;
  int64_t pad;  // extra columns in the input's rows (row stride hidden + pad); rms_norm only
};

const NormCase kCases[] = {
    {"one", 1, 1, 0},
    {"odd_7x37", 7, 37, 0},
    {"odd_733_padded", 5, 733, 3},  // misaligned rows: the scalar path
    {"hidden_5120", 37, 5120, 0},
    {"hidden_1002_padded", 3, 1002, 6},
    {"llama_4096_padded", 2, 4096, 8},  // aligned row stride: the vector path on a strided input
    {"llama_decode_64x4096", 64, 4096, 0},
    {"hidden_8192", 3, 8192, 0},
    {"hidden_16384", 2, 16384, 0},
};

class NormCuda : public ::testing::TestWithParam<std::tuple<NormCase, DType>> {};

TEST_P(NormCuda, RmsNormMatchesRef) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const auto& [c, dtype] = GetParam();
  const float eps = 1e-5f;
  const HostTensor in_full =
      testing::convert(testing::random_tensor({c.tokens, c.hidden + c.pad}, 1, 3.0f).view(), dtype);
  const HostTensor weight = testing::convert(testing::random_tensor({c.hidden}, 2).view(), dtype);
  HostTensor want({c.tokens, c.hidden}, dtype);
  ref::rms_norm(want.view(), testing::columns(in_full.view(), 0, c.hidden), weight.view(), eps);

  const DeviceTensor d_in = DeviceTensor::from_host(in_full.view());
  const DeviceTensor d_weight = DeviceTensor::from_host(weight.view());
  DeviceTensor d_out = DeviceTensor::filled({c.tokens, c.hidden}, dtype, 0xFF);
  rms_norm(d_out.view(), testing::columns(d_in.view(), 0, c.hidden), d_weight.view(), eps,
           Stream{});
  const testing::Tolerance tol = testing::tolerance(dtype);
  EXPECT_TRUE(
      testing::all_close(d_out.to_floats(), testing::to_vector(want.view()), tol.atol, tol.rtol));
}

TEST_P(NormCuda, RmsNormInPlace) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const auto& [c, dtype] = GetParam();
  const HostTensor x =
      testing::convert(testing::random_tensor({c.tokens, c.hidden}, 3).view(), dtype);
  const HostTensor weight = testing::convert(testing::random_tensor({c.hidden}, 4).view(), dtype);
  HostTensor want({c.tokens, c.hidden}, dtype);
  ref::rms_norm(want.view(), x.view(), weight.view(), 1e-6f);

  DeviceTensor d_x = DeviceTensor::from_host(x.view());
  const DeviceTensor d_weight = DeviceTensor::from_host(weight.view());
  rms_norm(d_x.view(), d_x.view(), d_weight.view(), 1e-6f, Stream{});
  const testing::Tolerance tol = testing::tolerance(dtype);
  EXPECT_TRUE(
      testing::all_close(d_x.to_floats(), testing::to_vector(want.view()), tol.atol, tol.rtol));
}

TEST_P(NormCuda, FusedAddRmsNormMatchesRef) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const auto& [c, dtype] = GetParam();
  const float eps = 1e-5f;
  HostTensor residual =
      testing::convert(testing::random_tensor({c.tokens, c.hidden}, 5, 4.0f).view(), dtype);
  const HostTensor delta =
      testing::convert(testing::random_tensor({c.tokens, c.hidden}, 6).view(), dtype);
  const HostTensor weight = testing::convert(testing::random_tensor({c.hidden}, 7).view(), dtype);
  DeviceTensor d_residual = DeviceTensor::from_host(residual.view());
  const DeviceTensor d_delta = DeviceTensor::from_host(delta.view());
  const DeviceTensor d_weight = DeviceTensor::from_host(weight.view());
  DeviceTensor d_out = DeviceTensor::filled({c.tokens, c.hidden}, dtype, 0xFF);

  HostTensor want({c.tokens, c.hidden}, dtype);
  ref::fused_add_rms_norm(want.view(), residual.view(), delta.view(), weight.view(), eps);
  fused_add_rms_norm(d_out.view(), d_residual.view(), d_delta.view(), d_weight.view(), eps,
                     Stream{});
  const testing::Tolerance tol = testing::tolerance(dtype);
  EXPECT_TRUE(testing::all_close(d_residual.to_floats(), testing::to_vector(residual.view()),
                                 tol.atol, tol.rtol))
      << "residual";
  EXPECT_TRUE(
      testing::all_close(d_out.to_floats(), testing::to_vector(want.view()), tol.atol, tol.rtol))
      << "out";
}

// Under TP the delta is the f32 all-reduce of the partial sums: the kernel rounds it to the
// residual's dtype first, bit for bit what the rounded delta gives (the one-rank forward's).
TEST_P(NormCuda, FusedAddRmsNormF32DeltaEqualsItsRoundedCopy) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const auto& [c, dtype] = GetParam();
  if (dtype == DType::kF32) GTEST_SKIP() << "an f32 delta under an f32 residual is the plain case";
  const HostTensor residual =
      testing::convert(testing::random_tensor({c.tokens, c.hidden}, 8, 4.0f).view(), dtype);
  const HostTensor delta = testing::random_tensor({c.tokens, c.hidden}, 9);  // f32
  const HostTensor rounded = testing::convert(delta.view(), dtype);
  const HostTensor weight = testing::convert(testing::random_tensor({c.hidden}, 10).view(), dtype);
  const DeviceTensor d_weight = DeviceTensor::from_host(weight.view());
  DeviceTensor res_f32 = DeviceTensor::from_host(residual.view());
  DeviceTensor res_rounded = DeviceTensor::from_host(residual.view());
  const DeviceTensor d_delta = DeviceTensor::from_host(delta.view());
  const DeviceTensor d_rounded = DeviceTensor::from_host(rounded.view());
  DeviceTensor out_f32 = DeviceTensor::filled({c.tokens, c.hidden}, dtype, 0xFF);
  DeviceTensor out_rounded = DeviceTensor::filled({c.tokens, c.hidden}, dtype, 0xFF);
  fused_add_rms_norm(out_f32.view(), res_f32.view(), d_delta.view(), d_weight.view(), 1e-5f,
                     Stream{});
  fused_add_rms_norm(out_rounded.view(), res_rounded.view(), d_rounded.view(), d_weight.view(),
                     1e-5f, Stream{});
  EXPECT_EQ(res_f32.to_floats(), res_rounded.to_floats()) << "residual";
  EXPECT_EQ(out_f32.to_floats(), out_rounded.to_floats()) << "out";
}

INSTANTIATE_TEST_SUITE_P(Shapes, NormCuda,
                         ::testing::Combine(::testing::ValuesIn(kCases),
                                            ::testing::Values(DType::kF32, DType::kF16,
                                                              DType::kBF16)),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param).name) + "_" +
                                  dtype_name(std::get<1>(info.param));
                         });

}  // namespace
}  // namespace tidal::kernels
