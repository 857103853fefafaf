// SPDX-License-Identifier: Apache-2.0
// The FP8 KV cache in the engine: the memory plan's bytes (halved K/V plus the scales), the
// cache's layout, and the embedded model's greedy tokens with FP8 KV against
// the default f32 cache under full, TidalDecode and Quest attention (agreement printed; a
// sanity bound asserted).
#include <cstdio>
#include <memory>

#include "model/tokenizer.h"
#include "runtime/engine/engine.h"
#include "runtime/engine/generate.h"
#include "runtime/engine/kv_cache.h"
#include "tests/engine/greedy_agreement.h"
#include "tests/testing/model_config.h"
#include "tests/testing/testing.h"

namespace tidal::engine {
namespace {

using testing_greedy::agreement;
using testing_greedy::Agreement;

// llama3-8b's shape: 32 layers, 8 KV heads of 128, a 1M-token context at batch 1.
model::ModelConfig llama3_8b_shape() {
  testing::TinyLlama t;
  t.layers = 32;
  t.heads = 32;
  t.kv_heads = 8;
  t.head_dim = 128;
  t.context = 1 << 20;
  t.vocab = 128256;
  t.inter = 14336;
  model::ModelConfig c = testing::tiny_llama(t);
  c.tie_word_embeddings = false;
  return c;
}

TEST(Fp8KvPlan, HalvesTheKvBytesPlusOneScalePerRow) {
  const model::ModelConfig c = llama3_8b_shape();
  EngineConfig cfg;
  cfg.dtype = DType::kBF16;
  cfg.max_batch = 1;
  cfg.max_context = 1 << 20;
  const MemoryPlan bf16 = plan_memory(c, cfg, 0);
  cfg.kv_dtype = KvDtype::kFp8;
  const MemoryPlan fp8 = plan_memory(c, cfg, 0);
  // K and V: 32 layers x 1024 elements x 2 bytes; FP8: 1 byte each and a 4-byte scale per head.
  EXPECT_EQ(bf16.kv_bytes_per_token, 2 * 32 * 1024 * 2);
  EXPECT_EQ(fp8.kv_bytes_per_token, 2 * 32 * (1024 + 8 * 4));
  // A page: 16 tokens, plus Quest's two bound rows per layer, which stay bf16.
  EXPECT_EQ(bf16.kv_bytes_per_page, 16 * bf16.kv_bytes_per_token + 2 * 32 * 1024 * 2);
  EXPECT_EQ(fp8.kv_bytes_per_page, 16 * fp8.kv_bytes_per_token + 2 * 32 * 1024 * 2);
  EXPECT_EQ(fp8.kv_capacity_tokens, 1 << 20);
  EXPECT_EQ(fp8.kv_dtype, KvDtype::kFp8);
  EXPECT_EQ(fp8.weight_bytes, bf16.weight_bytes);
  EXPECT_GE(fp8.kv_bytes, size_t(fp8.kv_pages + 1) * size_t(fp8.kv_bytes_per_page));
  const double ratio = double(fp8.kv_bytes) / double(bf16.kv_bytes);
  std::printf(
      "[ fp8 plan ] llama3-8b, 1M tokens: KV %.2f GB bf16 -> %.2f GB fp8 (%.4f), total "
      "%.2f -> %.2f GB\n",
      double(bf16.kv_bytes) / 1e9, double(fp8.kv_bytes) / 1e9, ratio,
      double(bf16.total_bytes()) / 1e9, double(fp8.total_bytes()) / 1e9);
  EXPECT_NEAR(ratio, (16.0 * (1024 + 32) + 2048) / (16.0 * 2048 + 2048), 1e-4);
  // 1M tokens of FP8 KV and the bf16 weights fit in an H200's 141 GB; bf16 KV does not.
  EXPECT_LT(fp8.total_bytes(), size_t(141e9));
  EXPECT_GT(bf16.total_bytes(), size_t(141e9));
}

TEST(Fp8KvPlan, TheCacheHoldsCodesAndScales) {
  testing::TinyLlama t;
  const model::ModelConfig c = testing::tiny_llama(t);  // 2 layers, 2 KV heads of 4
  KvCacheConfig kc;
  kc.page_size = 4;
  kc.num_pages = 5;
  kc.fp8 = true;
  KvCache kv;
  ASSERT_TRUE(KvCache::create(c, kc, &kv).ok());
  const model::KvLayer& l = kv.layers()[0];
  EXPECT_EQ(l.k.dtype, DType::kU8);
  EXPECT_EQ(l.v.dtype, DType::kU8);
  EXPECT_EQ(l.k_scale.dtype, DType::kF32);
  EXPECT_EQ(l.k_scale.rank, 3);
  EXPECT_EQ(l.k_scale.size(0), 6);  // + the padding page
  EXPECT_EQ(l.k_scale.size(1), 2);  // [pages, kv_heads, page_size]
  EXPECT_EQ(l.v_scale.size(2), 4);
  EXPECT_EQ(l.key_max.dtype, DType::kF32);           // the bounds keep the activations' dtype
  EXPECT_GE(kv.bytes(), KvCache::bytes_for(c, kc));  // the arena rounds up
  // 2 layers x (K + V) x 4 slots x (8 one-byte elements + 2 four-byte scales) + 2 f32 bound rows.
  EXPECT_EQ(KvCache::bytes_per_page(c, 4, DType::kF32, -1, true),
            size_t(2 * 2 * 4 * (8 + 8) + 2 * 2 * 8 * 4));
}

TEST(Fp8KvPlan, ValidOnTheCpuAndNamed) {
  EngineConfig cfg;
  cfg.kv_dtype = KvDtype::kFp8;
  EXPECT_TRUE(cfg.validate().ok());
  EXPECT_STREQ(kv_dtype_name(KvDtype::kFp8, DType::kBF16), "fp8");
  EXPECT_STREQ(kv_dtype_name(KvDtype::kActivation, DType::kBF16), "bf16");
}

// The embedded model's 32 greedy tokens after its eval prompt (53 tokens) with FP8 KV against
// the cache of the activations' dtype, f32 and bf16, for full attention, TidalDecode (K = 32)
// and Quest (K = 32); bf16 against f32 is printed as a yardstick. Greedy decoding amplifies the
// first flip of a near-tie, so the bound is a sanity one: no flip within the first 8 tokens.
// One engine per cache serves the three policies in turn (policies are per request), and 32
// tokens keep the bound and the printed agreement: this test was the sanitizer job's longest
// (274 s at 64 tokens and an engine per run).
TEST(Fp8KvTidalTiny, GreedyTokensAgreeWithTheDefaultCache) {
  const std::vector<int32_t> prompt = testing_greedy::eval_prompt();
  const int64_t n = 32;
  const auto policies = testing_greedy::policies_k32();
  std::vector<std::vector<int32_t>> out[2][2];  // [bf16][fp8][policy]
  for (int b16 = 0; b16 < 2; ++b16) {
    for (int fp8 = 0; fp8 < 2; ++fp8) {
      EngineConfig cfg;
      cfg.max_batch = 1;
      cfg.max_context = 256;
      cfg.max_budget = 64;
      cfg.dtype = b16 ? DType::kBF16 : DType::kF32;
      cfg.kv_dtype = fp8 ? KvDtype::kFp8 : KvDtype::kActivation;
      std::unique_ptr<Engine> engine;
      const Status st = Engine::load(testing_greedy::kDir, cfg, &engine);
      ASSERT_TRUE(st.ok()) << st.to_string();
      for (const auto& named : policies) {
        out[b16][fp8].push_back(testing::greedy_tokens(*engine, prompt, n, named.second));
        ASSERT_EQ(int64_t(out[b16][fp8].back().size()), n) << named.first;
      }
    }
  }
  for (size_t i = 0; i < policies.size(); ++i) {
    const char* name = policies[i].first;
    const Agreement f32 = agreement(out[0][1][i], out[0][0][i]);
    const Agreement bf16 = agreement(out[1][1][i], out[1][0][i]);
    const Agreement yard = agreement(out[1][0][i], out[0][0][i]);
    std::printf(
        "[ fp8 greedy ] tidal-tiny-16k %-5s: fp8 vs f32 KV %2lld/%lld equal (first "
        "difference %2lld); fp8 vs bf16 KV %2lld/%lld (%2lld); yardstick bf16 vs f32 "
        "%2lld/%lld (%2lld)\n",
        name, static_cast<long long>(f32.same), static_cast<long long>(n),
        static_cast<long long>(f32.first), static_cast<long long>(bf16.same),
        static_cast<long long>(n), static_cast<long long>(bf16.first),
        static_cast<long long>(yard.same), static_cast<long long>(n),
        static_cast<long long>(yard.first));
    EXPECT_GE(f32.first, 8) << name;
    EXPECT_GE(bf16.first, 8) << name;
  }
}

}  // namespace
}  // namespace tidal::engine
