// SPDX-License-Identifier: Apache-2.0
// The FP8 KV cache on the GPU, end to end: the embedded model's 64 greedy tokens after its eval
// prompt with FP8 KV on the CUDA engine against the same format on the CPU engine (the GPU
// kernels against their references through a whole generation) and against the GPU's own bf16
// cache (the cost of FP8), under full attention, TidalDecode (K = 32) and Quest (K = 32).
// Agreements are printed; a sanity bound (no flip in the first 8 tokens) is asserted.
#include <cstdio>
#include <string>
#include <vector>

#include "kernels/decode_attention.h"
#include "model/config.h"
#include "model/llama.h"
#include "tests/engine/greedy_agreement.h"
#include "tests/testing/engine_cuda.h"

namespace tidal::engine {
namespace {

using testing_greedy::agreement;
using testing_greedy::Agreement;
using testing_greedy::greedy;

TEST(Fp8KvCuda, GreedyTokensOfTheEmbeddedModel) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const std::vector<int32_t> prompt = testing_greedy::eval_prompt();
  const int64_t n = 64;
  auto config = [](Device device, DType dtype, bool fp8) {
    EngineConfig cfg;
    cfg.device = device;
    cfg.max_batch = 1;
    cfg.max_context = 256;
    cfg.max_budget = 64;
    cfg.dtype = dtype;
    cfg.kv_dtype = fp8 ? KvDtype::kFp8 : KvDtype::kActivation;
    return cfg;
  };
  for (const auto& [name, policy] : testing_greedy::policies_k32()) {
    for (const DType dtype : {DType::kF32, DType::kBF16}) {
      const std::vector<int32_t> gpu_fp8 = greedy(config(testing::gpu(), dtype, true), prompt,
                                                  policy, n);
      const std::vector<int32_t> cpu_fp8 = greedy(config(Device{}, dtype, true), prompt, policy, n);
      const std::vector<int32_t> gpu_act = greedy(config(testing::gpu(), dtype, false), prompt,
                                                  policy, n);
      ASSERT_EQ(int64_t(gpu_fp8.size()), n);
      const Agreement vs_cpu = agreement(gpu_fp8, cpu_fp8), vs_act = agreement(gpu_fp8, gpu_act);
      std::printf(
          "[ fp8 greedy cuda ] tidal-tiny-16k %-5s %-4s: GPU fp8 KV vs CPU fp8 KV %2lld/%lld equal "
          "(first difference %2lld); GPU fp8 KV vs GPU %s KV %2lld/%lld (%2lld)\n",
          name, dtype_name(dtype), static_cast<long long>(vs_cpu.same),
          static_cast<long long>(n), static_cast<long long>(vs_cpu.first), dtype_name(dtype),
          static_cast<long long>(vs_act.same), static_cast<long long>(n),
          static_cast<long long>(vs_act.first));
      EXPECT_GE(vs_cpu.first, 8) << name << " " << dtype_name(dtype);
      EXPECT_GE(vs_act.first, 8) << name << " " << dtype_name(dtype);
    }
  }
}

// The step's scratch covers decode attention on an FP8 cache at every decode count: the split
// count follows the split kernel's residency, which is not the 16-bit cache's (the embedded
// model's FP8 niah at 16K overran a scratch sized for its bf16 cache).
TEST(Fp8KvCuda, StepScratchCoversTheFp8SplitKernel) {
  TIDAL_SKIP_WITHOUT_CUDA();
  std::vector<model::ModelConfig> configs(3);
  ASSERT_TRUE(model::load_model_config(std::string(TIDAL_SOURCE_DIR) + "/model/tidal-tiny-16k",
                                       &configs[0]).ok());
  ASSERT_TRUE(model::model_config_preset("llama3-8b", &configs[1]).ok());
  ASSERT_TRUE(model::model_config_preset("llama2-7b", &configs[2]).ok());
  for (const model::ModelConfig& c : configs) {
    for (const DType dtype : {DType::kBF16, DType::kF16, DType::kF32}) {
      model::WorkspaceShape shape;
      shape.max_tokens = 8;
      shape.max_decode = 8;
      shape.max_logits = 8;
      shape.num_rows = 8;
      shape.max_context = 16384;
      shape.max_budget = 1024;
      shape.dtype = dtype;
      shape.device = testing::gpu();
      model::LlamaWorkspace ws;
      ASSERT_TRUE(model::LlamaWorkspace::create(c, shape, &ws).ok());
      for (const DType cache : {dtype, DType::kU8}) {
        for (int64_t n = 1; n <= shape.max_decode; ++n) {
          kernels::DecodeAttentionParams p;
          p.q = ws.q.slice(0, n);
          p.out = ws.attn.slice(0, n);
          p.k_cache = make_view(nullptr, cache, {1, shape.page_size, c.num_kv_heads, c.head_dim},
                                shape.device);
          p.v_cache = p.k_cache;
          EXPECT_LE(kernels::decode_attention_workspace_size(p), ws.scratch.nbytes())
              << c.name << " " << dtype_name(dtype) << " cache " << dtype_name(cache) << " at "
              << n << " decode tokens";
        }
      }
    }
  }
}

}  // namespace
}  // namespace tidal::engine
