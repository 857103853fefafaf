// SPDX-License-Identifier: Apache-2.0
// kernel_bench cases for `linear`: every weight shape of Llama-2-7B and Llama-3-8B for one
// decode token (the GEMVs that stream most of a short-context decode step's bytes), a few at
// batch 4 and 16, and the prefill GEMM of a 2048-token chunk (TFLOP/s). The LM heads write f32
// logits. Checked: every output of a few token rows, against ref::linear in parallel slices.
// `linear_split`: the fused QKV projection of both models (one stacked weight, three outputs).
// `linear_qkv_append`: the same projection as the decode step runs it (RoPE and the KV append in
// its epilogue).
// `linear_swiglu`: the MLP's gate_up projection with SwiGLU applied in the same launch (decode).
// Graph mode (Replicas) copies the weights, never x.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "benchmarks/common/parallel.h"
#include "benchmarks/kernels/case_util.h"
#include "kernels/linear.h"
#include "kernels/paged_kv_append.h"
#include "kernels/silu_and_mul.h"

namespace tidal::bench {
namespace {

struct LinearShape {
  const char* role;  // which projection(s) of which model
  int64_t out_features, in_features;
  bool f32_out;                 // the LM head's logits
  std::vector<int64_t> tokens;  // batch sizes (2048: a prefill chunk)
};

std::vector<LinearShape> linear_shapes(const BenchEnv& env) {
  if (env.quick) {
    return {{"q/o", 256, 256, false, {1, 4, 37}},
            {"k/v", 128, 256, false, {1}},
            {"down", 256, 704, false, {1}},
            {"lm_head", 1000, 256, true, {1, 3}}};
  }
  // Llama-2-7B: hidden 4096, inter 11008, 32 KV heads, vocab 32000. Llama-3-8B: hidden 4096,
  // inter 14336, 8 KV heads of 128, vocab 128256. gate_up is the fused [2 * inter, hidden].
  return {{"q/o, L2 k/v", 4096, 4096, false, {1, 4, 16, 2048}},
          {"L3 k/v", 1024, 4096, false, {1}},
          {"L3 gate_up", 28672, 4096, false, {1, 4, 16, 2048}},
          {"L2 gate_up", 22016, 4096, false, {1}},
          {"L3 down", 4096, 14336, false, {1}},
          {"L2 down", 4096, 11008, false, {1}},
          {"L3 lm_head", 128256, 4096, true, {1}},
          {"L2 lm_head", 32000, 4096, true, {1}}};
}

// Token rows whose every output is checked: all of a small batch, three of a prefill chunk.
std::vector<int64_t> checked_tokens(int64_t t) { return t <= 4 ? spread(t, t) : spread(t, 3); }

}  // namespace

void bench_linear(const BenchEnv& env, const RunCase& run_case) {
  const DType dt = env.dtype;
  uint64_t seed = 70;
  for (const LinearShape& s : linear_shapes(env)) {
    const int64_t n = s.out_features, k = s.in_features;
    const DType out_dt = s.f32_out ? DType::kF32 : dt;
    // Uniform weights with standard deviation 1/sqrt(k): outputs of order 0.5, as in a model,
    // so the tolerances bite.
    const float bound = float(std::sqrt(3.0 / double(k)));
    const HostTensor w = random_tensor({n, k}, dt, ++seed, -bound, bound);
    const DeviceBuffer dw = upload(env, w);
    const Replicas dws(env, {&dw}, double(n * k) * bytes_of(dt));
    for (int64_t t : s.tokens) {
      const HostTensor x = random_tensor({t, k}, dt, ++seed);
      const DeviceBuffer dx = upload(env, x), dy = poisoned(env, {t, n}, out_dt);
      const std::string shape = shape_str({t, k}) + " x " + shape_str({n, k}) + " " + s.role;
      KernelCase c =
          make_case(env, "linear", shape,
                    double(t * k + n * k) * bytes_of(dt) + double(t * n) * bytes_of(out_dt),
                    2.0 * double(t) * double(n) * double(k));
      dws.bind(&c,
               [&](int i) { kernels::linear(dy.view(), dx.view(), dws.view(i, 0), env.stream); });
      c.check = [&] {
        const HostTensor got = dy.download(env.stream);
        const std::vector<int64_t> rows = checked_tokens(t);
        HostTensor want({int64_t(rows.size()), n}, out_dt);
        // One piece: one checked token against a slice of the weight's output rows.
        constexpr int64_t kSlice = 1024;
        const int64_t slices = (n + kSlice - 1) / kSlice;
        return parallel_sum(int64_t(rows.size()) * slices, [&](int64_t piece) {
          const int64_t r = piece / slices, o0 = (piece % slices) * kSlice;
          const int64_t o1 = std::min(n, o0 + kSlice), tok = rows[size_t(r)];
          const TensorView want_row = sub_view(want.view(), r * n + o0, {1, o1 - o0}, {n, 1});
          kernels::ref::linear(want_row, x.view().slice(tok, tok + 1), w.view().slice(o0, o1));
          return count_wrong(sub_view(got.view(), tok * n + o0, {1, o1 - o0}, {n, 1}), want_row,
                             tolerance(dt));
        });
      };
      run_case(c);
    }
  }
}

void bench_linear_split(const BenchEnv& env, const RunCase& run_case) {
  const DType dt = env.dtype;
  struct SplitShape {
    const char* role;
    int64_t q, kv, in_features;
    std::vector<int64_t> tokens;
  };
  // Llama-3-8B: 32 query heads and 8 KV heads of 128; Llama-2-7B: 32 and 32.
  const std::vector<SplitShape> shapes =
      env.quick ? std::vector<SplitShape>{{"qkv", 256, 64, 256, {1, 4}}}
                : std::vector<SplitShape>{{"L3 qkv", 4096, 1024, 4096, {1, 4, 16}},
                                          {"L2 qkv", 4096, 4096, 4096, {1, 4, 16}}};
  uint64_t seed = 90;
  for (const SplitShape& s : shapes) {
    const int64_t n = s.q + 2 * s.kv, k = s.in_features;
    const int64_t widths[3] = {s.q, s.kv, s.kv};
    const float bound = float(std::sqrt(3.0 / double(k)));
    const HostTensor w = random_tensor({n, k}, dt, ++seed, -bound, bound);
    const DeviceBuffer dw = upload(env, w);
    const Replicas dws(env, {&dw}, double(n * k) * bytes_of(dt));
    for (int64_t t : s.tokens) {
      const HostTensor x = random_tensor({t, k}, dt, ++seed);
      const DeviceBuffer dx = upload(env, x);
      const DeviceBuffer dq = poisoned(env, {t, s.q}, dt), dk = poisoned(env, {t, s.kv}, dt),
                         dv = poisoned(env, {t, s.kv}, dt);
      const DeviceBuffer* outs[3] = {&dq, &dk, &dv};
      const std::string shape = shape_str({t, k}) + " x " + shape_str({n, k}) + " " + s.role;
      KernelCase c =
          make_case(env, "linear_split", shape, double(t * k + n * k + t * n) * bytes_of(dt),
                    2.0 * double(t) * double(n) * double(k));
      dws.bind(&c, [&](int i) {
        kernels::linear_split(dq.view(), dk.view(), dv.view(), dx.view(), dws.view(i, 0),
                              env.stream);
      });
      c.check = [&] {
        const std::vector<int64_t> rows = checked_tokens(t);
        int64_t wrong = 0, row0 = 0;
        for (int o = 0; o < 3; ++o) {  // each output against ref::linear on its row block
          const int64_t width = widths[o];
          const HostTensor got = outs[o]->download(env.stream);
          HostTensor want({int64_t(rows.size()), width}, dt);
          wrong += parallel_sum(int64_t(rows.size()), [&](int64_t r) {
            const int64_t tok = rows[size_t(r)];
            const TensorView want_row = want.view().slice(r, r + 1);
            kernels::ref::linear(want_row, x.view().slice(tok, tok + 1),
                                 w.view().slice(row0, row0 + width));
            return count_wrong(got.view().slice(tok, tok + 1), want_row, tolerance(dt));
          });
          row0 += width;
        }
        return wrong;
      };
      run_case(c);
    }
  }
}

// The QKV projection as a decode step runs it: one GEMV whose epilogue rotates q and k (RoPE)
// and appends k and v to a paged cache (linear_qkv_append), with the step's plan complete before
// the launch (plan_complete; TIDAL_QKV_EARLY=0 reads it after the wait). Token i is sequence row
// i at position kLen - 1 - i. Checked: q, k, v and the whole caches against the CPU op.
void bench_linear_qkv_append(const BenchEnv& env, const RunCase& run_case) {
  const DType dt = env.dtype;
  struct QkvShape {
    const char* role;
    int64_t heads, kv_heads, head_dim, in_features;
    std::vector<int64_t> tokens;
  };
  const std::vector<QkvShape> shapes =
      env.quick ? std::vector<QkvShape>{{"qkv", 4, 2, 64, 256, {1, 3}}}
                : std::vector<QkvShape>{{"L3 qkv", 32, 8, 128, 4096, {1, 4, 8}},
                                        {"L2 qkv", 32, 32, 128, 4096, {1, 4, 8}}};
  constexpr int64_t kPage = 16, kLen = 64;  // a cache row's pages: kLen / kPage
  uint64_t seed = 130;
  for (const QkvShape& s : shapes) {
    const int64_t d = s.head_dim, k = s.in_features, n = (s.heads + 2 * s.kv_heads) * d;
    const float bound = float(std::sqrt(3.0 / double(k)));
    const HostTensor w = random_tensor({n, k}, dt, ++seed, -bound, bound);
    const DeviceBuffer dw = upload(env, w);
    // Only the weight: the caches are the op's output (each call appends to the same slots).
    const Replicas dws(env, {&dw}, double(n * k) * bytes_of(dt));
    const HostTensor inv_freq = llama3_inv_freq(d);
    const DeviceBuffer dfreq = upload(env, inv_freq);
    for (int64_t t : s.tokens) {
      const int64_t pages = t * (kLen / kPage);
      std::vector<int64_t> table, seqs, positions;
      for (int64_t p = 0; p < pages; ++p) table.push_back(pages - 1 - p);  // reversed pages
      for (int64_t i = 0; i < t; ++i) {
        seqs.push_back(i);
        positions.push_back(kLen - 1 - i);
      }
      const HostTensor x = random_tensor({t, k}, dt, ++seed);
      const HostTensor kc = random_tensor({pages, kPage, s.kv_heads, d}, dt, ++seed),
                       vc = random_tensor({pages, kPage, s.kv_heads, d}, dt, ++seed);
      const HostTensor tables = int_tensor({t, kLen / kPage}, DType::kI32, table),
                       seq_ids = int_tensor({t}, DType::kI32, seqs),
                       pos = int_tensor({t}, DType::kI32, positions);
      const DeviceBuffer dx = upload(env, x), dkc = upload(env, kc), dvc = upload(env, vc),
                         dtables = upload(env, tables), dseq = upload(env, seq_ids),
                         dpos = upload(env, pos);
      const DeviceBuffer dq = poisoned(env, {t, s.heads, d}, dt),
                         dk = poisoned(env, {t, s.kv_heads, d}, dt),
                         dv = poisoned(env, {t, s.kv_heads, d}, dt);
      kernels::PagedKvAppendParams p{dkc.view(),  dvc.view(),   dtables.view(), dseq.view(),
                                     dpos.view(), dk.view(),    dv.view(),      {},
                                     {},          dq.view(),    dfreq.view()};
      p.plan_complete = true;
      const std::string shape = shape_str({t, k}) + " x " + shape_str({n, k}) + " " + s.role;
      // The weight and x read; q, k, v written, and k and v once more into the cache.
      KernelCase c = make_case(env, "linear_qkv_append", shape,
                               double(t * k + n * k + t * n + 2 * t * s.kv_heads * d) *
                                   bytes_of(dt),
                               2.0 * double(t) * double(n) * double(k));
      dws.bind(
          &c, [&](int i) { kernels::linear_qkv_append(p, dx.view(), dws.view(i, 0), env.stream); });
      c.check = [&] {  // every output, and the whole caches (the right slots, nothing else)
        HostTensor q({t, s.heads, d}, dt), kk({t, s.kv_heads, d}, dt), vv({t, s.kv_heads, d}, dt);
        HostTensor want_kc = clone(kc.view()), want_vc = clone(vc.view());
        kernels::PagedKvAppendParams h{want_kc.view(), want_vc.view(), tables.view(),
                                       seq_ids.view(), pos.view(),     kk.view(),
                                       vv.view(),      {},             {},
                                       q.view(),       inv_freq.view()};
        kernels::linear_qkv_append(h, x.view(), w.view(), Stream{});
        const auto tol = tolerance(dt);
        return count_wrong(dq.download(env.stream).view(), q.view(), tol) +
               count_wrong(dk.download(env.stream).view(), kk.view(), tol) +
               count_wrong(dv.download(env.stream).view(), vv.view(), tol) +
               count_wrong(dkc.download(env.stream).view(), want_kc.view(), tol) +
               count_wrong(dvc.download(env.stream).view(), want_vc.view(), tol);
      };
      run_case(c);
    }
  }
}

void bench_linear_swiglu(const BenchEnv& env, const RunCase& run_case) {
  const DType dt = env.dtype;
  struct SwigluShape {
    const char* role;
    int64_t inter, in_features;
    std::vector<int64_t> tokens;
  };
  const std::vector<SwigluShape> shapes =
      env.quick ? std::vector<SwigluShape>{{"gate_up", 352, 256, {1, 4}}}
                : std::vector<SwigluShape>{{"L3 gate_up", 14336, 4096, {1, 4, 16}},
                                           {"L2 gate_up", 11008, 4096, {1}}};
  uint64_t seed = 110;
  for (const SwigluShape& s : shapes) {
    const int64_t inter = s.inter, k = s.in_features;
    const float bound = float(std::sqrt(3.0 / double(k)));
    const HostTensor w = random_tensor({2 * inter, k}, dt, ++seed, -bound, bound);
    const DeviceBuffer dw = upload(env, w);
    const Replicas dws(env, {&dw}, double(2 * inter * k) * bytes_of(dt));
    for (int64_t t : s.tokens) {
      const HostTensor x = random_tensor({t, k}, dt, ++seed);
      const DeviceBuffer dx = upload(env, x), dact = poisoned(env, {t, inter}, dt);
      const DeviceBuffer dgu = poisoned(env, {t, 2 * inter}, dt);  // scratch past 8 tokens
      const std::string shape =
          shape_str({t, k}) + " x " + shape_str({2 * inter, k}) + " " + s.role;
      KernelCase c = make_case(env, "linear_swiglu", shape,
                               double(t * k + 2 * inter * k + t * inter) * bytes_of(dt),
                               4.0 * double(t) * double(inter) * double(k));
      dws.bind(&c, [&](int i) {
        kernels::linear_swiglu(dact.view(), dx.view(), dws.view(i, 0), dgu.view(), env.stream);
      });
      c.check = [&] {  // gate and up rounded to the dtype, then silu_and_mul, as ref:: does
        const HostTensor got = dact.download(env.stream);
        const std::vector<int64_t> rows = checked_tokens(t);
        constexpr int64_t kSlice = 1024;
        const int64_t slices = (inter + kSlice - 1) / kSlice;
        return parallel_sum(int64_t(rows.size()) * slices, [&](int64_t piece) {
          const int64_t tok = rows[size_t(piece / slices)], o0 = (piece % slices) * kSlice;
          const int64_t len = std::min(inter, o0 + kSlice) - o0;
          HostTensor gate({1, len}, dt), up({1, len}, dt), want({1, len}, dt);
          const TensorView x_row = x.view().slice(tok, tok + 1);
          kernels::ref::linear(gate.view(), x_row, w.view().slice(o0, o0 + len));
          kernels::ref::linear(up.view(), x_row, w.view().slice(inter + o0, inter + o0 + len));
          kernels::ref::silu_and_mul(want.view(), gate.view(), up.view());
          return count_wrong(sub_view(got.view(), tok * inter + o0, {1, len}, {inter, 1}),
                             want.view(), tolerance(dt));
        });
      };
      run_case(c);
    }
  }
}

}  // namespace tidal::bench
