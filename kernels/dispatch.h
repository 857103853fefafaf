// SPDX-License-Identifier: Apache-2.0
// Argument-check helpers shared by the ops' entry points.
#pragma once

#include <initializer_list>
#include <string>

#include "runtime/tensor.h"

namespace tidal::kernels {

// Until the CUDA twins land, every op runs its reference on host memory: a device view here is
// a bug in the caller.
inline void require_cpu(const char* op, std::initializer_list<TensorView> views) {
  for (const TensorView& v : views) {
    TIDAL_CHECK(v.on_cpu(), std::string(op) + ": CUDA views need the CUDA build of this op");
  }
}

}  // namespace tidal::kernels
