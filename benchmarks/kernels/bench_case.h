// SPDX-License-Identifier: Apache-2.0
// One kernel_bench case: the op's parameters, its traffic and work per call, a closure that runs
// it once and a check that recomputes its output independently. kernel_bench.cc runs the case
// once, checks it, then times it; the *_cases.cc files build the cases per op.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

namespace tidal::bench {

struct KernelCase {
  std::string op;
  std::string dtype = "f32";
  std::string shape;               // parameters, e.g. "[16, 4096]"
  double bytes = 0.0;              // read + written by one call, each byte once (ideal traffic)
  double flops = 0.0;              // 0: not reported (memory-bound elementwise ops)
  std::function<void()> run;       // one call of the op
  std::function<int64_t()> check;  // after one run(): output elements outside tolerance
};

// An f32 case; run and check are filled in by the caller.
inline KernelCase make_case(std::string op, std::string shape, double bytes, double flops = 0.0) {
  KernelCase c;
  c.op = std::move(op);
  c.shape = std::move(shape);
  c.bytes = bytes;
  c.flops = flops;
  return c;
}

// Runs, checks and times one case, then prints its row. Cases are built one at a time, so only
// one case's buffers are alive at once.
using RunCase = std::function<void(const KernelCase&)>;

void bench_rms_norm(const RunCase& run_case);
void bench_linear(const RunCase& run_case);
void bench_rotary_embedding(const RunCase& run_case);
void bench_silu_and_mul(const RunCase& run_case);
void bench_residual_add(const RunCase& run_case);
void bench_embedding_lookup(const RunCase& run_case);
void bench_paged_kv_append(const RunCase& run_case);
void bench_paged_attention(const RunCase& run_case);

// Deterministic uniform values in [-scale, scale) (splitmix64): cheap enough for 100M elements.
std::vector<float> random_floats(size_t n, uint64_t seed, float scale = 1.0f);

// |got - want| <= atol + rtol * |want|; NaN or infinity in `got` is never close.
inline bool is_close(double got, double want, double atol, double rtol) {
  return std::isfinite(got) && std::fabs(got - want) <= atol + rtol * std::fabs(want);
}

// "[a, b, c]".
std::string shape_str(std::initializer_list<int64_t> dims);

}  // namespace tidal::bench
