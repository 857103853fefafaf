// SPDX-License-Identifier: Apache-2.0
// Embedding lookup: out[t] = table[ids[t]].
#pragma once

#include "runtime/stream.h"
#include "runtime/tensor.h"

namespace tidal::kernels {

// out:   [num_tokens, hidden]
// table: [vocab, hidden]
// ids:   [num_tokens] i32, each in [0, vocab)
void embedding_lookup(TensorView out, TensorView table, TensorView ids, Stream stream);

namespace ref {
void embedding_lookup(TensorView out, TensorView table, TensorView ids);
}  // namespace ref

namespace cuda {
void embedding_lookup(TensorView out, TensorView table, TensorView ids, Stream stream);
}  // namespace cuda

}  // namespace tidal::kernels
