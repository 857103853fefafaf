// SPDX-License-Identifier: Apache-2.0
// gather_rows: out[r] = in[rows[r]], one block per output row, moved in the widest word (16, 4 or
// 2 bytes) the row size, strides and pointers allow. Also the launcher behind embedding_lookup.
#include "kernels/elementwise.cuh"
#include "kernels/gather_rows.h"

namespace tidal::kernels::cuda {

namespace {

constexpr int kThreads = 128;  // 16-byte words: one 4096-wide bf16 row is 512 words, 4 a thread

template <int kWordBytes>
void launch(TensorView out, TensorView in, TensorView index, int64_t row_bytes, int op_tag,
            cudaStream_t stream) {
  using W = typename CopyWord<kWordBytes>::type;
  const int64_t esize = int64_t(dtype_size(in.dtype));
  const int64_t in_stride_words = in.size(0) > 1 ? in.stride[0] * esize / kWordBytes : 0;
  gather_rows_kernel<W><<<unsigned(out.size(0)), kThreads, 0, stream>>>(
      static_cast<W*>(out.data), static_cast<const W*>(in.data),
      static_cast<const int32_t*>(index.data), index.stride[0], in.size(0), row_bytes / kWordBytes,
      in_stride_words, op_tag);
}

}  // namespace

void launch_gather_rows(TensorView out, TensorView in, TensorView index, int op_tag,
                        cudaStream_t stream) {
  const int64_t num_rows = out.size(0);
  const int64_t esize = int64_t(dtype_size(in.dtype));
  const int64_t row_bytes = in.size(1) * esize;
  if (num_rows == 0 || row_bytes == 0) return;
  TIDAL_CHECK(num_rows < (int64_t(1) << 31), "gather_rows: more rows than a grid holds");
  // A one-row `in` may carry any stride (it is still contiguous); only row 0 is read then.
  const int64_t in_stride_bytes = in.size(0) > 1 ? in.stride[0] * esize : 0;
  switch (copy_word_bytes(row_bytes, {in_stride_bytes}, {out.data, in.data})) {
    case 16: launch<16>(out, in, index, row_bytes, op_tag, stream); break;
    case 4: launch<4>(out, in, index, row_bytes, op_tag, stream); break;
    case 2: launch<2>(out, in, index, row_bytes, op_tag, stream); break;
    default: launch<1>(out, in, index, row_bytes, op_tag, stream); break;
  }
}

// out:  [num_rows, cols], contiguous
// in:   [num_in, cols], row stride >= cols
// rows: [num_rows] i32
void gather_rows(TensorView out, TensorView in, TensorView rows, Stream stream) {
  TIDAL_NVTX_SCOPE("gather_rows");
  launch_gather_rows(out, in, rows, /*op_tag=*/1, raw_stream(stream));
  check_launch("gather_rows_kernel", stream);
}

}  // namespace tidal::kernels::cuda
