// SPDX-License-Identifier: Apache-2.0
// The engine split over GPUs under mpirun (-np 2: tp 2 and pp 2; -np 4: also tp 2 x pp 2 and
// tp 4), one GPU a rank, NCCL moving the data: in bf16 on a random GQA model with head_dim 128,
// the same greedy tokens as one GPU under every policy (with the row-parallel partial sums
// reduced in f32), and shared lists (approx and exact agreement) identical on every TP rank.
// Needs a GPU per rank: it skips under fewer GPUs than ranks (NCCL refuses two ranks on one
// GPU) and outside mpirun (gpu_suite.sh runs every *_cuda_test as one process);
// benchmarks/parallel/run_multi_gpu.sh runs it under mpirun -np N on an N-GPU machine.
// Rank 0 compares; checks after collectives use EXPECT so that no rank leaves a test early.
#include <gtest/gtest.h>
#include <mpi.h>

#include <memory>
#include <string>
#include <vector>

#include "parallel/mpi_communicator.h"
#include "parallel/nccl_communicator.h"
#include "runtime/device.h"
#include "runtime/engine/engine.h"
#include "tests/parallel/parallel_testing.h"
#include "tests/testing/testing.h"

namespace tidal::engine {
namespace {

using model::Agreement;
using model::Granularity;

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

int world_size() {
  int s = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &s);
  return s;
}

// Whether every rank has a GPU of its own (the same answer on every rank: an all-reduce).
bool gpu_per_rank() {
  int mine = cuda_device_count() >= world_size() ? 1 : 0, all = 0;
  MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  return all == 1;
}

#define SKIP_WITHOUT_GPU_RANKS()                                                          \
  do {                                                                                    \
    if (world_size() < 2) GTEST_SKIP() << "needs mpirun -np 2 (or more), a GPU a rank";  \
    if (!gpu_per_rank()) GTEST_SKIP() << "needs a GPU for each of the " << world_size() \
                                      << " ranks";                                       \
  } while (0)

// One layout's communicators: MPI for the control plane, NCCL (on this rank's GPU) for the data.
struct GpuLayout {
  std::unique_ptr<parallel::MpiCommunicator> world;
  std::unique_ptr<parallel::NcclCommunicator> nccl;
  parallel::ParallelGroups groups;
  Distributed dist;

  GpuLayout(int tp, int pp) {
    world = parallel::MpiCommunicator::dup(MPI_COMM_WORLD);
    Status st = parallel::NcclCommunicator::create(*world, world->rank(), &nccl);
    TIDAL_CHECK(st.ok(), st.to_string());
    parallel::ParallelConfig cfg;
    cfg.tp_size = tp;
    cfg.pp_size = pp;
    st = parallel::make_parallel_groups(*nccl, cfg, &groups);
    TIDAL_CHECK(st.ok(), st.to_string());
    dist.parallel = cfg;
    dist.world = world.get();
    dist.tp = groups.tp.get();
    dist.pp = groups.pp.get();
  }
  std::string name() const {
    return "tp" + std::to_string(dist.parallel.tp_size) + "_pp" +
           std::to_string(dist.parallel.pp_size);
  }
};

EngineConfig gpu_config(int device, const Distributed* dist) {
  EngineConfig c;
  c.device = Device{DeviceKind::kCuda, device};
  c.dtype = DType::kBF16;
  c.max_batch = 2;
  c.distributed = dist;
  return c;
}

std::unique_ptr<Engine> load(const std::string& dir, const EngineConfig& config) {
  std::unique_ptr<Engine> e;
  const Status st = Engine::load(dir, config, &e);
  EXPECT_TRUE(st.ok()) << st.to_string();
  return e;
}

struct Case {
  std::string name;
  model::AttentionPolicy policy;
};

std::vector<Case> every_policy(int64_t budget) {
  return {
      {"full", model::AttentionPolicy()},
      {"tidal_per_query_head", testing::tidal_policy(budget, Granularity::kPerQueryHead)},
      {"tidal_per_kv_head", testing::tidal_policy(budget, Granularity::kPerKvHead)},
      {"tidal_shared_approx", testing::tidal_policy(budget, Granularity::kShared)},
      {"tidal_shared_exact",
       testing::tidal_policy(budget, Granularity::kShared, Agreement::kExact)},
      {"quest", testing::quest_policy(2 * budget)},
  };
}

std::vector<int32_t> prompt() {
  std::vector<int32_t> p;
  for (int i = 0; i < 40; ++i) p.push_back(int32_t(3 + (i * 37) % 250));
  return p;
}

constexpr int64_t kTokens = 24;
constexpr int64_t kBudget = 8;

TEST(ParallelRanksCuda, Bf16TokensEqualOneGpuUnderEveryPolicy) {
  SKIP_WITHOUT_GPU_RANKS();
  const int rank = world_rank();
  // 8 query heads over 4 KV heads: tp 2 and tp 4 split both.
  const std::string dir = testing::write_gqa128_model(rank, 8, 4);
  const std::vector<Case> cases = every_policy(kBudget);
  std::vector<std::vector<int32_t>> want;
  if (rank == 0) {
    std::unique_ptr<Engine> one = load(dir, gpu_config(0, nullptr));
    ASSERT_NE(one, nullptr);
    for (const Case& c : cases) {
      want.push_back(testing::generate_tokens(*one, prompt(), kTokens, c.policy));
    }
  }
  for (auto [tp, pp] : testing::layouts_for_world(world_size())) {
    GpuLayout layout(tp, pp);
    std::unique_ptr<Engine> e = load(dir, gpu_config(rank, &layout.dist));
    if (e == nullptr) continue;  // every rank failed alike (agreed)
    if (rank != 0) {
      EXPECT_TRUE(e->serve().ok());
      continue;
    }
    if (tp > 1) {
      EXPECT_TRUE(e->f32_partials()) << layout.name();
    }
    for (size_t i = 0; i < cases.size(); ++i) {
      const std::vector<int32_t> got =
          testing::generate_tokens(*e, prompt(), kTokens, cases[i].policy);
      EXPECT_EQ(got, want[i]) << layout.name() << " " << cases[i].name << ": equal for the first "
                              << testing::agreeing_prefix(got, want[i]) << " of " << kTokens;
    }
    // Decode steps of one sequence replay graphs under every layout (exact agreement aside).
    EXPECT_GT(e->graphs_captured(), 0) << layout.name();
  }
}

TEST(ParallelRanksCuda, SharedListsAreIdenticalOnEveryTpRank) {
  SKIP_WITHOUT_GPU_RANKS();
  const int rank = world_rank(), size = world_size();
  const std::string dir = testing::write_gqa128_model(rank, 8, 4);
  for (Agreement a : {Agreement::kApprox, Agreement::kExact}) {
    model::AttentionPolicy policy = testing::tidal_policy(kBudget, Granularity::kShared, a);
    policy.tidal.sparse_start = 1;  // every stage holds a selection or sparse layer
    for (auto [tp, pp] : testing::layouts_for_world(size)) {
      if (tp == 1) continue;
      GpuLayout layout(tp, pp);
      std::vector<model::LayerTrace> mine;
      {
        std::unique_ptr<Engine> e = load(dir, gpu_config(rank, &layout.dist));
        if (e == nullptr) continue;
        e->set_rank_trace(&mine);
        if (rank == 0) {
          testing::generate_tokens(*e, prompt(), kTokens, policy);
        } else {
          EXPECT_TRUE(e->serve().ok());
        }
      }  // rank 0's engine shut the others' serve() down
      const std::vector<std::vector<int32_t>> flat =
          testing::all_gather_vectors(*layout.world, testing::flatten(mine));
      ASSERT_EQ(flat.size(), size_t(size));
      int64_t with_lists = 0;
      for (const model::LayerTrace& t : mine) with_lists += !t.lists.empty();
      EXPECT_GT(with_lists, 0) << "no lists on rank " << rank;
      for (int r = 0; r < size; ++r) {
        const int first_of_stage = r / tp * tp;
        EXPECT_EQ(flat[size_t(r)], flat[size_t(first_of_stage)])
            << layout.name() << " " << model::agreement_name(a) << ": rank " << r
            << " holds other lists than rank " << first_of_stage;
      }
    }
  }
}

}  // namespace
}  // namespace tidal::engine
