// SPDX-License-Identifier: Apache-2.0
// linear on the GPU against ref::linear: the GEMV path (num_tokens <= 8, including the scalar
// fallback for rows that are not 16-byte aligned) and the cuBLASLt path (9 and more tokens), every
// dtype pair (f32, f16, bf16, and f16/bf16 inputs with f32 logits), strided inputs, Llama shapes,
// and a CUDA-graph replay of both paths. linear_split (the fused QKV projection) against
// ref::linear on each row block, on both paths.
// The GEMV's warp owns 2 rows (4 at 4+ tokens) and walks them in 16-byte vectors, 32 lanes x 2-4
// vectors a step: the shapes cover a last warp with fewer rows (odd out_features), rows shorter
// than one step (lanes with no vector), ragged tails after whole steps (1032, 11008, 14336, 5120),
// and the scalar path; the split cases put a warp's rows across output boundaries.
//
// Inputs are made on the GPU by fill_random (production weights would take seconds to draw on the
// host) and read back; the reference runs on f32 copies of those values (exact: every f16/bf16 is
// an f32), then rounds to the output dtype as ref::linear on 16-bit views would.
#include <cmath>
#include <cstring>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/fill_random.h"
#include "kernels/linear.h"
#include "kernels/silu_and_mul.h"
#include "runtime/device.h"
#include "runtime/tensor_access.h"
#include "tests/testing/device_tensor.h"
#include "tests/testing/sub_views.h"
#include "tests/testing/testing.h"

namespace tidal::kernels {
namespace {

using testing::DeviceTensor;

struct LinearCase {
  const char* name;
  int64_t tokens, in_features, out_features;
  int64_t pad;  // extra columns in the input rows (row stride in_features + pad)
};

const LinearCase kCases[] = {
    {"m1_tiny_1x64", 1, 64, 1, 0},
    {"m1_8x256", 1, 256, 8, 0},
    {"m1_k100", 1, 100, 37, 0},  // K % 8 != 0: the scalar GEMV for 16-bit types
    {"m1_k4097", 1, 4097, 33, 0},
    {"m2_k4096_misaligned_rows", 2, 4096, 100, 3},  // row stride 4099: scalar GEMV
    {"m3_k100_padded", 3, 100, 33, 5},
    {"m4_k4096", 4, 4096, 257, 0},
    {"m5_k4096", 5, 4096, 130, 0},  // a tile of 8 with 3 padding tokens
    {"m8_k4096_threshold", 8, 4096, 256, 0},
    {"m9_k4096_cublaslt", 9, 4096, 256, 0},
    {"m16_k4096_bucket", 16, 4096, 128, 0},
    {"m37_k100", 37, 100, 37, 0},
    {"m37_k4096_padded", 37, 4096, 128, 8},
    {"m256_k64", 256, 64, 128, 0},
    {"m256_k4096", 256, 4096, 64, 0},
    {"llama3_qkv_m1", 1, 4096, 6144, 0},
    {"llama_down_m1", 1, 14336, 4096, 0},
    {"llama3_down_m8", 8, 14336, 1024, 0},
    {"m1_k8_n1", 1, 8, 1, 0},        // one vector: one thread of 128 works
    {"m1_k1032_n7", 1, 1032, 7, 0},  // 129 vectors: one thread takes a second
    {"m1_k4096_n4096_o_proj", 1, 4096, 4096, 0},
    {"m2_k11008_n733", 2, 11008, 733, 0},  // Llama-2 down rows, odd row count
    {"m3_k5120_n37_padded", 3, 5120, 37, 8},
    {"m6_k1000_n5", 6, 1000, 5, 0},  // 125 vectors: three threads idle
    {"m7_k333_n7", 7, 333, 7, 0},    // scalar path, 3 passes of 128
    {"m1_k4096_n1024_kv", 1, 4096, 1024, 0},
};

struct DtypePair {
  DType in, out;
};
const DtypePair kDtypes[] = {{DType::kF32, DType::kF32},
                             {DType::kF16, DType::kF16},
                             {DType::kBF16, DType::kBF16},
                             {DType::kF16, DType::kF32},
                             {DType::kBF16, DType::kF32}};

// 16-bit outputs: the output dtype's tolerance. f32 logits from 16-bit inputs: f32 accumulation
// over up to 14336 products of N(0,1) x N(0,1/K) values (sums ~N(0,1)) errs by ~1e-5 at most,
// tensor cores included; a 16-bit rounding of the output (2e-3) would fail this.
testing::Tolerance tolerance_for(DtypePair d) {
  if (d.out == DType::kF32 && d.in != DType::kF32) return {1e-4f, 1e-4f};
  return testing::tolerance(d.out);
}

// A device tensor of `shape` filled with N(0, std) draws, and its host copy as f32.
struct Filled {
  DeviceTensor device;
  HostTensor host_f32;
};
Filled filled_random(std::vector<int64_t> shape, DType dtype, uint64_t seed, float std) {
  Filled f{DeviceTensor(shape, dtype), HostTensor()};
  fill_random(f.device.view(), seed, 0.0f, std, Stream{});
  f.host_f32 = testing::convert(f.device.to_host().view(), DType::kF32);
  return f;
}

// ref::linear on f32 copies, rounded to `out_dtype`.
std::vector<float> reference(TensorView in_f32, TensorView weight_f32, DType out_dtype) {
  HostTensor out({in_f32.size(0), weight_f32.size(0)}, DType::kF32);
  ref::linear(out.view(), in_f32, weight_f32);
  std::vector<float> v = testing::to_vector(out.view());
  for (float& x : v) x = round_to(out_dtype, x);
  return v;
}

class LinearCuda : public ::testing::TestWithParam<std::tuple<LinearCase, DtypePair>> {};

TEST_P(LinearCuda, MatchesRef) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const auto& [c, d] = GetParam();
  const int64_t k = c.in_features;
  const Filled in = filled_random({c.tokens, k + c.pad}, d.in, 1, 1.0f);
  const Filled weight = filled_random({c.out_features, k}, d.in, 2, 1.0f / std::sqrt(float(k)));
  const std::vector<float> want =
      reference(testing::columns(in.host_f32.view(), 0, k), weight.host_f32.view(), d.out);

  DeviceTensor out = DeviceTensor::filled({c.tokens, c.out_features}, d.out, 0xFF);
  linear(out.view(), testing::columns(in.device.view(), 0, k), weight.device.view(), Stream{});
  const testing::Tolerance tol = tolerance_for(d);
  EXPECT_TRUE(testing::all_close(out.to_floats(), want, tol.atol, tol.rtol));
}

INSTANTIATE_TEST_SUITE_P(Shapes, LinearCuda,
                         ::testing::Combine(::testing::ValuesIn(kCases),
                                            ::testing::ValuesIn(kDtypes)),
                         [](const auto& info) {
                           const DtypePair d = std::get<1>(info.param);
                           return std::string(std::get<0>(info.param).name) + "_" +
                                  dtype_name(d.in) + "_to_" + dtype_name(d.out);
                         });

// linear_split: three outputs of one stacked weight, each against ref::linear on its rows.
struct SplitCase {
  const char* name;
  int64_t tokens, in_features;
  int64_t widths[3];
  int64_t pad;  // extra input columns (row stride in_features + pad)
};

const SplitCase kSplitCases[] = {
    {"llama3_qkv_m1", 1, 4096, {4096, 1024, 1024}, 0},
    {"llama2_qkv_m1", 1, 4096, {4096, 4096, 4096}, 0},
    {"tp2_qkv_m2", 2, 4096, {2048, 512, 512}, 0},
    {"odd_rows_m3", 3, 1032, {33, 1, 65}, 0},  // blocks straddle every output boundary
    {"scalar_m5_k100", 5, 100, {37, 7, 7}, 0},
    {"padded_m4", 4, 256, {64, 16, 16}, 5},  // row stride 261: the scalar GEMV
    {"m8_k4096", 8, 4096, {512, 128, 128}, 0},
    {"m9_cublaslt", 9, 1024, {128, 32, 32}, 0},
    {"m37_cublaslt_padded", 37, 4096, {256, 64, 64}, 8},
};

class LinearSplitCuda : public ::testing::TestWithParam<std::tuple<SplitCase, DType>> {};

TEST_P(LinearSplitCuda, MatchesRefPerRowBlock) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const auto& [c, dtype] = GetParam();
  const int64_t k = c.in_features, n = c.widths[0] + c.widths[1] + c.widths[2];
  const Filled in = filled_random({c.tokens, k + c.pad}, dtype, 11, 1.0f);
  const Filled weight = filled_random({n, k}, dtype, 12, 1.0f / std::sqrt(float(k)));
  DeviceTensor outs[3];
  for (int o = 0; o < 3; ++o) outs[o] = DeviceTensor::filled({c.tokens, c.widths[o]}, dtype, 0xFF);
  linear_split(outs[0].view(), outs[1].view(), outs[2].view(),
               testing::columns(in.device.view(), 0, k), weight.device.view(), Stream{});
  const testing::Tolerance tol = testing::tolerance(dtype);
  int64_t row = 0;
  for (int o = 0; o < 3; ++o) {
    const std::vector<float> want =
        reference(testing::columns(in.host_f32.view(), 0, k),
                  weight.host_f32.view().slice(row, row + c.widths[o]), dtype);
    EXPECT_TRUE(testing::all_close(outs[o].to_floats(), want, tol.atol, tol.rtol))
        << "output " << o << " (weight rows from " << row << ")";
    row += c.widths[o];
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, LinearSplitCuda,
                         ::testing::Combine(::testing::ValuesIn(kSplitCases),
                                            ::testing::Values(DType::kF32, DType::kF16,
                                                              DType::kBF16)),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param).name) + "_" +
                                  dtype_name(std::get<1>(info.param));
                         });

// linear_swiglu (gate_up and SwiGLU in one GEMV at decode) against linear() into gate_up then
// silu_and_mul() on the same device, byte for byte: both round each projection to the dtype,
// then apply one formula. Shapes: odd inter (a block's last pairs past the end), the scalar path
// (K % 8), padded input rows, 1-8 tokens (every tile) and 9+ (the unfused path), Llama-3's MLP.
struct SwigluCase {
  const char* name;
  int64_t tokens, in_features, inter, pad;
};

const SwigluCase kSwigluCases[] = {
    {"m1_k64_i1", 1, 64, 1, 0},
    {"m1_k256_i37", 1, 256, 37, 0},
    {"m1_k100_i33_scalar", 1, 100, 33, 0},
    {"m2_k4096_i130", 2, 4096, 130, 0},
    {"m3_k1032_i65_padded", 3, 1032, 65, 5},
    {"m4_k4096_i257", 4, 4096, 257, 0},
    {"m5_k4096_i100", 5, 4096, 100, 0},
    {"m8_k4096_i512", 8, 4096, 512, 0},
    {"m9_unfused", 9, 1024, 96, 0},
    {"llama3_mlp_m1", 1, 4096, 14336, 0},
};

class LinearSwigluCuda : public ::testing::TestWithParam<std::tuple<SwigluCase, DType>> {};

TEST_P(LinearSwigluCuda, EqualsLinearThenSiluAndMul) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const auto& [c, dtype] = GetParam();
  const int64_t k = c.in_features, inter = c.inter;
  const Filled in = filled_random({c.tokens, k + c.pad}, dtype, 21, 1.0f);
  const Filled weight = filled_random({2 * inter, k}, dtype, 22, 1.0f / std::sqrt(float(k)));
  const TensorView x = testing::columns(in.device.view(), 0, k);
  DeviceTensor gate_up = DeviceTensor::filled({c.tokens, 2 * inter}, dtype, 0xFF);
  DeviceTensor want = DeviceTensor::filled({c.tokens, inter}, dtype, 0xFF);
  linear(gate_up.view(), x, weight.device.view(), Stream{});
  TensorView gate = gate_up.view(), up = gate_up.view();
  gate.shape[1] = up.shape[1] = inter;
  up.data = static_cast<uint8_t*>(up.data) + inter * dtype_size(dtype);
  silu_and_mul(want.view(), gate, up, Stream{});
  DeviceTensor scratch = DeviceTensor::filled({c.tokens, 2 * inter}, dtype, 0xFF);
  DeviceTensor got = DeviceTensor::filled({c.tokens, inter}, dtype, 0xFF);
  linear_swiglu(got.view(), x, weight.device.view(), scratch.view(), Stream{});
  stream_synchronize(Stream{});
  const HostTensor g = got.to_host(), w = want.to_host();
  ASSERT_EQ(g.view().nbytes(), w.view().nbytes());
  EXPECT_EQ(std::memcmp(g.view().data, w.view().data, g.view().nbytes()), 0) << c.name;
  // And it is what the reference gives (tolerances of the dtype).
  const testing::Tolerance tol = testing::tolerance(dtype);
  HostTensor ref_act({c.tokens, inter}, DType::kF32),
      ref_gate_up({c.tokens, 2 * inter}, DType::kF32);
  ref::linear_swiglu(ref_act.view(), testing::columns(in.host_f32.view(), 0, k),
                     weight.host_f32.view(), ref_gate_up.view());
  const std::vector<float> r = testing::to_vector(
      testing::convert(testing::convert(ref_act.view(), dtype).view(), DType::kF32).view());
  EXPECT_TRUE(testing::all_close(got.to_floats(), r, tol.atol, tol.rtol)) << c.name;
}

INSTANTIATE_TEST_SUITE_P(Shapes, LinearSwigluCuda,
                         ::testing::Combine(::testing::ValuesIn(kSwigluCases),
                                            ::testing::Values(DType::kF32, DType::kF16,
                                                              DType::kBF16)),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param).name) + "_" +
                                  dtype_name(std::get<1>(info.param));
                         });

// Llama-3's LM head (128256 x 4096 bf16 -> f32 logits) at batch 1, checked on its first and last
// 1000 rows (the whole reference would take seconds on the host).
TEST(LinearCudaLarge, Llama3LmHeadBf16ToF32) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const int64_t vocab = 128256, hidden = 4096, rows = 1000;
  const Filled in = filled_random({1, hidden}, DType::kBF16, 3, 1.0f);
  DeviceTensor weight({vocab, hidden}, DType::kBF16);
  fill_random(weight.view(), 4, 0.0f, 1.0f / 64, Stream{});
  DeviceTensor out = DeviceTensor::filled({1, vocab}, DType::kF32, 0xFF);
  linear(out.view(), in.device.view(), weight.view(), Stream{});
  const std::vector<float> got = out.to_floats();
  for (const int64_t begin : {int64_t(0), vocab - rows}) {
    HostTensor w_rows({rows, hidden}, DType::kBF16);
    copy_view(w_rows.view(), weight.view().slice(begin, begin + rows), Stream{});
    stream_synchronize(Stream{});
    const HostTensor w_f32 = testing::convert(w_rows.view(), DType::kF32);
    const std::vector<float> want = reference(in.host_f32.view(), w_f32.view(), DType::kF32);
    EXPECT_TRUE(testing::all_close(
        std::vector<float>(got.begin() + begin, got.begin() + begin + rows), want, 1e-4f, 1e-4f))
        << "rows from " << begin;
  }
}

// 20 tokens whose rows overlap (row stride 128 < in_features 256): cuBLASLt refuses such a
// layout, so linear falls back to the GEMV in tiles of 8 tokens (grid y = 3).
TEST(LinearCudaFallback, OverlappingRowsUseTheGemvInTiles) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const int64_t tokens = 20, k = 256, stride = 128, n = 70;
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    const Filled buffer = filled_random({(tokens - 1) * stride + k}, dtype, 7, 1.0f);
    const Filled weight = filled_random({n, k}, dtype, 8, 1.0f / 16);
    const auto rows = [&](TensorView flat) {
      TensorView v = make_view(flat.data, flat.dtype, {tokens, k}, flat.device);
      v.stride[0] = stride;
      return v;
    };
    const std::vector<float> want =
        reference(rows(buffer.host_f32.view()), weight.host_f32.view(), dtype);
    DeviceTensor out = DeviceTensor::filled({tokens, n}, dtype, 0xFF);
    linear(out.view(), rows(buffer.device.view()), weight.device.view(), Stream{});
    const testing::Tolerance tol = testing::tolerance(dtype);
    EXPECT_TRUE(testing::all_close(out.to_floats(), want, tol.atol, tol.rtol)) << dtype_name(dtype);
  }
}

// Both paths captured into a CUDA graph after an eager warm-up (which makes the cuBLASLt handle,
// workspace and plans), then replayed: the same results as the reference.
TEST(LinearCudaGraph, ReplayMatchesRef) {
  TIDAL_SKIP_WITHOUT_CUDA();
  Stream stream;
  ASSERT_TRUE(stream_create(&stream).ok());
  const DType dtype = DType::kBF16;
  const int64_t k = 4096, n = 512;
  const Filled weight = filled_random({n, k}, dtype, 5, 1.0f / 64);
  const tidal::testing::Tolerance tol = testing::tolerance(dtype);
  for (const int64_t tokens : {int64_t(1), int64_t(37)}) {
    const Filled in = filled_random({tokens, k}, dtype, 6, 1.0f);
    const std::vector<float> want = reference(in.host_f32.view(), weight.host_f32.view(), dtype);
    DeviceTensor out = DeviceTensor::filled({tokens, n}, dtype, 0xFF);
    linear(out.view(), in.device.view(), weight.device.view(), stream);  // eager warm-up
    stream_synchronize(stream);
    EXPECT_TRUE(testing::all_close(out.to_floats(), want, tol.atol, tol.rtol)) << "eager";

    DeviceTensor replayed = DeviceTensor::filled({tokens, n}, dtype, 0xFF);
    Graph::begin_capture(stream);
    linear(replayed.view(), in.device.view(), weight.device.view(), stream);
    const Graph graph = Graph::end_capture(stream);
    ASSERT_TRUE(graph.valid());
    graph.launch(stream);
    stream_synchronize(stream);
    EXPECT_TRUE(testing::all_close(replayed.to_floats(), want, tol.atol, tol.rtol))
        << "replay, " << tokens << " tokens";
  }
  stream_destroy(stream);
}

}  // namespace
}  // namespace tidal::kernels
