// SPDX-License-Identifier: Apache-2.0
// The engine's limits on a GPU: non-finite logits stop a prefill or a decode step (eager and
// replayed from a CUDA graph) with an error naming the step, read from the sampled ids that come
// back anyway; running out of KV pages is a finish reason; a plan larger than the device's free
// memory is refused before the weights are read, naming the GPU.
#include <cmath>
#include <limits>
#include <memory>

#include "runtime/engine/engine.h"
#include "runtime/engine/generate.h"
#include "tests/testing/engine_cuda.h"
#include "tests/testing/model_config.h"

namespace tidal::engine {
namespace {

model::ModelConfig config() {
  testing::TinyLlama t;
  t.layers = 3;
  t.head_dim = 64;
  t.context = 128;
  t.vocab = 64;
  t.inter = 128;
  return testing::untied_llama(t);
}

// Random weights whose embedding row 7 is NaN: feeding token 7 poisons that step's logits.
model::LlamaWeights nan_weights() {
  model::LlamaWeights w = testing::host_weights(config(), 5);
  float* row = w.embed.data_as<float>() + 7 * config().hidden;
  for (int64_t i = 0; i < config().hidden; ++i) row[i] = std::numeric_limits<float>::quiet_NaN();
  return w;
}

bool has(const Status& st, const std::string& what) {
  return st.message().find(what) != std::string::npos;
}

TEST(LimitsCuda, NonFiniteLogitsStopWithTheStepEagerAndGraphs) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const model::LlamaWeights host = nan_weights();
  for (bool graphs : {false, true}) {
    for (DType dtype : {DType::kF32, DType::kBF16}) {
      auto e = testing::make_engine(config(), host, testing::gpu_config(dtype, graphs));
      ASSERT_TRUE(e);
      SeqId a, b;
      ASSERT_TRUE(e->add_sequence({1, 7, 3}, &a).ok());
      Status st = e->prefill(a, TensorView());  // no logits asked: nothing to check
      EXPECT_TRUE(st.ok()) << st.message();
      ASSERT_TRUE(e->add_sequence({1, 7, 3}, &b).ok());
      int32_t first = -1;
      st = e->prefill(b, TensorView(), &first);
      EXPECT_TRUE(has(st,
                      "non-finite logits (NaN or infinity) at step 0 of the generation "
                      "(position 2)"))
          << st.message();
      SeqId c;
      ASSERT_TRUE(e->add_sequence({1, 2, 3}, &c).ok());
      ASSERT_TRUE(e->prefill(c, TensorView(), &first).ok());
      std::vector<int32_t> next;
      for (int step = 0; step < 3; ++step) {  // graphs: captured, then replayed
        ASSERT_TRUE(e->decode({c}, {5}, TensorView(), &next).ok());
      }
      st = e->decode({c}, {7}, TensorView(), &next);
      EXPECT_TRUE(has(st, "at step 4 of the generation (position 6)"))
          << (graphs ? "graphs " : "eager ") << dtype_name(dtype) << ": " << st.message();
    }
  }
}

TEST(LimitsCuda, RunningOutOfKvPagesIsAFinishReason) {
  TIDAL_SKIP_WITHOUT_CUDA();
  EngineConfig cfg = testing::gpu_config(DType::kBF16);
  cfg.page_size = 16;
  cfg.kv_capacity = 32;
  auto e = testing::make_engine(config(), testing::host_weights(config(), 5), cfg);
  ASSERT_TRUE(e);
  GenerationRequest r;
  r.prompt = {1, 2, 3, 4, 5};
  r.stop.max_new_tokens = 100;
  r.stop.ignore_eos = true;
  r.sampling.temperature = 0;
  std::vector<GenerationResult> out;
  ASSERT_TRUE(generate(
                  *e, {r}, nullptr, [](const GenerationEvent&) { return true; }, &out)
                  .ok());
  EXPECT_EQ(out[0].finish, FinishReason::kKvCapacity);
  EXPECT_EQ(out[0].cached_tokens, 32);
}

TEST(LimitsCuda, PlansBeyondTheDeviceAreRefusedNamingIt) {
  TIDAL_SKIP_WITHOUT_CUDA();
  model::ModelConfig m;
  ASSERT_TRUE(model::model_config_preset("llama3-8b", &m).ok());
  EngineConfig cfg = testing::gpu_config(DType::kBF16);
  cfg.kv_capacity = int64_t(1) << 36;  // 2^36 tokens of 128 KiB: no GPU has that
  cfg.page_size = 4096;
  const Status st = check_fits(m, cfg);
  EXPECT_EQ(st.code(), StatusCode::kOutOfMemory);
  DeviceInfo info;
  ASSERT_TRUE(cuda_device_info(cfg.device.index, &info).ok());
  EXPECT_TRUE(has(st, "does not fit in " + info.name + " memory (bf16)")) << st.message();
  EXPECT_TRUE(has(st, "kv_capacity 68719476736 tokens")) << st.message();
}

}  // namespace
}  // namespace tidal::engine
