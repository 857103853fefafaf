// SPDX-License-Identifier: Apache-2.0
// A job that fails on purpose, for failure_test (run under mpirun): every rank loads its shard
// of <model_dir> (tp = the world size), rank 0 generates, and rank <rank> fails after <layers>
// layer passes in the middle of the generation:
//   fault_helper <model_dir> kill <rank> <layers>    the process is killed (SIGKILL)
//   fault_helper <model_dir> abort <rank> <layers>   a fatal check fails (as a communicator or
//                                                    device error would)
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "parallel/mpi_communicator.h"
#include "runtime/check.h"
#include "runtime/engine/engine.h"
#include "runtime/engine/generate.h"

using namespace tidal;

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: fault_helper <model_dir> kill|abort <rank> <layers>\n");
    return 2;
  }
  const std::string dir = argv[1], mode = argv[2];
  const int victim = std::atoi(argv[3]);
  const long layers = std::atol(argv[4]);
  parallel::MpiWorld mpi;
  if (!parallel::mpi_init(&argc, &argv, &mpi).ok()) return 1;
  parallel::ParallelConfig pc;
  pc.tp_size = mpi.size();
  parallel::ParallelGroups groups;
  if (!parallel::make_parallel_groups(mpi.comm(), pc, &groups).ok()) return 1;
  engine::Distributed dist;
  dist.parallel = pc;
  dist.world = &mpi.comm();
  dist.tp = groups.tp.get();
  dist.pp = groups.pp.get();
  engine::EngineConfig config;
  config.distributed = &dist;
  std::unique_ptr<engine::Engine> e;
  const Status st = engine::Engine::load(dir, config, &e);
  if (!st.ok()) {
    std::fprintf(stderr, "fault_helper: %s\n", st.to_string().c_str());
    return 1;
  }
  long passes = 0;
  if (mpi.rank() == victim) {
    e->set_attention_marker([&](int64_t, bool after) {
      if (!after || ++passes < layers) return;
      if (mode == "kill") std::raise(SIGKILL);
      TIDAL_CHECK(false,
                  "fault_helper: injected failure after " + std::to_string(layers) + " layers");
    });
  }
  if (mpi.rank() != 0) return e->serve().ok() ? 0 : 1;
  engine::GenerationRequest req;
  req.prompt = {1, 5, 9, 13};
  req.sampling.temperature = 0;
  req.stop.max_new_tokens = 400;
  req.stop.ignore_eos = true;
  std::vector<engine::GenerationResult> results;
  const Status gen = engine::generate(
      *e, {req}, nullptr, [](const engine::GenerationEvent&) { return true; }, &results);
  std::fprintf(stderr, "fault_helper: generation ended: %s\n", gen.to_string().c_str());
  return 0;
}
