// SPDX-License-Identifier: Apache-2.0
// sample_tokens on the GPU: a thread-block cluster of 512-thread blocks per row (kCluster blocks
// when rows * kCluster fit the SMs, else one; a row is at most a few hundred KB), following
// kernels/sample_tokens.h step by step:
//   argmax (ties to the lowest id): block c scans chunk c of the row, the blocks exchange their
//   bests through distributed shared memory -> done when T == 0; otherwise rank 0 goes on alone
//   (one block read a 128K-id row in 10.4 us on an H200, 8 in 5.0: the greedy step's argmax)
//   top-k: the k-th largest logit by a 4 x 8-bit radix descent over order-preserving keys
//   weights w = exp(l/T - max/T) into the workspace (-1 for ids top-k dropped), so later passes
//   neither recompute exp nor re-apply top-k
//   top-p: tau by a 4 x 8-bit descent over the weights' bits (w >= 0, so the bits order like the
//   values) that sums mass per bucket; masses are 32.32 fixed point in integer shared atomics,
//   exact and order-independent (a double atomic in shared memory may be a CAS loop)
//   min-p, then the draw: a block scan in double over contiguous id segments, one thread walks
//   the segment where the running kept mass crosses u * (kept mass)
#include <cooperative_groups.h>

#include <algorithm>
#include <climits>
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#include "kernels/counter_rng.h"
#include "kernels/cuda_common.cuh"
#include "kernels/radix_select.cuh"
#include "kernels/sample_tokens.h"

namespace tidal::kernels::cuda {
namespace {

namespace cg = cooperative_groups;

constexpr int kThreads = 512;
constexpr int kCluster = 8;  // blocks a row when rows are few (portable cluster size)
// Unused dynamic shared memory that leaves room for one block an SM (sm_90: 228 KB an SM).
constexpr size_t kAloneSmemBytes = size_t(120) << 10;
constexpr int kBins = 256;  // 8-bit digits

struct Args {
  int32_t* tokens;           // [num_rows]
  const float* logits;       // [num_rows, vocab], rows `logit_stride` apart
  const float* temperature;  // [num_rows]
  const int32_t* top_k;      // [num_rows]
  const float* top_p;        // [num_rows]
  const float* min_p;        // [num_rows]
  const int64_t* seeds;      // [num_rows]
  const int64_t* counters;   // [num_rows]
  float* weights;            // [num_rows, vocab] workspace
  int64_t logit_stride;
  int vocab;
};

struct Best {
  float value;
  int id;
};

struct BestOf {
  __device__ Best operator()(const Best& a, const Best& b) const {
    return a.value > b.value || (a.value == b.value && a.id < b.id) ? a : b;
  }
};

struct MaxOf {
  __device__ int operator()(int a, int b) const { return a > b ? a : b; }
};

// Mass of weight w in [0, 1] as 32.32 fixed point: sums of up to 2^31 weights fit 64 bits.
__device__ __forceinline__ uint64_t fixed_mass(float w) {
  return __double2ull_rn(double(w) * 4294967296.0);
}

// Key of the k-th largest logit (duplicates counted): a 4-pass radix descent, 8 bits a pass.
__device__ uint32_t kth_largest_key(const float* x, int vocab, uint32_t k) {
  __shared__ uint32_t hist[kBins];
  uint32_t prefix = 0, need = k;
  for (int pass = 0; pass < 4; ++pass) {
    const int shift = 24 - 8 * pass;
    if (threadIdx.x < kBins) hist[threadIdx.x] = 0;
    __syncthreads();
    for (int i = threadIdx.x; i < vocab; i += kThreads) {
      const uint32_t key = order_key(x[i]);
      if (pass == 0 || (key >> (shift + 8)) == (prefix >> (shift + 8))) {
        atomicAdd(&hist[(key >> shift) & (kBins - 1)], 1u);
      }
    }
    __syncthreads();
    const DigitChoice<uint32_t> c =
        select_digit<uint32_t, kThreads>(kBins, need, [&](int b) { return hist[b]; });
    prefix |= c.digit << shift;
    need = c.need;
  }
  return prefix;
}

// tau of top-p: the largest kept weight whose "w >= tau" set carries at least `need` (fixed
// point) of mass. Weights < 0 are ids dropped by top-k.
__device__ float top_p_threshold(const float* w, int vocab, uint64_t need) {
  // Bucket masses as two 32-bit halves: every wrap of the low half carries into the high one.
  __shared__ uint32_t low[kBins], high[kBins];
  uint32_t prefix = 0;
  for (int pass = 0; pass < 4; ++pass) {
    const int shift = 24 - 8 * pass;
    if (threadIdx.x < kBins) low[threadIdx.x] = high[threadIdx.x] = 0;
    __syncthreads();
    for (int i = threadIdx.x; i < vocab; i += kThreads) {
      const float wi = w[i];
      if (!(wi >= 0.0f)) continue;
      const uint32_t key = __float_as_uint(wi);
      if (pass > 0 && (key >> (shift + 8)) != (prefix >> (shift + 8))) continue;
      const uint32_t b = (key >> shift) & (kBins - 1);
      const uint64_t m = fixed_mass(wi);
      const uint32_t lo = uint32_t(m), old = atomicAdd(&low[b], lo);
      const uint32_t hi = uint32_t(m >> 32) + (old + lo < old ? 1u : 0u);
      if (hi != 0) atomicAdd(&high[b], hi);
    }
    __syncthreads();
    const DigitChoice<uint64_t> c = select_digit<uint64_t, kThreads>(
        kBins, need, [&](int b) { return (uint64_t(high[b]) << 32) | low[b]; });
    prefix |= c.digit << shift;
    need = c.need;
  }
  return __uint_as_float(prefix);
}

// Ids [begin, end) of chunk c of a row: multiples of 4 but the row's end, so a chunk of an
// aligned row starts 16-byte aligned.
__device__ __forceinline__ int2 chunk_of(int vocab, int c, int blocks) {
  const int chunk = ((vocab + blocks - 1) / blocks + 3) & ~3;
  return make_int2(min(vocab, c * chunk), min(vocab, (c + 1) * chunk));
}

// grid (blocks, rows), a cluster of `blocks` along x a row; `a` starts at the launch's first row.
__global__ void __launch_bounds__(kThreads) sample_tokens_kernel(Args a) {
  const cg::cluster_group cluster = cg::this_cluster();
  const int rank = int(cluster.block_rank());
  const int blocks = int(cluster.num_blocks());
  const int64_t row = blockIdx.y;
  const int vocab = a.vocab;
  const float* x = a.logits + row * a.logit_stride;
  float* w = a.weights + row * int64_t(vocab);
  const float temperature = a.temperature[row];

  // 1. The argmax, ties to the lowest id (std::max_element's rule); and whether the row holds a
  // NaN or an infinity (0.: then nothing can be drawn, the row gets kNonFiniteLogits).
  // A thread visits its ids in ascending order, so `>` keeps the lowest id of a tie. Aligned rows
  // are read 16 bytes at a time, four loads in flight per thread (a 128K-id row took 36 us on an
  // H200 with one 4-byte load in flight).
  Best best{-INFINITY, INT_MAX};
  int non_finite = 0;
  const auto visit = [&](float v, int i) {
    non_finite |= !isfinite(v);
    if (v > best.value) best = Best{v, i};
  };
  const int2 span = chunk_of(vocab, rank, blocks);
  int tail = span.x;
  if (reinterpret_cast<uintptr_t>(x) % 16 == 0) {
    constexpr int kUnroll = 4, kStep = 4 * kThreads;
    const int vend = span.x + ((span.y - span.x) & ~3);
    for (int base = span.x + 4 * int(threadIdx.x); base < vend; base += kStep * kUnroll) {
      float4 v[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        if (base + u * kStep < vend) v[u] = *reinterpret_cast<const float4*>(x + base + u * kStep);
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int j = base + u * kStep;
        if (j >= vend) break;
        visit(v[u].x, j);
        visit(v[u].y, j + 1);
        visit(v[u].z, j + 2);
        visit(v[u].w, j + 3);
      }
    }
    tail = vend;
  }
  for (int i = tail + int(threadIdx.x); i < span.y; i += kThreads) visit(x[i], i);
  // The chunk's best and flag into the block's shared memory; rank 0 reduces the cluster's
  // `blocks` of them through distributed shared memory and goes on alone.
  __shared__ typename cub::BlockReduce<Best, kThreads>::TempStorage best_storage;
  __shared__ Best chunk_best;
  __shared__ int chunk_non_finite;
  non_finite = __syncthreads_or(non_finite);
  best = cub::BlockReduce<Best, kThreads>(best_storage).Reduce(best, BestOf{});
  if (threadIdx.x == 0) {
    chunk_best = best;
    chunk_non_finite = non_finite;
  }
  cluster.sync();  // every chunk's best is in its block's shared memory
  __shared__ Best top;
  __shared__ int row_non_finite;
  if (rank == 0 && threadIdx.x == 0) {
    Best b{-INFINITY, INT_MAX};
    int nf = 0;
    for (int c = 0; c < blocks; ++c) {
      b = BestOf{}(b, *cluster.map_shared_rank(&chunk_best, c));
      nf |= *cluster.map_shared_rank(&chunk_non_finite, c);
    }
    top = b;
    row_non_finite = nf;
  }
  cluster.sync();  // no block leaves while another may still read its shared memory
  if (rank != 0) return;
  if (row_non_finite) {
    if (threadIdx.x == 0) a.tokens[row] = kNonFiniteLogits;
    return;
  }
  best = top;
  if (temperature == 0.0f) {
    if (threadIdx.x == 0) a.tokens[row] = best.id;
    return;
  }

  // 2. Top-k: keep logits >= the k-th largest (key 0 keeps everything).
  const int top_k = a.top_k[row];
  const uint32_t kth = top_k > 0 && top_k < vocab ? kth_largest_key(x, vocab, uint32_t(top_k)) : 0u;

  // 3. Weights, exactly the ref's f32 formula, and the kept mass for top-p.
  const float z_max = best.value / temperature;
  uint64_t mass = 0;
  for (int i = threadIdx.x; i < vocab; i += kThreads) {
    const float v = x[i];
    const float wi = order_key(v) >= kth ? expf(v / temperature - z_max) : -1.0f;
    w[i] = wi;
    if (wi >= 0.0f) mass += fixed_mass(wi);
  }
  __syncthreads();  // w is read back by other threads below

  // 4-5. Top-p and min-p both keep w >= a threshold; -0.5 keeps every id top-k kept.
  float threshold = -0.5f;
  const float top_p = a.top_p[row], min_p = a.min_p[row];
  if (top_p < 1.0f) {
    __shared__ typename cub::BlockReduce<uint64_t, kThreads>::TempStorage mass_storage;
    __shared__ uint64_t total_mass;
    mass = cub::BlockReduce<uint64_t, kThreads>(mass_storage).Sum(mass);
    if (threadIdx.x == 0) total_mass = mass;
    __syncthreads();
    const double want = ceil(double(top_p) * double(total_mass));
    const uint64_t need = want < 1.0 ? 1 : want > double(total_mass) ? total_mass : uint64_t(want);
    threshold = top_p_threshold(w, vocab, need);
  }
  if (min_p > 0.0f) threshold = fmaxf(threshold, min_p);

  // 6. The draw: segments of consecutive ids per thread, so one scan gives every running mass.
  const int seg = (vocab + kThreads - 1) / kThreads;
  const int lo = min(vocab, int(threadIdx.x) * seg), hi = min(vocab, lo + seg);
  double kept = 0.0;
  int last_kept = -1;
  for (int i = lo; i < hi; ++i) {
    const float wi = w[i];
    if (wi >= threshold) {
      kept += wi;
      last_kept = i;
    }
  }
  __shared__ typename cub::BlockScan<double, kThreads>::TempStorage scan_storage;
  __shared__ typename cub::BlockReduce<int, kThreads>::TempStorage last_storage;
  __shared__ int answer;
  if (threadIdx.x == 0) answer = INT_MAX;
  __syncthreads();
  double before, total;
  cub::BlockScan<double, kThreads>(scan_storage).ExclusiveSum(kept, before, total);
  const int last_any = cub::BlockReduce<int, kThreads>(last_storage).Reduce(last_kept, MaxOf{});
  const double r = random_uniform(uint64_t(a.seeds[row]), uint64_t(a.counters[row])) * total;
  if (!(before > r) && before + kept > r) {
    int pick = last_kept;  // rounding left the crossing at the segment's end
    double running = before;
    for (int i = lo; i < hi; ++i) {
      const float wi = w[i];
      if (wi >= threshold) {
        running += wi;
        if (running > r) {
          pick = i;
          break;
        }
      }
    }
    atomicMin(&answer, pick);
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    // None crossed (rounding): the highest kept id, as the ref.
    a.tokens[row] = answer != INT_MAX ? answer : last_any >= 0 ? last_any : best.id;
  }
}

}  // namespace

size_t sample_tokens_workspace_size(const SampleParams& p) {
  return size_t(p.logits.size(0)) * size_t(p.logits.size(1)) * sizeof(float);
}

void sample_tokens(const SampleParams& p, TensorView workspace, Stream stream) {
  TIDAL_NVTX_SCOPE("sample_tokens");
  const int64_t rows = p.logits.size(0), vocab = p.logits.size(1);
  if (rows == 0) return;
  TIDAL_CHECK(vocab >= 1 && vocab < (int64_t(1) << 30), "sample_tokens: vocab out of range");
  Args a;
  a.tokens = p.tokens.data_as<int32_t>();
  a.logits = p.logits.data_as<float>();
  a.temperature = p.temperature.data_as<float>();
  a.top_k = p.top_k.data_as<int32_t>();
  a.top_p = p.top_p.data_as<float>();
  a.min_p = p.min_p.data_as<float>();
  a.seeds = p.seeds.data_as<int64_t>();
  a.counters = p.counters.data_as<int64_t>();
  a.weights = static_cast<float*>(workspace.data);
  a.logit_stride = p.logits.stride[0];
  a.vocab = int(vocab);
  // Rows ride gridDim.y (at most 65535 a launch): the engine samples up to two rows a sequence
  // of a batch, so larger calls go out in slices, each with its arrays advanced to its first row.
  constexpr int64_t kMaxRowsALaunch = 65535;
  // A few rows: kCluster blocks a row, one block an SM. Two rows' rank-0 blocks on one SM ran
  // the filters 1.24x slower (16 rows, H200: 314 us against 254 alone; 62 registers let 2 blocks
  // share an SM). More rows: one block a row, which was as fast or faster from 64 rows on
  // (greedy 11.3 us against 15.4 in clusters; filtered 322 against 380). Call 51.
  const int blocks = rows * kCluster <= int64_t(sm_count()) ? kCluster : 1;
  const size_t smem = blocks > 1 ? kAloneSmemBytes : 0;
  if (smem != 0) {
    static int done[64] = {};
    per_device_cached(done, [] {
      TIDAL_CUDA_CHECK(cudaFuncSetAttribute(
          sample_tokens_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(kAloneSmemBytes)));
      return 1;
    });
  }
  cudaLaunchAttribute attr[1] = {cluster_attribute(unsigned(blocks))};
  for (int64_t r0 = 0; r0 < rows; r0 += kMaxRowsALaunch) {
    Args s = a;
    s.tokens += r0;
    s.logits += r0 * a.logit_stride;
    s.temperature += r0;
    s.top_k += r0;
    s.top_p += r0;
    s.min_p += r0;
    s.seeds += r0;
    s.counters += r0;
    s.weights += r0 * vocab;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(unsigned(blocks), unsigned(std::min(rows - r0, kMaxRowsALaunch)));
    cfg.dynamicSmemBytes = smem;
    cfg.blockDim = dim3(kThreads);
    cfg.stream = raw_stream(stream);
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    TIDAL_CUDA_CHECK(cudaLaunchKernelEx(&cfg, sample_tokens_kernel, s));
    check_launch("sample_tokens_kernel", stream);
  }
}

}  // namespace tidal::kernels::cuda
