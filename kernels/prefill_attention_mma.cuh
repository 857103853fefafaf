// SPDX-License-Identifier: Apache-2.0
// The tensor-core kernel of prefill_attention (bf16/f16, head_dim 64 or 128): FlashAttention-2
// (Dao 2023, Algorithm 1) over the paged KV cache with mma.sync m16n8k16, ldmatrix and cp.async.
//
// One CTA = 8 warps = kBlockM (128) folded query rows of one sequence and one KV head: row fm is
// query fm / group of the sequence under query head kvh * group + fm % group, so every query head
// that shares the KV head reuses each K/V tile the CTA loads. Each warp owns 16 rows and keeps
// its Q fragments, its S tile (16 x 64) and its O accumulator (16 x head_dim) in registers; K and V
// tiles of kBlockN (64) keys are gathered through the block table into double-buffered shared
// memory with cp.async while the previous tile is multiplied. Softmax is online, in fp32, in the
// log2 domain; P is rounded to the input dtype for the P V product (as FlashAttention does).
// The cp.async / ldmatrix / mma helpers are in mma_common.cuh (shared with decode attention).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/cuda_common.cuh"
#include "kernels/fp8_e4m3.cuh"
#include "kernels/mma_common.cuh"

namespace tidal::kernels::cuda::prefill {

// Raw pointers and sizes, unpacked from PrefillAttentionParams by the launcher.
template <typename T>
struct Args {
  T* out;                       // [num_tokens, num_heads, head_dim]
  const T* q;                   // [num_tokens, num_heads, head_dim]
  const T* k_cache;             // [num_pages, page_size, num_kv_heads, head_dim]
  const T* v_cache;             // same
  const int32_t* block_tables;  // [rows, max_pages], strides bt_stride0 / bt_stride1
  const int32_t* query_starts;  // [num_seqs + 1]
  const int32_t* seq_ids;       // [num_seqs]
  const int32_t* context_lens;  // [num_seqs]
  int64_t bt_stride0, bt_stride1;
  int max_pages, num_pages, page_size;
  int num_heads, num_kv_heads, group, head_dim;
  float scale;  // softmax scale (already defaulted)
  // FP8 caches (the SIMT kernel only): e4m3 codes in place of k_cache / v_cache, and the rows'
  // scales [num_pages, num_kv_heads, page_size]; null otherwise.
  const uint8_t* k_codes = nullptr;
  const uint8_t* v_codes = nullptr;
  const float* k_scale = nullptr;
  const float* v_scale = nullptr;
};

// Page id of `key` in a block-table row, or -1 where the key lies past the table or the entry is
// out of range: the kernels read zeros there instead of faulting (the ref aborts on them).
__device__ __forceinline__ int64_t kv_row_offset(int page, int key, int page_size, int num_pages,
                                                 int num_kv_heads, int kvh, int head_dim) {
  if (page < 0 || page >= num_pages) return -1;
  return ((int64_t(page) * page_size + key % page_size) * num_kv_heads + kvh) * head_dim;
}

template <int D>
struct MmaTile {
  static constexpr int kWarps = 8, kThreads = 32 * kWarps;
  static constexpr int kBlockM = 16 * kWarps;  // folded query rows per CTA
  static constexpr int kBlockN = 64;           // keys per tile
  static constexpr int kStride = D + 8;  // padded smem row: ldmatrix's 8 rows hit 8 bank groups
  static constexpr int kChunks = D / 8;  // 16-byte chunks per row
  static constexpr int kRowsPerPass = kThreads / kChunks;
  static constexpr int kKvPasses = kBlockN / kRowsPerPass;
  static constexpr int kQPasses = kBlockM / kRowsPerPass;
  static constexpr int kSmemBytes = (kBlockM + 4 * kBlockN) * kStride * 2;  // Q, 2 x (K, V)
  static_assert(D % 16 == 0 && kThreads % kChunks == 0 && kBlockN % kRowsPerPass == 0);
};

// Grid: (ceil(max_query_len * group / kBlockM), num_seqs, num_kv_heads); block kThreads;
// dynamic shared memory MmaTile<D>::kSmemBytes. kFp8: the caches are e4m3 codes with row scales
// (Args::k_codes ...): a tile's codes are loaded into registers a tile ahead (8 bytes a thread
// and row, where the 16-bit caches take a 16-byte cp.async) and written to shared memory as T,
// code * scale (exact in bf16), after the tile before it is computed; the math is unchanged.
template <typename T, int D, bool kFp8 = false>
__global__ void __launch_bounds__(MmaTile<D>::kThreads, 1)
    prefill_attention_mma_kernel(const Args<T> a) {
  using C = MmaTile<D>;
  constexpr int kBlockM = C::kBlockM, kBlockN = C::kBlockN, kStride = C::kStride;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* sq = reinterpret_cast<T*>(smem_raw);  // [kBlockM][kStride]
  T* sk = sq + kBlockM * kStride;          // [2][kBlockN][kStride]
  T* sv = sk + 2 * kBlockN * kStride;      // [2][kBlockN][kStride]

  const int seq = blockIdx.y, kvh = blockIdx.z, group = a.group;
  const int q_begin = a.query_starts[seq];
  const int rows = (a.query_starts[seq + 1] - q_begin) * group;
  // Late query blocks see the most keys: launch them first so the short ones fill the tail.
  const int row0 = (gridDim.x - 1 - blockIdx.x) * kBlockM;
  if (row0 >= rows) return;
  const int pos0 = a.context_lens[seq] - rows / group;  // position of the first query
  // Rows past the sequence's queries (last block) take the last query's position: finite math.
  auto position = [&](int fm) { return pos0 + min(fm, rows - 1) / group; };
  const int min_pos = position(row0), max_pos = position(row0 + kBlockM - 1);
  const int kv_end = max_pos + 1;  // keys this CTA can see: 0 .. max_pos
  const int num_tiles = max(ceil_div(kv_end, kBlockN), 1);
  const int32_t* bt = a.block_tables + int64_t(a.seq_ids[seq]) * a.bt_stride0;

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int chunk = tid % C::kChunks, lrow = tid / C::kChunks;  // this thread's copy slots

  // Q tile -> smem (zeros past the last query).
  for (int i = 0; i < C::kQPasses; ++i) {
    const int m = lrow + i * C::kRowsPerPass, fm = row0 + m;
    const T* src = a.q;
    if (fm < rows) {
      src += (int64_t(q_begin + fm / group) * a.num_heads + kvh * group + fm % group) * D;
      src += chunk * 8;
    }
    cp_async_16(smem_u32(sq + m * kStride + chunk * 8), src, fm < rows);
  }
  // Page ids are fetched one tile ahead of their cp.async, so the block-table load's latency
  // hides behind a tile of math instead of stalling the copy issue.
  int pages[C::kKvPasses];
  auto fetch_pages = [&](int tile) {
#pragma unroll
    for (int i = 0; i < C::kKvPasses; ++i) {
      const int key = tile * kBlockN + lrow + i * C::kRowsPerPass;
      const int slot = key / a.page_size;
      pages[i] = key < kv_end && slot < a.max_pages ? bt[slot * a.bt_stride1] : -1;
    }
  };
  auto load_kv = [&](int tile, int stage) {
#pragma unroll
    for (int i = 0; i < C::kKvPasses; ++i) {
      const int n = lrow + i * C::kRowsPerPass, key = tile * kBlockN + n;
      const int64_t off =
          kv_row_offset(pages[i], key, a.page_size, a.num_pages, a.num_kv_heads, kvh, D);
      const int64_t src = off < 0 ? 0 : off + chunk * 8;
      const int dst = (stage * kBlockN + n) * kStride + chunk * 8;
      cp_async_16(smem_u32(sk + dst), a.k_cache + src, off >= 0);
      cp_async_16(smem_u32(sv + dst), a.v_cache + src, off >= 0);
    }
  };
  // FP8: tile codes and scales in registers between their load and their store to smem.
  uint2 kraw[C::kKvPasses], vraw[C::kKvPasses];
  float kscale[C::kKvPasses], vscale[C::kKvPasses];
  auto fetch_fp8 = [&](int tile) {
#pragma unroll
    for (int i = 0; i < C::kKvPasses; ++i) {
      const int key = tile * kBlockN + lrow + i * C::kRowsPerPass;
      const int64_t off =
          kv_row_offset(pages[i], key, a.page_size, a.num_pages, a.num_kv_heads, kvh, D);
      kraw[i] = vraw[i] = make_uint2(0, 0);
      kscale[i] = vscale[i] = 0.0f;
      if (off >= 0) {
        kraw[i] = __ldg(reinterpret_cast<const uint2*>(a.k_codes + off + chunk * 8));
        vraw[i] = __ldg(reinterpret_cast<const uint2*>(a.v_codes + off + chunk * 8));
        const int64_t at =
            (int64_t(pages[i]) * a.num_kv_heads + kvh) * a.page_size + key % a.page_size;
        kscale[i] = __ldg(a.k_scale + at);
        vscale[i] = __ldg(a.v_scale + at);
      }
    }
  };
  auto store_fp8 = [&](int stage) {
    auto convert = [](uint2 raw, float scale) {
      const uint32_t w[2] = {raw.x, raw.y};
      uint32_t out[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const uint32_t pair = e4m3x2_to_f16x2(uint16_t(w[i / 2] >> (16 * (i % 2))));
        __half2 h;
        memcpy(&h, &pair, 4);
        const float2 f = __half22float2(h);
        out[i] = pack2<T>(f.x * scale, f.y * scale);
      }
      return make_uint4(out[0], out[1], out[2], out[3]);
    };
#pragma unroll
    for (int i = 0; i < C::kKvPasses; ++i) {
      const int dst = (stage * kBlockN + lrow + i * C::kRowsPerPass) * kStride + chunk * 8;
      *reinterpret_cast<uint4*>(sk + dst) = convert(kraw[i], kscale[i]);
      *reinterpret_cast<uint4*>(sv + dst) = convert(vraw[i], vscale[i]);
    }
  };
  fetch_pages(0);
  if constexpr (kFp8) {
    fetch_fp8(0);
    store_fp8(0);
  } else {
    load_kv(0, 0);
  }
  cp_async_commit();  // group 0: Q and tile 0
  if (num_tiles > 1) fetch_pages(1);

  // This thread's two rows in the warp's 16 (mma C layout: lane / 4 and lane / 4 + 8).
  const int fm0 = row0 + warp * 16 + lane / 4;
  const int pos_r[2] = {position(fm0), position(fm0 + 8)};
  const int warp_max_pos = position(row0 + warp * 16 + 15);
  const float scale_log2 = a.scale * 1.4426950408889634f;  // exp(x) = exp2(x * log2(e))

  uint32_t qf[D / 16][4];
  float o[D / 8][4] = {};
  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.0f, 0.0f};

  for (int j = 0; j < num_tiles; ++j) {
    const int stage = j & 1;
    if (j + 1 < num_tiles) {
      // That stage was released by the barrier ending tile j - 1 (FP8: stored after tile j).
      if constexpr (kFp8) {
        fetch_fp8(j + 1);
      } else {
        load_kv(j + 1, stage ^ 1);
      }
      if (j + 2 < num_tiles) fetch_pages(j + 2);
    }
    cp_async_commit();   // possibly empty: keeps one group per iteration
    cp_async_wait<1>();  // everything but the newest group: Q and tile j have landed
    __syncthreads();
    if (j == 0) {
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        ldmatrix_x4(qf[kk],
                    smem_u32(sq + (warp * 16 + lane % 16) * kStride + kk * 16 + (lane / 16) * 8));
      }
    }
    // A warp whose rows all precede this tile has nothing to add (causal); it still syncs.
    if (j * kBlockN <= warp_max_pos) {
      const T* skt = sk + stage * kBlockN * kStride;
      const T* svt = sv + stage * kBlockN * kStride;
      // S = Q K^T: 16 x 64 per warp, 8 n-tiles of 8 keys.
      float s[kBlockN / 8][4] = {};
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
        for (int np = 0; np < kBlockN / 16; ++np) {
          uint32_t b[4];  // keys np*16 + {0-7, 8-15} x dims kk*16 + {0-7, 8-15}
          ldmatrix_x4(b, smem_u32(skt + (np * 16 + lane % 8 + (lane / 16) * 8) * kStride + kk * 16 +
                                  ((lane / 8) % 2) * 8));
          mma_16816<T>(s[2 * np], qf[kk], b[0], b[1]);
          mma_16816<T>(s[2 * np + 1], qf[kk], b[2], b[3]);
        }
      }
      // Online softmax (log2 domain). Only tiles that reach past the CTA's first query need the
      // per-element causal mask; that also masks keys >= kv_end (zero-filled in smem).
      const bool need_mask = j * kBlockN + kBlockN - 1 > min_pos;
      float mx[2] = {m_run[0], m_run[1]};
#pragma unroll
      for (int nt = 0; nt < kBlockN / 8; ++nt) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int key = j * kBlockN + nt * 8 + (lane % 4) * 2 + (e & 1);
          float v = s[nt][e] * scale_log2;
          if (need_mask && key > pos_r[e / 2]) v = -INFINITY;
          s[nt][e] = v;
          mx[e / 2] = fmaxf(mx[e / 2], v);
        }
      }
      float base[2], sum[2] = {0.0f, 0.0f};
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
        base[r] = mx[r] == -INFINITY ? 0.0f : mx[r];  // a row with no key yet: keep it at 0
        const float alpha = exp2f(m_run[r] - base[r]);
        m_run[r] = mx[r];
        l_run[r] *= alpha;  // per-thread partial sums; the 4 lanes of a row are summed at the end
#pragma unroll
        for (int dt = 0; dt < D / 8; ++dt) {
          o[dt][2 * r] *= alpha;
          o[dt][2 * r + 1] *= alpha;
        }
      }
#pragma unroll
      for (int nt = 0; nt < kBlockN / 8; ++nt) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          s[nt][e] = exp2f(s[nt][e] - base[e / 2]);
          sum[e / 2] += s[nt][e];
        }
      }
      l_run[0] += sum[0];
      l_run[1] += sum[1];
      // O += P V: P's C fragments are the A fragments of the next mma (FlashAttention-2's trick).
#pragma unroll
      for (int ks = 0; ks < kBlockN / 16; ++ks) {
        const uint32_t pa[4] = {pack2<T>(s[2 * ks][0], s[2 * ks][1]),
                                pack2<T>(s[2 * ks][2], s[2 * ks][3]),
                                pack2<T>(s[2 * ks + 1][0], s[2 * ks + 1][1]),
                                pack2<T>(s[2 * ks + 1][2], s[2 * ks + 1][3])};
#pragma unroll
        for (int dp = 0; dp < D / 16; ++dp) {
          uint32_t b[4];  // keys ks*16 + {0-7, 8-15} x dims dp*16 + {0-7, 8-15}, transposed
          ldmatrix_x4_trans(
              b, smem_u32(svt + (ks * 16 + lane % 8 + ((lane / 8) % 2) * 8) * kStride + dp * 16 +
                          (lane / 16) * 8));
          mma_16816<T>(o[2 * dp], pa, b[0], b[1]);
          mma_16816<T>(o[2 * dp + 1], pa, b[2], b[3]);
        }
      }
    }
    if constexpr (kFp8) {
      if (j + 1 < num_tiles) store_fp8(stage ^ 1);
    }
    __syncthreads();  // every warp is done with this stage before it is refilled
  }

  // O / l, rows past the last query dropped. 4-byte stores: 4 lanes cover 8 contiguous dims.
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float l = l_run[r];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    const int fm = fm0 + 8 * r;
    if (fm >= rows) continue;
    T* dst = a.out + (int64_t(q_begin + fm / group) * a.num_heads + kvh * group + fm % group) * D +
             (lane % 4) * 2;
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt) {
      *reinterpret_cast<uint32_t*>(dst + dt * 8) =
          pack2<T>(o[dt][2 * r] * inv, o[dt][2 * r + 1] * inv);
    }
  }
}

}  // namespace tidal::kernels::cuda::prefill
