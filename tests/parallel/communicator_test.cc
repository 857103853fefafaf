// SPDX-License-Identifier: Apache-2.0
// MpiCommunicator under mpirun (-np 2 and -np 4): every collective against values worked out by
// hand from rank-dependent inputs, the chunked paths (max_count lowered), and the TP/PP split.
// Checks after a collective use EXPECT, never ASSERT: a rank that left a test early would leave
// the others waiting in the next collective.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "parallel/mpi_communicator.h"
#if TIDAL_WITH_NCCL
#include "parallel/nccl_communicator.h"
#endif

namespace tidal::parallel {
namespace {

std::unique_ptr<MpiCommunicator> world(int64_t max_count = MpiCommunicator::kMaxCount) {
  return MpiCommunicator::dup(MPI_COMM_WORLD, max_count);
}

template <typename T>
TensorView view_of(std::vector<T>& v, std::initializer_list<int64_t> shape) {
  return make_view(v.data(), dtype_of<T>(), shape);
}

template <typename T>
TensorView view_of(std::vector<T>& v) {
  return make_view(v.data(), dtype_of<T>(), {int64_t(v.size())});
}

// all_reduce of (rank + 1) * i over N ranks gives i * N(N+1)/2, exactly, in every dtype here.
template <typename T>
void expect_sum_of_rank_multiples(int64_t max_count) {
  auto comm = world(max_count);
  const int n = comm->size(), r = comm->rank();
  std::vector<T> buf(37);
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = T((r + 1) * int(i));
  comm->all_reduce(view_of(buf));
  for (size_t i = 0; i < buf.size(); ++i) EXPECT_EQ(buf[i], T(int(i) * n * (n + 1) / 2)) << i;
}

TEST(MpiCommunicator, RankAndSizeMatchMpiWorld) {
  int rank = -1, size = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  auto comm = world();
  EXPECT_EQ(comm->rank(), rank);
  EXPECT_EQ(comm->size(), size);
  EXPECT_GE(size, 2) << "run this binary under mpirun -np 2 or more";
}

#if TIDAL_WITH_NCCL
// NcclCommunicator::create where one rank cannot use its device (the last, given one that does
// not exist): every rank gets a Status back and none waits for ever. That rank used to return
// before the bootstrap broadcasts, leaving the others in them or in ncclCommInitRank and itself
// in the caller's next collective. Without a GPU every rank fails on its own, through the same
// collectives.
TEST(MpiCommunicator, NcclCreateFailsOnEveryRankWhenOneRankCannot) {
  auto comm = world();
  const int device = comm->rank() == comm->size() - 1 ? 999 : 0;
  std::unique_ptr<NcclCommunicator> nccl;
  const Status st = NcclCommunicator::create(*comm, device, &nccl);
  EXPECT_EQ(st.code(), StatusCode::kUnavailable) << st.to_string();
  EXPECT_EQ(nccl, nullptr);
  comm->barrier();  // every rank is back
}
#endif

TEST(MpiCommunicator, AllReduceSumsF32) { expect_sum_of_rank_multiples<float>(INT32_MAX); }
TEST(MpiCommunicator, AllReduceSumsI32) { expect_sum_of_rank_multiples<int32_t>(INT32_MAX); }
TEST(MpiCommunicator, AllReduceSumsI64) { expect_sum_of_rank_multiples<int64_t>(INT32_MAX); }
// 37 elements in chunks of 5 and of 1: the last chunk is short, and every element still arrives.
TEST(MpiCommunicator, AllReduceChunkedF32) { expect_sum_of_rank_multiples<float>(5); }
TEST(MpiCommunicator, AllReduceChunkedI32) { expect_sum_of_rank_multiples<int32_t>(1); }

TEST(MpiCommunicator, AllReduceI64KeepsHighBits) {
  auto comm = world();
  const int64_t n = comm->size();
  std::vector<int64_t> buf = {int64_t(1) << 40, -(int64_t(1) << 50) + comm->rank()};
  comm->all_reduce(view_of(buf));
  EXPECT_EQ(buf[0], n << 40);
  EXPECT_EQ(buf[1], -n * (int64_t(1) << 50) + n * (n - 1) / 2);
}

TEST(MpiCommunicator, AllReduceMultiDimView) {
  auto comm = world();
  const int n = comm->size(), r = comm->rank();
  std::vector<float> buf(4 * 5);
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = float(r == 0 ? i : 0) + 0.5f;
  comm->all_reduce(view_of(buf, {4, 5}));
  for (size_t i = 0; i < buf.size(); ++i) EXPECT_EQ(buf[i], float(i) + 0.5f * n) << i;
}

// 16-bit floats sum through user ops; small integers and halves are exact in both formats.
TEST(MpiCommunicator, AllReduceSums16BitFloats) {
  auto comm = world();
  const int n = comm->size(), r = comm->rank();
  std::vector<f16> h(16);
  std::vector<bf16> b(16);
  for (int i = 0; i < 16; ++i) {
    h[size_t(i)] = f32_to_f16(float((r + 1) * i) + 0.5f);
    b[size_t(i)] = f32_to_bf16(float((r + 1) * i));
  }
  comm->all_reduce(view_of(h));
  comm->all_reduce(view_of(b));
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(f16_to_f32(h[size_t(i)]), float(i * n * (n + 1) / 2) + 0.5f * n) << i;
    EXPECT_EQ(bf16_to_f32(b[size_t(i)]), float(i * n * (n + 1) / 2)) << i;
  }
}

// TP needs every rank to hold the same bits after an all-reduce, not only close values.
TEST(MpiCommunicator, AllReduceGivesEveryRankTheSameBits) {
  auto comm = world();
  const int n = comm->size(), r = comm->rank();
  std::vector<float> buf(1000);
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = 1.0f / float(i + 3 * r + 1) + 1e-3f * float(r);
  comm->all_reduce(view_of(buf));
  std::vector<float> all(buf.size() * size_t(n));
  comm->all_gather(view_of(all, {n, int64_t(buf.size())}), view_of(buf, {1, int64_t(buf.size())}));
  for (int peer = 0; peer < n; ++peer) {
    EXPECT_EQ(std::memcmp(&all[size_t(peer) * buf.size()], buf.data(), buf.size() * 4), 0)
        << "rank " << peer << " differs";
  }
}

// Rank r contributes rows [2r, 2r+2) of a [2N, 3] result, element (k, j) = 100 r + 10 k + j.
void expect_gathered_in_rank_order(MpiCommunicator& comm, bool in_place) {
  const int n = comm.size(), r = comm.rank();
  std::vector<int32_t> out(size_t(2 * n * 3), -1);
  std::vector<int32_t> in(6);
  for (int k = 0; k < 2; ++k) {
    for (int j = 0; j < 3; ++j) in[size_t(k * 3 + j)] = 100 * r + 10 * k + j;
  }
  TensorView out_view = view_of(out, {2 * n, 3});
  if (in_place) {
    std::copy(in.begin(), in.end(), out.begin() + 6 * r);
    comm.all_gather(out_view, out_view.slice(2 * r, 2 * r + 2));
  } else {
    comm.all_gather(out_view, view_of(in, {2, 3}));
  }
  for (int row = 0; row < 2 * n; ++row) {
    for (int j = 0; j < 3; ++j) {
      EXPECT_EQ(out[size_t(row * 3 + j)], 100 * (row / 2) + 10 * (row % 2) + j)
          << "row " << row << " col " << j;
    }
  }
}

TEST(MpiCommunicator, AllGatherConcatenatesInRankOrder) {
  expect_gathered_in_rank_order(*world(), /*in_place=*/false);
}
TEST(MpiCommunicator, AllGatherInPlace) { expect_gathered_in_rank_order(*world(), true); }
// max_count 4 < 6N output elements: the per-root broadcast path, with chunks of 4 then 2.
TEST(MpiCommunicator, AllGatherChunked) { expect_gathered_in_rank_order(*world(4), false); }
TEST(MpiCommunicator, AllGatherChunkedInPlace) { expect_gathered_in_rank_order(*world(4), true); }

TEST(MpiCommunicator, AllGatherF32) {
  auto comm = world();
  const int n = comm->size();
  std::vector<float> in = {float(comm->rank()) + 0.25f};
  std::vector<float> out(static_cast<size_t>(n));
  comm->all_gather(view_of(out), view_of(in));
  for (int i = 0; i < n; ++i) EXPECT_EQ(out[size_t(i)], float(i) + 0.25f);
}

// Root is the last rank (non-zero); every dtype is bytes to a broadcast, so u8 and i64 too.
void expect_broadcast_from_last(int64_t max_count) {
  auto comm = world(max_count);
  const int root = comm->size() - 1, r = comm->rank();
  std::vector<float> f(11);
  std::vector<uint8_t> u(13);
  std::vector<int64_t> l(3);
  for (size_t i = 0; i < f.size(); ++i) f[i] = r == root ? 1.5f * float(i) : -1.0f;
  for (size_t i = 0; i < u.size(); ++i) u[i] = uint8_t(r == root ? 200 + i : 0);
  for (size_t i = 0; i < l.size(); ++i) l[i] = r == root ? (int64_t(7) << 40) + int64_t(i) : 0;
  comm->broadcast(view_of(f), root);
  comm->broadcast(view_of(u), root);
  comm->broadcast(view_of(l), root);
  for (size_t i = 0; i < f.size(); ++i) EXPECT_EQ(f[i], 1.5f * float(i)) << i;
  for (size_t i = 0; i < u.size(); ++i) EXPECT_EQ(u[i], uint8_t(200 + i)) << i;
  for (size_t i = 0; i < l.size(); ++i) EXPECT_EQ(l[i], (int64_t(7) << 40) + int64_t(i)) << i;
}

TEST(MpiCommunicator, BroadcastFromNonZeroRoot) { expect_broadcast_from_last(INT32_MAX); }
TEST(MpiCommunicator, BroadcastChunked) { expect_broadcast_from_last(3); }

// Each rank sends to r+1 and receives from r-1 (mod N). Sends are synchronous, so even ranks
// send first and odd ranks receive first, or the ring would deadlock.
void expect_ring_shift(int64_t max_count) {
  auto comm = world(max_count);
  const int n = comm->size(), r = comm->rank();
  const int next = (r + 1) % n, prev = (r + n - 1) % n;
  std::vector<int64_t> mine(23), got(23, -1);
  for (size_t i = 0; i < mine.size(); ++i) mine[i] = 1000 * r + int64_t(i);
  if (r % 2 == 0) {
    comm->send(view_of(mine), next);
    comm->recv(view_of(got), prev);
  } else {
    comm->recv(view_of(got), prev);
    comm->send(view_of(mine), next);
  }
  for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i], 1000 * prev + int64_t(i)) << i;
}

TEST(MpiCommunicator, SendRecvRing) { expect_ring_shift(INT32_MAX); }
TEST(MpiCommunicator, SendRecvRingChunked) { expect_ring_shift(5); }

// The pipeline pattern: a [4, 8] f32 activation passes down the stages, each adding its rank.
TEST(MpiCommunicator, SendRecvPipelineChain) {
  auto comm = world();
  const int n = comm->size(), r = comm->rank();
  std::vector<float> act(32, 0.0f);
  if (r == 0) {
    for (size_t i = 0; i < act.size(); ++i) act[i] = float(i);
  } else {
    comm->recv(view_of(act, {4, 8}), r - 1);
  }
  for (float& x : act) x += float(r);
  if (r + 1 < n) comm->send(view_of(act, {4, 8}), r + 1);
  if (r == n - 1) {
    for (size_t i = 0; i < act.size(); ++i) EXPECT_EQ(act[i], float(i) + float(n * (n - 1) / 2));
  }
}

// Rank 0 enters late; nobody may leave before it arrives.
TEST(MpiCommunicator, BarrierWaitsForTheLastRank) {
  auto comm = world();
  comm->barrier();
  const auto start = std::chrono::steady_clock::now();
  if (comm->rank() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  comm->barrier();
  const double waited_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  EXPECT_GE(waited_ms, 100.0);
}

// Members of this rank's group, as world ranks in group-rank order.
std::vector<int32_t> members(Communicator& group, int world_rank) {
  std::vector<int32_t> mine = {world_rank}, all(size_t(group.size()), -1);
  group.all_gather(view_of(all), view_of(mine));
  return all;
}

TEST(MpiCommunicator, SplitGroupsByColorOrderedByKey) {
  auto comm = world();
  const int n = comm->size(), r = comm->rank();
  // Odd and even ranks, each group in descending world rank (key = -rank).
  std::unique_ptr<Communicator> group = comm->split(r % 2, -r);
  std::vector<int32_t> want;
  for (int w = n - 1; w >= 0; --w) {
    if (w % 2 == r % 2) want.push_back(w);
  }
  EXPECT_EQ(members(*group, r), want);
  // A collective on the group involves its members only: sum of world ranks of one parity.
  std::vector<int32_t> sum = {r};
  group->all_reduce(view_of(sum));
  int32_t want_sum = 0;
  for (int32_t w : want) want_sum += w;
  EXPECT_EQ(sum[0], want_sum);
}

// Every factorization tp x pp of the world size: TP groups contiguous, PP groups strided.
TEST(MpiCommunicator, ParallelGroupsFollowTopology) {
  auto comm = world();
  const int n = comm->size(), r = comm->rank();
  for (int tp = 1; tp <= n; ++tp) {
    if (n % tp != 0) continue;
    const ParallelConfig cfg{tp, n / tp};
    ParallelGroups groups;
    ASSERT_TRUE(make_parallel_groups(*comm, cfg, &groups).ok());  // same result on every rank
    const RankCoords me = coords_of(cfg, r);
    std::vector<int32_t> want_tp, want_pp;
    for (int t = 0; t < cfg.tp_size; ++t) want_tp.push_back(rank_of(cfg, {t, me.pp_rank}));
    for (int p = 0; p < cfg.pp_size; ++p) want_pp.push_back(rank_of(cfg, {me.tp_rank, p}));
    EXPECT_EQ(groups.tp->rank(), me.tp_rank);
    EXPECT_EQ(groups.pp->rank(), me.pp_rank);
    EXPECT_EQ(members(*groups.tp, r), want_tp) << "tp " << cfg.tp_size << " pp " << cfg.pp_size;
    EXPECT_EQ(members(*groups.pp, r), want_pp) << "tp " << cfg.tp_size << " pp " << cfg.pp_size;
  }
}

// The layout the brief names: 4 ranks, tp = 2, pp = 2 -> TP {0,1} {2,3}, PP {0,2} {1,3}.
TEST(MpiCommunicator, FourRanksTp2Pp2) {
  auto comm = world();
  if (comm->size() != 4) GTEST_SKIP() << "needs exactly 4 ranks";  // every rank skips alike
  ParallelGroups groups;
  ASSERT_TRUE(make_parallel_groups(*comm, ParallelConfig{2, 2}, &groups).ok());
  const int r = comm->rank();
  const std::vector<std::vector<int32_t>> tp = {{0, 1}, {0, 1}, {2, 3}, {2, 3}};
  const std::vector<std::vector<int32_t>> pp = {{0, 2}, {1, 3}, {0, 2}, {1, 3}};
  EXPECT_EQ(members(*groups.tp, r), tp[size_t(r)]);
  EXPECT_EQ(members(*groups.pp, r), pp[size_t(r)]);
}

TEST(MpiCommunicator, ParallelGroupsRejectAMismatchedWorld) {
  auto comm = world();
  ParallelGroups groups;
  const Status wrong_size =
      make_parallel_groups(*comm, ParallelConfig{comm->size() + 1, 1}, &groups);
  EXPECT_EQ(wrong_size.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(wrong_size.message().find("ranks, but the world has"), std::string::npos);
  EXPECT_EQ(make_parallel_groups(*comm, ParallelConfig{0, 2}, &groups).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(groups.tp, nullptr);
  comm->barrier();  // the world still works: no rank was left inside a split
}

// mpi_init adopts the MPI the test main started (and will not finalize it).
TEST(MpiWorld, AdoptsRunningMpiAndReportsLocalRank) {
  MpiWorld w;
  ASSERT_TRUE(mpi_init(nullptr, nullptr, &w).ok());
  int rank = -1, size = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  EXPECT_EQ(w.rank(), rank);
  EXPECT_EQ(w.size(), size);
  EXPECT_GE(w.local_rank(), 0);
  EXPECT_LT(w.local_rank(), w.local_size());
  EXPECT_LE(w.local_size(), w.size());
  std::vector<int32_t> mine = {w.local_rank(), w.local_size()}, all(size_t(2 * size));
  w.comm().all_gather(view_of(all, {2 * size}), view_of(mine, {2}));
  // On one node (as under CI) the local ranks are a permutation of 0..size-1.
  if (w.local_size() == size) {
    std::vector<int> seen(size_t(size), 0);
    for (int i = 0; i < size; ++i) {
      const int32_t local = all[size_t(2 * i)];
      if (local >= 0 && local < size) ++seen[size_t(local)];
    }
    for (int i = 0; i < size; ++i) EXPECT_EQ(seen[size_t(i)], 1) << "local rank " << i;
  }
}

}  // namespace
}  // namespace tidal::parallel
