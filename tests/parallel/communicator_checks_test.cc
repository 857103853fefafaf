// SPDX-License-Identifier: Apache-2.0
// Communicator without MPI: SingleRankCommunicator's identities, the tp = pp = 1 groups, and the
// argument checks every implementation shares (death tests are safe here, with no MPI running).
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "parallel/communicator.h"

namespace tidal::parallel {
namespace {

TEST(SingleRankCommunicator, CollectivesAreIdentities) {
  SingleRankCommunicator comm;
  EXPECT_EQ(comm.rank(), 0);
  EXPECT_EQ(comm.size(), 1);
  std::vector<float> buf = {1.0f, -2.0f, 3.5f};
  comm.all_reduce(make_view(buf.data(), DType::kF32, {3}));
  comm.broadcast(make_view(buf.data(), DType::kF32, {3}), /*root=*/0);
  comm.barrier();
  EXPECT_EQ(buf, (std::vector<float>{1.0f, -2.0f, 3.5f}));
  std::vector<int32_t> in = {4, 5, 6, 7}, out(4, 0);
  comm.all_gather(make_view(out.data(), DType::kI32, {2, 2}),
                  make_view(in.data(), DType::kI32, {2, 2}));
  EXPECT_EQ(out, in);
  // In place: `in` is out's own (only) rows.
  const TensorView whole = make_view(out.data(), DType::kI32, {2, 2});
  comm.all_gather(whole, whole);
  EXPECT_EQ(out, in);
}

TEST(SingleRankCommunicator, ParallelGroupsOfOne) {
  SingleRankCommunicator world;
  ParallelGroups groups;
  ASSERT_TRUE(make_parallel_groups(world, ParallelConfig{}, &groups).ok());
  EXPECT_EQ(groups.tp->size(), 1);
  EXPECT_EQ(groups.pp->size(), 1);
  const Status too_many = make_parallel_groups(world, ParallelConfig{2, 1}, &groups);
  EXPECT_EQ(too_many.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(too_many.message(), "tp_size 2 x pp_size 1 = 2 ranks, but the world has 1");
}

TEST(CommunicatorDeathTest, RejectsNonContiguousViews) {
  SingleRankCommunicator comm;
  std::vector<float> buf(12);
  TensorView strided = make_view(buf.data(), DType::kF32, {3, 2});
  strided.stride[0] = 4;  // every other pair of a [3, 4] buffer
  EXPECT_DEATH(comm.all_reduce(strided), "all_reduce: view \\[3, 2\\] f32 is not contiguous");
  EXPECT_DEATH(comm.broadcast(strided, 0), "not contiguous");
  EXPECT_DEATH(comm.all_gather(make_view(buf.data(), DType::kF32, {3, 2}), strided),
               "all_gather in: .*not contiguous");
}

TEST(CommunicatorDeathTest, RejectsBadArguments) {
  SingleRankCommunicator comm;
  std::vector<uint8_t> bytes(8);
  std::vector<float> f(8);
  EXPECT_DEATH(comm.all_reduce(make_view(bytes.data(), DType::kU8, {8})), "cannot sum dtype u8");
  EXPECT_DEATH(comm.broadcast(make_view(f.data(), DType::kF32, {8}), 1), "root 1 outside");
  EXPECT_DEATH(comm.send(make_view(f.data(), DType::kF32, {8}), 0), "not another rank");
  EXPECT_DEATH(comm.recv(make_view(f.data(), DType::kF32, {8}), -1), "not another rank");
  EXPECT_DEATH(comm.split(-1, 0), "color must be >= 0");
  // Shape contract of all_gather: out rows = size * in rows, equal dtypes, other dims equal.
  EXPECT_DEATH(
      comm.all_gather(make_view(f.data(), DType::kF32, {8}), make_view(f.data(), DType::kF32, {4})),
      "out rows != size \\* in rows");
  EXPECT_DEATH(comm.all_gather(make_view(f.data(), DType::kF32, {2, 4}),
                               make_view(bytes.data(), DType::kU8, {2, 4})),
               "need equal dtypes");
  EXPECT_DEATH(comm.all_gather(make_view(f.data(), DType::kF32, {2, 4}),
                               make_view(f.data() + 1, DType::kF32, {2, 2})),
               "all_gather");
  // Overlapping but not this rank's rows exactly.
  EXPECT_DEATH(comm.all_gather(make_view(f.data(), DType::kF32, {4}),
                               make_view(f.data() + 1, DType::kF32, {4})),
               "in overlaps out");
}

}  // namespace
}  // namespace tidal::parallel
