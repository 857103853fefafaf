// SPDX-License-Identifier: Apache-2.0
// Device helpers shared by every .cu file: error checks, the dtype -> CUDA type switch, float
// conversions, 16-byte vector loads, warp and block reductions. Only .cu files include this.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "runtime/check.h"
#include "runtime/device.h"
#include "runtime/stream.h"
#include "runtime/tensor.h"

#if TIDAL_WITH_NVTX
#include <nvtx3/nvToolsExt.h>
#endif

#define TIDAL_CUDA_CHECK(call)                                                       \
  do {                                                                               \
    const cudaError_t tidal_err_ = (call);                                           \
    if (tidal_err_ != cudaSuccess)                                                   \
      ::tidal::fatal(__FILE__, __LINE__, #call, cudaGetErrorString(tidal_err_));     \
  } while (0)

namespace tidal::kernels::cuda {

inline cudaStream_t raw_stream(Stream s) { return static_cast<cudaStream_t>(s.handle); }

// An A/B switch from the environment: on unless `name` is set to "0" (callers read it once, into
// a static, and name what it measures where they read it).
inline bool switch_on(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr || std::strcmp(v, "0") != 0;
}

// After every launch (STYLE.md rule 19): the launch error, and with TIDAL_SYNC_AFTER_LAUNCH a
// synchronize (outside graph capture) so an asynchronous fault names its kernel.
inline void check_launch(const char* kernel, Stream s) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) ::tidal::fatal(__FILE__, __LINE__, kernel, cudaGetErrorString(err));
  if (sync_after_launch() && !stream_capturing(s)) {
    const cudaError_t e2 = cudaStreamSynchronize(raw_stream(s));
    if (e2 != cudaSuccess) ::tidal::fatal(__FILE__, __LINE__, kernel, cudaGetErrorString(e2));
  }
}

// An NVTX range for the launcher's scope (STYLE.md rule 23); compiled out without NVTX.
struct NvtxScope {
#if TIDAL_WITH_NVTX
  explicit NvtxScope(const char* name) { nvtxRangePushA(name); }
  ~NvtxScope() { nvtxRangePop(); }
#else
  explicit NvtxScope(const char*) {}
#endif
};
#define TIDAL_NVTX_SCOPE(name) ::tidal::kernels::cuda::NvtxScope tidal_nvtx_scope_(name)

template <typename T>
constexpr T ceil_div(T a, T b) {
  return (a + b - 1) / b;
}

// The launch attribute for thread-block clusters of `x` blocks along x (sm_90).
inline cudaLaunchAttribute cluster_attribute(unsigned x) {
  cudaLaunchAttribute a = {};
  a.id = cudaLaunchAttributeClusterDimension;
  a.val.clusterDim.x = x;
  a.val.clusterDim.y = a.val.clusterDim.z = 1;
  return a;
}

// Calls f(T{}) with T the CUDA type of a float dtype: float, __half or __nv_bfloat16.
template <typename F>
void dispatch_float(DType dtype, const char* op, F&& f) {
  switch (dtype) {
    case DType::kF32: f(float{}); return;
    case DType::kF16: f(__half{}); return;
    case DType::kBF16: f(__nv_bfloat16{}); return;
    default: TIDAL_CHECK(false, std::string(op) + ": unsupported dtype " + dtype_name(dtype));
  }
}

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float x) {
  return __float2half_rn(x);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

// N elements of T loaded or stored as one aligned access (16 bytes for 8 bf16 or 4 f32).
template <typename T, int N>
struct alignas(sizeof(T) * N) Vec {
  T v[N];
};

template <typename T, int N>
__device__ __forceinline__ void load_floats(const T* src, float (&out)[N]) {
  const Vec<T, N> v = *reinterpret_cast<const Vec<T, N>*>(src);
#pragma unroll
  for (int i = 0; i < N; ++i) out[i] = to_float(v.v[i]);
}

template <typename T, int N>
__device__ __forceinline__ void store_floats(T* dst, const float (&in)[N]) {
  Vec<T, N> v;
#pragma unroll
  for (int i = 0; i < N; ++i) v.v[i] = from_float<T>(in[i]);
  *reinterpret_cast<Vec<T, N>*>(dst) = v;
}

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// `scratch` holds 32 floats of shared memory; the block must not reuse it before a barrier.
__device__ __forceinline__ float block_sum(float x, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  x = warp_sum(x);
  __syncthreads();
  if (lane == 0) scratch[warp] = x;
  __syncthreads();
  const int warps = blockDim.x >> 5;
  x = lane < warps ? scratch[lane] : 0.0f;
  return warp_sum(x);
}

__device__ __forceinline__ float block_max(float x, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  x = warp_max(x);
  __syncthreads();
  if (lane == 0) scratch[warp] = x;
  __syncthreads();
  const int warps = blockDim.x >> 5;
  x = lane < warps ? scratch[lane] : -INFINITY;
  return warp_max(x);
}

// A per-device constant (a device attribute, an occupancy), computed by compute() the first time
// the current device asks and kept in cache[device] (host side; devices 0..63).
template <typename F>
int per_device_cached(int (&cache)[64], F&& compute) {
  int device = 0;
  TIDAL_CUDA_CHECK(cudaGetDevice(&device));
  TIDAL_CHECK(device >= 0 && device < 64, "kernels: device ordinal out of range");
  if (cache[device] == 0) cache[device] = compute();
  return cache[device];
}

// The SM count of the current device (cached per device; host side).
int sm_count();

}  // namespace tidal::kernels::cuda
