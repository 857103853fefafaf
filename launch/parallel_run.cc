// SPDX-License-Identifier: Apache-2.0
// `tidal generate|bench --tp T --pp P` under mpirun (DESIGN.md §3): every rank starts MPI, builds
// its communicators (MPI on the CPU path; NCCL on GPUs, one per local rank, bootstrapped over
// MPI), and loads only its shard. Rank 0 then runs the command as one process would and prints
// everything; the other ranks serve its steps. A failure before the engines exist is agreed by
// every rank (rank 0 names the rank and the cause); a rank that dies later (a crash, a kill)
// makes mpirun end the job.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>

#include "launch/cli.h"
#include "launch/flag_names.h"
#include "launch/presets.h"
#if TIDAL_WITH_RPC
#include "launch/stop_signals.h"
#endif
#if TIDAL_WITH_MPI
#include "parallel/mpi_communicator.h"
#endif
#if TIDAL_WITH_NCCL
#include "parallel/nccl_communicator.h"
#endif

namespace tidal::launch {

LauncherRanks launcher_ranks() {
  LauncherRanks l;
  // OpenMPI's variables, then those of MPICH and Intel MPI (Hydra).
  for (const auto& [size, rank] : {std::pair{"OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"},
                                   std::pair{"PMI_SIZE", "PMI_RANK"}}) {
    const char* s = std::getenv(size);
    const char* r = std::getenv(rank);
    if (s == nullptr || r == nullptr) continue;
    l.size = std::max(1, std::atoi(s));
    l.rank = std::max(0, std::atoi(r));
    break;
  }
  const char* programs = std::getenv("OMPI_NUM_APP_CTX");
  l.one_command = l.size == 1 || (programs != nullptr && std::string(programs) == "1");
  return l;
}

Status check_launcher(const LauncherRanks& launcher, const std::string& command,
                      const ParallelFlags* parallel) {
  if (launcher.size <= 1 || (parallel != nullptr && parallel->requested())) return ok_status();
  const std::string ranks = std::to_string(launcher.size);
  if (parallel == nullptr) {
    return invalid_argument("mpirun started " + ranks + " ranks, but " + command +
                            " runs as one process: start it without mpirun");
  }
  return invalid_argument("mpirun started " + ranks + " ranks, but " + command +
                          " was given no --tp or --pp: each rank would run the whole model alone "
                          "and print its own output; give --tp and --pp with tp x pp = " +
                          ranks + ", or start tidal without mpirun");
}

#if TIDAL_WITH_MPI
namespace {

// One rank's MPI, communicators and place in the job. Members are destroyed in reverse order:
// the groups and NCCL before MPI is finalized.
struct Job {
  parallel::MpiWorld mpi;
  std::unique_ptr<parallel::Communicator> data_world;  // NCCL on GPUs (null: MPI)
  parallel::ParallelGroups groups;
  engine::Distributed dist;
};

// Failures every rank reports alike: rank 0 prints, the others stay quiet (main prints nothing
// for an empty message, and exits 0: rank 0's exit 1 is the job's).
Status quiet_on_workers(const Job& job, const Status& st) {
  if (st.ok() || job.mpi.rank() == 0) return st;
  return Status(st.code(), "");
}

// Starts MPI and the communicators of a tp x pp job; on a GPU the device is the local rank's.
// `device` is resolved here (the flags, then the local rank). Collective; every rank returns
// the same status.
Status start_job(const ParallelFlags& flags, const DeviceFlags& device_flags, Job* job,
                 engine::EngineConfig* config) {
  TIDAL_RETURN_IF_ERROR(parallel::mpi_init(nullptr, nullptr, &job->mpi));
  parallel::ParallelConfig pc;
  pc.tp_size = flags.tp > 0 ? flags.tp : 1;
  pc.pp_size = flags.pp > 0 ? flags.pp : 1;
  Status st = pc.validate();
  if (st.ok() && pc.world_size() != job->mpi.size()) {
    st = invalid_argument("--tp " + std::to_string(pc.tp_size) + " x --pp " +
                          std::to_string(pc.pp_size) + " needs " + std::to_string(pc.world_size()) +
                          " ranks; mpirun started " + std::to_string(job->mpi.size()) +
                          " (mpirun -np " + std::to_string(pc.world_size()) + " tidal ...)");
  }
  if (st.ok()) st = apply_device_flags(device_flags, config);
  if (st.ok() && config->device.kind == DeviceKind::kCuda) {
    // A rank's GPU is its local rank's: an index on the command line would name one GPU for
    // every rank of the host, and two ranks on one GPU are refused later by NCCL, less clearly.
    const int gpus = cuda_device_count(), local = job->mpi.local_rank();
    if (device_flags.device.rfind("cuda:", 0) == 0) {
      st = invalid_argument("--device " + device_flags.device +
                            " under --tp/--pp: each rank takes the GPU of its local rank; give "
                            "--device cuda (CUDA_VISIBLE_DEVICES chooses a host's GPUs)");
    } else if (local >= gpus) {
      st = unavailable("rank " + std::to_string(job->mpi.rank()) + " is local rank " +
                       std::to_string(local) + " of a host with " + std::to_string(gpus) +
                       " visible GPUs: start at most one rank per GPU on each host");
    } else {
      config->device.index = local;
    }
  }
  parallel::Communicator& world = job->mpi.comm();
  TIDAL_RETURN_IF_ERROR(engine::agree_status(world, st));
  // NCCL's creation below is collective over the ranks that run on a GPU: a job whose ranks
  // resolved --device differently (given different flags, or `auto` on hosts with and without
  // GPUs) would hang in it, or pair an NCCL collective with an MPI one. Every rank sees the
  // gathered kinds, so every rank returns the same error.
  int64_t first = 0, theirs = 0;
  const int r =
      engine::rank_differing_from_rank0(world, int64_t(config->device.kind), &first, &theirs);
  if (r >= 0) {
    auto name = [](int64_t k) { return DeviceKind(k) == DeviceKind::kCuda ? "cuda" : "cpu"; };
    return invalid_argument(std::string("ranks differ in --device: rank 0 runs on ") +
                            name(first) + ", rank " + std::to_string(r) + " on " + name(theirs) +
                            "; give every rank --device cuda or every rank --device cpu");
  }
  parallel::Communicator* data = &world;
  if (config->device.kind == DeviceKind::kCuda) {
#if TIDAL_WITH_NCCL
    std::unique_ptr<parallel::NcclCommunicator> nccl;
    st = parallel::NcclCommunicator::create(world, config->device.index, &nccl);
    TIDAL_RETURN_IF_ERROR(engine::agree_status(world, st));
    job->data_world = std::move(nccl);
    data = job->data_world.get();
#else
    return unavailable("--tp/--pp on GPUs needs NCCL: this tidal was built without it");
#endif
  }
  TIDAL_RETURN_IF_ERROR(parallel::make_parallel_groups(*data, pc, &job->groups));
  job->dist.parallel = pc;
  job->dist.world = &world;
  job->dist.tp = job->groups.tp.get();
  job->dist.pp = job->groups.pp.get();
  config->distributed = &job->dist;
  return ok_status();
}

// The model directory, as run_generate picks it (rank 0 says when it falls back).
Status model_dir(const GenerateOptions& o, const DefaultModel& d, bool rank0, std::string* dir) {
  *dir = o.model_dir.empty() ? d.dir : o.model_dir;
  if (dir->empty())
    return not_found("no --model given and no embedded default model; pass --model");
  if (o.model_dir.empty() && rank0) {
    std::fprintf(stderr, "tidal: no --model given; using the embedded model %s\n", dir->c_str());
  }
  return ok_status();
}

void print_rank_memory(const engine::Engine& e, const engine::Distributed& d) {
  const engine::MemoryPlan& p = e.memory_plan();
  const model::ModelShard& s = e.shard();
  const double mib = 1024.0 * 1024.0;
  std::fprintf(stderr,
               "tidal: rank 0 of %d (tp %d x pp %d): layers [%lld, %lld), query heads %lld of "
               "%lld; weights %.2f MiB, KV %.2f MiB, workspace %.2f MiB on this rank\n",
               d.world->size(), d.parallel.tp_size, d.parallel.pp_size,
               static_cast<long long>(s.layer_begin), static_cast<long long>(s.layer_end),
               static_cast<long long>(s.heads.q_heads.size),
               static_cast<long long>(e.model_config().num_heads), double(p.weight_bytes) / mib,
               double(p.kv_bytes) / mib, double(p.workspace_bytes) / mib);
  const model::AgreementCounters& a = e.agreement_counters();
  if (a.approx_layers + a.exact_layers > 0) {
    std::fprintf(stderr,
                 "tidal: list agreement on rank 0: approx %lld selection layers (%lld bytes in), "
                 "exact %lld (%lld bytes in)\n",
                 static_cast<long long>(a.approx_layers), static_cast<long long>(a.approx_bytes),
                 static_cast<long long>(a.exact_layers), static_cast<long long>(a.exact_bytes));
  }
}

}  // namespace

Status run_generate_parallel(const GenerateOptions& o, const DefaultModel& defaults) {
  Job job;
  engine::EngineConfig config = o.engine;
  TIDAL_RETURN_IF_ERROR(quiet_on_workers(job, start_job(o.parallel, o.device, &job, &config)));
  // Compared across ranks: a rank given other flags (mpirun's A : B) whose check fails alone
  // would otherwise leave the others waiting in the next collective.
  TIDAL_RETURN_IF_ERROR(
      quiet_on_workers(job, engine::agree_status(*job.dist.world, check_generate_flags(o))));
  const bool rank0 = job.mpi.rank() == 0;
  // A --preset and a checkpoint take different collectives to their engines: compared first.
  int64_t first = 0, theirs = 0;
  const int r =
      engine::rank_differing_from_rank0(*job.dist.world, o.preset.empty() ? 0 : 1, &first, &theirs);
  if (r >= 0) {
    auto name = [](int64_t preset) { return preset != 0 ? "--preset" : "--model"; };
    return quiet_on_workers(
        job, invalid_argument(std::string("ranks differ in the model: rank 0 has ") + name(first) +
                              ", rank " + std::to_string(r) + " has " + name(theirs) +
                              "; every rank must be given the same model and settings"));
  }
  std::string dir;
  std::unique_ptr<engine::Engine> engine;
  if (!o.preset.empty()) {  // every rank draws the same model and keeps its shard (agreed)
    TIDAL_RETURN_IF_ERROR(quiet_on_workers(
        job, create_preset_engine(o.preset, o.weights_seed, config, &engine)));
  } else {
    TIDAL_RETURN_IF_ERROR(quiet_on_workers(
        job, engine::agree_status(*job.dist.world, model_dir(o, defaults, rank0, &dir))));
    TIDAL_RETURN_IF_ERROR(
        quiet_on_workers(job, name_flags(engine::Engine::load(dir, config, &engine))));
  }
  if (!rank0) return engine->serve();
  GenerateOptions one = o;
  one.parallel = ParallelFlags();
  const Status st = generate_with(one, dir, *engine);
  if (st.ok() && o.stats) print_rank_memory(*engine, job.dist);
  engine.reset();  // lets the other ranks leave serve()
  return st;
}

#if TIDAL_WITH_RPC
// `serve --tp/--pp`: rank 0 runs the coordinator over its engine; every other rank serves the
// steps rank 0 broadcasts until rank 0 shuts down. SIGINT and SIGTERM (mpirun forwards them to
// every rank) are blocked on all ranks: while the model loads, they stop any rank at once (and
// mpirun the job); once serving, rank 0 takes them and drains, then its engine's destructor lets
// the others leave serve(), where they are held.
Status run_serve_parallel(const ServeOptions& o, const DefaultModel& defaults,
                          StopSignals& signals) {
  Job job;
  engine::EngineConfig config = o.engine;
  TIDAL_RETURN_IF_ERROR(quiet_on_workers(job, start_job(o.parallel, o.device, &job, &config)));
  // Compared across ranks, as generate's (a rank may be given --preset alone).
  const Status flags = o.preset.empty()
                           ? check_serve_flags(o)
                           : invalid_argument("--preset cannot be served under --tp / --pp");
  TIDAL_RETURN_IF_ERROR(quiet_on_workers(job, engine::agree_status(*job.dist.world, flags)));
  const bool rank0 = job.mpi.rank() == 0;
  GenerateOptions g;
  g.model_dir = o.model_dir;
  std::string dir;
  TIDAL_RETURN_IF_ERROR(quiet_on_workers(
      job, engine::agree_status(*job.dist.world, model_dir(g, defaults, rank0, &dir))));
  std::unique_ptr<engine::Engine> engine;
  TIDAL_RETURN_IF_ERROR(
      quiet_on_workers(job, name_flags(engine::Engine::load(dir, config, &engine))));
  if (!rank0) {
    signals.serving();
    return engine->serve();
  }
  ServeOptions one = o;
  one.parallel = ParallelFlags();
  const Status st = serve_with(one, dir, *engine, signals);
  engine.reset();  // lets the other ranks leave serve()
  return st;
}
#endif

Status run_bench_parallel(const BenchOptions& o) {
  Job job;
  engine::EngineConfig config;
  TIDAL_RETURN_IF_ERROR(quiet_on_workers(job, start_job(o.parallel, o.device, &job, &config)));
  BenchOptions one = o;
  one.parallel = ParallelFlags();
  if (config.device.kind == DeviceKind::kCuda) {
    one.device.device = "cuda:" + std::to_string(config.device.index);
  }
  // Agreed: run_bench_on's checks before its engines, and the engines' creation.
  return quiet_on_workers(job, run_bench_on(one, &job.dist));
}

#else  // !TIDAL_WITH_MPI

Status run_generate_parallel(const GenerateOptions&, const DefaultModel&) {
  return unavailable("--tp/--pp need MPI: this tidal was built with TIDAL_WITH_MPI=OFF");
}

Status run_bench_parallel(const BenchOptions&) {
  return unavailable("--tp/--pp need MPI: this tidal was built with TIDAL_WITH_MPI=OFF");
}

#if TIDAL_WITH_RPC
Status run_serve_parallel(const ServeOptions&, const DefaultModel&, StopSignals&) {
  return unavailable("--tp/--pp need MPI: this tidal was built with TIDAL_WITH_MPI=OFF");
}
#endif

#endif

}  // namespace tidal::launch
