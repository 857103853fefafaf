// SPDX-License-Identifier: Apache-2.0
// decode_attention on the GPU: flash-decoding over paged KV for a batch of mixed roles in one
// launch, then a log-sum-exp merge of the splits. Two split kernels share the plan and the
// partials: the tensor-core one (decode_attention_mma.cuh) for 16-bit caches at head_dim 64 / 128
// when query heads share a KV head (GQA), the SIMT one (decode_attention.cuh) for the rest (MHA,
// f32, small head_dims). FP8 caches (u8 e4m3 codes with a scale per row) take the same two
// kernels (KT = uint8_t): the tensor-core one in f16 (exact e4m3 operands), the SIMT one on bytes.
//
// Grid of the split kernel: (num_splits, num_heads / heads_per_block, num_tokens), fixed for any
// lengths so a captured step replays at every context length. num_splits defaults to one wave of
// the kernel's resident blocks for the batch (batch 1 on 132 SMs: MHA 32 -> 16 splits at 4 blocks
// per SM; GQA 32/8 -> 33 splits at 2 tensor-core blocks per SM, or 16 a head for a sparse layer
// with lists per query head, on the SIMT kernel: head_lists_on_simt); each row takes positions in
// chunks of max(ceil(len / num_splits), 64) rounded to a tile, so a short row uses few splits and
// the others exit at once, and a row that fits one chunk is written by its split directly (the
// merge skips it). Every byte of K and V a row needs is read once per pass (16-byte loads or
// cp.async, fp32 softmax), which makes both kernels bandwidth-bound at long context: expected
// >= 90% of copy bandwidth while streaming at 32K-100K for batch 1 (MHA 32 and GQA 32/8, head_dim
// 128); kernel_bench's %copy adds a fixed ~15-20 us per call (launches, the first dependent loads
// after its L2 flush, the merge), see benchmarks/results/PERF_NOTES.md.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "kernels/decode_attention.cuh"
#include "kernels/decode_attention.h"
#include "kernels/decode_attention_mma.cuh"
#include "kernels/paged_kv_common.h"

namespace tidal::kernels::cuda {
namespace {

using attention::kThreads;

constexpr int kMergeThreads = 256;
constexpr int64_t kMaxSplits = 1024;
constexpr size_t kAlign = 256;

size_t align_up(size_t x) { return (x + kAlign - 1) / kAlign * kAlign; }

// Query heads one block serves: the largest divisor of the GQA group size up to
// kMaxHeadsPerBlock, so a block's heads always share their KV head.
int heads_per_block(int64_t num_heads, int64_t num_kv_heads) {
  const int64_t group = num_heads / num_kv_heads;
  for (int64_t g = attention::kMaxHeadsPerBlock; g > 1; --g) {
    if (group % g == 0) return int(g);
  }
  return 1;
}

// The tensor-core kernel's launch attributes: over 48 KiB of dynamic shared memory needs the
// opt-in, and kBlocksPerSm rings per SM the largest carveout (per device; cheap to repeat, legal
// during a capture).
template <typename T, int D, typename KT>
using MmaConfig = attention::MmaSplit<D, int(sizeof(KT))>;

template <typename T, int D, typename KT>
void set_mma_attributes() {
  const auto kernel = attention::decode_attention_mma_split_kernel<T, D, KT>;
  TIDAL_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        MmaConfig<T, D, KT>::kSmemBytes));
  TIDAL_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                        int(cudaSharedmemCarveoutMaxShared)));
}

// Resident tensor-core blocks per SM on the current device, from the occupancy calculator once
// per device (kBlocksPerSm by design: 2): the default split count fills exactly one wave, so a
// different residency costs a little speed, never a second wave.
template <typename T, int D, typename KT>
int mma_blocks_per_sm() {
  static int counts[64] = {};
  return per_device_cached(counts, [] {
    set_mma_attributes<T, D, KT>();
    int blocks = 0;
    TIDAL_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
        &blocks, attention::decode_attention_mma_split_kernel<T, D, KT>,
        MmaConfig<T, D, KT>::kThreads, MmaConfig<T, D, KT>::kSmemBytes));
    return std::max(blocks, 1);
  });
}

// Which split kernel serves a launch, from the shapes and the device only (the workspace size
// depends on it, through the split count).
struct SplitPath {
  bool mma;             // the tensor-core kernel
  int blocks_per_sm;    // its resident blocks per SM: the wave the default split count fills
  int tile;             // positions a block covers per step: chunks are multiples of it
  int heads_per_block;  // query heads a block serves (a run of them sharing a KV head)
};

// Whether a sparse layer's launch with lists per query head under GQA (lists_only and
// head_lists) runs on the SIMT kernel a block a head, as MHA does, instead of the tensor-core
// kernel's run of heads a block (a warp a head: a head's list shares nothing with its group's).
// 16-bit caches: there the tensor-core kernel's 33-split wave needs a merge launch, where the SIMT
// kernel's 16 splits a head merge in their last block; FP8 caches keep the tensor-core kernel
// and its own merge. A token with shared lists in such a launch reads its rows once per head
// (the hint says some token has head lists, not that all do). TIDAL_HEAD_LISTS_SIMT=0: the
// tensor-core kernel for them too (the A/B switch). Measured in benchmarks/results/PERF_NOTES.md.
bool head_lists_on_simt(const DecodeAttentionParams& p) {
  static const bool enabled = switch_on("TIDAL_HEAD_LISTS_SIMT");
  return enabled && p.lists_only && p.head_lists && !is_fp8_kv(p.k_cache);
}

SplitPath split_path(const DecodeAttentionParams& p) {
  const int64_t head_dim = p.q.size(2);
  const bool half = p.q.dtype == DType::kF16 || p.q.dtype == DType::kBF16;
  const int run = heads_per_block(p.q.size(1), p.k_cache.size(2));
  const bool mma_shape = half && (head_dim == 64 || head_dim == 128) && run >= 2;
  if (mma_shape && !head_lists_on_simt(p)) {
    const bool bf16 = p.q.dtype == DType::kBF16, fp8 = is_fp8_kv(p.k_cache);
    const auto blocks_for = [&](auto tag) {
      using T = decltype(tag);
      if (fp8) {
        return head_dim == 64 ? mma_blocks_per_sm<T, 64, uint8_t>()
                              : mma_blocks_per_sm<T, 128, uint8_t>();
      }
      return head_dim == 64 ? mma_blocks_per_sm<T, 64, T>() : mma_blocks_per_sm<T, 128, T>();
    };
    const int blocks = bf16 ? blocks_for(__nv_bfloat16{}) : blocks_for(__half{});
    const int tile =
        fp8 ? (head_dim == 64 ? attention::MmaSplit<64, 1>::kTile
                              : attention::MmaSplit<128, 1>::kTile)
            : (head_dim == 64 ? attention::MmaSplit<64>::kTile : attention::MmaSplit<128>::kTile);
    return {true, blocks, tile, run};
  }
  // SIMT: kRowsInFlight rows for each thread group of head_dim / vec threads. A tensor-core shape
  // here is a head-lists launch: a block a head (the kernel has no GQA instance at these shapes).
  const int64_t vec = 16 / int64_t(dtype_size(p.q.dtype));
  const int64_t groups =
      kThreads / 32 * std::max<int64_t>(1, 32 / std::max<int64_t>(1, head_dim / vec));
  return {false, attention::kBlocksPerSm, int(groups * attention::kRowsInFlight),
          mma_shape ? 1 : run};
}

int64_t num_splits(const DecodeAttentionParams& p) {
  if (p.num_splits > 0) return p.num_splits;
  const SplitPath path = split_path(p);
  const int64_t blocks_per_split =
      std::max<int64_t>(1, p.q.size(0) * (p.q.size(1) / path.heads_per_block));
  // One full wave of resident blocks (never a second, partial one): at batch 1 and long
  // context every SM streams K/V with all the blocks it holds.
  const int64_t wave = path.blocks_per_sm * int64_t(sm_count());
  return std::clamp<int64_t>(wave / blocks_per_split, 1, 256);
}

// Whether clusters of `size` blocks of the tensor-core kernel run on this device (sizes over 8
// are non-portable: opted into first). Per device, for the two size classes.
template <typename T, int D, typename KT>
bool mma_clusters_fit(int size) {
  static int cached[2][64] = {};  // 1: they fit, -1: they do not
  const int wide = size > 8 ? 1 : 0;
  return per_device_cached(cached[wide], [wide] {
           set_mma_attributes<T, D, KT>();
           const auto kernel = attention::decode_attention_mma_split_kernel<T, D, KT>;
           const unsigned c = wide ? 16u : 8u;
           if (wide && cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed,
                                            1) != cudaSuccess) {
             (void)cudaGetLastError();  // not an error of ours: no such clusters here
             return -1;
           }
           cudaLaunchConfig_t cfg = {};
           cfg.gridDim = dim3(c);
           cfg.blockDim = dim3(MmaConfig<T, D, KT>::kThreads);
           cfg.dynamicSmemBytes = MmaConfig<T, D, KT>::kSmemBytes;
           cudaLaunchAttribute attr[1] = {cluster_attribute(c)};
           cfg.attrs = attr;
           cfg.numAttrs = 1;
           int clusters = 0;
           if (cudaOccupancyMaxActiveClusters(&clusters, kernel, &cfg) != cudaSuccess) {
             (void)cudaGetLastError();
             return -1;
           }
           return clusters >= 1 ? 1 : -1;
         }) > 0;
}

// An integer from the environment, or `fallback` when unset (callers keep it in a static).
int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::atoi(v) : fallback;
}

// The launch shape of a lists-only launch (DecodeAttentionParams::lists_only) on the tensor-core
// kernel: clusters of `size` blocks (the row's splits), `heads_per_block` query heads a block.
// size 0: the wave-filling splits and the merge launch (or own merge), as any other launch.
// Measured on an H200 (llama3-8b, per-KV-head lists of K = 2048, benchmarks/results/PERF_NOTES.md):
//   - FP8 caches: clusters of 8 with the exit trigger (split_trigger) against the own merge with
//     it: 2^20 7.26 -> 7.17 ms a step, 100K 4.75 -> 4.68 (7.41 / 4.90 with the own merge as it
//     was, triggering at its start). A call in a graph of 32: 11.8 -> 10.0 us at 2^20.
//   - 16-bit caches: 12.3 -> 9.2 us a call in the graph, but +0.06 ms a step (10K and 100K) against
//     the merge launch: the o projection then starts after the split grid's exit, where the
//     ordinary merge launch lets it be scheduled while the merge runs. So no clusters by default.
//   - lists per query head (head_lists): a cluster of a few splits leaves each head's warp most
//     of its list to stream alone (K = 2048 at 8 splits: 24.0 us a call against 20.2 with the
//     wave's 33 splits; a block a head +0.45 ms a step), so those launches keep the wave.
// size: num_splits when set (2..16), else TIDAL_ATTN_CLUSTER (0 none, 2..16) when set, else 8 for
// FP8 caches and none for 16-bit ones; kept where the device runs such clusters.
// TIDAL_ATTN_HEAD_LISTS=block (a block a head) or =run (the run's heads, a warp each) puts
// head-list launches in clusters too, for measurements.
struct ClusterShape {
  int size = 0;
  int heads_per_block = 0;
};

ClusterShape cluster_shape(const DecodeAttentionParams& p, const SplitPath& path, int run_heads) {
  ClusterShape c;
  if (!p.lists_only || !path.mma || p.num_splits == 1 || p.num_splits > 16) return c;
  static const int env_size = env_int("TIDAL_ATTN_CLUSTER", -1);
  static const int head_mode = [] {  // 0 wave, 1 block, 2 run
    const char* v = std::getenv("TIDAL_ATTN_HEAD_LISTS");
    if (v == nullptr) return 0;
    return std::strcmp(v, "block") == 0 ? 1 : std::strcmp(v, "run") == 0 ? 2 : 0;
  }();
  const bool fp8 = is_fp8_kv(p.k_cache), bf16 = p.q.dtype == DType::kBF16;
  const int size = p.num_splits > 0 ? int(p.num_splits) : env_size >= 0 ? env_size : fp8 ? 8 : 0;
  if (size < 2 || size > 16 || (p.head_lists && head_mode == 0)) return c;
  const auto fits = [&](auto tag) {
    using T = decltype(tag);
    if (fp8) {
      return p.q.size(2) == 64 ? mma_clusters_fit<T, 64, uint8_t>(size)
                               : mma_clusters_fit<T, 128, uint8_t>(size);
    }
    return p.q.size(2) == 64 ? mma_clusters_fit<T, 64, T>(size)
                             : mma_clusters_fit<T, 128, T>(size);
  };
  if (!(bf16 ? fits(__nv_bfloat16{}) : fits(__half{}))) return c;
  c.size = size;
  c.heads_per_block = p.head_lists && head_mode == 1 ? 1 : run_heads;
  return c;
}

// Where the split kernel triggers its dependents (attention::kTriggerAtStart ...). With a merge
// launch after it: at its start (the ordinary merge launch holds the o projection back until the
// split grid completes, and lets it be scheduled while the merge runs). Without one (own merge,
// cluster merge, a single split) the o projection's programmatic launch follows the split kernel
// directly; measured on an H200 (ms a step, trigger at start / after the K/V loop / at exit):
//   - FP8 caches (tensor-core kernel): at the exit. llama3-8b per-KV lists at 2^20, clusters of 8:
//     7.55 / 7.55 / 7.27 (call 28); with the own merge, start -> exit: 2^20 7.41 -> 7.26, `full`
//     at 100K 6.24 -> 6.10, per-KV at 100K 4.90 -> 4.75 (call 29).
//   - MHA (SIMT kernel, own merge): at the start. llama2-7b start -> exit: +0.09 to +0.11 ms at
//     10K and 100K, `full` and `tidal` (call 29).
//   - 16-bit GQA clusters (only when asked for): at the exit (4.57 / 4.52 / 4.34 at 10K).
// TIDAL_ATTN_TRIGGER (start, loop, exit) sets it for every launch without a merge launch.
int split_trigger(bool merge_launch, bool mma, bool fp8, bool cluster) {
  static const int forced = [] {
    const char* v = std::getenv("TIDAL_ATTN_TRIGGER");
    if (v == nullptr) return -1;
    return std::strcmp(v, "start") == 0  ? int(attention::kTriggerAtStart)
           : std::strcmp(v, "loop") == 0 ? int(attention::kTriggerAfterLoop)
           : std::strcmp(v, "exit") == 0 ? int(attention::kTriggerAtExit)
                                         : -1;
  }();
  if (merge_launch) return attention::kTriggerAtStart;
  if (forced >= 0) return forced;
  return (mma && fp8) || cluster ? attention::kTriggerAtExit : attention::kTriggerAtStart;
}

// Combines the splits of one (token, head) (attention::merge_splits). Grid (num_heads,
// num_tokens), kMergeThreads threads, at most 48 registers. An ordinary launch (not a
// programmatic one): it starts once the split grid has completed. Scheduled early, beside the
// split blocks, it let the o projection after it start too, whose blocks then took each SM as its
// split blocks left and streamed the weights against the split kernel's last K/V rows: llama3-8b
// steps 0.02-0.11 ms slower than with this launch (H200, benchmarks/results/PERF_NOTES.md).
template <typename T, bool kPartialsFirst>
__global__ void __launch_bounds__(kMergeThreads, 5)
    decode_attention_merge_kernel(attention::Plan p, T* out,  // [num_tokens, num_heads, head_dim]
                                  float* lse,                 // [num_tokens, num_heads] or null
                                  const float* part_o,    // [tokens, heads, num_splits, head_dim]
                                  const float* part_lse,  // [tokens, heads, num_splits]
                                  int head_dim) {
  extern __shared__ float4 smem4[];  // attention::merge_smem_floats(num_splits, kMergeThreads)
  __shared__ float scratch[32];
  // The o projection after it is a programmatic launch: scheduled while this grid runs.
  pdl_launch_dependents();
  pdl_wait();  // (an ordinary launch: nothing to wait for; kept for a programmatic one)
  const int h = blockIdx.x, t = blockIdx.y;
  const int64_t row = int64_t(t) * p.num_heads + h;
  // The partials first, for every split that may hold keys: the plan's round trips (how many do)
  // then overlap theirs instead of preceding them (kPartialsFirst; TIDAL_MERGE_FIRST=0 launches
  // the kernel without, the A/B switch).
  attention::MergeFirst first;
  if constexpr (kPartialsFirst) {
    first = attention::merge_first(row, p.num_splits, head_dim, part_o, part_lse);
  }
  const int active = attention::active_splits(p, t, h);
  if (active <= 1) return;  // one split covered the row and wrote it (or no keys at all)
  attention::merge_splits(row, active, p.num_splits, head_dim, part_o, part_lse, out, lse,
                          reinterpret_cast<float*>(smem4), scratch,
                          kPartialsFirst ? &first : nullptr);
}

template <typename T, int D, typename KT>
void launch_mma(const attention::SplitArgs<T, KT>& args, dim3 grid, cudaStream_t stream) {
  using C = MmaConfig<T, D, KT>;
  set_mma_attributes<T, D, KT>();
  launch_programmatic_clusters(attention::decode_attention_mma_split_kernel<T, D, KT>, grid,
                               dim3(C::kThreads), C::kSmemBytes, stream,
                               args.cluster_merge ? grid.x : 1u, args);
}

template <typename T, typename KT, int D, int GMAX, int RING = 0>
void launch_split(const attention::SplitArgs<T, KT>& args, dim3 grid, cudaStream_t stream) {
  launch_programmatic(attention::decode_attention_split_kernel<T, KT, D, GMAX, RING>, grid,
                      dim3(kThreads), size_t(RING) * attention::kRingStageBytes, stream, args);
}

// The SIMT kernel's ring stages for a launch (attention::decode_attention_split_kernel's RING;
// DecodeAttentionParams::ring_stages): lists-only launches (sparse layers, whose splits are a
// few steps long) of runs of one head on 16-bit caches at head_dim 64 / 128; the kernel takes
// them there only. Measured on an H100 (benchmarks/results/PERF_NOTES.md, twenty-seventh
// session), ms a step against no ring: 1 stage -0.01 to -0.04 on every per-query-head tidal row
// of llama2-7b and llama3-8b (the sparse layers' attention 22.1 -> 21.1 us exposed), 2 stages
// about half of that; `full` unchanged. TIDAL_ATTN_RING (0 to 2) overrides the choice, and
// TIDAL_ATTN_RING_ALL=1 puts every SIMT launch on the ring (the A/B switch for dense launches:
// llama2-7b `full` +0.1 ms at 10K, +1.1 at 100K, as its streaming loses L1 to shared memory).
constexpr int kDefaultRingStages = 1;
int ring_stages(const DecodeAttentionParams& p) {
  static const int forced = env_int("TIDAL_ATTN_RING", -1);
  static const bool every_launch = env_int("TIDAL_ATTN_RING_ALL", 0) != 0;
  if (!p.lists_only && !every_launch) return 0;
  const int stages = forced >= 0 ? forced : p.ring_stages >= 0 ? p.ring_stages : kDefaultRingStages;
  return std::clamp(stages, 0, 2);
}

template <typename T, typename KT, int D>
void launch_split(const attention::SplitArgs<T, KT>& args, dim3 grid, int gmax, int ring,
                  cudaStream_t stream) {
  // 16-bit GQA runs at head_dim 64 / 128 take the tensor-core kernel: no SIMT instance for them.
  constexpr bool kGqa = std::is_same_v<T, float> || D < 64;
  constexpr bool kRing = !std::is_same_v<T, float> && std::is_same_v<KT, T> && D >= 64;
  if constexpr (kRing) {
    if (gmax == 1 && ring > 0) {
      if (ring == 1) launch_split<T, KT, D, 1, 1>(args, grid, stream);
      if (ring == 2) launch_split<T, KT, D, 1, 2>(args, grid, stream);
      return;
    }
  }
  switch (gmax) {
    case 1: launch_split<T, KT, D, 1>(args, grid, stream); return;
    case 2:
      if constexpr (kGqa) {
        launch_split<T, KT, D, 2>(args, grid, stream);
        return;
      }
      break;
    case 4:
      if constexpr (kGqa) {
        launch_split<T, KT, D, 4>(args, grid, stream);
        return;
      }
      break;
    default: break;
  }
  TIDAL_CHECK(false, "decode_attention: unsupported heads per block");
}

template <typename T, typename KT>
void launch(const DecodeAttentionParams& p, TensorView workspace, Stream stream) {
  const int64_t tokens = p.q.size(0), heads = p.q.size(1), head_dim = p.q.size(2);
  const SplitPath path = split_path(p);
  // A lists-only launch in clusters: a cluster's blocks are the row's splits (no workspace).
  const ClusterShape shape = cluster_shape(p, path, path.heads_per_block);
  const int cluster = shape.size;
  const int64_t splits = cluster > 0 ? cluster : num_splits(p);
  TIDAL_CHECK(splits <= kMaxSplits, "decode_attention: num_splits must be <= 1024");
  const int hpb = cluster > 0 ? shape.heads_per_block : path.heads_per_block;
  const int page_size = int(p.k_cache.size(1));
  const bool pow2 = (page_size & (page_size - 1)) == 0;

  attention::Plan plan;
  plan.block_tables = p.block_tables.data_as<int32_t>();
  plan.seq_ids = p.seq_ids.data_as<int32_t>();
  plan.lengths = p.lengths.data_as<int32_t>();
  plan.roles = p.roles.data_as<uint8_t>();
  plan.indices = p.indices.data_as<int32_t>();
  plan.counts = p.counts.data_as<int32_t>();
  plan.num_lists = p.num_lists.data_as<int32_t>();
  plan.prior_lens = p.prior_lens.data != nullptr ? p.prior_lens.data_as<int32_t>() : nullptr;
  static const bool use_rows = env_int("TIDAL_ATTN_ROWS", 1) != 0;
  plan.rows = use_rows && p.rows.data != nullptr ? p.rows.data_as<int32_t>() : nullptr;
  plan.bt_stride0 = p.block_tables.stride[0];
  plan.bt_stride1 = p.block_tables.stride[1];
  plan.num_pages = p.k_cache.size(0);
  plan.num_rows = int32_t(p.block_tables.size(0));
  plan.max_pages = int32_t(p.block_tables.size(1));
  plan.page_size = page_size;
  plan.page_shift = pow2 ? __builtin_ctz(unsigned(page_size)) : -1;
  plan.num_heads = int32_t(heads);
  plan.num_kv_heads = int32_t(p.k_cache.size(2));
  plan.heads_per_block = hpb;
  plan.max_lists = int32_t(p.indices.size(1));
  plan.max_budget = int32_t(p.indices.size(2));
  plan.num_splits = int32_t(splits);
  plan.tile = path.tile;

  attention::SplitArgs<T, KT> args;
  args.plan = plan;
  args.out = static_cast<T*>(p.out.data);
  args.q = static_cast<const T*>(p.q.data);
  args.k_cache = static_cast<const KT*>(p.k_cache.data);
  args.v_cache = static_cast<const KT*>(p.v_cache.data);
  args.k_scale = p.k_scale.data != nullptr ? p.k_scale.data_as<float>() : nullptr;
  args.v_scale = p.v_scale.data != nullptr ? p.v_scale.data_as<float>() : nullptr;
  args.logits = p.logits.data != nullptr ? p.logits.data_as<float>() : nullptr;
  args.logits16 = p.logits16.data != nullptr ? static_cast<__half*>(p.logits16.data) : nullptr;
  args.lse = p.lse.data != nullptr ? p.lse.data_as<float>() : nullptr;
  const size_t o_bytes = align_up(size_t(tokens * heads * splits * head_dim) * sizeof(float));
  const bool partials = splits > 1 && cluster == 0;
  args.part_o = partials ? static_cast<float*>(workspace.data) : nullptr;
  args.part_lse =
      partials ? reinterpret_cast<float*>(static_cast<char*>(workspace.data) + o_bytes) : nullptr;
  args.cluster_merge = cluster > 0;
  args.max_len = p.logits.data != nullptr     ? p.logits.size(2)
                 : p.logits16.data != nullptr ? p.logits16.size(2)
                                              : 0;
  args.scale = p.scale > 0 ? p.scale : float(1.0 / std::sqrt(double(head_dim)));

  // The split blocks merge their own rows when the caller keeps counters (no merge launch):
  // - the tensor-core kernel on FP8 caches: the run's last block merges its heads, a warp a head
  //   (merge_splits_warp). Measured in a graph (H200): FP8 K = 2048 per-KV lists 15.4 -> 13.1 us
  //   a call, FP8 dense flat. On 16-bit caches the same merge was slower wherever a row had ~32
  //   partials (dense 10K 18.2 -> 19.4 us, K = 2048 per-KV lists 9.2 -> 11.7; faster only with
  //   <= 16: K = 256 lists -0.5 us), and llama3-8b steps +0.02 to +0.05 ms: those keep the
  //   merge launch (benchmarks/results/PERF_NOTES.md). An FP8 stage is 32 keys a warp, so a
  //   list row has half the partials of a 16-bit one.
  // - the SIMT kernel for runs of one head (MHA; GQA head lists) whose merge fits its shared
  //   memory (its per-group outputs, groups * head_dim floats, unless the split count is very
  //   large): ~0.05 ms a llama2-7b step. A SIMT run of several heads (f32, small head_dims)
  //   would merge them one after another (merge_run), measured slower than the launch on GQA.
  const int gmax = hpb == 3 ? 4 : hpb;
  const int64_t simt_floats = int64_t(path.tile / attention::kRowsInFlight) * head_dim;
  const bool own_merge =
      partials && p.merge_counters.data != nullptr &&
      (path.mma ? std::is_same_v<KT, uint8_t>
                : hpb == 1 && attention::merge_smem_floats(int(splits), kThreads) <= simt_floats);
  args.merge_counters = own_merge ? p.merge_counters.data_as<int32_t>() : nullptr;
  args.trigger = split_trigger(partials && !own_merge, path.mma, std::is_same_v<KT, uint8_t>,
                               cluster > 0);

  const cudaStream_t s = raw_stream(stream);
  const dim3 grid(unsigned(splits), unsigned(heads / hpb), unsigned(tokens));
  bool launched = false;
  if constexpr (!std::is_same_v<T, float>) {
    if (path.mma) {
      if (head_dim == 64) launch_mma<T, 64, KT>(args, grid, s);
      if (head_dim == 128) launch_mma<T, 128, KT>(args, grid, s);
      check_launch("decode_attention_mma_split_kernel", stream);
      launched = true;
    }
  }
  if (!launched) {
    const int ring = ring_stages(p);
    switch (head_dim) {
      case 8: launch_split<T, KT, 8>(args, grid, gmax, ring, s); break;
      case 16: launch_split<T, KT, 16>(args, grid, gmax, ring, s); break;
      case 32: launch_split<T, KT, 32>(args, grid, gmax, ring, s); break;
      case 64: launch_split<T, KT, 64>(args, grid, gmax, ring, s); break;
      case 128: launch_split<T, KT, 128>(args, grid, gmax, ring, s); break;
      default: TIDAL_CHECK(false, "decode_attention: head_dim must be 8, 16, 32, 64 or 128");
    }
    check_launch("decode_attention_split_kernel", stream);
  }
  if (!partials || own_merge) return;
  static const bool partials_first = switch_on("TIDAL_MERGE_FIRST");
  const size_t merge_smem =
      size_t(attention::merge_smem_floats(int(splits), kMergeThreads)) * sizeof(float);
  auto merge = partials_first ? decode_attention_merge_kernel<T, true>
                              : decode_attention_merge_kernel<T, false>;
  merge<<<dim3(unsigned(heads), unsigned(tokens)), dim3(kMergeThreads), merge_smem, s>>>(
      plan, args.out, args.lse, static_cast<const float*>(args.part_o),
      static_cast<const float*>(args.part_lse), int(head_dim));
  check_launch("decode_attention_merge_kernel", stream);
}

}  // namespace

size_t decode_attention_workspace_size(const DecodeAttentionParams& p) {
  // The shapes decide, not the hints: the larger split count of the two kernels a head-lists
  // launch may take (head_lists_on_simt), so a workspace planned without hints serves both.
  DecodeAttentionParams hinted = p;
  hinted.lists_only = hinted.head_lists = true;
  DecodeAttentionParams plain = p;
  plain.lists_only = plain.head_lists = false;
  const int64_t splits = std::max(num_splits(plain), num_splits(hinted));
  if (splits <= 1) return 0;
  const size_t rows = size_t(p.q.size(0) * p.q.size(1) * splits);
  return align_up(rows * size_t(p.q.size(2)) * sizeof(float)) + align_up(rows * sizeof(float));
}

int decode_attention_cluster_size(const DecodeAttentionParams& p) {
  const SplitPath path = split_path(p);
  return cluster_shape(p, path, path.heads_per_block).size;
}

void decode_attention(const DecodeAttentionParams& p, TensorView workspace, Stream stream) {
  TIDAL_NVTX_SCOPE("decode_attention");
  if (p.q.size(0) == 0) return;
  dispatch_float(p.q.dtype, "decode_attention", [&](auto t) {
    using T = decltype(t);
    if (is_fp8_kv(p.k_cache)) {
      launch<T, uint8_t>(p, workspace, stream);
    } else {
      launch<T, T>(p, workspace, stream);
    }
  });
}

}  // namespace tidal::kernels::cuda
