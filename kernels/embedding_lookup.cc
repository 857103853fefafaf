// SPDX-License-Identifier: Apache-2.0
#include "kernels/embedding_lookup.h"

#include "kernels/dispatch.h"
#include "runtime/tensor_access.h"

namespace tidal::kernels {

void embedding_lookup(TensorView out, TensorView table, TensorView ids,
                      [[maybe_unused]] Stream stream) {
  TIDAL_CHECK(out.rank == 2 && table.rank == 2 && ids.rank == 1, "embedding_lookup: bad ranks");
  TIDAL_CHECK(out.size(0) == ids.size(0) && out.size(1) == table.size(1),
              "embedding_lookup: out must be [num_tokens, hidden]");
  TIDAL_CHECK(ids.dtype == DType::kI32, "embedding_lookup: ids must be i32");
  TIDAL_CHECK(out.dtype == table.dtype && out.is_contiguous() && table.stride[1] == 1,
              "embedding_lookup: out and table must share a dtype, with dense rows");
  if (on_cuda("embedding_lookup", {out, table, ids})) {
    TIDAL_CUDA_CALL("embedding_lookup", cuda::embedding_lookup(out, table, ids, stream));
    return;
  }
  ref::embedding_lookup(out, table, ids);
}

void ref::embedding_lookup(TensorView out, TensorView table, TensorView ids) {
  const int32_t* id = ids.data_as<int32_t>();
  for (int64_t t = 0; t < ids.size(0); ++t) {
    const int32_t row = id[t * ids.stride[0]];
    TIDAL_CHECK(row >= 0 && row < table.size(0), "embedding_lookup: id out of range");
    for (int64_t i = 0; i < table.size(1); ++i) set_f32(out, t, i, get_f32(table, row, i));
  }
}

}  // namespace tidal::kernels
