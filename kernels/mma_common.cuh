// SPDX-License-Identifier: Apache-2.0
// Tensor-core and async-copy helpers shared by the attention kernels (prefill_attention_mma.cuh,
// decode_attention_mma.cuh): 16-byte cp.async with zero fill, ldmatrix, mma.sync m16n8k16 with
// fp32 accumulation, and packing two floats into one 16-bit pair register (or a head and a tail
// pair, for a product that must keep fp32-like weights). sm_80 and later.
//
// Fragment layouts of mma.m16n8k16 (PTX ISA, "Matrix Fragments for mma.m16n8k16"), with
// g = lane / 4 and c = lane % 4:
//   A (16 x 16, row-major), 4 registers of two 16-bit values: a0 (row g, cols 2c, 2c+1),
//     a1 (row g + 8, same cols), a2 (row g, cols 2c+8, 2c+9), a3 (row g + 8, cols 2c+8, 2c+9);
//   B (16 x 8, "col"), 2 registers: b0 (rows 2c, 2c+1, col g), b1 (rows 2c+8, 2c+9, col g);
//   C/D (16 x 8, fp32), 4 floats: d0, d1 (row g, cols 2c, 2c+1), d2, d3 (row g + 8, same cols).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace tidal::kernels::cuda {

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte global -> shared copy; with valid == false it writes 16 zero bytes and reads nothing.
__device__ __forceinline__ void cp_async_16(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
               "r"(valid ? 16 : 0));
}
// An L2 cache policy that marks every line it touches evict-first (data read once: a streamed
// K/V cache), and the 16-byte copy above under such a policy (sm_80+).
__device__ __forceinline__ uint64_t l2_evict_first_policy() {
  uint64_t policy;
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(policy));
  return policy;
}
__device__ __forceinline__ void cp_async_16_hint(uint32_t dst, const void* src, bool valid,
                                                 uint64_t policy) {
  asm volatile("cp.async.cg.shared.global.L2::cache_hint [%0], [%1], 16, %2, %3;\n" ::"r"(dst),
               "l"(src), "r"(valid ? 16 : 0), "l"(policy));
}
// 2^x by the hardware's ex2 (what exp2f runs too), with results below 2^-126 flushed to zero
// rather than scaled into denormals: softmax weights that small are lost in any fp32 sum beside
// the row's largest, which is 1. exp2f spends three more instructions on that range.
__device__ __forceinline__ float exp2_ftz(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}
// 1 / x for x = 2^e, e in [-126, 126]: exact, by the exponent bits alone (no division).
__device__ __forceinline__ float pow2_reciprocal(float x) {
  return __int_as_float(0x7f000000 - __float_as_int(x));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// The transpose of an 8 x 8 matrix of 16-bit elements held as mma fragments (lane l: row l / 4,
// columns 2 (l % 4) and 2 (l % 4) + 1, low half first), in the same layout (sm_75+).
__device__ __forceinline__ uint32_t movmatrix_trans(uint32_t x) {
  uint32_t y;
  asm volatile("movmatrix.sync.aligned.m8n8.trans.b16 %0, %1;\n" : "=r"(y) : "r"(x));
  return y;
}

// d += a (16x16, row) * b (16x8, col), fp32 accumulate.
template <typename T>
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                          uint32_t b1);
template <>
__device__ __forceinline__ void mma_16816<__nv_bfloat16>(float (&d)[4], const uint32_t (&a)[4],
                                                         uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma_16816<__half>(float (&d)[4], const uint32_t (&a)[4],
                                                  uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two floats as one 32-bit register of two 16-bit values (lo in the low half, as mma expects).
template <typename T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi);
template <>
__device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}
template <>
__device__ __forceinline__ uint32_t pack2<__half>(float lo, float hi) {
  const __half2 v = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

// lo + hi as two 16-bit pairs, head + tail: head = pack2(lo, hi), tail = pack2 of what rounding
// the head lost. head + tail carries about 16 significant bits (relative error ~2^-17 for bf16).
template <typename T>
__device__ __forceinline__ void pack2_split(float lo, float hi, uint32_t* head, uint32_t* tail);
template <>
__device__ __forceinline__ void pack2_split<__nv_bfloat16>(float lo, float hi, uint32_t* head,
                                                           uint32_t* tail) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
  const float2 back = __bfloat1622float2(h);
  const __nv_bfloat162 t = __floats2bfloat162_rn(lo - back.x, hi - back.y);
  *head = *reinterpret_cast<const uint32_t*>(&h);
  *tail = *reinterpret_cast<const uint32_t*>(&t);
}
template <>
__device__ __forceinline__ void pack2_split<__half>(float lo, float hi, uint32_t* head,
                                                    uint32_t* tail) {
  const __half2 h = __floats2half2_rn(lo, hi);
  const float2 back = __half22float2(h);
  const __half2 t = __floats2half2_rn(lo - back.x, hi - back.y);
  *head = *reinterpret_cast<const uint32_t*>(&h);
  *tail = *reinterpret_cast<const uint32_t*>(&t);
}

}  // namespace tidal::kernels::cuda
