// SPDX-License-Identifier: Apache-2.0
// paged_kv_append on the GPU against ref:: (exact copies): random caches (so a stray write
// shows), block tables that scatter sequences over the pages, distinct (sequence, position)
// slots; a write past element 2^31 of a Llama-3-sized cache (int64 offsets); and RoPE fused
// into the append, against the two launches.
#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/paged_kv_append.h"
#include "kernels/rotary_embedding.h"
#include "runtime/device.h"
#include "tests/testing/device_tensor.h"
#include "tests/testing/testing.h"

namespace tidal::kernels {
namespace {

using testing::DeviceTensor;

struct AppendCase {
  const char* name;
  int64_t tokens, kv_heads, head_dim, page_size, num_rows, max_pages;
};

const AppendCase kCases[] = {
    {"one", 1, 1, 2, 1, 1, 1},
    {"odd_head_dim_3", 5, 1, 3, 4, 2, 3},  // 6- or 12-byte tokens: 2- and 4-byte words
    {"head_dim_64", 7, 2, 64, 16, 3, 5},
    {"llama3_prefill_37", 37, 8, 128, 16, 2, 4},
    {"llama2_decode_16", 16, 32, 128, 16, 16, 8},
    {"head_dim_8_page_7", 33, 4, 8, 7, 4, 9},
};

class PagedKvAppendCuda : public ::testing::TestWithParam<std::tuple<AppendCase, DType>> {};

// Scattered pages and distinct (row, position) slots for c.tokens tokens.
struct Placement {
  int64_t num_pages = 0;
  HostTensor tables;
  std::vector<int32_t> seq, pos;
};

Placement place(const AppendCase& c) {
  Placement pl;
  std::mt19937 rng(1);
  pl.num_pages = c.num_rows * c.max_pages + 3;  // a few pages nobody owns
  // Each sequence row owns max_pages distinct pages, scattered over the cache.
  std::vector<int32_t> pages(static_cast<size_t>(pl.num_pages));
  for (size_t i = 0; i < pages.size(); ++i) pages[i] = int32_t(i);
  std::shuffle(pages.begin(), pages.end(), rng);
  pl.tables = HostTensor({c.num_rows, c.max_pages}, DType::kI32);
  std::copy(pages.begin(), pages.begin() + c.num_rows * c.max_pages,
            pl.tables.view().data_as<int32_t>());
  // Distinct (row, position) slots for the tokens.
  std::vector<int64_t> slots(size_t(c.num_rows * c.max_pages * c.page_size));
  for (size_t i = 0; i < slots.size(); ++i) slots[i] = int64_t(i);
  std::shuffle(slots.begin(), slots.end(), rng);
  EXPECT_LE(c.tokens, int64_t(slots.size()));
  const int64_t capacity = c.max_pages * c.page_size;
  pl.seq.resize(size_t(c.tokens));
  pl.pos.resize(size_t(c.tokens));
  for (size_t t = 0; t < pl.seq.size(); ++t) {
    pl.seq[t] = int32_t(slots[t] / capacity);
    pl.pos[t] = int32_t(slots[t] % capacity);
  }
  return pl;
}

TEST_P(PagedKvAppendCuda, MatchesRef) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const auto& [c, dtype] = GetParam();
  Placement pl = place(c);
  const int64_t num_pages = pl.num_pages;
  const HostTensor& tables = pl.tables;
  std::vector<int32_t>& seq = pl.seq;
  std::vector<int32_t>& pos = pl.pos;
  const std::vector<int64_t> cache_shape = {num_pages, c.page_size, c.kv_heads, c.head_dim};
  HostTensor k_cache = testing::convert(testing::random_tensor(cache_shape, 2).view(), dtype);
  HostTensor v_cache = testing::convert(testing::random_tensor(cache_shape, 3).view(), dtype);
  const HostTensor k =
      testing::convert(testing::random_tensor({c.tokens, c.kv_heads, c.head_dim}, 4).view(), dtype);
  const HostTensor v =
      testing::convert(testing::random_tensor({c.tokens, c.kv_heads, c.head_dim}, 5).view(), dtype);
  const TensorView h_seq = make_view(seq.data(), DType::kI32, {c.tokens});
  const TensorView h_pos = make_view(pos.data(), DType::kI32, {c.tokens});

  DeviceTensor d_kc = DeviceTensor::from_host(k_cache.view());
  DeviceTensor d_vc = DeviceTensor::from_host(v_cache.view());
  const DeviceTensor d_tables = DeviceTensor::from_host(tables.view());
  const DeviceTensor d_seq = DeviceTensor::from_host(h_seq);
  const DeviceTensor d_pos = DeviceTensor::from_host(h_pos);
  const DeviceTensor d_k = DeviceTensor::from_host(k.view());
  const DeviceTensor d_v = DeviceTensor::from_host(v.view());
  ref::paged_kv_append(PagedKvAppendParams{k_cache.view(), v_cache.view(), tables.view(), h_seq,
                                           h_pos, k.view(), v.view()});
  paged_kv_append(PagedKvAppendParams{d_kc.view(), d_vc.view(), d_tables.view(), d_seq.view(),
                                      d_pos.view(), d_k.view(), d_v.view()},
                  Stream{});
  EXPECT_TRUE(testing::all_close(d_kc.to_floats(), testing::to_vector(k_cache.view()), 0, 0))
      << "k cache";
  EXPECT_TRUE(testing::all_close(d_vc.to_floats(), testing::to_vector(v_cache.view()), 0, 0))
      << "v cache";
}

// FP8 caches: the device's codes and row scales equal the reference's bit for bit (the same
// power-of-two scale and round-to-nearest-even e4m3 codes), from every activation dtype.
TEST_P(PagedKvAppendCuda, Fp8CodesAndScalesEqualTheReference) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const auto& [c, dtype] = GetParam();
  Placement pl = place(c);
  const std::vector<int64_t> cache_shape = {pl.num_pages, c.page_size, c.kv_heads, c.head_dim};
  const std::vector<int64_t> scale_shape = {pl.num_pages, c.kv_heads, c.page_size};
  // Rows of mixed magnitudes (scales from 2^-20 to 2^10), a zero row, and a huge element.
  HostTensor kf = testing::random_tensor({c.tokens, c.kv_heads, c.head_dim}, 4, 3.0f);
  HostTensor vf = testing::random_tensor({c.tokens, c.kv_heads, c.head_dim}, 5, 0.5f);
  for (int64_t r = 0; r < c.tokens * c.kv_heads; ++r) {
    const float mag = std::ldexp(1.0f, int(r % 31) - 20);
    for (int64_t d = 0; d < c.head_dim; ++d) kf.view().data_as<float>()[r * c.head_dim + d] *= mag;
  }
  for (int64_t d = 0; d < c.head_dim; ++d) vf.view().data_as<float>()[d] = 0.0f;
  kf.view().data_as<float>()[c.head_dim - 1] = 1e30f;
  const HostTensor k = testing::convert(kf.view(), dtype), v = testing::convert(vf.view(), dtype);
  HostTensor kc(cache_shape, DType::kU8), vc(cache_shape, DType::kU8);
  HostTensor ks(scale_shape, DType::kF32), vs(scale_shape, DType::kF32);
  for (HostTensor* t : {&kc, &vc, &ks, &vs}) {
    std::fill_n(static_cast<uint8_t*>(t->view().data), t->view().nbytes(), uint8_t(0x5A));
  }
  DeviceTensor d_kc = DeviceTensor::from_host(kc.view()), d_vc = DeviceTensor::from_host(vc.view());
  DeviceTensor d_ks = DeviceTensor::from_host(ks.view()), d_vs = DeviceTensor::from_host(vs.view());
  const TensorView h_seq = make_view(pl.seq.data(), DType::kI32, {c.tokens});
  const TensorView h_pos = make_view(pl.pos.data(), DType::kI32, {c.tokens});
  const DeviceTensor d_tables = DeviceTensor::from_host(pl.tables.view());
  const DeviceTensor d_seq = DeviceTensor::from_host(h_seq), d_pos = DeviceTensor::from_host(h_pos);
  const DeviceTensor d_k = DeviceTensor::from_host(k.view()), d_v = DeviceTensor::from_host(v.view());
  ref::paged_kv_append(PagedKvAppendParams{kc.view(), vc.view(), pl.tables.view(), h_seq, h_pos,
                                           k.view(), v.view(), ks.view(), vs.view()});
  paged_kv_append(PagedKvAppendParams{d_kc.view(), d_vc.view(), d_tables.view(), d_seq.view(),
                                      d_pos.view(), d_k.view(), d_v.view(), d_ks.view(),
                                      d_vs.view()},
                  Stream{});
  for (const auto& [dev, host, what] :
       {std::tuple{&d_kc, &kc, "k codes"}, std::tuple{&d_vc, &vc, "v codes"},
        std::tuple{&d_ks, &ks, "k scales"}, std::tuple{&d_vs, &vs, "v scales"}}) {
    std::vector<uint8_t> got(host->view().nbytes());
    copy_bytes(got.data(), Device{}, dev->view().data, dev->view().device, got.size(), Stream{});
    stream_synchronize(Stream{});
    const uint8_t* want = static_cast<const uint8_t*>(host->view().data);
    int64_t differ = 0;
    for (size_t i = 0; i < got.size(); ++i) differ += got[i] != want[i];
    EXPECT_EQ(differ, 0) << what;
  }
}

// Bytes of a device tensor, for exact comparisons.
std::vector<uint8_t> bytes_of(const DeviceTensor& t) {
  std::vector<uint8_t> out(t.view().nbytes());
  copy_bytes(out.data(), Device{}, t.view().data, t.view().device, out.size(), Stream{});
  stream_synchronize(Stream{});
  return out;
}

// With rope_q set, one launch rotates q and k and appends (a fused kernel where the rows allow
// 16-byte vectors, else the two kernels): q, k and the cache (codes and scales for FP8) equal
// rotary_embedding followed by the plain append, byte for byte.
TEST_P(PagedKvAppendCuda, RopeThenAppendEqualsTheTwoLaunches) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const auto& [c, dtype] = GetParam();
  if (c.head_dim % 2 != 0) GTEST_SKIP() << "RoPE needs an even head_dim";
  Placement pl = place(c);
  const int64_t heads = 2 * c.kv_heads;
  const HostTensor q =
      testing::convert(testing::random_tensor({c.tokens, heads, c.head_dim}, 8).view(), dtype);
  const HostTensor k =
      testing::convert(testing::random_tensor({c.tokens, c.kv_heads, c.head_dim}, 9).view(), dtype);
  const HostTensor v =
      testing::convert(testing::random_tensor({c.tokens, c.kv_heads, c.head_dim}, 10).view(), dtype);
  std::vector<float> freq(size_t(c.head_dim / 2));
  for (size_t i = 0; i < freq.size(); ++i) {
    freq[i] = std::pow(500000.0f, -2.0f * float(i) / float(c.head_dim));
  }
  const DeviceTensor d_freq =
      DeviceTensor::from_host(make_view(freq.data(), DType::kF32, {c.head_dim / 2}));
  const DeviceTensor d_tables = DeviceTensor::from_host(pl.tables.view());
  const DeviceTensor d_seq =
      DeviceTensor::from_host(make_view(pl.seq.data(), DType::kI32, {c.tokens}));
  const DeviceTensor d_pos =
      DeviceTensor::from_host(make_view(pl.pos.data(), DType::kI32, {c.tokens}));
  const DeviceTensor d_v = DeviceTensor::from_host(v.view());
  for (const bool fp8 : {false, true}) {
    const DType cache_dtype = fp8 ? DType::kU8 : dtype;
    const std::vector<int64_t> cache_shape = {pl.num_pages, c.page_size, c.kv_heads, c.head_dim};
    const std::vector<int64_t> scale_shape = {pl.num_pages, c.kv_heads, c.page_size};
    struct Run {
      DeviceTensor q, k, kc, vc, ks, vs;
    };
    Run runs[2];
    for (Run& r : runs) {
      r.q = DeviceTensor::from_host(q.view());
      r.k = DeviceTensor::from_host(k.view());
      r.kc = DeviceTensor::filled(cache_shape, cache_dtype, 0x5A);
      r.vc = DeviceTensor::filled(cache_shape, cache_dtype, 0x5A);
      if (fp8) {
        r.ks = DeviceTensor::filled(scale_shape, DType::kF32, 0x5A);
        r.vs = DeviceTensor::filled(scale_shape, DType::kF32, 0x5A);
      }
    }
    PagedKvAppendParams fused{runs[0].kc.view(), runs[0].vc.view(), d_tables.view(), d_seq.view(),
                              d_pos.view(),      runs[0].k.view(),  d_v.view()};
    if (fp8) {
      fused.k_scale = runs[0].ks.view();
      fused.v_scale = runs[0].vs.view();
    }
    fused.rope_q = runs[0].q.view();
    fused.rope_inv_freq = d_freq.view();
    paged_kv_append(fused, Stream{});

    rotary_embedding(runs[1].q.view(), runs[1].k.view(), d_pos.view(), d_freq.view(), Stream{});
    PagedKvAppendParams two{runs[1].kc.view(), runs[1].vc.view(), d_tables.view(), d_seq.view(),
                            d_pos.view(),      runs[1].k.view(),  d_v.view()};
    if (fp8) {
      two.k_scale = runs[1].ks.view();
      two.v_scale = runs[1].vs.view();
    }
    paged_kv_append(two, Stream{});

    const char* cache = fp8 ? "fp8 cache" : "cache";
    EXPECT_EQ(bytes_of(runs[0].q), bytes_of(runs[1].q)) << "q, " << cache;
    EXPECT_EQ(bytes_of(runs[0].k), bytes_of(runs[1].k)) << "k, " << cache;
    EXPECT_EQ(bytes_of(runs[0].kc), bytes_of(runs[1].kc)) << "k " << cache;
    EXPECT_EQ(bytes_of(runs[0].vc), bytes_of(runs[1].vc)) << "v " << cache;
    if (fp8) {
      EXPECT_EQ(bytes_of(runs[0].ks), bytes_of(runs[1].ks)) << "k scales";
      EXPECT_EQ(bytes_of(runs[0].vs), bytes_of(runs[1].vs)) << "v scales";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, PagedKvAppendCuda,
                         ::testing::Combine(::testing::ValuesIn(kCases),
                                            ::testing::Values(DType::kF32, DType::kF16,
                                                              DType::kBF16)),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param).name) + "_" +
                                  dtype_name(std::get<1>(info.param));
                         });

// A Llama-3 layer cache (8 KV heads x 128, 16-token pages) just over 2^31 elements: positions
// 0 and 15 land in the last page (elements past 2^31), position 16 in page 5.
TEST(PagedKvAppendCudaLarge, OffsetsBeyond2To31Elements) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const int64_t page_size = 16, kv_heads = 8, head_dim = 128;
  const int64_t token_elems = kv_heads * head_dim;
  const int64_t num_pages = (int64_t(1) << 31) / (page_size * token_elems) + 2;
  const DType dtype = DType::kBF16;
  DeviceTensor d_kc = DeviceTensor::filled({num_pages, page_size, kv_heads, head_dim}, dtype, 0);
  DeviceTensor d_vc = DeviceTensor::filled({num_pages, page_size, kv_heads, head_dim}, dtype, 0);
  int32_t table[2] = {int32_t(num_pages - 1), 5};
  int32_t seq[3] = {0, 0, 0}, pos[3] = {0, 15, 16};
  const HostTensor k =
      testing::convert(testing::random_tensor({3, kv_heads, head_dim}, 6).view(), dtype);
  const HostTensor v =
      testing::convert(testing::random_tensor({3, kv_heads, head_dim}, 7).view(), dtype);
  const DeviceTensor d_table = DeviceTensor::from_host(make_view(table, DType::kI32, {1, 2}));
  const DeviceTensor d_seq = DeviceTensor::from_host(make_view(seq, DType::kI32, {3}));
  const DeviceTensor d_pos = DeviceTensor::from_host(make_view(pos, DType::kI32, {3}));
  const DeviceTensor d_k = DeviceTensor::from_host(k.view());
  const DeviceTensor d_v = DeviceTensor::from_host(v.view());
  paged_kv_append(PagedKvAppendParams{d_kc.view(), d_vc.view(), d_table.view(), d_seq.view(),
                                      d_pos.view(), d_k.view(), d_v.view()},
                  Stream{});
  const int64_t expect_slot[3] = {(num_pages - 1) * page_size, (num_pages - 1) * page_size + 15,
                                  5 * page_size};
  ASSERT_GT(expect_slot[1] * token_elems, int64_t(1) << 31);
  const std::vector<float> want_k = testing::to_vector(k.view()),
                           want_v = testing::to_vector(v.view());
  for (int t = 0; t < 3; ++t) {
    for (const auto& [cache, want] :
         {std::make_pair(&d_kc, &want_k), std::make_pair(&d_vc, &want_v)}) {
      HostTensor slot({token_elems}, dtype);
      const TensorView flat = make_view(
          cache->view().data, dtype, {num_pages * page_size * token_elems}, cache->view().device);
      copy_bytes(slot.view().data, Device{},
                 static_cast<uint8_t*>(flat.data) +
                     expect_slot[t] * token_elems * int64_t(dtype_size(dtype)),
                 flat.device, size_t(token_elems) * dtype_size(dtype), Stream{});
      stream_synchronize(Stream{});
      EXPECT_TRUE(testing::all_close(testing::to_vector(slot.view()),
                                     std::vector<float>(want->begin() + t * token_elems,
                                                        want->begin() + (t + 1) * token_elems),
                                     0, 0))
          << "token " << t;
    }
  }
}

}  // namespace
}  // namespace tidal::kernels
