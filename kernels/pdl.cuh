// SPDX-License-Identifier: Apache-2.0
// Programmatic dependent launch (sm_90) through a decode layer's chain of kernels:
//   [fused_add_]rms_norm -> QKV GEMV with RoPE and the KV append -> attention split -> merge
//   -> o GEMV -> fused_add_rms_norm -> gate_up GEMV with SwiGLU -> down GEMV
// (at decode; other shapes run RoPE + append and silu_and_mul as launches of their own). The
// attention merge, where a layer has one, is an ordinary launch (decode_attention.cu says why).
// A kernel launched with launch_programmatic() may start while the kernel before it in the stream
// still runs: as soon as every block of that kernel has executed pdl_launch_dependents() (or
// exited). Its launch and block scheduling then overlap the previous kernel's tail instead of
// following its drain. (A GEMV's first weight loads, written before its wait, are placed after it
// by ptxas: see kernels/linear_gemv.cu.) Each such kernel follows one contract:
//   1. pdl_launch_dependents() first, in every thread (lets the next kernel be scheduled early;
//      decode attention's split kernels may call it later or leave it to their exit when no merge
//      launch follows them: SplitArgs::trigger, measured in kernels/decode_attention.cu);
//   2. before pdl_wait() it reads only constants (the weights) and writes nothing. Not even the
//      step plan: a kernel may start before a plan-writing launch (top-k, the list commit, the
//      block-table update) has made its writes visible, since only the wait guarantees that.
//      Two exceptions, with their own argument: decode attention's split kernels read the plan,
//      block tables, committed lists and the cache rows older than the step before their wait
//      (DecodeAttentionParams::prior_lens says which launches make that safe), and the QKV GEMV
//      its tokens' positions, slots and RoPE frequencies (PagedKvAppendParams::plan_complete);
//   3. pdl_wait() in every thread of every block, before any other global access and before any
//      exit. It returns once every earlier kernel has completed and its writes are visible, and a
//      grid whose every block waited cannot complete before its predecessor: so the chain stays
//      ordered even for a kernel after it launched the ordinary way (NCCL, cuBLAS, sampling).
// Inputs written by an earlier kernel of the chain are read with coherent loads after the wait
// (never ld.global.nc: no __ldg and no const __restrict__ pointers for them); the kernel is
// running while they are written.
// Both instructions are no-ops in a kernel launched without the attribute; a launch with it after
// anything that is not a kernel (memcpy, memset, event wait) serialises as usual; stream capture
// turns it into a programmatic graph edge. TIDAL_PDL=0 in the environment makes every
// launch_programmatic() an ordinary launch (the kernels are the same): the A/B switch for
// measuring what the overlap buys, and the one to try when a timeline or a graph looks wrong.
// Only .cu files include this.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <utility>

#include "kernels/cuda_common.cuh"

namespace tidal::kernels::cuda {

// Read once per process: TIDAL_PDL unset or anything but "0" keeps programmatic launches on.
inline bool programmatic_launch_enabled() {
  static const bool enabled = switch_on("TIDAL_PDL");
  return enabled;
}

__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

// pdl_wait() issued only once `dep` is known: two waits predicated on it, one of which runs, so
// ptxas must have the loads that dep is computed from back before it (an asm operand that the
// instruction text does not use never reaches the PTX: 2ccfbe4's GEMV waited first regardless).
// For a kernel's early constant loads (rule 2), which then overlap the kernel before.
__device__ __forceinline__ void pdl_wait_after(uint32_t dep) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile(
      "{\n"
      "  .reg .pred p;\n"
      "  setp.ne.u32 p, %0, 0;\n"
      "  @p griddepcontrol.wait;\n"
      "  @!p griddepcontrol.wait;\n"
      "}\n" ::"r"(dep)
      : "memory");
#endif
}

// kernel<<<grid, block, smem, stream>>>(args...) with the programmatic-serialization attribute
// (unless TIDAL_PDL=0), in thread-block clusters of `cluster_x` blocks along x when it is above 1
// (it divides grid.x). Launch errors abort; callers still check_launch() after it.
template <typename... Params, typename... Args>
void launch_programmatic_clusters(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                                  cudaStream_t stream, unsigned cluster_x, Args&&... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[2] = {};
  unsigned n = 0;
  if (programmatic_launch_enabled()) {
    attr[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[n++].val.programmaticStreamSerializationAllowed = 1;
  }
  if (cluster_x > 1) attr[n++] = cluster_attribute(cluster_x);
  cfg.attrs = attr;
  cfg.numAttrs = n;
  TIDAL_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}

template <typename... Params, typename... Args>
void launch_programmatic(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                         cudaStream_t stream, Args&&... args) {
  launch_programmatic_clusters(kernel, grid, block, smem, stream, 1u, std::forward<Args>(args)...);
}

}  // namespace tidal::kernels::cuda
