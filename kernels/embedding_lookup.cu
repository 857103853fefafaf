// SPDX-License-Identifier: Apache-2.0
// embedding_lookup: out[t] = table[ids[t]]; the row gather of gather_rows.cu (one block per token,
// rows moved in 16-byte words when the hidden size and pointers allow).
#include "kernels/elementwise.cuh"
#include "kernels/embedding_lookup.h"

namespace tidal::kernels::cuda {

// out:   [num_tokens, hidden], contiguous
// table: [vocab, hidden], dense rows
// ids:   [num_tokens] i32, each in [0, vocab) (an id outside traps the kernel)
void embedding_lookup(TensorView out, TensorView table, TensorView ids, Stream stream) {
  TIDAL_NVTX_SCOPE("embedding_lookup");
  launch_gather_rows(out, table, ids, /*op_tag=*/0, raw_stream(stream));
  check_launch("gather_rows_kernel (embedding_lookup)", stream);
}

}  // namespace tidal::kernels::cuda
