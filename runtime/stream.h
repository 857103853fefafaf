// SPDX-License-Identifier: Apache-2.0
// Stream: the queue an op's work goes to. On the GPU a cudaStream_t, held as an opaque pointer so
// host code never includes cuda_runtime.h; CPU (ref::) ops run inline and ignore it. Every op
// takes one, so a whole step can be queued on one stream and captured into a CUDA graph.
#pragma once

namespace tidal {

struct Stream {
  void* handle = nullptr;  // cudaStream_t; null: the legacy default stream (never captured)
};

}  // namespace tidal
