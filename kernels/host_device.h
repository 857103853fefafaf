// SPDX-License-Identifier: Apache-2.0
// TIDAL_HOST_DEVICE: a function both the CPU reference and the CUDA kernels call, from one
// definition (so the two sides cannot drift apart): __host__ __device__ under nvcc, inline
// elsewhere.
#pragma once

#if defined(__CUDACC__)
#define TIDAL_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define TIDAL_HOST_DEVICE inline
#endif
