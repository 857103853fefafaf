// SPDX-License-Identifier: Apache-2.0
#include "kernels/linear.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "kernels/dispatch.h"
#include "kernels/silu_and_mul.h"
#include "runtime/tensor_access.h"
#include "runtime/thread_pool.h"

namespace tidal::kernels {

namespace {

// One weight of a dense row, widened as get_f32 widens it (bf16: the conversion's shift, inline).
double widen(float w) { return double(w); }
double widen(bf16 w) {
  const uint32_t bits = uint32_t(w.bits) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return double(f);
}

// x against one dense row of weights, and against four rows `ld` elements apart. Each sum adds
// its products in order of i, so the four-row sums are bit for bit the one-row ones; their four
// chains of adds are independent, where one chain waits on its last add at every element (in
// the sanitizer build, through memory): four rows at a time take half the time there.
template <typename T>
double dot_row(const double* x, int64_t n, const T* w) {
  double acc = 0.0;
  for (int64_t i = 0; i < n; ++i) acc += x[i] * widen(w[i]);
  return acc;
}
template <typename T>
void dot_4_rows(const double* x, int64_t n, const T* w, int64_t ld, double (&acc)[4]) {
  const T *w0 = w, *w1 = w + ld, *w2 = w + 2 * ld, *w3 = w + 3 * ld;
  double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double x_i = x[i];
    a0 += x_i * widen(w0[i]);
    a1 += x_i * widen(w1[i]);
    a2 += x_i * widen(w2[i]);
    a3 += x_i * widen(w3[i]);
  }
  acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3;
}

// Output features [o_begin, o_end) of token t (its n inputs in x) from dense rows of f32 or bf16
// weights.
template <typename T>
void dense_features(TensorView out, int64_t t, const double* x, int64_t n, TensorView weight,
                    int64_t o_begin, int64_t o_end) {
  const T* w = weight.data_as<T>();
  const int64_t ld = weight.stride[0];
  int64_t o = o_begin;
  for (; o + 4 <= o_end; o += 4) {
    double acc[4];
    dot_4_rows(x, n, w + o * ld, ld, acc);
    for (int r = 0; r < 4; ++r) set_f32(out, t, o + r, float(acc[r]));
  }
  for (; o < o_end; ++o) set_f32(out, t, o, float(dot_row(x, n, w + o * ld)));
}

// Output features [o_begin, o_end) of every token, in the reference arithmetic: ref::linear runs
// it over every feature on one thread, the CPU path splits the features over threads. Dense f32
// and bf16 rows skip the generic branch's per-element dtype switch and calls, which dominate the
// CPU path's run time; they do its arithmetic on the same values.
void linear_features(TensorView out, TensorView in, TensorView weight, int64_t o_begin,
                     int64_t o_end) {
  const int64_t n_in = in.size(1);
  std::vector<double> xs(static_cast<size_t>(n_in));
  double* x = xs.data();  // a plain pointer: no operator[] call per element in a debug build
  for (int64_t t = 0; t < in.size(0); ++t) {
    for (int64_t i = 0; i < n_in; ++i) x[i] = get_f32(in, t, i);
    if (weight.dtype == DType::kF32 && weight.stride[1] == 1) {
      dense_features<float>(out, t, x, n_in, weight, o_begin, o_end);
    } else if (weight.dtype == DType::kBF16 && weight.stride[1] == 1) {
      dense_features<bf16>(out, t, x, n_in, weight, o_begin, o_end);
    } else {
      for (int64_t o = o_begin; o < o_end; ++o) {
        double acc = 0.0;
        for (int64_t i = 0; i < n_in; ++i) acc += x[i] * get_f32(weight, o, i);
        set_f32(out, t, o, float(acc));
      }
    }
  }
}

}  // namespace

void linear(TensorView out, TensorView in, TensorView weight, [[maybe_unused]] Stream stream) {
  TIDAL_CHECK(out.rank == 2 && in.rank == 2 && weight.rank == 2, "linear: bad ranks");
  TIDAL_CHECK(in.size(1) == weight.size(1), "linear: in_features mismatch");
  TIDAL_CHECK(out.size(0) == in.size(0) && out.size(1) == weight.size(0),
              "linear: out must be [num_tokens, out_features]");
  TIDAL_CHECK(in.dtype == weight.dtype && (out.dtype == in.dtype || out.dtype == DType::kF32),
              "linear: in and weight share a dtype; out has it too, or is f32");
  TIDAL_CHECK(out.is_contiguous() && weight.is_contiguous() && in.stride[1] == 1,
              "linear: out and weight contiguous, in with dense rows");
  if (on_cuda("linear", {out, in, weight})) {
    TIDAL_CUDA_CALL("linear", cuda::linear(out, in, weight, stream));
    return;
  }
  // The CPU path: output features over threads (about 64K multiply-adds per chunk at least).
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 16) / (in.size(0) * in.size(1) + 1));
  parallel_for(weight.size(0), grain,
               [&](int64_t begin, int64_t end) { linear_features(out, in, weight, begin, end); });
}

namespace {

// linear_split's checks (linear's, with the outputs' widths adding up to the weight's rows).
void check_split(const TensorView (&outs)[3], TensorView in, TensorView weight) {
  TIDAL_CHECK(in.rank == 2 && weight.rank == 2, "linear_split: bad ranks");
  TIDAL_CHECK(in.size(1) == weight.size(1), "linear_split: in_features mismatch");
  TIDAL_CHECK(in.dtype == weight.dtype && in.stride[1] == 1 && weight.is_contiguous(),
              "linear_split: in and weight share a dtype; weight contiguous, in with dense rows");
  int64_t rows = 0;
  for (const TensorView& o : outs) {
    TIDAL_CHECK(o.rank == 2 && o.size(0) == in.size(0) && o.is_contiguous(),
                "linear_split: every out must be contiguous [num_tokens, n_i]");
    TIDAL_CHECK(o.dtype == outs[0].dtype && (o.dtype == in.dtype || o.dtype == DType::kF32),
                "linear_split: the outs share a dtype: in's, or f32");
    rows += o.size(1);
  }
  TIDAL_CHECK(rows == weight.size(0),
              "linear_split: the outs' widths must add up to the weight's "
              "rows");
}

}  // namespace

void linear_split(TensorView out0, TensorView out1, TensorView out2, TensorView in,
                  TensorView weight, Stream stream) {
  const TensorView outs[3] = {out0, out1, out2};
  check_split(outs, in, weight);
  if (on_cuda("linear_split", {out0, out1, out2, in, weight})) {
    TIDAL_CUDA_CALL("linear_split", cuda::linear_split(out0, out1, out2, in, weight, stream));
    return;
  }
  // The CPU path: each row block on its own, exactly as three linear calls.
  int64_t row = 0;
  for (const TensorView& o : outs) {
    if (o.size(1) > 0) linear(o, in, weight.slice(row, row + o.size(1)), stream);
    row += o.size(1);
  }
}

namespace {

// linear_swiglu's checks; the two column halves of gate_up.
std::pair<TensorView, TensorView> swiglu_halves(TensorView act, TensorView in, TensorView weight,
                                                TensorView gate_up) {
  TIDAL_CHECK(act.rank == 2 && in.rank == 2 && weight.rank == 2 && gate_up.rank == 2,
              "linear_swiglu: bad ranks");
  const int64_t inter = act.size(1);
  TIDAL_CHECK(weight.size(0) == 2 * inter && act.size(0) == in.size(0) &&
                  gate_up.size(0) == in.size(0) && gate_up.size(1) == 2 * inter,
              "linear_swiglu: act [num_tokens, inter], weight [2 inter, in_features], gate_up "
              "[num_tokens, 2 inter]");
  TIDAL_CHECK(in.size(1) == weight.size(1), "linear_swiglu: in_features mismatch");
  TIDAL_CHECK(act.dtype == in.dtype && weight.dtype == in.dtype && gate_up.dtype == in.dtype,
              "linear_swiglu: act, in, weight and gate_up share a dtype");
  TIDAL_CHECK(
      act.is_contiguous() && weight.is_contiguous() && gate_up.is_contiguous() && in.stride[1] == 1,
      "linear_swiglu: act, weight and gate_up contiguous, in with dense rows");
  TensorView gate = gate_up, up = gate_up;
  gate.shape[1] = up.shape[1] = inter;
  up.data = static_cast<uint8_t*>(up.data) + inter * dtype_size(up.dtype);
  return {gate, up};
}

}  // namespace

void linear_swiglu(TensorView act, TensorView in, TensorView weight, TensorView gate_up,
                   Stream stream) {
  const auto [gate, up] = swiglu_halves(act, in, weight, gate_up);
  bool fused = false;
  if (on_cuda("linear_swiglu", {act, in, weight, gate_up})) {
    TIDAL_CUDA_CALL("linear_swiglu", fused = cuda::linear_swiglu(act, in, weight, stream));
  }
  if (fused) return;
  linear(gate_up, in, weight, stream);
  silu_and_mul(act, gate, up, stream);
}

void linear_qkv_append(const PagedKvAppendParams& p, TensorView in, TensorView weight,
                       Stream stream) {
  TIDAL_CHECK(p.rope_q.data != nullptr && p.rope_q.rank == 3 && p.k.rank == 3 && p.v.rank == 3,
              "linear_qkv_append: rope_q (q), k and v must be [num_tokens, heads, head_dim]");
  check_paged_kv_append(p);
  auto flat = [](TensorView t) {  // [num_tokens, heads * head_dim]; contiguous (checked above)
    return make_view(t.data, t.dtype, {t.size(0), t.size(1) * t.size(2)}, t.device);
  };
  const TensorView outs[3] = {flat(p.rope_q), flat(p.k), flat(p.v)};
  check_split(outs, in, weight);
  bool fused = false;
  if (on_cuda("linear_qkv_append", {p.k_cache, p.v_cache, p.block_tables, p.seq_ids, p.positions,
                                    p.k, p.v, p.rope_q, p.rope_inv_freq, in, weight})) {
    TIDAL_CUDA_CALL("linear_qkv_append", fused = cuda::linear_qkv_append(p, in, weight, stream));
  }
  if (fused) return;
  linear_split(outs[0], outs[1], outs[2], in, weight, stream);
  paged_kv_append(p, stream);
}

void ref::linear_swiglu(TensorView act, TensorView in, TensorView weight, TensorView gate_up) {
  const auto [gate, up] = swiglu_halves(act, in, weight, gate_up);
  ref::linear(gate_up, in, weight);
  ref::silu_and_mul(act, gate, up);
}

void ref::linear(TensorView out, TensorView in, TensorView weight) {
  linear_features(out, in, weight, 0, weight.size(0));
}

void ref::linear_split(TensorView out0, TensorView out1, TensorView out2, TensorView in,
                       TensorView weight) {
  const TensorView outs[3] = {out0, out1, out2};
  check_split(outs, in, weight);
  int64_t row = 0;
  for (const TensorView& o : outs) {
    ref::linear(o, in, weight.slice(row, row + o.size(1)));
    row += o.size(1);
  }
}

}  // namespace tidal::kernels
