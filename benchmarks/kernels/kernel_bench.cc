// SPDX-License-Identifier: Apache-2.0
// kernel_bench: times every op in kernels/ on Llama-shaped cases, checking each result first.
//   kernel_bench [--op NAME ...] [--reps N] [--warmup N] [--budget-ms MS] [--json F] [--csv F]
// Until the CUDA issue lands, every op runs its single-threaded CPU reference (backend=cpu-ref):
// the numbers describe the oracle, not the product's speed.
#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "benchmarks/common/stats.h"
#include "benchmarks/common/table.h"
#include "benchmarks/common/timer.h"
#include "benchmarks/kernels/bench_case.h"

namespace tidal::bench {
namespace {

struct Op {
  const char* name;
  void (*bench)(const RunCase&);
};

// In the order a decode step calls them.
const Op kOps[] = {
    {"embedding_lookup", bench_embedding_lookup},
    {"rms_norm", bench_rms_norm},
    {"linear", bench_linear},
    {"rotary_embedding", bench_rotary_embedding},
    {"residual_add", bench_residual_add},
    {"silu_and_mul", bench_silu_and_mul},
};

struct Options {
  std::vector<std::string> ops;  // Default (empty): all
  RepOptions reps;
  std::string json_path;
  std::string csv_path;
};

std::vector<Column> columns() {
  return {{"op", 16, false, 0}, {"dtype", 5, false, 0},  {"shape", 34, false, 0},
          {"reps", 5, true, 0}, {"med_us", 11, true, 1}, {"min_us", 11, true, 1},
          {"GB/s", 8, true, 3}, {"GFLOP/s", 8, true, 3}, {"#wrong", 7, true, 0}};
}

// Validate, then time (STYLE.md rule 31). The first call's output is the one checked; the
// timed calls repeat it (in-place ops keep transforming their buffers, which costs the same).
void run_case(const KernelCase& c, const RepOptions& reps, Table* table) {
  c.run();
  const int64_t wrong = c.check();
  const SampleStats s = summarize(run_timed(c.run, reps));
  const double sec = s.median * 1e-6;
  table->add_row({c.op, c.dtype, c.shape, s.n, s.median, s.min, c.bytes / sec / 1e9,
                  c.flops > 0 ? c.flops / sec / 1e9 : NAN, wrong});
}

int run(const Options& o) {
  BenchInfo info = collect_bench_info("kernel_bench");
  info.extra = {{"backend", "cpu-ref"},
                {"reps", o.reps.reps > 0 ? std::to_string(o.reps.reps)
                                         : "auto(" + std::to_string(int(o.reps.budget_ms)) + "ms)"},
                {"warmup", std::to_string(o.reps.warmup)}};
  Table table(info, columns());
  table.print_header(
      {"CPU reference path: single-threaded ref:: oracles (f32, double accumulation), not the",
       "product's speed. GB/s: ideal bytes read + written per call over med_us; GFLOP/s for",
       "linear and attention. #wrong: output elements off an independent recomputation."});
  const RunCase run_one = [&](const KernelCase& c) { run_case(c, o.reps, &table); };
  for (const Op& op : kOps) {
    bool wanted = o.ops.empty();
    for (const std::string& name : o.ops) wanted = wanted || name == op.name;
    if (wanted) op.bench(run_one);
  }
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
  std::vector<std::string> names;
  for (const Op& op : kOps) names.push_back(op.name);
  CLI::App app{"kernel_bench: validate, then time, every op in kernels/ (CPU reference path)"};
  app.add_option("--op", o.ops, "ops to run (repeatable); default: all")
      ->check(CLI::IsMember(names));
  app.add_option("--reps", o.reps.reps, "timed calls per case; 0: fill --budget-ms")
      ->capture_default_str();
  app.add_option("--warmup", o.reps.warmup, "untimed calls before timing")->capture_default_str();
  app.add_option("--budget-ms", o.reps.budget_ms, "sampling time per case when --reps is 0, ms")
      ->capture_default_str();
  app.add_option("--json", o.json_path, "also write the table as JSON to this file");
  app.add_option("--csv", o.csv_path, "also write the table as CSV to this file");
  CLI11_PARSE(app, argc, argv);
  return run(o);
}
