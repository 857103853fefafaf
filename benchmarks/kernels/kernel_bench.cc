// SPDX-License-Identifier: Apache-2.0
// kernel_bench: validates, then times, the decode-path ops of kernels/ on Llama-shaped cases, and
// rates each against the device's copy bandwidth measured in the same run (DESIGN.md §7: a
// memory-bound step's floor is bytes / copy bandwidth). STYLE.md rules 31-32.
//   kernel_bench [--device cuda|cpu] [--dtype bf16|f16|f32] [--op NAME ...] [--shape TEXT ...]
//                [--quick] [--reps N] [--warmup N] [--budget-ms MS] [--graph-calls N] [--json FILE]
//                [--csv FILE]
// On the CPU every op runs its ref:: twin (the heavy ones, linear and decode / prefill attention,
// over the thread pool's cores; the copy row's memmove on one): that proves the harness, not speed.
#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "benchmarks/common/stats.h"
#include "benchmarks/common/table.h"
#include "benchmarks/common/timer.h"
#include "benchmarks/kernels/case_util.h"
#include "runtime/device.h"
#include "runtime/thread_pool.h"

namespace tidal::bench {
namespace {

struct Op {
  const char* name;
  void (*bench)(const BenchEnv&, const RunCase&);
};

// In the order a decode step calls them; prefill and sampling last.
const Op kOps[] = {
    {"embedding_lookup", bench_embedding_lookup},
    {"rms_norm", bench_rms_norm},
    {"fused_add_rms_norm", bench_fused_add_rms_norm},
    {"linear", bench_linear},
    {"linear_split", bench_linear_split},
    {"linear_qkv_append", bench_linear_qkv_append},
    {"rotary_embedding", bench_rotary_embedding},
    {"paged_kv_append", bench_paged_kv_append},
    {"decode_attention", bench_decode_attention},
    {"gather_ceiling", bench_gather_ceiling},
    {"head_group_probs", bench_head_group_probs},
    {"topk_per_row", bench_topk_per_row},
    {"quest_page_scores", bench_quest_page_scores},
    {"expand_pages", bench_expand_pages},
    {"linear_swiglu", bench_linear_swiglu},
    {"silu_and_mul", bench_silu_and_mul},
    {"residual_add", bench_residual_add},
    {"prefill_attention", bench_prefill_attention},
    {"sample_tokens", bench_sample_tokens},
};

struct Options {
  std::string device;            // Default (empty): cuda when a GPU is visible, else cpu
  std::string dtype;             // Default (empty): bf16 on cuda, f32 on cpu
  std::vector<std::string> ops;  // Default (empty): all
  std::vector<std::string> shapes;  // a case runs when its shape contains each of these
  bool quick = false;
  RepOptions reps;
  int graph_calls = 0;  // > 0: time replays of a CUDA graph of this many back-to-back calls
  std::string json_path, csv_path;
};

std::vector<Column> columns() {
  return {{"op", 18, false, 0},  {"dtype", 5, false, 0},  {"shape", 40, false, 0},
          {"reps", 5, true, 0},  {"med_us", 10, true, 1}, {"min_us", 10, true, 1},
          {"GB/s", 8, true, 1},  {"%copy", 6, true, 1},   {"TFLOP/s", 8, true, 2},
          {"#wrong", 7, true, 0}};
}

struct Result {
  SampleStats stats;
  int64_t wrong = 0;
  double gbps = 0.0;  // ideal bytes / median time
};

// Validate, then time (rule 31): one call on poisoned outputs, its check, then warm-up and timed
// calls. On the GPU each timed call is bracketed by events on the bench stream and preceded,
// outside the events, by the L2 flush (reps.between).
// graph_calls > 0 (GPU): each timed sample is one replay of a CUDA graph that holds graph_calls
// calls back to back, divided by graph_calls: a call's cost as a decode step's replayed graph pays
// it (no launch latency of its own; programmatic launches overlap one call's start with the last
// one's end). The L2 is flushed before each replay only; activations stay in L2 from one call to
// the next, as in a step, but call i reads copy i % c.replicas of the weights or caches it
// streams (Replicas), so that none finds them in L2 left there by an earlier call.
Result measure(const BenchEnv& env, const RepOptions& reps, const KernelCase& c, int graph_calls) {
  c.run();
  stream_synchronize(env.stream);
  Result r;
  r.wrong = c.check();
  if (env.cuda() && graph_calls > 0) {
    Graph::begin_capture(env.stream);
    for (int i = 0; i < graph_calls; ++i) {
      if (c.replicas > 1) {
        c.run_replica(i % c.replicas);
      } else {
        c.run();
      }
    }
    const Graph graph = Graph::end_capture(env.stream);
    std::vector<double> samples =
        run_timed([&] { graph.launch(env.stream); }, reps, CudaEventTimer(env.stream));
    for (double& us : samples) us /= graph_calls;
    r.stats = summarize(samples);
  } else {
    r.stats = summarize(env.cuda() ? run_timed(c.run, reps, CudaEventTimer(env.stream))
                                   : run_timed(c.run, reps));
  }
  r.gbps = c.bytes / (r.stats.median * 1e-6) / 1e9;
  return r;
}

std::vector<Cell> row_of(const KernelCase& c, const Result& r, double copy_gbps) {
  const double tflops = c.flops > 0 ? c.flops / (r.stats.median * 1e-6) / 1e12 : NAN;
  const std::string shape =
      c.replicas > 1 ? c.shape + " r=" + std::to_string(c.replicas) : c.shape;
  return {c.op,           c.dtype,     shape,  r.stats.n,
          r.stats.median, r.stats.min, r.gbps, 100.0 * r.gbps / copy_gbps,
          tflops,         r.wrong};
}

// The copy ceiling: a device-to-device cudaMemcpyAsync (memmove on the CPU) of a buffer far
// larger than L2. Bytes read + written per second is what a memory-bound kernel can hope for
// here; every row's %copy divides by it. Checked in full: the copy of random data must be exact.
Result measure_copy(const BenchEnv& env, const RepOptions& reps, KernelCase* c) {
  const int64_t bytes = env.quick    ? (int64_t(32) << 20)
                        : env.cuda() ? (int64_t(1) << 30)
                                     : (int64_t(256) << 20);
  const HostTensor data = random_tensor({bytes / 4}, DType::kF32, 1);
  const DeviceBuffer src = upload(env, data), dst = poisoned(env, {bytes / 4}, DType::kF32);
  c->op = "copy";
  c->dtype = "bytes";
  c->shape =
      std::to_string(bytes >> 20) + " MiB " + (env.cuda() ? "cudaMemcpyAsync D2D" : "memmove");
  c->bytes = 2.0 * double(bytes);
  c->run = [&] {
    copy_bytes(dst.view().data, env.device, src.view().data, env.device, size_t(bytes), env.stream);
  };
  c->check = [&] { return count_wrong(dst.download(env.stream).view(), data.view(), {0.0, 0.0}); };
  const Result r = measure(env, reps, *c, 0);
  c->run = nullptr;  // they refer to this frame's buffers; only the row's fields stay
  c->check = nullptr;
  return r;
}

std::string version(int v) {
  return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10);
}

int run(const Options& o) {
  const bool cuda = o.device.empty() ? cuda_available() : o.device == "cuda";
  if (cuda && !cuda_available()) {
    std::fprintf(stderr, "kernel_bench: --device cuda, but no CUDA device is visible\n");
    return 2;
  }
  BenchEnv env;
  env.device = cuda ? Device{DeviceKind::kCuda, 0} : Device{};
  env.quick = o.quick;
  env.graph_calls = cuda ? o.graph_calls : 0;
  const std::string dtype = !o.dtype.empty() ? o.dtype : cuda ? "bf16" : "f32";
  env.dtype = dtype == "bf16" ? DType::kBF16 : dtype == "f16" ? DType::kF16 : DType::kF32;
  BenchInfo info = collect_bench_info("kernel_bench");
  RepOptions reps = o.reps;
  DeviceBuffer flush;
  if (cuda) {
    TIDAL_CHECK(set_cuda_device(0).ok(), "kernel_bench: cannot select CUDA device 0");
    const Status st = stream_create(&env.stream);
    TIDAL_CHECK(st.ok(), st.message());
    DeviceInfo d;
    TIDAL_CHECK(cuda_device_info(0, &d).ok(), "kernel_bench: no device info");
    info.extra.emplace_back("host", info.device);
    info.device = d.name + " (" + std::to_string(d.sm_count) + " SMs, " +
                  std::to_string(d.total_bytes >> 30) + " GiB, L2 " +
                  std::to_string(d.l2_bytes >> 20) + " MiB)";
    info.extra.emplace_back("driver", version(d.driver_version));
    info.extra.emplace_back("cuda_runtime", version(d.runtime_version));
    env.l2_bytes = d.l2_bytes;
    // Writing twice the L2 evicts whatever the previous call left there, so a kernel whose
    // inputs would fit in L2 (a small GEMV) is timed reading DRAM, as in a real decode step.
    flush = DeviceBuffer(env.device, {int64_t(2 * d.l2_bytes)}, DType::kU8);
    reps.between = [&flush, &env] { flush.fill(0x5A, env.stream); };
    info.extra.emplace_back("l2_flush", std::to_string(flush.view().nbytes() >> 20) + "MiB");
  }
  info.extra.emplace_back("backend", cuda ? "cuda" : "cpu-ref");
  if (!cuda) info.extra.emplace_back("threads", std::to_string(cpu_threads()));
  info.extra.emplace_back("dtype", dtype);
  info.extra.emplace_back("reps", reps.reps > 0
                                      ? std::to_string(reps.reps)
                                      : "auto(" + std::to_string(int(reps.budget_ms)) + "ms)");
  info.extra.emplace_back("warmup", std::to_string(reps.warmup));
  if (cuda && o.graph_calls > 0)
    info.extra.emplace_back("graph_calls", std::to_string(o.graph_calls));

  KernelCase copy;
  const Result copy_result = measure_copy(env, reps, &copy);
  const double copy_gbps = copy_result.gbps;
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.1f", copy_gbps);
  info.extra.emplace_back("copy_GB/s", buf);
  Table table(info, columns());
  table.print_header(
      {std::string(!cuda ? "CPU reference path: the ref:: oracles (linear and attention over the "
                           "threads above, the copy's memmove on one), not the product's speed; "
                   : o.graph_calls > 0
                       ? "CUDA events on one stream around replays of a graph of graph_calls "
                         "calls (per-call times: replay / graph_calls; the copy row: one call), "
                         "L2 flushed before every replay; call i reads copy i % r of the "
                         "weights / KV caches / page bounds it streams, r (the shape's r=, 1 if "
                         "absent) such that the other copies read >= 2x L2 between two reads of "
                         "one (so none finds them in L2, as in a step); activations are not "
                         "copied; "
                       : "CUDA events on one stream, L2 flushed before every rep; ") +
           "med_us / min_us over the reps.",
       "GB/s: ideal bytes (each byte the op must read or write, once) / med_us. %copy: of the "
       "copy row's GB/s (" +
           std::string(buf) + "), measured above in this run.",
       "#wrong: checked output elements off the op's ref:: twin (bf16 atol 1e-2 rtol 1.6e-2, "
       "f16 2e-3, f32 1e-5/1e-4, indices exact)."});
  table.add_row(row_of(copy, copy_result, copy_gbps));

  const RunCase run_one = [&](const KernelCase& c) {
    for (const std::string& s : o.shapes) {
      if (c.shape.find(s) == std::string::npos) return;
    }
    table.add_row(row_of(c, measure(env, reps, c, o.graph_calls), copy_gbps));
  };
  for (const Op& op : kOps) {
    bool wanted = o.ops.empty();
    for (const std::string& name : o.ops) wanted = wanted || name == op.name;
    if (wanted) op.bench(env, run_one);
  }
  flush = DeviceBuffer();
  if (cuda) stream_destroy(env.stream);
  if (const Status st = table.write_files(o.json_path, o.csv_path); !st.ok()) {
    std::fprintf(stderr, "kernel_bench: %s\n", st.message().c_str());
    return 1;
  }
  if (const int64_t failed = table.failed_rows(); failed > 0) {
    std::fprintf(stderr, "kernel_bench: FAILED: %lld rows have #wrong > 0\n",
                 static_cast<long long>(failed));
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace tidal::bench

int main(int argc, char** argv) {
  using namespace tidal::bench;
  Options o;
  o.reps.warmup = 2;
  o.reps.budget_ms = 200.0;
  // A slow case (prefill at 32K: ~42 ms a call) still gets a median of 10 samples.
  o.reps.min_reps = 10;
  std::vector<std::string> names;
  for (const Op& op : kOps) names.push_back(op.name);
  CLI::App app{"kernel_bench: validate, then time, the ops of kernels/ against the copy bandwidth"};
  app.add_option("--device", o.device, "cuda or cpu; default: cuda when a GPU is visible")
      ->check(CLI::IsMember({"cuda", "cpu"}));
  app.add_option("--dtype", o.dtype, "bf16, f16 or f32; default: bf16 on cuda, f32 on cpu")
      ->check(CLI::IsMember({"bf16", "f16", "f32"}));
  app.add_option("--op", o.ops, "ops to run (repeatable); default: all. The copy row always runs")
      ->check(CLI::IsMember(names));
  app.add_option("--shape", o.shapes,
                 "only the cases whose shape contains this text (repeatable: each must match), "
                 "e.g. --shape fp8 --shape n=1048576 (a profiler's run of one case)");
  app.add_flag("--quick", o.quick, "small shapes: a smoke test of the harness (CI, CPU)");
  app.add_option("--reps", o.reps.reps, "timed calls per case; 0: fill --budget-ms")
      ->capture_default_str();
  app.add_option("--warmup", o.reps.warmup, "untimed calls before timing")->capture_default_str();
  app.add_option("--budget-ms", o.reps.budget_ms, "sampling time per case when --reps is 0, ms")
      ->capture_default_str();
  app.add_option("--min-reps", o.reps.min_reps,
                 "fewest timed calls per case when --reps is 0 (however long a call takes)")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  app.add_option("--graph-calls", o.graph_calls,
                 "GPU: time replays of a CUDA graph of N back-to-back calls (per-call time = "
                 "replay / N), as a decode step's graph runs them, rotating over copies of the "
                 "weights / KV caches they stream (the shape's r=); 0: one call per timed rep")
      ->check(CLI::Range(0, 1024))
      ->capture_default_str();
  app.add_option("--json", o.json_path, "also write the table as JSON to this file");
  app.add_option("--csv", o.csv_path, "also write the table as CSV to this file");
  CLI11_PARSE(app, argc, argv);
  return run(o);
}
