// SPDX-License-Identifier: Apache-2.0
#include "kernels/head_group_probs.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/dispatch.h"
#include "runtime/tensor_access.h"

namespace tidal::kernels {

void head_group_probs(TensorView out, TensorView logits, TensorView lengths,
                      int64_t heads_per_group) {
  TIDAL_CHECK(logits.rank == 3 && logits.dtype == DType::kF32,
              "head_group_probs: logits must be f32 [num_tokens, num_heads, max_len]");
  TIDAL_CHECK(heads_per_group >= 1 && logits.size(1) % heads_per_group == 0,
              "head_group_probs: num_heads must be a multiple of heads_per_group (>= 1)");
  TIDAL_CHECK(out.rank == 3 && out.dtype == DType::kF32 && out.size(0) == logits.size(0) &&
                  out.size(1) == logits.size(1) / heads_per_group && out.size(2) == logits.size(2),
              "head_group_probs: out must be f32 [num_tokens, num_heads / heads_per_group, "
              "max_len]");
  TIDAL_CHECK(
      lengths.rank == 1 && lengths.dtype == DType::kI32 && lengths.size(0) == logits.size(0),
      "head_group_probs: lengths must be i32 [num_tokens]");
  require_cpu("head_group_probs", {out, logits, lengths});
  ref::head_group_probs(out, logits, lengths, heads_per_group);
}

void ref::head_group_probs(TensorView out, TensorView logits, TensorView lengths,
                           int64_t heads_per_group) {
  std::vector<double> sum, e;
  for (int64_t t = 0; t < logits.size(0); ++t) {
    const int64_t n = lengths.data_as<int32_t>()[t * lengths.stride[0]];
    TIDAL_CHECK(n >= 1 && n <= logits.size(2), "head_group_probs: length outside 1..max_len");
    for (int64_t g = 0; g < out.size(1); ++g) {
      sum.assign(size_t(n), 0.0);
      for (int64_t h = g * heads_per_group; h < (g + 1) * heads_per_group; ++h) {
        double max_logit = -INFINITY;
        for (int64_t j = 0; j < n; ++j) {
          max_logit = std::max(max_logit, double(get_f32(logits, t, h, j)));
        }
        e.assign(size_t(n), 0.0);
        double denom = 0.0;
        for (int64_t j = 0; j < n; ++j) {
          e[size_t(j)] = std::exp(double(get_f32(logits, t, h, j)) - max_logit);
          denom += e[size_t(j)];
        }
        for (int64_t j = 0; j < n; ++j) sum[size_t(j)] += e[size_t(j)] / denom;
      }
      for (int64_t j = 0; j < n; ++j) set_f32(out, t, g, j, float(sum[size_t(j)]));
    }
  }
}

}  // namespace tidal::kernels
