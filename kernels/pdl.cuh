// SPDX-License-Identifier: Apache-2.0
// Programmatic dependent launch (sm_90) for the decode step's chain of per-layer kernels
// (rms_norm -> linear -> rotary -> KV append, attention -> linear -> fused_add_rms_norm -> linear
// -> silu_and_mul -> linear). A kernel launched with launch_programmatic() may start while the
// kernel before it in the stream still runs: as soon as every block of that kernel has executed
// pdl_launch_dependents() (or exited). Each such kernel follows one contract:
//   1. pdl_launch_dependents() first, in every thread (lets the next kernel be scheduled early);
//   2. before pdl_wait(), write no global memory and read only what no kernel of the step writes:
//      constants (weights, norm weights, RoPE frequencies) and the step plan's arrays and block
//      tables (copied and updated before the step's first kernel, which is an ordinary launch);
//   3. pdl_wait() in every thread of every block, before any other global access and before any
//      early exit. It returns once every earlier kernel has completed and its writes are visible,
//      and a grid whose every block waited cannot complete before its predecessor: so the chain
//      stays ordered even when a kernel after it is launched the ordinary way.
// Inputs written by an earlier kernel are read with ordinary loads after the wait (no __restrict__
// const pointers, which may compile to the non-coherent ld.global.nc).
// Both instructions are no-ops in a kernel launched without the attribute; a launch with it after
// anything that is not a kernel (memcpy, memset, event) serialises as usual; graph capture turns
// it into a programmatic edge. Only .cu files include this.
#pragma once

#include <cuda_runtime.h>

#include <utility>

#include "kernels/cuda_common.cuh"

namespace tidal::kernels::cuda {

// false: every launch_programmatic() is an ordinary launch (the kernels need no change): the switch
// to try when a timeline or a graph capture looks wrong.
constexpr bool kProgrammaticLaunch = true;

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

// A hint to bring the line holding `p` into L1 (and L2) without holding a register; asm volatile
// with a memory clobber, so it stays on its side of a pdl_wait().
__device__ __forceinline__ void prefetch_l1(const void* p) {
  asm volatile("prefetch.global.L1 [%0];" ::"l"(p) : "memory");
}

// kernel<<<grid, block, smem, stream>>>(args...) with the programmatic-serialization attribute
// (when kProgrammaticLaunch). Launch errors abort; callers still check_launch() after it.
template <typename... Params, typename... Args>
void launch_programmatic(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                         cudaStream_t stream, Args&&... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1] = {};
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = kProgrammaticLaunch ? 1 : 0;
  TIDAL_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}

}  // namespace tidal::kernels::cuda
