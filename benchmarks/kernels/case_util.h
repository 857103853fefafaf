// SPDX-License-Identifier: Apache-2.0
// What the kernel_bench case bodies share: deterministic random host inputs (never zeros),
// uploads and poisoned outputs on the device under test, strided sub-views that let a ref::
// twin run on one row or head of a huge case, and the element-wise #wrong count.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include "benchmarks/common/device_buffer.h"
#include "benchmarks/kernels/bench_case.h"
#include "runtime/tensor.h"

namespace tidal::bench {

// splitmix64: a counter-based generator, so element i of a tensor depends only on (seed, i)
// and big tensors fill in parallel with the same result on any machine.
uint64_t mix64(uint64_t x);

class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(mix64(seed)) {}
  uint64_t next() { return mix64(state_++); }
  int64_t below(int64_t n) { return int64_t(next() % uint64_t(n)); }  // [0, n), n >= 1

 private:
  uint64_t state_;
};

// Values uniform in [lo, hi), rounded to `dtype` (a float dtype).
HostTensor random_tensor(std::vector<int64_t> shape, DType dtype, uint64_t seed, float lo = -1.0f,
                         float hi = 1.0f);
// An integer tensor (i32, i64 or u8) holding `values` in row-major order.
HostTensor int_tensor(std::vector<int64_t> shape, DType dtype, const std::vector<int64_t>& values);
// A contiguous host copy of any view (the inputs of in-place ops, before the kernel runs).
HostTensor clone(const TensorView& v);
// RoPE's inverse frequencies [head_dim / 2] f32 at Llama-3's base (500000), unscaled.
HostTensor llama3_inv_freq(int64_t head_dim);

// A random permutation of 0..n-1: the page ids of block tables, so paged ops read their pages
// scattered over the cache as a long-running server's would be.
std::vector<int64_t> shuffled(int64_t n, uint64_t seed);
// `count` distinct positions in [0, n - 1) in ascending order, then n - 1 (TidalDecode's lists:
// the current token is always kept). Requires 1 <= count <= n.
std::vector<int64_t> random_list(int64_t n, int64_t count, uint64_t seed);
// Up to `count` distinct indices spread over [0, n), first and last included: which rows or
// heads of a huge case are checked.
std::vector<int64_t> spread(int64_t n, int64_t count);

// A view of `base`'s storage `offset` elements in, with its own shape and strides (elements).
TensorView sub_view(const TensorView& base, int64_t offset, std::initializer_list<int64_t> shape,
                    std::initializer_list<int64_t> stride);

DeviceBuffer upload(const BenchEnv& env, const HostTensor& host);
// Every byte 0xFF: NaN in floats, -1 in integers.
DeviceBuffer poisoned(const BenchEnv& env, std::vector<int64_t> shape, DType dtype);
// A workspace of `bytes` (may be 0) on the device under test.
DeviceBuffer workspace(const BenchEnv& env, size_t bytes);

struct Tolerance {
  double atol;
  double rtol;
};
// The GPU tests' table (tests/testing): bf16 1e-2 / 1.6e-2, f16 2e-3 / 2e-3, f32 1e-5 / 1e-4;
// integers exact.
Tolerance tolerance(DType dtype);

// Elements of `got` with |got - want| > atol + rtol * |want| (NaN and infinity in `got` always
// count); integer dtypes must match exactly. Same shape, any strides, rank <= 4.
int64_t count_wrong(const TensorView& got, const TensorView& want, Tolerance tol);

// Graph mode's copies of the read-only inputs a case streams (a GEMV's weight, an attention
// call's K/V cache and FP8 scales, Quest's page bounds): a decode step reads each of them once,
// hundreds of MB after its last read, so in a graph of back-to-back calls each call reads its own
// copy, R of them in turn, R such that between two reads of one copy the others read at least
// 2 x L2: R = 1 when one call reads `read_bytes` >= 2 x L2 of them, else
// min(graph_calls, ceil(2 x L2 / read_bytes) + 1), fewer if the device's free memory (less
// 1 GiB) cannot hold them. Activations and the step's metadata (x, q, logits, lists, block
// tables) are never copied: a step has them in L2 (the kernel before wrote them, or every layer
// reads them). Copy 0 is the inputs themselves; the others are device copies of them (same
// bytes, so every call computes the same outputs), complete when the constructor returns, alive
// as long as this object (the case: its graph is captured and replayed within it). On the CPU or
// with graph_calls 0, R = 1 and nothing is allocated.
class Replicas {
 public:
  // read_bytes: what one call reads of `inputs` (a list row reads part of its cache).
  Replicas(const BenchEnv& env, std::vector<const DeviceBuffer*> inputs, double read_bytes);
  int count() const { return count_; }
  // Input j (in the constructor's order) of copy i < count().
  TensorView view(int i, int j) const;
  // Sets c's run (copy 0), run_replica and replicas from `call`, which queues a call on copy i.
  void bind(KernelCase* c, std::function<void(int)> call) const;

 private:
  std::vector<const DeviceBuffer*> inputs_;
  std::vector<DeviceBuffer> copies_;  // input j of copy i >= 1 at (i - 1) * inputs + j
  int count_ = 1;
};

// A case of the env's dtype; run and check are filled in by the caller.
KernelCase make_case(const BenchEnv& env, std::string op, std::string shape, double bytes,
                     double flops = 0.0);

// fn(begin, end) over blocks of rows [0, rows), in parallel; returns the sum of what it returns
// (the wrong elements of those rows). For ops whose ref:: twin works on any row slice.
int64_t check_rows(int64_t rows, const std::function<int64_t(int64_t, int64_t)>& fn);

// "[a, b, c]".
std::string shape_str(std::initializer_list<int64_t> dims);
// Bytes per element, as a double for traffic sums.
inline double bytes_of(DType dtype) { return double(dtype_size(dtype)); }

}  // namespace tidal::bench
