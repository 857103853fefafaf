// SPDX-License-Identifier: Apache-2.0
// One kernel_bench case: its parameters, its ideal traffic and work per call, a closure that
// queues one call, and a check that recomputes (part of) the output with the op's ref:: twin.
// kernel_bench.cc runs a case once on poisoned outputs, checks it, then times it; the
// *_cases.cc files build the cases of each op family and own their buffers while they run.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "runtime/stream.h"
#include "runtime/tensor.h"

namespace tidal::bench {

// Where and how the cases run; built once from the flags.
struct BenchEnv {
  Device device;               // CUDA device 0, or the CPU (every op runs its ref:: twin)
  DType dtype = DType::kBF16;  // activations, weights and KV caches
  Stream stream;               // every call, copy and fill goes to it
  bool quick = false;          // small shapes: a smoke test of the harness, not a measurement
  int graph_calls = 0;         // CUDA only: > 0 times replays of a graph of this many calls
  size_t l2_bytes = 0;         // CUDA only: the device's L2, which sizes graph mode's replicas
  bool cuda() const { return device.kind == DeviceKind::kCuda; }
};

struct KernelCase {
  std::string op;
  std::string dtype;  // the data's dtype (f32 / i32 for ops that have no float choice)
  std::string shape;  // parameters, e.g. "[1, 4096] x [1024, 4096]"
  // Ideal traffic of one call: every byte the op must read or write, counted once (block-table
  // reads of the paged ops are left out: 4 bytes per page against kilobytes of K/V).
  double bytes = 0.0;
  double flops = 0.0;         // 0: not reported (memory-bound ops)
  std::function<void()> run;  // queues one call on env.stream (on replica 0, below)
  // Graph mode (Replicas, case_util.h): the calls of a graph rotate over `replicas` copies of
  // the read-only inputs the op streams (weights, KV caches), run_replica(i) queuing a call on
  // copy i, so that no call finds them in L2 as a decode step never does. 1: run() only.
  int replicas = 1;
  std::function<void(int)> run_replica;
  // After one run() on poisoned outputs: downloads the outputs, recomputes the checked rows
  // with the ref:: twin on the host inputs and returns how many elements are out of tolerance.
  std::function<int64_t()> check;
};

// Validates, times and prints one case. Cases are built one family at a time, so only the
// buffers of the family being measured are alive.
using RunCase = std::function<void(const KernelCase&)>;

// Families, in the order a decode step calls them (dense_cases.cc, linear_cases.cc,
// attention_cases.cc, selection_cases.cc).
void bench_embedding_lookup(const BenchEnv& env, const RunCase& run_case);
void bench_rms_norm(const BenchEnv& env, const RunCase& run_case);
void bench_fused_add_rms_norm(const BenchEnv& env, const RunCase& run_case);
void bench_linear(const BenchEnv& env, const RunCase& run_case);
void bench_linear_split(const BenchEnv& env, const RunCase& run_case);
void bench_linear_qkv_append(const BenchEnv& env, const RunCase& run_case);
void bench_linear_swiglu(const BenchEnv& env, const RunCase& run_case);
void bench_rotary_embedding(const BenchEnv& env, const RunCase& run_case);
void bench_paged_kv_append(const BenchEnv& env, const RunCase& run_case);
void bench_decode_attention(const BenchEnv& env, const RunCase& run_case);
void bench_gather_ceiling(const BenchEnv& env, const RunCase& run_case);
void bench_head_group_probs(const BenchEnv& env, const RunCase& run_case);
void bench_topk_per_row(const BenchEnv& env, const RunCase& run_case);
void bench_quest_page_scores(const BenchEnv& env, const RunCase& run_case);
void bench_expand_pages(const BenchEnv& env, const RunCase& run_case);
void bench_prefill_attention(const BenchEnv& env, const RunCase& run_case);
void bench_silu_and_mul(const BenchEnv& env, const RunCase& run_case);
void bench_residual_add(const BenchEnv& env, const RunCase& run_case);
void bench_sample_tokens(const BenchEnv& env, const RunCase& run_case);

}  // namespace tidal::bench
