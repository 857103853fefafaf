// SPDX-License-Identifier: Apache-2.0
#include "kernels/cuda_common.cuh"

namespace tidal::kernels::cuda {

int sm_count() {
  static int counts[64] = {};
  int device = 0;
  TIDAL_CUDA_CHECK(cudaGetDevice(&device));
  TIDAL_CHECK(device >= 0 && device < 64, "sm_count: device ordinal out of range");
  if (counts[device] == 0) {
    TIDAL_CUDA_CHECK(cudaDeviceGetAttribute(&counts[device], cudaDevAttrMultiProcessorCount, device));
  }
  return counts[device];
}

}  // namespace tidal::kernels::cuda
