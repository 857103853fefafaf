// SPDX-License-Identifier: Apache-2.0
// The CPU path on several threads computes exactly what it computes on one: on the embedded
// model, chunked prefill logits and the logits of batched decode steps mixing full, tidal and
// quest attention are bit-identical for 1, 2 and 3 threads (threads split independent outputs,
// never a sum).
#include <cstring>
#include <memory>

#include "runtime/engine/engine.h"
#include "runtime/thread_pool.h"
#include "tests/testing/testing.h"

namespace tidal::engine {
namespace {

const std::string kDir = std::string(TIDAL_SOURCE_DIR) + "/model/tidal-tiny-16k";

struct Logits {
  std::vector<float> prefill;  // every sequence's logits after its prompt
  std::vector<float> decode;   // every decode step's logits, all sequences
};

std::vector<int32_t> prompt(int32_t length, int32_t salt) {
  std::vector<int32_t> ids = {4094};  // BOS
  for (int32_t i = 1; i < length; ++i) ids.push_back((i * 37 + salt * 101) % 4000);
  return ids;
}

Logits run(Engine& e) {
  const int64_t vocab = e.model_config().vocab;
  std::vector<model::AttentionPolicy> policies(3);
  policies[1].kind = model::AttentionKind::kTidal;
  policies[1].tidal.budget = 8;
  policies[1].tidal.granularity = model::Granularity::kPerKvHead;
  policies[2].kind = model::AttentionKind::kQuest;
  policies[2].quest.budget = 16;
  policies[2].quest.page_size = 8;
  Logits out;
  std::vector<SeqId> ids;
  std::vector<int32_t> next;
  for (int32_t s = 0; s < 3; ++s) {
    SeqId id;
    const Status st = e.add_sequence(prompt(24 + 5 * s, s), policies[size_t(s)], &id);
    EXPECT_TRUE(st.ok()) << st.to_string();
    std::vector<float> logits(static_cast<size_t>(vocab));
    int32_t sampled = -1;
    EXPECT_TRUE(e.prefill(id, make_view(logits.data(), DType::kF32, {vocab}), &sampled).ok());
    out.prefill.insert(out.prefill.end(), logits.begin(), logits.end());
    ids.push_back(id);
    next.push_back(sampled);
  }
  std::vector<float> logits(static_cast<size_t>(3 * vocab));
  for (int step = 0; step < 3; ++step) {
    std::vector<int32_t> sampled;
    EXPECT_TRUE(
        e.decode(ids, next, make_view(logits.data(), DType::kF32, {3, vocab}), &sampled).ok());
    out.decode.insert(out.decode.end(), logits.begin(), logits.end());
    next = sampled;
  }
  for (SeqId id : ids) e.release(id);
  return out;
}

bool bit_identical(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST(CpuThreads, PrefillAndMixedBatchDecodeAreBitIdenticalToOneThread) {
  EngineConfig cfg;
  cfg.max_batch = 3;
  cfg.max_context = 256;
  cfg.prefill_chunk = 8;  // several chunks per prompt
  cfg.page_size = 8;
  std::unique_ptr<Engine> e;
  const Status st = Engine::load(kDir, cfg, &e);
  ASSERT_TRUE(st.ok()) << st.to_string();
  set_cpu_threads(1);
  const Logits one = run(*e);
  ASSERT_EQ(one.prefill.size(), 3u * 4096u);
  for (int threads : {2, 3}) {
    set_cpu_threads(threads);
    const Logits many = run(*e);
    EXPECT_TRUE(bit_identical(many.prefill, one.prefill)) << threads << " threads";
    EXPECT_TRUE(bit_identical(many.decode, one.decode)) << threads << " threads";
  }
  set_cpu_threads(0);
}

}  // namespace
}  // namespace tidal::engine
