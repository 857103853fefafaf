// SPDX-License-Identifier: Apache-2.0
// NcclCommunicator with one rank on the GPU (the groups of several GPUs run under mpirun on the
// multi-GPU machines): bootstrap through a host communicator, every collective on device views
// ordered on a stream, in-place gather, split, barrier; and the engine's distributed path with
// tp = pp = 1 over NCCL producing the tokens of the plain path.
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "parallel/nccl_communicator.h"
#include "runtime/device.h"
#include "runtime/engine/engine.h"
#include "tests/parallel/parallel_testing.h"
#include "tests/testing/device_tensor.h"
#include "tests/testing/testing.h"

namespace tidal::parallel {
namespace {

std::unique_ptr<NcclCommunicator> one_rank() {
  SingleRankCommunicator bootstrap;
  std::unique_ptr<NcclCommunicator> c;
  const Status st = NcclCommunicator::create(bootstrap, 0, &c);
  EXPECT_TRUE(st.ok()) << st.to_string();
  return c;
}

TEST(NcclCommunicator, OneRankCollectivesOnAStream) {
  TIDAL_SKIP_WITHOUT_CUDA();
  auto c = one_rank();
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->rank(), 0);
  EXPECT_EQ(c->size(), 1);
  Stream s;
  ASSERT_TRUE(stream_create(&s).ok());
  std::vector<float> values = {1.5f, -2.0f, 3.25f, 0.0f, 7.0f};
  const auto buf = testing::DeviceTensor::from_host(make_view(values.data(), DType::kF32, {5}));
  c->all_reduce(buf.view(), s);  // one rank: the sum is itself
  c->broadcast(buf.view(), 0, s);
  const auto out = testing::DeviceTensor::filled({5}, DType::kF32, 0xFF);
  c->all_gather(out.view(), buf.view(), s);
  stream_synchronize(s);
  EXPECT_EQ(buf.to_floats(), values);
  EXPECT_EQ(out.to_floats(), values);
  // In place (in is this rank's rows of out), bf16 and i64 sums.
  c->all_gather(out.view(), out.view(), s);
  std::vector<int64_t> big = {int64_t(1) << 40, -3};
  const auto ints = testing::DeviceTensor::from_host(make_view(big.data(), DType::kI64, {2}));
  c->all_reduce(ints.view(), s);
  const auto halves =
      testing::DeviceTensor::from_host(make_view(values.data(), DType::kF32, {5}), DType::kBF16);
  c->all_reduce(halves.view(), s);
  stream_synchronize(s);
  EXPECT_EQ(out.to_floats(), values);
  const HostTensor back = ints.to_host();
  EXPECT_EQ(back.view().data_as<int64_t>()[0], int64_t(1) << 40);
  EXPECT_EQ(halves.to_floats(), values);  // all exactly representable in bf16
  c->barrier();
  std::unique_ptr<Communicator> sub = c->split(0, 0);
  EXPECT_EQ(sub->size(), 1);
  sub->all_reduce(buf.view(), s);
  stream_synchronize(s);
  stream_destroy(s);
}

TEST(NcclCommunicator, HostViewsAreABug) {
  TIDAL_SKIP_WITHOUT_CUDA();
  auto c = one_rank();
  ASSERT_NE(c, nullptr);
  std::vector<float> host(4);
  EXPECT_DEATH(c->all_reduce(make_view(host.data(), DType::kF32, {4})), "CUDA device");
}

TEST(NcclCommunicator, ANonexistentDeviceIsAStatus) {
  TIDAL_SKIP_WITHOUT_CUDA();
  SingleRankCommunicator bootstrap;
  std::unique_ptr<NcclCommunicator> c;
  const Status st = NcclCommunicator::create(bootstrap, 999, &c);
  EXPECT_EQ(st.code(), StatusCode::kUnavailable) << st.to_string();
}

// `tidal generate --tp 1` in library terms: the engine with a Distributed of one rank (the
// control plane on the host, tp and pp over NCCL) gives the plain engine's greedy tokens under
// every policy, in bf16 on the GPU.
TEST(NcclCommunicator, DistributedPathWithOneRankEqualsThePlainPath) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const std::string dir = testing::write_gqa128_model(0);
  engine::EngineConfig config;
  config.device = Device{DeviceKind::kCuda, 0};
  config.dtype = DType::kBF16;
  std::unique_ptr<engine::Engine> plain;
  ASSERT_TRUE(engine::Engine::load(dir, config, &plain).ok());
  SingleRankCommunicator world;
  auto tp = one_rank(), pp = one_rank();
  ASSERT_NE(tp, nullptr);
  engine::Distributed dist;
  dist.world = &world;
  dist.tp = tp.get();
  dist.pp = pp.get();
  config.distributed = &dist;
  std::unique_ptr<engine::Engine> one;
  const Status st = engine::Engine::load(dir, config, &one);
  ASSERT_TRUE(st.ok()) << st.to_string();
  std::vector<int32_t> prompt;
  for (int i = 0; i < 40; ++i) prompt.push_back(int32_t(3 + (i * 37) % 250));
  for (const model::AttentionPolicy& p :
       {model::AttentionPolicy(), testing::tidal_policy(8, model::Granularity::kShared),
        testing::tidal_policy(8, model::Granularity::kPerKvHead), testing::quest_policy(16)}) {
    EXPECT_EQ(testing::generate_tokens(*one, prompt, 24, p),
              testing::generate_tokens(*plain, prompt, 24, p))
        << model::attention_kind_name(p.kind);
  }
}

}  // namespace
}  // namespace tidal::parallel
