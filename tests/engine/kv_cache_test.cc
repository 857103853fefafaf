// SPDX-License-Identifier: Apache-2.0
// KV cache page accounting.
#include "runtime/engine/kv_cache.h"

#include "tests/testing/model_config.h"
#include "tests/testing/testing.h"

namespace tidal::engine {
namespace {

KvCacheConfig config(int64_t page_size, int64_t num_pages) {
  KvCacheConfig c;
  c.page_size = page_size;
  c.num_pages = num_pages;
  return c;
}

model::ModelConfig tiny() {
  testing::TinyLlama t;
  t.heads = 2;
  t.kv_heads = 1;
  return testing::tiny_llama(t);
}

TEST(KvCache, ReservesWholePagesAndReleasesThem) {
  KvCache kv;
  ASSERT_TRUE(KvCache::create(tiny(), config(4, 5), &kv).ok());
  EXPECT_EQ(kv.capacity_tokens(), 20);
  EXPECT_EQ(kv.layers().size(), 2u);
  EXPECT_EQ(kv.layers()[0].k.size(0), 6);  // + the padding page, never handed out
  EXPECT_EQ(kv.padding_page(), 5);
  std::vector<int32_t> a, b;
  ASSERT_TRUE(kv.reserve(&a, 9).ok());  // 3 pages
  EXPECT_EQ(a, (std::vector<int32_t>{0, 1, 2}));
  ASSERT_TRUE(kv.reserve(&a, 12).ok());  // still 3
  EXPECT_EQ(a.size(), 3u);
  const Status full = kv.reserve(&b, 9);
  EXPECT_EQ(full.code(), StatusCode::kOutOfMemory);
  EXPECT_NE(full.message().find("KV cache full"), std::string::npos);
  EXPECT_TRUE(b.empty());  // nothing taken on failure
  kv.release(&a);
  EXPECT_EQ(kv.free_pages(), 5);
  ASSERT_TRUE(kv.reserve(&b, 9).ok());
  EXPECT_EQ(b, (std::vector<int32_t>{0, 1, 2}));
}

// A token count near INT64_MAX needs more pages than any cache holds: kOutOfMemory, not a page
// count wrapped negative by rounding up (which took no pages and said ok).
TEST(KvCache, HugeTokenCountsAreRefusedNotWrapped) {
  KvCache kv;
  ASSERT_TRUE(KvCache::create(tiny(), config(4, 5), &kv).ok());
  std::vector<int32_t> a;
  for (int64_t n : {INT64_MAX, INT64_MAX - 2}) {
    const Status st = kv.reserve(&a, n);
    EXPECT_EQ(st.code(), StatusCode::kOutOfMemory) << n << ": " << st.to_string();
    EXPECT_TRUE(a.empty());
  }
  EXPECT_EQ(kv.free_pages(), 5);
}

TEST(KvCache, BytesMatchTheLayout) {
  // 2 layers x (K + V) x 6 pages x 4 slots x 1 head x 4 dims x 4 bytes, each aligned.
  EXPECT_GE(KvCache::bytes_for(tiny(), config(4, 5)), size_t(2 * 2 * 6 * 4 * 4 * 4));
  EXPECT_EQ(KvCache::bytes_per_page(tiny(), 4, DType::kF32), size_t(2 * 4 * 4 * (2 * 4 + 2)));
  EXPECT_FALSE(config(0, 5).validate().ok());
}

}  // namespace
}  // namespace tidal::engine
