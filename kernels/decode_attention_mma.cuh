// SPDX-License-Identifier: Apache-2.0
// The tensor-core split kernel of decode_attention (included by decode_attention.cu only): 16-bit
// caches, head_dim 64 or 128, runs of 2-4 query heads per KV head (GQA). The SIMT kernel of
// decode_attention.cuh spends 4x the math of MHA per K/V row on a GQA group and stalls its loads
// behind it; here the group's dots and P V products are mma.sync m16n8k16 and the loads run ahead
// in a cp.async ring, so the block streams K/V at the memory's pace whatever the group size.
//
// One block per (split, run, token), kWarps warps. The run's passes (one per position source, as in
// the SIMT kernel) are served at once: with P passes, warps [i * W/P, (i + 1) * W/P) take pass i
// (a range or shared list: all four warps; per-query-head lists under GQA: one warp per head).
// Each warp streams its own keys with no block barrier: stage s of a warp holds 16 keys of its
// chunk (keys first + s * step + 0..15, step = 16 * warps of the pass), copied by cp.async
// (L2 evict-first) into a private ring of kStages stages in shared memory; the page lookups run one
// stage ahead of the copies and the list lookups two, so no load waits on another in the steady
// state. Per stage:
//   S (16 heads x 16 keys) = Q K^T: Q is the A operand, its rows the pass's heads (rows >= the
//     head count and 8..15 are zero: the waste is free, the kernel is memory-bound), K the B
//     operand through ldmatrix: D / 16 x 2 mma;
//   online softmax per head (row) in fp32, log2 domain, the row's 4 lanes reduced by 2 shuffles;
//     selecting rows write q.k * scale to the logits from the same S (float2 per lane);
//   O (16 x D) += P V: P re-packed from S's C fragments as the A operand (FlashAttention-2's trick)
//     as a 16-bit head and tail (fp32-like weights, where FlashAttention rounds P), V the B operand
//     through ldmatrix.trans: D / 16 x 4 mma.
// At the end the warps of a pass merge their (m, l, O) through shared memory (over their own rings)
// into the split's partial, or into out and lse when the split covers the whole row.
//
// FP8 caches (KT = uint8_t: e4m3 codes, a scale per (token, KV head) row) run the same pipeline on
// half the bytes, with f16 mma (e4m3 -> f16 is exact, one cvt per pair) in the transposed form:
// the 16 mma rows are keys, not the 2-4 heads of a pass, so no tensor-core work is wasted on zero
// rows and P V needs no tail (16 + 16 mma per 32 keys at head_dim 128, where the layout above
// would take 96).
//   - A stage is 32 keys (two P V k-steps), so its fixed work (lookups, the softmax update and its
//     shuffles) spreads over as many bytes as a 16-bit stage's; the ring holds codes and the keys'
//     K and V scales (4-byte cp.async).
//   - S^T = K Q^T: K is the A operand, Q^T the B operand (column n = head n of the pass). Both take
//     a permutation of the head dims (the sum is the same): lane tq owns dims tq * D/4 .. + D/4,
//     4 of them per k-step, so its K operands are 16-byte loads of its key rows and one cvt per
//     register. Q is converted to f16 once, over a power-of-two scale qs (|q| / qs < 2^14: no
//     overflow, and every bf16 element above 2^-14 of the row max is exact); qs and the key's
//     scale multiply S in fp32. A lane holds keys g + 8 q (q = 0..3) of heads 2 tq, 2 tq + 1.
//   - O^T += V^T P'^T: V's scales go through P, P'[key] = P[key] * vscale[key] / vref, vref the
//     largest V scale the warp has seen (a power of two, raised like the softmax max: O is
//     rescaled by vref_old / vref_new, exactly), so P' <= 1 fits f16 and O is in units of vref.
//     P'^T is the B operand through movmatrix's transpose of the [key][head] fragments. V^T's rows
//     (dims) are permuted too: row r of k-step dp is dim g * D/8 + 2 dp + r / 8, so a lane's A
//     operands come from 16 (D 64: 8) contiguous bytes of each of its key rows, paired by
//     byte_perm.
#pragma once

#include <cooperative_groups.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/cuda_common.cuh"
#include "kernels/decode_attention.cuh"
#include "kernels/mma_common.cuh"

namespace tidal::kernels::cuda::attention {

// KB: bytes of a cache element (2: 16-bit caches, 1: FP8 codes).
template <int D, int KB = 2>
struct MmaSplit {
  static constexpr int kWarps = 4, kThreads = 32 * kWarps;
  // Keys per warp per stage: one P V k-step (16-bit); FP8 two, so the stage's fixed work (the
  // lookups, the softmax update and its shuffles) spreads over as many bytes as a 16-bit stage's.
  static constexpr int kKeys = KB == 1 ? 32 : 16;
  // Ring: 16-bit 16 (D 64: 12) KiB in flight per warp; FP8 18 (D 64: 10) KiB, 2 blocks an SM.
  static constexpr int kStages = KB == 1 ? 3 : (D == 128 ? 3 : 4);
  static constexpr int kBlocksPerSm = 2;  // by shared memory: the launch bound (the host asks)
  static constexpr int kTile = kWarps * kKeys;  // Plan::tile: chunks are multiples of it
  // Rows unpadded in shared memory, their 16-byte chunks swizzled (chunk c of row r at c ^ (r &
  // kSwizzle), at(): ldmatrix's 8 rows and the FP8 loads hit distinct bank groups). A row padded
  // by 16 bytes, as this kernel had it, splits each cp.async row into 2-3 L2 requests: a stream
  // at 91% of the read rate the same copies reach into unpadded rows (H200, PERF_NOTES.md).
  static constexpr int kStride = D;
  static constexpr int kStageElems = 2 * kKeys * kStride;  // K rows, then V rows
  static constexpr int kSmemBytes = kWarps * kStages * kStageElems * KB;
  static constexpr int kVecElems = 16 / KB;             // elements per 16-byte chunk
  static constexpr int kChunks = D / kVecElems;         // 16-byte chunks per row
  static constexpr int kSwizzle = (kChunks < 8 ? kChunks : 8) - 1;
  static constexpr int kRowsPerCopy = 32 / kChunks;     // rows one warp-wide cp.async covers
  static constexpr int kCopies = kKeys / kRowsPerCopy;  // cp.async per lane per stage and tensor
  static_assert(D == 64 || D == 128, "head_dim 64 or 128");
  static_assert(KB == 1 || KB == 2, "16-bit or FP8 caches");
  static_assert(kMaxHeadsPerBlock <= kWarps, "every pass of a run gets a warp");
  // The combine keeps a warp's O (kMaxHeadsPerBlock x D floats) over the warp's own ring.
  static_assert(kMaxHeadsPerBlock * D * 4 <= kStages * kStageElems * KB, "O fits the ring");
};

constexpr float kLog2e = 1.4426950408889634f, kLn2 = 0.6931471805599453f;

// Element e of row r of a stage's K or V rows (MmaSplit's swizzled layout): e's 16-byte chunk
// moves to chunk ^ (r & kSwizzle), its place within the chunk kept.
template <typename C>
__device__ __forceinline__ int at(int r, int e) {
  return r * C::kStride + (((e / C::kVecElems) ^ (r & C::kSwizzle)) * C::kVecElems) +
         e % C::kVecElems;
}

// A 4-byte global -> shared copy (zero fill when !valid), through L1 (.ca: .cg takes 16 only).
__device__ __forceinline__ void cp_async_4(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src),
               "r"(valid ? 4 : 0));
}

// The merge of a run whose splits are the blocks of one thread-block cluster (SplitArgs::
// cluster_merge): each block leaves its partial in its own shared memory (`part`: [heads][D], o / l
// of its keys, 0 without keys; `lse`: [heads], -inf without keys), and after a cluster barrier the
// run's heads x D outputs are shared out over the cluster's threads, each reading its element and
// the heads' lse from every block (distributed shared memory): weights exp(lse_c - max), o = sum
// w_c o_c / sum w_c in split order, as merge_splits. No partials go through L2 and no merge launch
// follows. A run with one split holding keys gets that split's values exactly (weight 1). Called
// by every thread of every block of the cluster (it holds two cluster barriers); out and lse point
// at the run's first head.
template <typename T, int D, int kThreads>
__device__ void cluster_merge(const float* part, const float* lse_part, int heads, T* out,
                              float* lse) {
  namespace cg = cooperative_groups;
  const cg::cluster_group cluster = cg::this_cluster();
  cluster.sync();  // every block's partial is in its shared memory
  const int blocks = int(cluster.num_blocks());
  for (int e = int(cluster.block_rank()) * kThreads + int(threadIdx.x); e < heads * D;
       e += blocks * kThreads) {
    const int hh = e / D, d = e % D;
    float mx = -INFINITY;
    for (int c = 0; c < blocks; ++c) mx = fmaxf(mx, *cluster.map_shared_rank(lse_part + hh, c));
    if (mx != -INFINITY) {  // some split holds keys (else the row's outputs stay unwritten)
      float total = 0.0f, acc = 0.0f;
      for (int c = 0; c < blocks; ++c) {
        const float l = *cluster.map_shared_rank(lse_part + hh, c);
        const float w = l == mx ? 1.0f : l == -INFINITY ? 0.0f : __expf(l - mx);
        total += w;
        acc = fmaf(w, *cluster.map_shared_rank(part + e, c), acc);
      }
      out[hh * D + d] = from_float<T>(acc / total);
      if (d == 0 && lse != nullptr) lse[hh] = mx + logf(total);
    }
  }
  cluster.sync();  // no block leaves while another still reads its shared memory
}

// Grid (num_splits, num_heads / heads_per_block, num_tokens), MmaSplit<D, KB>::kThreads threads,
// MmaSplit<D, KB>::kSmemBytes of dynamic shared memory (KB = sizeof(KT)).
template <typename T, int D, typename KT = T>
__global__ void __launch_bounds__(MmaSplit<D>::kThreads, MmaSplit<D>::kBlocksPerSm)
    decode_attention_mma_split_kernel(SplitArgs<T, KT> a) {
  constexpr bool kFp8 = std::is_same_v<KT, uint8_t>;
  using C = MmaSplit<D, int(sizeof(KT))>;
  constexpr int S = C::kStages, KEYS = C::kKeys, STRIDE = C::kStride;
  // 128-byte aligned: each ring row a whole 128-byte line of shared memory (see kStride).
  extern __shared__ __align__(128) unsigned char smem_raw[];
  __shared__ float s_m[C::kWarps][kMaxHeadsPerBlock], s_l[C::kWarps][kMaxHeadsPerBlock];
  __shared__ uint32_t s_valid[C::kWarps][S];  // per stage: bit k set when key k was copied
  // FP8: per stage, the K (0) and V (1) scales of its keys (0 for a key not copied).
  __shared__ __align__(16) float s_scale[kFp8 ? C::kWarps : 1][kFp8 ? S : 1][2][KEYS];
  __shared__ int s_state[kMaxHeadsPerBlock];  // per pass: 0 no keys here, 1 partial, 2 final
  if (a.trigger == kTriggerAtStart) pdl_launch_dependents();

  const Plan& p = a.plan;
  const int split = blockIdx.x, t = blockIdx.z;
  // The early prologue (Plan::prior_lens): the plan, lists, pages and the first stages' K/V rows
  // before the wait, when every one of them predates the kernel before this one. Quest tokens
  // wait first: their lists are written in this layer, just before this launch.
  bool waited = p.prior_lens == nullptr || TokenRole(p.roles[t]) == TokenRole::kQuest;
  if (waited) pdl_wait();
  const int32_t prior = waited ? 0 : p.prior_lens[t];
  const int h_first = blockIdx.y * p.heads_per_block, h_limit = h_first + p.heads_per_block;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, tq = lane % 4;  // fragment row (head of the pass) and column pair

  // Bit i of `starts`: head h_first + i begins a pass. Warps are shared out evenly over them.
  uint32_t starts = 0;
  for (int h = h_first; h < h_limit;) {
    starts |= 1u << (h - h_first);
    h = row_source(p, t, h, h_limit).h_end;
  }
  const int passes = __popc(starts), wpp = C::kWarps / passes;
  const int pass = warp / wpp, rank = warp % wpp;
  const bool has_pass = pass < passes;  // three passes: the fourth warp idles
  uint32_t rest = starts;
  for (int i = 0; i < pass && rest != 0; ++i) rest &= rest - 1;
  const int h0 = has_pass ? h_first + __ffs(int(rest)) - 1 : h_first;
  const RowSource src =
      has_pass ? row_source(p, t, h0, h_limit) : RowSource{0, 0, nullptr, 0, h0, false};
  const int ng = src.h_end - h0;  // heads of the pass (0 without one)
  // The split's entries [begin, end); end_cap bounds them by the span alone, so the first list
  // entries are read beside the count (the only plan word that depends on the others).
  const int32_t chunk = split_chunk(src.span, p.num_splits, p.tile);
  const int32_t begin = int32_t(min(int64_t(split) * chunk, int64_t(src.span)));
  const int32_t end_cap = int32_t(min(int64_t(begin) + chunk, int64_t(src.span)));
  const int32_t end = min(end_cap, src.len);

  // This warp's keys: stage s holds chunk entries first + s * step + 0..15.
  const int step = wpp * KEYS;
  const int32_t first = begin + rank * KEYS;
  const int nst = has_pass && first < end ? (end - first + step - 1) / step : 0;
  const int key = lane % KEYS;  // the key whose position and page this lane looks up
  const int kvh = h0 / (p.num_heads / p.num_kv_heads);
  const int64_t seq_row = int64_t(p.seq_ids[t]) * p.bt_stride0;  // used only when nst > 0
  const int64_t row_stride = int64_t(p.num_kv_heads) * D;        // between slots of a page
  const int64_t head_off = int64_t(kvh) * D + (lane % C::kChunks) * C::kVecElems;
  KT* const ring = reinterpret_cast<KT*>(smem_raw) + warp * S * C::kStageElems;
  // K/V lines are read once: evict-first, so the stream leaves L2 to what is reused (and does
  // not push out dirty lines it would have to write back first).
  const uint64_t stream_policy = l2_evict_first_policy();
  auto copy16 = [&](KT* dst, const KT* from, bool valid) {
    cp_async_16_hint(smem_u32(dst), from, valid, stream_policy);
  };

  // The lookups, split so that no function waits on a load it issues: entry of stage s (the
  // position, or the raw list entry; -1 past the chunk), then its block-table entry, then the
  // cache row (page * page_size + slot, or -1 for a position or page out of range).
  auto key_pos = [&](int s) -> int32_t {
    const int32_t i = first + s * step + key;
    if (src.list == nullptr) return s < nst && i < end ? i : -1;
    const int32_t entry = i < end_cap ? __ldcg(src.list + i) : -1;  // not waiting on the count
    return i < end ? entry : -1;
  };
  auto key_page = [&](int32_t j) -> int32_t {
    if (j < 0 || j >= src.n) return -1;
    const int32_t page_idx = p.page_shift >= 0 ? j >> p.page_shift : j / p.page_size;
    return __ldcg(p.block_tables + seq_row + int64_t(page_idx) * p.bt_stride1);
  };
  auto key_row = [&](int32_t j, int32_t page) -> int64_t {
    if (j < 0 || j >= src.n || page < 0 || page >= p.num_pages) return -1;
    const int32_t slot = p.page_shift >= 0 ? j & (p.page_size - 1) : j % p.page_size;
    return int64_t(page) * p.page_size + slot;
  };
  // Stage s's KEYS K and V rows into ring slot s % S; invalid keys get zeros and a clear bit.
  auto issue = [&](int s, int64_t row) {
    KT* sk = ring + (s % S) * C::kStageElems;
    KT* sv = sk + KEYS * STRIDE;
    const uint32_t valid =
        __ballot_sync(0xffffffffu, row >= 0) & (KEYS == 32 ? 0xffffffffu : 0xffffu);
    if (lane == 0) s_valid[warp][s % S] = valid;
    if constexpr (kFp8) {  // lane k: the K and V scales of key k
      int64_t scale_at = 0;  // scales [num_pages, num_kv_heads, page_size]
      if (row >= 0) {
        const int64_t page = p.page_shift >= 0 ? row >> p.page_shift : row / p.page_size;
        scale_at = (page * p.num_kv_heads + kvh) * p.page_size + (row - page * p.page_size);
      }
      cp_async_4(smem_u32(&s_scale[warp][s % S][0][key]), a.k_scale + scale_at, row >= 0);
      cp_async_4(smem_u32(&s_scale[warp][s % S][1][key]), a.v_scale + scale_at, row >= 0);
    }
    // The common stage (with pages of 16 positions or more, every range stage but a row's last,
    // and list runs of adjacent keys): each run of 16 keys is 16 consecutive cache rows. Its
    // copies then need no shuffle, no 64-bit multiply and no zero fill each: a lane's rows in a
    // run are its first one plus multiples of kRowsPerCopy, one pointer step apart (the FP8
    // kernel at 2^20 positions: 248M -> 194M instructions, H200).
    const int64_t run_row = __shfl_sync(0xffffffffu, static_cast<long long>(row), key & ~15);
    if (__all_sync(0xffffffffu, row >= 0 && row == run_row + (key & 15))) {
      const int r0 = lane / C::kChunks;  // this lane's first row of each run
      const int64_t step_elems = int64_t(C::kRowsPerCopy) * row_stride;
#pragma unroll
      for (int run = 0; run < KEYS / 16; ++run) {
        const int64_t first_row = __shfl_sync(0xffffffffu, static_cast<long long>(row), 16 * run);
        const int64_t off = (first_row + r0) * row_stride + head_off;
        const KT* k_src = a.k_cache + off;
        const KT* v_src = a.v_cache + off;
#pragma unroll
        for (int c = 0; c < 16 / C::kRowsPerCopy; ++c) {
          const int r = 16 * run + r0 + c * C::kRowsPerCopy;
          const int dst = at<C>(r, (lane % C::kChunks) * C::kVecElems);
          copy16(sk + dst, k_src, true);
          copy16(sv + dst, v_src, true);
          k_src += step_elems;
          v_src += step_elems;
        }
      }
      return;
    }
#pragma unroll
    for (int c = 0; c < C::kCopies; ++c) {
      const int r = lane / C::kChunks + c * C::kRowsPerCopy;
      const long long rr = __shfl_sync(0xffffffffu, static_cast<long long>(row), r);
      const int64_t off = rr >= 0 ? rr * row_stride + head_off : 0;
      const int dst = at<C>(r, (lane % C::kChunks) * C::kVecElems);
      copy16(sk + dst, a.k_cache + off, rr >= 0);
      copy16(sv + dst, a.v_cache + off, rr >= 0);
    }
  };

  // Q of the pass as the A operand: registers a0 and a2 of row g (rows g + 8 are zero). FP8: in
  // f16 over q_scale, dims permuted (lane tq's k-step kk holds dims tq * D/4 + 4 kk + 0..3).
  uint32_t qf[D / 16][2];
  float q_scale = 1.0f;
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) qf[kk][0] = qf[kk][1] = 0u;
  // Selecting rows (ranges: key k of stage s is position first + s * step + k) write logits.
  // (f32, or f16 for a token whose lists a group shares: LogitRow.)
  const LogitRow logit_row = g < ng ? LogitRow::of(a, src, t, p.num_heads, h0 + g) : LogitRow{};
  // Pair stores (float2 / half2) when every row of the logits starts aligned for them.
  const bool logit_pairs = LogitRow::pairs_aligned(a);
  const float scale_log2 = a.scale * kLog2e;

  float o[D / 8][4];  // O: rows g (d0, d1) and g + 8 (d2, d3, unused) of dims dt * 8 + 2 tq + 0..1
#pragma unroll
  for (int dt = 0; dt < D / 8; ++dt) o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.0f;
  float m_run = -INFINITY, l_run = 0.0f;  // log2-domain max; this lane's share of the sum
  float v_ref = 0.0f;                     // FP8: the largest V scale seen (a power of two)

  auto compute = [&](int s) {
    const KT* sk = ring + (s % S) * C::kStageElems;
    const KT* sv = sk + KEYS * STRIDE;
    const uint32_t valid = s_valid[warp][s % S];
    float sc[2][4] = {};  // keys 0-7 and 8-15
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t b[4];  // keys {0-7, 8-15} x dims kk * 16 + {0-7, 8-15}
      ldmatrix_x4(
          b, smem_u32(sk + at<C>(lane % 8 + (lane / 16) * 8, kk * 16 + ((lane / 8) % 2) * 8)));
      const uint32_t qa[4] = {qf[kk][0], 0u, qf[kk][1], 0u};
      mma_16816<T>(sc[0], qa, b[0], b[1]);
      mma_16816<T>(sc[1], qa, b[2], b[3]);
    }
    if (logit_row) {
      const int32_t pos0 = first + s * step;
#pragma unroll
      for (int nt = 0; nt < 2; ++nt) {
        const int k = nt * 8 + 2 * tq;
        const int32_t j = pos0 + k;
        const bool v0 = (valid >> k) & 1u, v1 = (valid >> (k + 1)) & 1u;
        const float x0 = sc[nt][0] * a.scale, x1 = sc[nt][1] * a.scale;
        if (logit_pairs && v0 && v1 && j + 1 < a.max_len) {
          logit_row.store2(j, x0, x1);
        } else {
          if (v0 && j < a.max_len) logit_row.store(j, x0);
          if (v1 && j + 1 < a.max_len) logit_row.store(j + 1, x1);
        }
      }
    }
    // Online softmax of row g over this stage's keys 2 tq + {0, 1} and 8 + 2 tq + {0, 1}.
    float x[2][2], mx = m_run;
#pragma unroll
    for (int nt = 0; nt < 2; ++nt) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const bool ok = (valid >> (nt * 8 + 2 * tq + e)) & 1u;
        x[nt][e] = ok ? sc[nt][e] * scale_log2 : -INFINITY;
        mx = fmaxf(mx, x[nt][e]);
      }
    }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    const float base = mx == -INFINITY ? 0.0f : mx;  // no valid key yet: keep everything at 0
    const float alpha = exp2_ftz(m_run - base);
    m_run = mx;
    l_run *= alpha;
    if (__any_sync(0xffffffffu, alpha != 1.0f)) {  // as the FP8 stage's rescale below
#pragma unroll
      for (int dt = 0; dt < D / 8; ++dt) {
        o[dt][0] *= alpha;
        o[dt][1] *= alpha;
      }
    }
#pragma unroll
    for (int nt = 0; nt < 2; ++nt) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        x[nt][e] = exp2_ftz(x[nt][e] - base);
        l_run += x[nt][e];
      }
    }
    // P as the A operand (rows g + 8 zero): keys 2 tq.. in a0, keys 8 + 2 tq.. in a2. As a 16-bit
    // head plus tail: P V then uses fp32-like weights (~2^-17), like the SIMT kernel, so results
    // do not move with where the splits cut a row (a 16-bit P would round against each split's
    // running max). Two mma per product; the tensor pipe stays mostly idle.
    uint32_t ph[2], pl[2];
    pack2_split<T>(x[0][0], x[0][1], &ph[0], &pl[0]);
    pack2_split<T>(x[1][0], x[1][1], &ph[1], &pl[1]);
    const uint32_t pa_head[4] = {ph[0], 0u, ph[1], 0u}, pa_tail[4] = {pl[0], 0u, pl[1], 0u};
#pragma unroll
    for (int dp = 0; dp < D / 16; ++dp) {
      uint32_t b[4];  // keys {0-7, 8-15} x dims dp * 16 + {0-7, 8-15}, transposed
      ldmatrix_x4_trans(
          b, smem_u32(sv + at<C>(lane % 8 + ((lane / 8) % 2) * 8, dp * 16 + (lane / 16) * 8)));
      mma_16816<T>(o[2 * dp], pa_head, b[0], b[1]);
      mma_16816<T>(o[2 * dp + 1], pa_head, b[2], b[3]);
      mma_16816<T>(o[2 * dp], pa_tail, b[0], b[1]);
      mma_16816<T>(o[2 * dp + 1], pa_tail, b[2], b[3]);
    }
  };

  // FP8: S^T = K Q^T (keys as rows: a lane holds keys g + 8 q of heads 2 tq, 2 tq + 1), then
  // O^T += V^T P'^T, P'^T the B operand through movmatrix's transpose: 16 + 16 mma per 32 keys
  // at head_dim 128 (the 16-bit path's layout would take 96).
  float m2[2] = {-INFINITY, -INFINITY}, l2[2] = {0.0f, 0.0f};  // heads 2 tq + e
  float ot[D / 16][4];  // O^T: dims g * D/8 + 2 dp + {0 (c0, c1), 1 (c2, c3)}, heads 2 tq + {0, 1}
#pragma unroll
  for (int dp = 0; dp < D / 16; ++dp) ot[dp][0] = ot[dp][1] = ot[dp][2] = ot[dp][3] = 0.0f;
  float head_log2[2] = {0.0f, 0.0f}, head_logit[2] = {0.0f, 0.0f};
  LogitRow logit_rows[2];
  auto compute_fp8 = [&](int s) {
    const KT* sk = ring + (s % S) * C::kStageElems;
    const KT* sv = sk + KEYS * STRIDE;
    const uint32_t valid = s_valid[warp][s % S];
    const float* ksc = s_scale[warp][s % S][0];
    const float* vsc = s_scale[warp][s % S][1];
    // S^T of the stage's two 16-key halves: st[hh] = keys 16 hh + {g, g, g + 8, g + 8} x heads
    // 2 tq + {0, 1, 0, 1}.
    float st[2][4] = {};
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
#pragma unroll
      for (int c = 0; c < D / 64; ++c) {
        const int e = tq * (D / 4) + c * 16;
        const uint4 w0 = *reinterpret_cast<const uint4*>(sk + at<C>(16 * hh + g, e));
        const uint4 w1 = *reinterpret_cast<const uint4*>(sk + at<C>(16 * hh + g + 8, e));
        const uint32_t r0[4] = {w0.x, w0.y, w0.z, w0.w}, r1[4] = {w1.x, w1.y, w1.z, w1.w};
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int kk = c * 4 + i;
          const uint32_t ka[4] = {
              e4m3x2_to_f16x2(uint16_t(r0[i])), e4m3x2_to_f16x2(uint16_t(r1[i])),
              e4m3x2_to_f16x2(uint16_t(r0[i] >> 16)), e4m3x2_to_f16x2(uint16_t(r1[i] >> 16))};
          mma_16816<__half>(st[hh], ka, qf[kk][0], qf[kk][1]);
        }
      }
    }
    // The lane's keys: q = 0..3 is key g + 8 q (halves hh = q / 2, rows r = q % 2).
    float x[2][4], vscale[4];
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const int kq = g + 8 * q;
      const bool ok = (valid >> kq) & 1u;
      const float kscale = ksc[kq];
      vscale[q] = vsc[kq];
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const float dot = st[q / 2][2 * (q % 2) + e] * kscale;
        x[e][q] = ok ? dot * head_log2[e] : -INFINITY;
        if (logit_rows[e] && ok) {
          const int32_t j = first + s * step + kq;  // a range row: key k is position j
          if (j < a.max_len) logit_rows[e].store(j, dot * head_logit[e]);
        }
      }
    }
    // The V scales of the stage, over the largest seen (v_ref, raised like a running max).
    float vmax = fmaxf(fmaxf(vscale[0], vscale[1]), fmaxf(vscale[2], vscale[3]));
    vmax = fmaxf(vmax, __shfl_xor_sync(0xffffffffu, vmax, 4));
    vmax = fmaxf(vmax, __shfl_xor_sync(0xffffffffu, vmax, 8));
    vmax = fmaxf(vmax, __shfl_xor_sync(0xffffffffu, vmax, 16));
    const float v_new = fmaxf(v_ref, vmax);
    const float v_inv = v_new > 0.0f ? pow2_reciprocal(v_new) : 0.0f;
    const float v_ratio = v_new > 0.0f ? v_ref * v_inv : 1.0f;  // powers of two: exact
    v_ref = v_new;
    float pw[2][4], o_alpha[2];
#pragma unroll
    for (int e = 0; e < 2; ++e) {  // online softmax of head 2 tq + e over the stage's keys
      float mx = fmaxf(m2[e], fmaxf(fmaxf(x[e][0], x[e][1]), fmaxf(x[e][2], x[e][3])));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 4));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 8));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 16));
      const float base = mx == -INFINITY ? 0.0f : mx;
      const float alpha = exp2_ftz(m2[e] - base);
      m2[e] = mx;
      l2[e] *= alpha;
      o_alpha[e] = alpha * v_ratio;
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const float w = exp2_ftz(x[e][q] - base);
        l2[e] += w;
        pw[e][q] = w * (vscale[q] * v_inv);
      }
    }
    // O's rescale, skipped by the warp when no max moved (most stages of a long row: x 1 is
    // exact either way).
    if (__any_sync(0xffffffffu, o_alpha[0] != 1.0f || o_alpha[1] != 1.0f)) {
#pragma unroll
      for (int dp = 0; dp < D / 16; ++dp) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          ot[dp][e] *= o_alpha[e];
          ot[dp][e + 2] *= o_alpha[e];
        }
      }
    }
    using Bytes = std::conditional_t<D == 128, uint4, uint2>;
    constexpr int kWords = D / 32;
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      // P'^T of the half as the B operand: rows (keys) of the 8 x 8 [key][head] tiles, transposed.
      const uint32_t pb0 = movmatrix_trans(pack2<__half>(pw[0][2 * hh], pw[1][2 * hh]));
      const uint32_t pb1 = movmatrix_trans(pack2<__half>(pw[0][2 * hh + 1], pw[1][2 * hh + 1]));
      // V^T as the A operand: bytes g * D/8 .. of keys 2 tq, 2 tq + 1, 8 + 2 tq, 9 + 2 tq.
      uint32_t rows[4][kWords];
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int k = 16 * hh + (r / 2) * 8 + 2 * tq + r % 2;
        const Bytes b = *reinterpret_cast<const Bytes*>(sv + at<C>(k, g * (D / 8)));
        memcpy(rows[r], &b, sizeof(Bytes));
      }
#pragma unroll
      for (int wi = 0; wi < kWords; ++wi) {
        const uint32_t lo0 = __byte_perm(rows[0][wi], rows[1][wi], 0x5140);
        const uint32_t hi0 = __byte_perm(rows[0][wi], rows[1][wi], 0x7362);
        const uint32_t lo1 = __byte_perm(rows[2][wi], rows[3][wi], 0x5140);
        const uint32_t hi1 = __byte_perm(rows[2][wi], rows[3][wi], 0x7362);
        const uint32_t va0[4] = {
            e4m3x2_to_f16x2(uint16_t(lo0)), e4m3x2_to_f16x2(uint16_t(lo0 >> 16)),
            e4m3x2_to_f16x2(uint16_t(lo1)), e4m3x2_to_f16x2(uint16_t(lo1 >> 16))};
        const uint32_t va1[4] = {
            e4m3x2_to_f16x2(uint16_t(hi0)), e4m3x2_to_f16x2(uint16_t(hi0 >> 16)),
            e4m3x2_to_f16x2(uint16_t(hi1)), e4m3x2_to_f16x2(uint16_t(hi1 >> 16))};
        mma_16816<__half>(ot[2 * wi], va0, pb0, pb1);
        mma_16816<__half>(ot[2 * wi + 1], va1, pb0, pb1);
      }
    }
  };

  // The first stages' entries, outside the branch on nst: a list's entries load beside its count.
  int32_t pos[S + 1];
#pragma unroll
  for (int s = 0; s <= S; ++s) pos[s] = key_pos(s);
  int32_t page[S];
  if (nst > 0) {
    // Prologue: stages 0..S-2 in flight, the pages of stage S-1 and the entries of stage S
    // loading. Stage s always travels in cp.async group s (empty groups keep the count). Before
    // the wait, up to the first stage holding a row this step writes (position >= prior).
#pragma unroll
    for (int s = 0; s < S; ++s) page[s] = key_page(pos[s]);
#pragma unroll
    for (int s = 0; s < S - 1; ++s) {
      if (s < nst) {
        if (!waited && __any_sync(0xffffffffu, pos[s] >= prior)) {
          pdl_wait();
          waited = true;
        }
        issue(s, key_row(pos[s], page[s]));
      }
      cp_async_commit();
    }
  }
  if (!waited) pdl_wait();  // q, the newest rows and every output come after it

  if constexpr (kFp8) {
    float qv[D / 4];
    float amax = 0.0f;
#pragma unroll
    for (int i = 0; i < D / 4; ++i) qv[i] = 0.0f;
    if (g < ng) {
      const T* qrow = a.q + (int64_t(t) * p.num_heads + h0 + g) * D + tq * (D / 4);
#pragma unroll
      for (int i = 0; i < D / 4; i += 8) {
        float f[8];
        unpack<T>(*reinterpret_cast<const uint4*>(qrow + i), f);
#pragma unroll
        for (int e = 0; e < 8; ++e) {
          qv[i + e] = f[e];
          amax = fmaxf(amax, fabsf(f[e]));
        }
      }
    }
    amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 1));
    amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 2));
    if (amax > 0.0f && isfinite(amax)) {
      int e = 0;
      frexpf(amax, &e);  // amax < 2^e
      q_scale = ldexpf(1.0f, e - 14);
    }
    const float inv = 1.0f / q_scale;  // a power of two: exact
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      qf[kk][0] = pack2<__half>(qv[4 * kk] * inv, qv[4 * kk + 1] * inv);
      qf[kk][1] = pack2<__half>(qv[4 * kk + 2] * inv, qv[4 * kk + 3] * inv);
    }
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int h = 2 * tq + e;  // q_scale of head h lives in lanes 4 h .. 4 h + 3
      const float qs = __shfl_sync(0xffffffffu, q_scale, (4 * h) & 31);
      head_logit[e] = a.scale * qs;
      head_log2[e] = head_logit[e] * kLog2e;
      if (h < ng) logit_rows[e] = LogitRow::of(a, src, t, p.num_heads, h0 + h);
    }
  } else if (g < ng) {
    const T* qrow = a.q + (int64_t(t) * p.num_heads + h0 + g) * D + 2 * tq;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      qf[kk][0] = *reinterpret_cast<const unsigned int*>(qrow + kk * 16);
      qf[kk][1] = *reinterpret_cast<const unsigned int*>(qrow + kk * 16 + 8);
    }
  }
  if (nst > 0) {
    int32_t pos_a = pos[S - 1], page_a = page[S - 1], pos_b = pos[S];
    for (int j = 0; j < nst; ++j) {
      // Ring slot (j - 1) % S was released by the __syncwarp ending step j - 1.
      if (j + S - 1 < nst) issue(j + S - 1, key_row(pos_a, page_a));
      cp_async_commit();
      const int32_t page_b = key_page(pos_b);  // stage j + S, used next step
      const int32_t pos_c = key_pos(j + S + 1);
      cp_async_wait<S - 1>();  // groups 0..j have landed: this thread's part of stage j
      __syncwarp();            // ... and every lane's
      if constexpr (kFp8) {
        compute_fp8(j);
      } else {
        compute(j);
      }
      __syncwarp();  // every lane is done reading slot j % S before it is refilled
      pos_a = pos_b;
      page_a = page_b;
      pos_b = pos_c;
    }
  }
  cp_async_wait<0>();  // (only empty groups can be pending here)
  __syncwarp();
  if (a.trigger == kTriggerAfterLoop) pdl_launch_dependents();

  // Combine: each warp leaves (m, l, O) of its heads; the warps of a pass are merged per head.
  float* const so = reinterpret_cast<float*>(ring);  // [kMaxHeadsPerBlock][D], over the ring
  if constexpr (kFp8) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      l2[e] += __shfl_xor_sync(0xffffffffu, l2[e], 4);
      l2[e] += __shfl_xor_sync(0xffffffffu, l2[e], 8);
      l2[e] += __shfl_xor_sync(0xffffffffu, l2[e], 16);
      const int h = 2 * tq + e;
      if (h >= ng) continue;
#pragma unroll
      for (int dp = 0; dp < D / 16; ++dp) {
        *reinterpret_cast<float2*>(so + h * D + g * (D / 8) + 2 * dp) =
            make_float2(ot[dp][e] * v_ref, ot[dp][e + 2] * v_ref);
      }
      if (g == 0) {
        s_m[warp][h] = m2[e];
        s_l[warp][h] = l2[e];
      }
    }
  } else {
    l_run += __shfl_xor_sync(0xffffffffu, l_run, 1);
    l_run += __shfl_xor_sync(0xffffffffu, l_run, 2);
    if (g < ng) {
#pragma unroll
      for (int dt = 0; dt < D / 8; ++dt) {
        *reinterpret_cast<float2*>(so + g * D + dt * 8 + 2 * tq) = make_float2(o[dt][0], o[dt][1]);
      }
      if (tq == 0) {
        s_m[warp][g] = m_run;
        s_l[warp][g] = l_run;
      }
    }
  }
  // A split covering the whole row (split 0 of a short row, or the only split) is the result.
  const bool final_split = begin == 0 && end == src.len;
  if (has_pass && rank == 0 && lane == 0) s_state[pass] = begin < end ? (final_split ? 2 : 1) : 0;
  __syncthreads();

  // Per head of the run, once (a lane of warp 0 each): the weights of its pass's warp partials,
  // their sum and the lse; then each thread merges its dimensions with those weights (a few
  // shared loads and FMAs an element, where each element had its own exp2f / logf chain). At
  // 2ccfbe4 this phase still measured ~2 us a block: its elements ran one after another, each
  // with constant loads and an IEEE division (SASS; benchmarks/results/PERF_NOTES.md). So the
  // division is once a head here, and a thread's elements are computed before any is stored.
  __shared__ float s_wt[kMaxHeadsPerBlock][C::kWarps];  // [head][warp of its pass]
  __shared__ float s_inv[kMaxHeadsPerBlock];            // 1 / the head's sum
  __shared__ int s_head[kMaxHeadsPerBlock][3];  // state, first warp of its pass, row in the pass
  __shared__ float s_clse[kMaxHeadsPerBlock];   // cluster merge: the split's lse per head
  if (threadIdx.x < p.heads_per_block) {
    const int hh = threadIdx.x;  // head h_first + hh
    const uint32_t upto = starts & ((2u << hh) - 1u);
    const int pi = __popc(upto) - 1;  // its pass, whose first head is h_first + hp
    const int hp = 31 - __clz(int(upto)), gg = hh - hp, w0 = pi * wpp;
    const int state = s_state[pi];
    float mx = -INFINITY;
    for (int k = 0; k < wpp; ++k) mx = fmaxf(mx, s_m[w0 + k][gg]);
    float sum = 0.0f;
    for (int k = 0; k < wpp; ++k) {
      // A warp without keys weighs 0 (its O and l are zero too).
      const float m = s_m[w0 + k][gg], wt = m == -INFINITY ? 0.0f : exp2f(m - mx);
      sum = fmaf(s_l[w0 + k][gg], wt, sum);
      s_wt[hh][k] = wt;
    }
    s_inv[hh] = 1.0f / sum;  // one division a head (inf for a head without keys: not stored)
    s_head[hh][0] = state;
    s_head[hh][1] = w0;
    s_head[hh][2] = gg;
    const int64_t row = int64_t(t) * p.num_heads + h_first + hh;
    const float lse = mx * kLn2 + logf(sum);  // natural log, as the merge and the contract
    if (a.cluster_merge) {
      s_clse[hh] = state != 0 ? lse : -INFINITY;  // the cluster merge weighs it (0: no keys)
    } else {
      if (state == 2 && a.lse != nullptr) a.lse[row] = lse;
      if (state == 1) a.part_lse[row * p.num_splits + split] = lse;
    }
  }
  __syncthreads();

  // A thread's elements: every value first (shared loads and FMAs, independent across elements),
  // then the stores; the head's state, warps and 1 / sum come from phase A.
  static_assert(kMaxHeadsPerBlock * D % C::kThreads == 0, "whole elements a thread");
  constexpr int kPer = kMaxHeadsPerBlock * D / C::kThreads;
  const int heads = p.heads_per_block, num_splits = p.num_splits;
  const int64_t row0 = int64_t(t) * p.num_heads + h_first;
  float val[kPer];
  int state[kPer];
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    const int idx = threadIdx.x + i * C::kThreads;
    const int hh = idx / D, d = idx % D;  // head h_first + hh, dimension d
    state[i] = hh < heads ? s_head[hh][0] : 0;
    val[i] = 0.0f;
    if (state[i] == 0) continue;
    const int w0 = s_head[hh][1], gg = s_head[hh][2];
    float acc = 0.0f;
#pragma unroll
    for (int k = 0; k < C::kWarps; ++k) {
      if (k >= wpp) break;
      const float* sow = reinterpret_cast<const float*>(reinterpret_cast<const KT*>(smem_raw) +
                                                        (w0 + k) * S * C::kStageElems);
      acc = fmaf(sow[gg * D + d], s_wt[hh][k], acc);
    }
    val[i] = acc * s_inv[hh];
  }
  if (a.cluster_merge) {
    // Every split of the run is a block of this cluster: the partials meet in shared memory.
    __syncthreads();  // the warps' O (over the rings) is read: the ring's start takes the partial
    float* const part = reinterpret_cast<float*>(smem_raw);  // [heads][D]
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int idx = threadIdx.x + i * C::kThreads;
      if (idx < heads * D) part[idx] = state[i] != 0 ? val[i] : 0.0f;
    }
    cluster_merge<T, D, C::kThreads>(part, s_clse, heads, a.out + row0 * D,
                                     a.lse != nullptr ? a.lse + row0 : nullptr);
    return;
  }
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    const int idx = threadIdx.x + i * C::kThreads;
    const int64_t row = row0 + idx / D;
    const int d = idx % D;
    if (state[i] == 2) a.out[row * D + d] = from_float<T>(val[i]);
    if (state[i] == 1) a.part_o[(row * num_splits + split) * D + d] = val[i];
  }

  // The own merge (SplitArgs::merge_counters; FP8 caches only, the host passes none otherwise): the
  // run's last block merges its heads, a warp a head, in parallel (one after another, each with
  // block barriers, measured slower than the merge launch: benchmarks/results/PERF_NOTES.md).
  if constexpr (kFp8) {
    if (a.merge_counters == nullptr) return;
    __shared__ int s_last;
    if (!last_split_block(a.merge_counters, t, &s_last) || warp >= heads) return;
    const int h = h_first + warp;
    const int active = active_splits(p, t, h);
    if (active > 1) {
      merge_splits_warp<T, D>(int64_t(t) * p.num_heads + h, active, num_splits, a.part_o,
                              a.part_lse, a.out, a.lse);
    }
  }
}

}  // namespace tidal::kernels::cuda::attention
