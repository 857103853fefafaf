// SPDX-License-Identifier: Apache-2.0
// The FP8 KV format (kernels/paged_kv_common.h) through every reference op that writes or reads
// K/V: the append quantizes each row on its own; decode attention (dense rows with logits and
// lse, sparse lists, Quest pages), prefill attention and Quest's bounds read exactly the values
// the format holds (equal to their f32 twin over the dequantized cache), and stay within a
// tolerance derived from e4m3's precision of their f32 twin over the unquantized cache.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/decode_attention.h"
#include "kernels/fp8_e4m3.h"
#include "kernels/paged_kv_append.h"
#include "kernels/paged_kv_common.h"
#include "kernels/prefill_attention.h"
#include "kernels/quest.h"
#include "runtime/tensor_access.h"
#include "tests/kernels/attention_batch.h"
#include "tests/testing/testing.h"

namespace tidal::kernels {
namespace {

using testing_attention::AttentionBatch;
using testing_attention::AttentionShape;
using testing_attention::Fp8Cache;
using testing_attention::TokenPlan;

// Half an e4m3 ulp relative to an element (normals), and below the normals at most 2^-10 of the
// row's scale, which is < 2 amax / 448.
constexpr double kRel = 1.0 / 16;
double subnormal_abs(double row_amax) { return row_amax * 2.0 / 448.0 / 1024.0; }

std::vector<uint8_t> codes(const HostTensor& t) {
  const uint8_t* p = t.view().data_as<uint8_t>();
  return std::vector<uint8_t>(p, p + t.view().numel());
}

struct Err {
  double max_abs = 0, sum_sq = 0, ref_sq = 0;
  size_t n = 0;
  void add(double got, double want) {
    max_abs = std::max(max_abs, std::fabs(got - want));
    sum_sq += (got - want) * (got - want);
    ref_sq += want * want;
    ++n;
  }
  double rel_rms() const { return std::sqrt(sum_sq / std::max(ref_sq, 1e-30)); }
};

TEST(Fp8Kv, AppendQuantizesEachRowOnItsOwnWhateverTheOrder) {
  const int64_t tokens = 21, kv_heads = 2, dim = 16, page = 4, pages = 8;
  const HostTensor k = testing::random_tensor({tokens, kv_heads, dim}, 1, 2.0f);
  const HostTensor v = testing::random_tensor({tokens, kv_heads, dim}, 2, 0.5f);
  int32_t table[6] = {5, 2, 7, 0, 3, 6};
  std::vector<int32_t> seq(tokens, 0), pos(tokens);
  std::iota(pos.begin(), pos.end(), 0);
  const TensorView bt = make_view(table, DType::kI32, {1, 6});
  // The f32 twin, and FP8 caches written in one call and token by token backwards.
  HostTensor kc({pages, page, kv_heads, dim}, DType::kF32),
      vc({pages, page, kv_heads, dim}, DType::kF32);
  paged_kv_append({kc.view(), vc.view(), bt, make_view(seq.data(), DType::kI32, {tokens}),
                   make_view(pos.data(), DType::kI32, {tokens}), k.view(), v.view()},
                  Stream{});
  HostTensor kq[2], vq[2], ks[2], vs[2];
  for (int i = 0; i < 2; ++i) {
    kq[i] = HostTensor({pages, page, kv_heads, dim}, DType::kU8);
    vq[i] = HostTensor({pages, page, kv_heads, dim}, DType::kU8);
    ks[i] = HostTensor({pages, kv_heads, page}, DType::kF32);
    vs[i] = HostTensor({pages, kv_heads, page}, DType::kF32);
  }
  paged_kv_append({kq[0].view(), vq[0].view(), bt, make_view(seq.data(), DType::kI32, {tokens}),
                   make_view(pos.data(), DType::kI32, {tokens}), k.view(), v.view(), ks[0].view(),
                   vs[0].view()},
                  Stream{});
  for (int64_t t = tokens - 1; t >= 0; --t) {
    paged_kv_append({kq[1].view(), vq[1].view(), bt, make_view(&seq[size_t(t)], DType::kI32, {1}),
                     make_view(&pos[size_t(t)], DType::kI32, {1}), k.view().slice(t, t + 1),
                     v.view().slice(t, t + 1), ks[1].view(), vs[1].view()},
                    Stream{});
  }
  EXPECT_EQ(testing::to_vector(ks[0].view()), testing::to_vector(ks[1].view()));
  EXPECT_EQ(codes(kq[0]), codes(kq[1]));
  EXPECT_EQ(codes(vq[0]), codes(vq[1]));
  // Each written row is the row quantization of the f32 twin's row, within half an ulp of it.
  const Fp8Cache kf(kc), vf(vc);
  const PagedKv fp8{kq[0].view(), vq[0].view(), bt, ks[0].view(), vs[0].view()};
  std::vector<float> row(dim);
  for (int64_t p = 0; p < tokens; ++p) {
    const PagedSlot s = fp8.slot(0, p);
    for (int64_t h = 0; h < kv_heads; ++h) {
      for (const bool key : {true, false}) {
        const float* got = key ? fp8.k_row(s, h, row.data()) : fp8.v_row(s, h, row.data());
        const TensorView want = (key ? kf : vf).dequant.view();
        const TensorView orig = (key ? kc : vc).view();
        for (int64_t d = 0; d < dim; ++d) {
          ASSERT_EQ(got[d], get_f32(want, s.page, s.offset, h, d));
          const double x = get_f32(orig, s.page, s.offset, h, d);
          ASSERT_LE(std::fabs(got[d] - x), kRel * std::fabs(x) + subnormal_abs(20.0));
        }
      }
    }
  }
}

TEST(Fp8Kv, CachesWithoutScalesOrOfAnotherDtypeAreBugs) {
  HostTensor kc({1, 2, 1, 4}, DType::kU8), vc({1, 2, 1, 4}, DType::kU8);
  HostTensor ks({1, 1, 2}, DType::kF32);
  int32_t table[1] = {0}, seq[1] = {0}, pos[1] = {0};
  const HostTensor k = testing::random_tensor({1, 1, 4}, 3);
  PagedKvAppendParams p{kc.view(),
                        vc.view(),
                        make_view(table, DType::kI32, {1, 1}),
                        make_view(seq, DType::kI32, {1}),
                        make_view(pos, DType::kI32, {1}),
                        k.view(),
                        k.view()};
  EXPECT_DEATH(paged_kv_append(p, Stream{}), "FP8 caches need");
  p.k_scale = ks.view();
  p.v_scale = make_view(ks.view().data, DType::kF32, {1, 1, 1});  // not [pages, heads, page]
  EXPECT_DEATH(paged_kv_append(p, Stream{}), "FP8 caches need");
  HostTensor fc({1, 2, 1, 4}, DType::kF32);
  p.k_cache = fc.view();
  p.v_cache = fc.view();
  p.v_scale = ks.view();
  EXPECT_DEATH(paged_kv_append(p, Stream{}), "and no scales");
}

// The bound on one pre-softmax score q.k * scale when each element of k moves by at most half an
// e4m3 ulp.
double score_bound(const float* q, const float* k, int64_t dim, double scale) {
  double amax = 0, sum = 0, qsum = 0;
  for (int64_t d = 0; d < dim; ++d) amax = std::max(amax, double(std::fabs(k[d])));
  for (int64_t d = 0; d < dim; ++d) {
    sum += std::fabs(double(q[d]) * k[d]);
    qsum += std::fabs(q[d]);
  }
  return scale * (kRel * sum + qsum * subnormal_abs(amax)) + 1e-6;
}

struct DecodeOut {
  std::vector<float> out, lse, logits;
};
DecodeOut run_decode(const AttentionBatch& b, TensorView k, TensorView v, TensorView ks,
                     TensorView vs) {
  const AttentionShape& s = b.shape;
  HostTensor out({b.num_tokens, s.num_heads, s.head_dim}, DType::kF32);
  HostTensor lse({b.num_tokens, s.num_heads}, DType::kF32);
  HostTensor logits({b.num_tokens, s.num_heads, b.max_len}, DType::kF32);
  DecodeAttentionParams p = b.params(0, b.num_tokens);
  p.k_cache = k;
  p.v_cache = v;
  p.k_scale = ks;
  p.v_scale = vs;
  p.out = out.view();
  p.lse = lse.view();
  p.logits = logits.view();
  ref::decode_attention(p);
  return {testing::to_vector(out.view()), testing::to_vector(lse.view()),
          testing::to_vector(logits.view())};
}

TEST(Fp8Kv, DecodeAttentionEveryRoleAgainstItsF32Twin) {
  const AttentionShape s{8, 2, 32, 16};
  const std::vector<TokenPlan> plans = {
      {TokenRole::kDense, 70},         {TokenRole::kSelect, 45},
      {TokenRole::kReselect, 64},      {TokenRole::kSparse, 90, 8, 20},
      {TokenRole::kSparse, 50, 2, 16}, {TokenRole::kSparse, 33, 1, 9},
      {TokenRole::kQuest, 80, 2, 48}};
  const AttentionBatch b(s, plans, 5);
  const Fp8Cache kf(b.k_cache), vf(b.v_cache);
  const DecodeOut ref = run_decode(b, b.k_cache.view(), b.v_cache.view(), {}, {});
  const DecodeOut deq = run_decode(b, kf.dequant.view(), vf.dequant.view(), {}, {});
  const DecodeOut fp8 =
      run_decode(b, kf.codes.view(), vf.codes.view(), kf.scale.view(), vf.scale.view());
  // FP8 reads exactly the values the format holds.
  EXPECT_TRUE(testing::all_close(fp8.out, deq.out, 0, 0));
  EXPECT_TRUE(testing::all_close(fp8.lse, deq.lse, 0, 0));
  EXPECT_TRUE(testing::all_close(fp8.logits, deq.logits, 0, 0));
  // Against the unquantized cache: every logit within its score bound; lse within the largest
  // (log-sum-exp moves no more than its largest input); out within what that softmax shift and
  // the values' own rounding allow.
  const PagedKv kv{b.k_cache.view(), b.v_cache.view(),
                   make_view(const_cast<int32_t*>(b.block_tables.data()), DType::kI32,
                             {b.num_rows, b.max_pages})};
  const double scale = 1.0 / std::sqrt(double(s.head_dim));
  double eps = 0, vmax = 0;
  Err logit_err, out_err, lse_err;
  std::vector<float> row(size_t(s.head_dim));
  for (int64_t t = 0; t < b.num_tokens; ++t) {
    for (int64_t h = 0; h < s.num_heads; ++h) {
      const float* q = b.q.view().data_as<float>() + (t * s.num_heads + h) * s.head_dim;
      for (int64_t j = 0; j < b.lengths[size_t(t)]; ++j) {
        const PagedSlot sl = kv.slot(b.seq_ids[size_t(t)], j);
        const double bound = score_bound(
            q, kv.k_row(sl, h / (s.num_heads / s.num_kv_heads), row.data()), s.head_dim, scale);
        eps = std::max(eps, bound);
        if (is_selecting(plans[size_t(t)].role)) {
          const size_t i = size_t((t * s.num_heads + h) * b.max_len + j);
          ASSERT_LE(std::fabs(fp8.logits[i] - ref.logits[i]), bound) << t << " " << h << " " << j;
          logit_err.add(fp8.logits[i], ref.logits[i]);
        }
      }
    }
  }
  for (float x : testing::to_vector(b.v_cache.view())) vmax = std::max(vmax, double(std::fabs(x)));
  const double out_tol =
      (std::exp(2 * eps) - 1) * vmax + std::exp(2 * eps) * (kRel * vmax + subnormal_abs(vmax));
  for (size_t i = 0; i < ref.out.size(); ++i) {
    ASSERT_LE(std::fabs(fp8.out[i] - ref.out[i]), out_tol) << i;
    out_err.add(fp8.out[i], ref.out[i]);
  }
  for (size_t i = 0; i < ref.lse.size(); ++i) {
    ASSERT_LE(std::fabs(fp8.lse[i] - ref.lse[i]), eps) << i;
    lse_err.add(fp8.lse[i], ref.lse[i]);
  }
  // The bounds above are worst cases; the errors measured sit well inside them, and relative RMS
  // errors stay under e4m3's half-ulp 2^-4 (an unscaled or misread cache would not).
  std::printf(
      "[ fp8 decode ] logits max %.4f (bound up to %.4f), rel rms %.4f; out max %.4f "
      "(bound %.4f), rel rms %.4f; lse max %.4f\n",
      logit_err.max_abs, eps, logit_err.rel_rms(), out_err.max_abs, out_tol, out_err.rel_rms(),
      lse_err.max_abs);
  EXPECT_LT(logit_err.rel_rms(), kRel);
  EXPECT_LT(out_err.rel_rms(), kRel);
  EXPECT_GT(logit_err.n, size_t(0));
}

TEST(Fp8Kv, PrefillAttentionAgainstItsF32Twin) {
  const int64_t pages = 9, page = 4, kv_heads = 2, heads = 4, dim = 16;
  const HostTensor kc = testing::random_tensor({pages, page, kv_heads, dim}, 7, 1.5f);
  const HostTensor vc = testing::random_tensor({pages, page, kv_heads, dim}, 8);
  const Fp8Cache kf(kc), vf(vc);
  // Two sequences: context 23 with its last 7 positions queried, context 9 with all 9.
  int32_t table[2][6] = {{4, 1, 8, 0, 6, 2}, {3, 7, 5, -1, -1, -1}};
  int32_t starts[3] = {0, 7, 16}, seqs[2] = {0, 1}, ctx[2] = {23, 9};
  const HostTensor q = testing::random_tensor({16, heads, dim}, 9);
  auto run = [&](TensorView k, TensorView v, TensorView ks, TensorView vs) {
    HostTensor out({16, heads, dim}, DType::kF32);
    PrefillAttentionParams p;
    p.out = out.view();
    p.q = q.view();
    p.k_cache = k;
    p.v_cache = v;
    p.k_scale = ks;
    p.v_scale = vs;
    p.block_tables = make_view(&table[0][0], DType::kI32, {2, 6});
    p.query_starts = make_view(starts, DType::kI32, {3});
    p.seq_ids = make_view(seqs, DType::kI32, {2});
    p.context_lens = make_view(ctx, DType::kI32, {2});
    p.max_query_len = 9;
    prefill_attention(p, Stream{});
    return testing::to_vector(out.view());
  };
  const std::vector<float> ref = run(kc.view(), vc.view(), {}, {});
  const std::vector<float> deq = run(kf.dequant.view(), vf.dequant.view(), {}, {});
  const std::vector<float> fp8 =
      run(kf.codes.view(), vf.codes.view(), kf.scale.view(), vf.scale.view());
  EXPECT_TRUE(testing::all_close(fp8, deq, 0, 0));
  double eps = 0, vmax = 0;
  for (int64_t r = 0; r < 16; ++r) {
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t pg = 0; pg < pages; ++pg) {
        for (int64_t sl = 0; sl < page; ++sl) {
          eps = std::max(eps, score_bound(q.view().data_as<float>() + (r * heads + h) * dim,
                                          kc.view().data_as<float>() +
                                              ((pg * page + sl) * kv_heads + h / 2) * dim,
                                          dim, 0.25));
        }
      }
    }
  }
  for (float x : testing::to_vector(vc.view())) vmax = std::max(vmax, double(std::fabs(x)));
  const double tol =
      (std::exp(2 * eps) - 1) * vmax + std::exp(2 * eps) * (kRel * vmax + subnormal_abs(vmax));
  Err err;
  for (size_t i = 0; i < ref.size(); ++i) {
    ASSERT_LE(std::fabs(fp8[i] - ref[i]), tol) << i;
    err.add(fp8[i], ref[i]);
  }
  std::printf("[ fp8 prefill ] out max %.4f (bound %.4f), rel rms %.4f\n", err.max_abs, tol,
              err.rel_rms());
  EXPECT_LT(err.rel_rms(), kRel);
}

// With fp8_keys, the bounds are the min / max of the keys as the cache holds them, so Quest's U
// bounds every score attention computes from the FP8 cache.
TEST(Fp8Kv, QuestBoundsBoundTheKeysTheCacheHolds) {
  const int64_t tokens = 24, kv_heads = 2, heads = 4, dim = 8, page = 4, pages = 6;
  const HostTensor k = testing::random_tensor({tokens, kv_heads, dim}, 12, 3.0f);
  int32_t table[6] = {2, 5, 0, 3, 1, 4};
  std::vector<int32_t> seq(tokens, 0), pos(tokens);
  std::iota(pos.begin(), pos.end(), 0);
  const TensorView bt = make_view(table, DType::kI32, {1, 6});
  const TensorView seqv = make_view(seq.data(), DType::kI32, {tokens});
  const TensorView posv = make_view(pos.data(), DType::kI32, {tokens});
  HostTensor kmax({pages, kv_heads, dim}, DType::kF32), kmin({pages, kv_heads, dim}, DType::kF32);
  HostTensor fmax({pages, kv_heads, dim}, DType::kF32), fmin({pages, kv_heads, dim}, DType::kF32);
  quest_metadata_update({kmax.view(), kmin.view(), bt, seqv, posv, k.view(), page}, Stream{});
  quest_metadata_update({fmax.view(), fmin.view(), bt, seqv, posv, k.view(), page, true}, Stream{});
  HostTensor kq({pages, page, kv_heads, dim}, DType::kU8),
      vq({pages, page, kv_heads, dim}, DType::kU8);
  HostTensor ks({pages, kv_heads, page}, DType::kF32), vs({pages, kv_heads, page}, DType::kF32);
  paged_kv_append({kq.view(), vq.view(), bt, seqv, posv, k.view(), k.view(), ks.view(), vs.view()},
                  Stream{});
  const PagedKv kv{kq.view(), vq.view(), bt, ks.view(), vs.view()};
  std::vector<float> row(dim);
  int differs = 0;
  for (int64_t lp = 0; lp < tokens / page; ++lp) {
    const int64_t pg = table[lp];
    for (int64_t h = 0; h < kv_heads; ++h) {
      for (int64_t d = 0; d < dim; ++d) {
        float hi = -INFINITY, lo = INFINITY;
        for (int64_t j = lp * page; j < (lp + 1) * page; ++j) {
          const float x = kv.k_row(kv.slot(0, j), h, row.data())[d];
          hi = std::max(hi, x);
          lo = std::min(lo, x);
        }
        ASSERT_EQ(get_f32(fmax.view(), pg, h, d), hi);
        ASSERT_EQ(get_f32(fmin.view(), pg, h, d), lo);
        differs += get_f32(kmax.view(), pg, h, d) != hi;
      }
    }
  }
  EXPECT_GT(differs, 0);  // the flag matters: f32 bounds of the unquantized keys differ
  // U >= q . k for every key of every full page, k as the FP8 cache holds it.
  const HostTensor q = testing::random_tensor({1, heads, dim}, 13);
  HostTensor u({1, heads, pages}, DType::kF32);
  int32_t len[1] = {int32_t(tokens)};
  uint8_t role[1] = {uint8_t(TokenRole::kQuest)};
  quest_page_scores({u.view(), q.view(), fmax.view(), fmin.view(), bt, seqv.slice(0, 1),
                     make_view(len, DType::kI32, {1}), make_view(role, DType::kU8, {1}), page},
                    Stream{});
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t lp = 0; lp < (tokens - 1) / page; ++lp) {
      for (int64_t j = lp * page; j < (lp + 1) * page; ++j) {
        const float* key = kv.k_row(kv.slot(0, j), h / 2, row.data());
        double dot = 0;
        for (int64_t d = 0; d < dim; ++d) dot += double(get_f32(q.view(), 0, h, d)) * key[d];
        ASSERT_GE(double(get_f32(u.view(), 0, h, lp)) + 1e-4, dot) << h << " " << j;
      }
    }
  }
}

}  // namespace
}  // namespace tidal::kernels
