// SPDX-License-Identifier: Apache-2.0
#include "kernels/cuda_common.cuh"

namespace tidal::kernels::cuda {

int sm_count() {
  static int counts[64] = {};
  return per_device_cached(counts, [] {
    int device = 0, count = 0;
    TIDAL_CUDA_CHECK(cudaGetDevice(&device));
    TIDAL_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
    return count;
  });
}

}  // namespace tidal::kernels::cuda
