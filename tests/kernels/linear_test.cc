// SPDX-License-Identifier: Apache-2.0
#include "kernels/linear.h"

#include <cmath>
#include <vector>

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

// The dense-row branches for f32 and bf16 weights (no per-element dtype switch) give the
// generic per-element branch's values bit for bit: the same weights read through a view with a
// column stride of 2 take the generic branch.
TEST(LinearRef, DenseRowBranchesEqualTheGenericBranchBitForBit) {
  const int64_t tokens = 3, k = 41, n = 13;
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    HostTensor x({tokens, k}, dtype), dense({n, k}, dtype), spread({n, 2 * k}, dtype);
    for (int64_t i = 0; i < tokens * k; ++i) {
      set_f32(x.view(), i / k, i % k, float(int(i * 7 % 23) - 11) / 7.0f);
    }
    for (int64_t i = 0; i < n * k; ++i) {
      const float v = float(int(i * 5 % 31) - 15) / 9.0f;
      set_f32(dense.view(), i / k, i % k, v);
      set_f32(spread.view(), i / k, 2 * (i % k), v);
      set_f32(spread.view(), i / k, 2 * (i % k) + 1, 99.0f);
    }
    TensorView strided = spread.view();  // [n, k] with column stride 2
    strided.shape[1] = k;
    strided.stride[1] = 2;
    HostTensor fast({tokens, n}, DType::kF32), generic({tokens, n}, DType::kF32);
    ref::linear(fast.view(), x.view(), dense.view());
    ref::linear(generic.view(), x.view(), strided);
    EXPECT_EQ(testing::to_vector(fast.view()), testing::to_vector(generic.view()))
        << dtype_name(dtype);
  }
}

TEST(LinearRef, MixedDtypesAreRejected) {
  HostTensor w({1, 2}, DType::kBF16);
  const HostTensor x = HostTensor::from({1, 2}, {1, 2});  // f32 input, bf16 weight
  HostTensor y({1, 1}, DType::kF32);
  EXPECT_DEATH(linear(y.view(), x.view(), w.view(), Stream{}), "share a dtype");
}

// linear_split is linear on each row block of the stacked weight, bit for bit, on the CPU path
// and in ref:: (a zero-width output included).
TEST(LinearSplitRef, EqualsLinearPerRowBlock) {
  const int64_t tokens = 3, k = 37;
  const int64_t widths[3] = {11, 0, 5};
  const int64_t n = widths[0] + widths[1] + widths[2];
  std::vector<float> xv(size_t(tokens * k)), wv(size_t(n * k));
  for (size_t i = 0; i < xv.size(); ++i) xv[i] = float(int(i * 7 % 23) - 11) / 8.0f;
  for (size_t i = 0; i < wv.size(); ++i) wv[i] = float(int(i * 5 % 19) - 9) / 16.0f;
  const HostTensor x = HostTensor::from({tokens, k}, xv), w = HostTensor::from({n, k}, wv);
  for (bool use_ref : {false, true}) {
    HostTensor a({tokens, widths[0]}, DType::kF32), b({tokens, widths[1]}, DType::kF32),
        c({tokens, widths[2]}, DType::kF32);
    if (use_ref) {
      ref::linear_split(a.view(), b.view(), c.view(), x.view(), w.view());
    } else {
      linear_split(a.view(), b.view(), c.view(), x.view(), w.view(), Stream{});
    }
    int64_t row = 0;
    for (const HostTensor* out : {&a, &b, &c}) {
      const int64_t width = out->shape()[1];
      HostTensor want({tokens, width}, DType::kF32);
      ref::linear(want.view(), x.view(), w.view().slice(row, row + width));
      EXPECT_EQ(testing::to_vector(out->view()), testing::to_vector(want.view()))
          << (use_ref ? "ref" : "cpu") << ", rows from " << row;
      row += width;
    }
  }
}

TEST(LinearSplitRef, WidthsMustAddUpToTheWeightRows) {
  const HostTensor x = HostTensor::from({1, 2}, {1, 2});
  const HostTensor w = HostTensor::from({4, 2}, {1, 2, 3, 4, 5, 6, 7, 8});
  HostTensor a({1, 2}, DType::kF32), b({1, 1}, DType::kF32), c({1, 2}, DType::kF32);
  EXPECT_DEATH(linear_split(a.view(), b.view(), c.view(), x.view(), w.view(), Stream{}), "add up");
}

// linear_swiglu: silu(gate) * up of the fused projection's halves, against linear() then
// silu_and_mul() (the CPU path and ref::), with a known value: gate 2, up 3 -> 3 * 2 / (1 + e^-2).
TEST(LinearSwigluRef, EqualsLinearThenSiluAndMul) {
  const HostTensor x = HostTensor::from({1, 2}, {1, 1});
  // inter 2: gate rows (1, 1) and (0, -1), up rows (1, 2) and (0.5, 0).
  const HostTensor w = HostTensor::from({4, 2}, {1, 1, 0, -1, 1, 2, 0.5f, 0});
  for (bool use_ref : {false, true}) {
    HostTensor act({1, 2}, DType::kF32), gate_up({1, 4}, DType::kF32);
    if (use_ref) {
      ref::linear_swiglu(act.view(), x.view(), w.view(), gate_up.view());
    } else {
      linear_swiglu(act.view(), x.view(), w.view(), gate_up.view(), Stream{});
    }
    const float silu2 = 2.0f / (1.0f + std::exp(-2.0f)), silu_m1 = -1.0f / (1.0f + std::exp(1.0f));
    EXPECT_FLOAT_EQ(act.at(0), silu2 * 3.0f) << (use_ref ? "ref" : "cpu");
    EXPECT_FLOAT_EQ(act.at(1), silu_m1 * 0.5f) << (use_ref ? "ref" : "cpu");
  }
}

TEST(LinearSwigluRef, ShapesAreChecked) {
  const HostTensor x = HostTensor::from({1, 2}, {1, 2});
  const HostTensor w = HostTensor::from({3, 2}, {1, 2, 3, 4, 5, 6});  // odd rows: no halves
  HostTensor act({1, 1}, DType::kF32), gate_up({1, 2}, DType::kF32);
  EXPECT_DEATH(linear_swiglu(act.view(), x.view(), w.view(), gate_up.view(), Stream{}),
               "weight \\[2 inter");
}

// One head of head_dim 2 (one rotate-half pair) for q, k and v, a cache of one page of 2 slots,
// the token at position 1 (angle 0.5): what the linear_qkv_append ref tests share.
struct QkvRefCase {
  HostTensor q{{1, 1, 2}, DType::kF32}, k{{1, 1, 2}, DType::kF32}, v{{1, 1, 2}, DType::kF32};
  HostTensor kc{{1, 2, 1, 2}, DType::kF32}, vc{{1, 2, 1, 2}, DType::kF32};
  HostTensor freq = HostTensor::from({1}, {0.5f});
  int32_t table[1] = {0}, seq[1] = {0}, pos[1] = {1};

  // Without RoPE (rope_q and rope_inv_freq unset) unless `rope`.
  PagedKvAppendParams params(bool rope) {
    PagedKvAppendParams p{kc.view(),
                          vc.view(),
                          make_view(table, DType::kI32, {1, 1}),
                          make_view(seq, DType::kI32, {1}),
                          make_view(pos, DType::kI32, {1}),
                          k.view(),
                          v.view()};
    if (rope) {
      p.rope_q = q.view();
      p.rope_inv_freq = freq.view();
    }
    return p;
  }
};

// linear_qkv_append on the CPU: the projection, then q and k rotated and k, v in the cache.
TEST(LinearQkvAppendRef, ProjectsRotatesAndAppends) {
  const HostTensor x = HostTensor::from({1, 2}, {1, 2});
  // Rows: q (1, 0), (0, 1) -> q = (1, 2); k (1, 1), (0, 0) -> k = (3, 0); v (2, 0), (0, 3) -> (2,
  // 6).
  const HostTensor w = HostTensor::from({6, 2}, {1, 0, 0, 1, 1, 1, 0, 0, 2, 0, 0, 3});
  QkvRefCase c;
  linear_qkv_append(c.params(/*rope=*/true), x.view(), w.view(), Stream{});
  const float cs = float(std::cos(0.5)), sn = float(std::sin(0.5));
  // (a, b) -> (a c - b s, b c + a s).
  EXPECT_TRUE(
      testing::all_close(testing::to_vector(c.q.view()), {cs - 2 * sn, 2 * cs + sn}, 1e-6f, 1e-6f));
  EXPECT_TRUE(testing::all_close(testing::to_vector(c.k.view()), {3 * cs, 3 * sn}, 1e-6f, 1e-6f));
  EXPECT_TRUE(testing::all_close(testing::to_vector(c.v.view()), {2, 6}, 0, 0));
  EXPECT_TRUE(testing::all_close(testing::to_vector(c.kc.view()), {0, 0, 3 * cs, 3 * sn}, 0, 0));
  EXPECT_TRUE(testing::all_close(testing::to_vector(c.vc.view()), {0, 0, 2, 6}, 0, 0));
}

TEST(LinearQkvAppendRef, NeedsRopeAndMatchingRows) {
  const HostTensor x = HostTensor::from({1, 2}, {1, 2});
  const HostTensor w5 = HostTensor::from({5, 2}, {1, 0, 0, 1, 1, 1, 0, 0, 2, 0});  // not 6 rows
  QkvRefCase c;
  EXPECT_DEATH(linear_qkv_append(c.params(/*rope=*/false), x.view(), w5.view(), Stream{}),
               "rope_q \\(q\\)");
  EXPECT_DEATH(linear_qkv_append(c.params(/*rope=*/true), x.view(), w5.view(), Stream{}), "add up");
}

}  // namespace
}  // namespace tidal::kernels
