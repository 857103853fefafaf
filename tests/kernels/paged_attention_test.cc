// SPDX-License-Identifier: Apache-2.0
#include "kernels/paged_attention.h"

#include <cmath>

#include "runtime/tensor_access.h"
#include "tests/testing/testing.h"

namespace tidal::kernels {
namespace {

// One sequence, 2 query heads sharing 1 KV head (GQA), head_dim 2, page_size 2, 2 pages {1, 0}.
struct Fixture {
  HostTensor kc{{2, 2, 1, 2}, DType::kF32};
  HostTensor vc{{2, 2, 1, 2}, DType::kF32};
  int32_t table[2] = {1, 0};

  // Keys k0 = (1, 0), k1 = (0, 1), k2 = (1, 1); values v_j = (j, 10 j).
  Fixture() {
    const float keys[3][2] = {{1, 0}, {0, 1}, {1, 1}};
    for (int j = 0; j < 3; ++j) {
      const int page = table[j / 2], slot = j % 2;
      for (int d = 0; d < 2; ++d) set_f32(kc.view(), page, slot, 0, d, keys[j][d]);
      set_f32(vc.view(), page, slot, 0, 0, float(j));
      set_f32(vc.view(), page, slot, 0, 1, float(10 * j));
    }
  }
};

TEST(PagedAttentionRef, KnownValuesWithCausalMaskAndGqa) {
  Fixture f;
  // Token at position 2 (sees keys 0..2) and at position 0 (sees key 0 only).
  const HostTensor q = HostTensor::from({2, 2, 2}, {std::sqrt(2.0f), 0, 0, 0,  //
                                                    5, 5, 1, 1});
  HostTensor out({2, 2, 2}, DType::kF32);
  int32_t seq[2] = {0, 0}, pos[2] = {2, 0};
  PagedAttentionParams p;
  p.out = out.view();
  p.q = q.view();
  p.k_cache = f.kc.view();
  p.v_cache = f.vc.view();
  p.block_tables = make_view(f.table, DType::kI32, {1, 2});
  p.seq_ids = make_view(seq, DType::kI32, {2});
  p.positions = make_view(pos, DType::kI32, {2});
  HostTensor logits({2, 2, 3}, DType::kF32);
  p.logits = logits.view();
  paged_attention(p);
  // Pre-softmax scores q.k / sqrt(2): token 0 head 0 {1, 0, 1}, head 1 {0, 0, 0}; token 1 sees
  // only key 0: head 0 5/sqrt(2), head 1 1/sqrt(2) (the rest untouched, still 0).
  const float r = float(1 / std::sqrt(2.0));
  EXPECT_TRUE(testing::all_close(testing::to_vector(logits.view()),
                                 {1, 0, 1, 0, 0, 0, 5 * r, 0, 0, r, 0, 0}, 1e-6f, 1e-6f));
  // Token 0, head 0: scores q.k/sqrt(2) = {1, 0, 1}; weights e/(2e+1), 1/(2e+1), e/(2e+1).
  const double e = std::exp(1.0), z = 2 * e + 1;
  const double v0 = (0 * e + 1 * 1 + 2 * e) / z;
  // Head 1 has q = 0: uniform weights over 3 keys -> mean value (1, 10).
  // Token 1 sees only key 0 -> value (0, 0) for both heads.
  const std::vector<float> want = {float(v0), float(10 * v0), 1, 10, 0, 0, 0, 0};
  EXPECT_TRUE(testing::all_close(testing::to_vector(out.view()), want, 1e-6f, 1e-6f));
}

}  // namespace
}  // namespace tidal::kernels
