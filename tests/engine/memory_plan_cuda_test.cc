// SPDX-License-Identifier: Apache-2.0
// The memory plan on the GPU: it names the device, serves a positive KV capacity, fits in the
// device's memory (also for Llama-3.1-8B at 128K context, planned without allocating), agrees
// with what the engine really allocates, and an explicit capacity beyond the device is refused
// with a clear error.
#include <memory>
#include <string>

#include "model/config.h"
#include "runtime/engine/engine.h"
#include "tests/testing/engine_cuda.h"
#include "tests/testing/model_config.h"

namespace tidal::engine {
namespace {

model::ModelConfig config() {
  testing::TinyLlama t;
  t.layers = 4;
  t.heads = 8;
  t.kv_heads = 2;
  t.head_dim = 128;
  t.context = 4096;
  t.vocab = 1000;
  t.inter = 1536;
  return testing::tiny_llama(t);
}

TEST(MemoryPlanCuda, NamesTheDeviceFitsItsMemoryAndMatchesTheAllocations) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const model::ModelConfig c = config();
  DeviceInfo info;
  ASSERT_TRUE(cuda_device_info(0, &info).ok());
  ASSERT_GT(info.total_bytes, 0u);
  EngineConfig cfg = testing::gpu_config(DType::kBF16);
  cfg.max_batch = 4;
  model::LlamaWeights w;
  ASSERT_TRUE(model::init_random_llama_weights(c, 1, &w, {cfg.dtype, cfg.device}).ok());
  const size_t free_before = available_memory(cfg.device);
  EXPECT_GT(free_before, 0u);
  EXPECT_LE(free_before, info.total_bytes);
  std::unique_ptr<Engine> e;
  const Status st = Engine::create(c, std::move(w), cfg, &e);
  ASSERT_TRUE(st.ok()) << st.to_string();
  const size_t free_after = available_memory(cfg.device);

  const MemoryPlan& p = e->memory_plan();
  EXPECT_EQ(p.device.kind, DeviceKind::kCuda);
  EXPECT_FALSE(p.device_name.empty());
  EXPECT_EQ(p.device_name, info.name);
  EXPECT_EQ(p.dtype, DType::kBF16);
  EXPECT_GT(p.kv_capacity_tokens, 0);
  EXPECT_LE(p.total_bytes(), info.total_bytes);
  // A tiny model is not capped: max_batch sequences of the whole context.
  EXPECT_FALSE(p.kv_capped);
  EXPECT_EQ(p.max_context, 4096);
  EXPECT_EQ(p.kv_capacity_tokens, 4 * 4096);
  EXPECT_EQ(p.kv_bytes_per_token, 2 * c.num_layers * c.kv_dim() * 2);  // K and V, bf16
  EXPECT_GE(p.kv_bytes, size_t(p.kv_capacity_tokens * p.kv_bytes_per_token));
  EXPECT_EQ(p.weight_bytes, model::llama_weight_bytes(c, DType::kBF16));
  EXPECT_LE(p.weight_bytes, e->weights().bytes());
  EXPECT_LT(e->weights().bytes() - p.weight_bytes, size_t(kArenaAlignment));
  EXPECT_GT(p.workspace_bytes, 0u);
  // The engine took what the plan says for KV cache and workspace (weights came before), within
  // the allocator's granularity and the stream's and pinned buffers' small change.
  ASSERT_GE(free_before, free_after);
  const size_t taken = free_before - free_after;
  EXPECT_GE(taken, p.kv_bytes);
  EXPECT_LE(taken, p.kv_bytes + p.workspace_bytes + (size_t(64) << 20));
}

TEST(MemoryPlanCuda, Llama31At128KIsCappedToFitAndOverlargeCapacitiesAreRefused) {
  TIDAL_SKIP_WITHOUT_CUDA();
  model::ModelConfig big;
  ASSERT_TRUE(model::model_config_preset("llama3.1-8b", &big).ok());
  EngineConfig cfg = testing::gpu_config(DType::kBF16);
  const size_t available = available_memory(cfg.device);
  ASSERT_GT(available, 0u);
  // 8 x 128K tokens would need 128 GiB of KV cache on top of 16 GB of weights: the automatic
  // capacity is cut to what fits in 92% of the memory.
  const MemoryPlan p = plan_memory(big, cfg, available);
  const MemoryPlan uncapped = plan_memory(big, cfg, 0);  // no memory limit given
  EXPECT_FALSE(p.device_name.empty());
  EXPECT_EQ(p.max_context, 131072);
  EXPECT_EQ(uncapped.kv_capacity_tokens, 8 * 131072);
  EXPECT_LE(p.total_bytes(), available);
  EXPECT_EQ(p.kv_capped, double(uncapped.total_bytes()) > 0.92 * double(available));
  if (p.weight_bytes + p.workspace_bytes < available / 2) {
    EXPECT_GT(p.kv_capacity_tokens, 0);
  }
  EXPECT_EQ(p.kv_capacity_tokens % cfg.page_size, 0);

  // An explicit capacity is taken as asked, and the engine refuses one the device cannot hold
  // (before allocating it).
  const model::ModelConfig c = config();
  cfg.kv_capacity = int64_t(available / size_t(2 * c.num_layers * c.kv_dim() * 2)) + (1 << 20);
  model::LlamaWeights w;
  ASSERT_TRUE(model::init_random_llama_weights(c, 1, &w, {cfg.dtype, cfg.device}).ok());
  std::unique_ptr<Engine> e;
  const Status st = Engine::create(c, std::move(w), cfg, &e);
  EXPECT_EQ(st.code(), StatusCode::kOutOfMemory) << st.to_string();
  EXPECT_NE(st.message().find("does not fit in " + p.device_name + " memory"), std::string::npos)
      << st.message();
  EXPECT_NE(st.message().find(" are available; the KV cache is the largest part "
                              "(kv_capacity " +
                              std::to_string(cfg.kv_capacity) + " tokens"),
            std::string::npos)
      << st.message();
  EXPECT_FALSE(e);
}

}  // namespace
}  // namespace tidal::engine
