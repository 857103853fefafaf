// SPDX-License-Identifier: Apache-2.0
// kernel_bench cases for the per-token ops of a Llama block: embedding lookup, RMSNorm (plain
// and fused with the residual add), RoPE, SwiGLU and the residual add, each for one decode
// token and for a prefill chunk, at Llama-3-8B widths (hidden 4096, inter 14336, 32/8 heads of
// 128). Every output element is checked against the op's ref:: twin, row blocks in parallel.
// Graph mode (Replicas) copies the embedding table and the norms' weights, which a step reads
// once; not the activations, nor RoPE's frequencies (every layer reads them: in L2 in a step).
#include <vector>

#include "benchmarks/kernels/case_util.h"
#include "kernels/embedding_lookup.h"
#include "kernels/residual_add.h"
#include "kernels/rms_norm.h"
#include "kernels/rotary_embedding.h"
#include "kernels/silu_and_mul.h"

namespace tidal::bench {
namespace {

struct Dims {
  int64_t hidden, inter, heads, kv_heads, head_dim, vocab;
  std::vector<int64_t> tokens;  // a decode token, and a prefill chunk
};

Dims dims(const BenchEnv& env) {
  if (env.quick) return {256, 704, 4, 2, 64, 1000, {1, 37}};
  return {4096, 14336, 32, 8, 128, 128256, {1, 2048}};
}

constexpr float kEps = 1e-5f;

}  // namespace

void bench_embedding_lookup(const BenchEnv& env, const RunCase& run_case) {
  const Dims d = dims(env);
  const DType dt = env.dtype;
  // The whole Llama-3 vocabulary: only the looked-up rows move, but they are scattered over it.
  const HostTensor table = random_tensor({d.vocab, d.hidden}, dt, 11);
  const DeviceBuffer dtable = upload(env, table);
  for (int64_t t : d.tokens) {
    std::vector<int64_t> id_values;
    Rng rng(12 + uint64_t(t));
    for (int64_t i = 0; i < t; ++i) id_values.push_back(rng.below(d.vocab));
    const HostTensor ids = int_tensor({t}, DType::kI32, id_values);
    const DeviceBuffer dids = upload(env, ids);
    const DeviceBuffer dout = poisoned(env, {t, d.hidden}, dt);
    // Graph mode: copies of the whole table (its rows are a step's first read of them), each
    // call reading the same rows of its own copy.
    const Replicas tables(env, {&dtable}, double(t * d.hidden) * bytes_of(dt));
    KernelCase c = make_case(env, "embedding_lookup",
                             "ids " + shape_str({t}) + " table " + shape_str({d.vocab, d.hidden}),
                             2.0 * double(t * d.hidden) * bytes_of(dt) + 4.0 * double(t));
    tables.bind(&c, [&](int i) {
      kernels::embedding_lookup(dout.view(), tables.view(i, 0), dids.view(), env.stream);
    });
    c.check = [&] {
      const HostTensor got = dout.download(env.stream);
      HostTensor want({t, d.hidden}, dt);
      return check_rows(t, [&](int64_t b, int64_t e) {
        kernels::ref::embedding_lookup(want.view().slice(b, e), table.view(),
                                       ids.view().slice(b, e));
        return count_wrong(got.view().slice(b, e), want.view().slice(b, e), {0.0, 0.0});
      });
    };
    run_case(c);
  }
}

void bench_rms_norm(const BenchEnv& env, const RunCase& run_case) {
  const Dims d = dims(env);
  const DType dt = env.dtype;
  for (int64_t t : d.tokens) {
    const HostTensor x = random_tensor({t, d.hidden}, dt, 21 + uint64_t(t));
    // Weights around 1, as trained norms have: a sign or index slip shows, a zero weight can't.
    const HostTensor w = random_tensor({d.hidden}, dt, 22, 0.5f, 1.5f);
    const DeviceBuffer dx = upload(env, x), dw = upload(env, w);
    const DeviceBuffer dy = poisoned(env, {t, d.hidden}, dt);
    const Replicas dws(env, {&dw}, double(d.hidden) * bytes_of(dt));  // a layer's weight
    KernelCase c = make_case(env, "rms_norm", shape_str({t, d.hidden}),
                             double(2 * t * d.hidden + d.hidden) * bytes_of(dt));
    dws.bind(&c, [&](int i) {
      kernels::rms_norm(dy.view(), dx.view(), dws.view(i, 0), kEps, env.stream);
    });
    c.check = [&] {
      const HostTensor got = dy.download(env.stream);
      HostTensor want({t, d.hidden}, dt);
      return check_rows(t, [&](int64_t b, int64_t e) {
        kernels::ref::rms_norm(want.view().slice(b, e), x.view().slice(b, e), w.view(), kEps);
        return count_wrong(got.view().slice(b, e), want.view().slice(b, e), tolerance(dt));
      });
    };
    run_case(c);
  }
}

void bench_fused_add_rms_norm(const BenchEnv& env, const RunCase& run_case) {
  const Dims d = dims(env);
  const DType dt = env.dtype;
  for (int64_t t : d.tokens) {
    const HostTensor residual = random_tensor({t, d.hidden}, dt, 31 + uint64_t(t), -4.0f, 4.0f);
    const HostTensor delta = random_tensor({t, d.hidden}, dt, 32 + uint64_t(t));
    const HostTensor w = random_tensor({d.hidden}, dt, 33, 0.5f, 1.5f);
    const DeviceBuffer dres = upload(env, residual), ddelta = upload(env, delta);
    const DeviceBuffer dw = upload(env, w), dout = poisoned(env, {t, d.hidden}, dt);
    const Replicas dws(env, {&dw}, double(d.hidden) * bytes_of(dt));  // a layer's weight
    // Reads residual and delta, writes residual and out. The timed calls keep adding delta to
    // the residual in place, which costs the same.
    KernelCase c = make_case(env, "fused_add_rms_norm", shape_str({t, d.hidden}),
                             double(4 * t * d.hidden + d.hidden) * bytes_of(dt));
    dws.bind(&c, [&](int i) {
      kernels::fused_add_rms_norm(dout.view(), dres.view(), ddelta.view(), dws.view(i, 0), kEps,
                                  env.stream);
    });
    c.check = [&] {
      const HostTensor got_out = dout.download(env.stream), got_res = dres.download(env.stream);
      HostTensor want_out({t, d.hidden}, dt), want_res = clone(residual.view());
      return check_rows(t, [&](int64_t b, int64_t e) {
        kernels::ref::fused_add_rms_norm(want_out.view().slice(b, e), want_res.view().slice(b, e),
                                         delta.view().slice(b, e), w.view(), kEps);
        return count_wrong(got_out.view().slice(b, e), want_out.view().slice(b, e), tolerance(dt)) +
               count_wrong(got_res.view().slice(b, e), want_res.view().slice(b, e), tolerance(dt));
      });
    };
    run_case(c);
  }
}

void bench_rotary_embedding(const BenchEnv& env, const RunCase& run_case) {
  const Dims d = dims(env);
  const DType dt = env.dtype;
  const HostTensor inv_freq = llama3_inv_freq(d.head_dim);
  const DeviceBuffer dfreq = upload(env, inv_freq);
  for (int64_t t : d.tokens) {
    const HostTensor q = random_tensor({t, d.heads, d.head_dim}, dt, 41 + uint64_t(t));
    const HostTensor k = random_tensor({t, d.kv_heads, d.head_dim}, dt, 42 + uint64_t(t));
    std::vector<int64_t> pos_values;
    Rng rng(43);
    for (int64_t i = 0; i < t; ++i) pos_values.push_back(rng.below(100000));
    const HostTensor pos = int_tensor({t}, DType::kI32, pos_values);
    const DeviceBuffer dq = upload(env, q), dk = upload(env, k), dpos = upload(env, pos);
    const double qk = double(t * (d.heads + d.kv_heads) * d.head_dim);
    // In place: q and k read and written once. The timed calls keep rotating them.
    KernelCase c = make_case(
        env, "rotary_embedding",
        "q " + shape_str({t, d.heads, d.head_dim}) + " k " + shape_str({t, d.kv_heads, d.head_dim}),
        2.0 * qk * bytes_of(dt) + 4.0 * double(t + d.head_dim / 2));
    c.run = [&] {
      kernels::rotary_embedding(dq.view(), dk.view(), dpos.view(), dfreq.view(), env.stream);
    };
    c.check = [&] {
      const HostTensor got_q = dq.download(env.stream), got_k = dk.download(env.stream);
      HostTensor want_q = clone(q.view()), want_k = clone(k.view());
      return check_rows(t, [&](int64_t b, int64_t e) {
        kernels::ref::rotary_embedding(want_q.view().slice(b, e), want_k.view().slice(b, e),
                                       pos.view().slice(b, e), inv_freq.view());
        return count_wrong(got_q.view().slice(b, e), want_q.view().slice(b, e), tolerance(dt)) +
               count_wrong(got_k.view().slice(b, e), want_k.view().slice(b, e), tolerance(dt));
      });
    };
    run_case(c);
  }
}

void bench_silu_and_mul(const BenchEnv& env, const RunCase& run_case) {
  const Dims d = dims(env);
  const DType dt = env.dtype;
  const int64_t n = d.inter;
  for (int64_t t : d.tokens) {
    // gate and up are the two halves of the fused gate_up projection's output, as in the model.
    const HostTensor gate_up = random_tensor({t, 2 * n}, dt, 51 + uint64_t(t), -4.0f, 4.0f);
    const DeviceBuffer dgu = upload(env, gate_up), dout = poisoned(env, {t, n}, dt);
    const auto halves = [&](const TensorView& v, int64_t rows, int64_t half) {
      return sub_view(v, half * n, {rows, n}, {2 * n, 1});
    };
    KernelCase c =
        make_case(env, "silu_and_mul", shape_str({t, n}) + " of " + shape_str({t, 2 * n}),
                  3.0 * double(t * n) * bytes_of(dt));
    c.run = [&] {
      kernels::silu_and_mul(dout.view(), halves(dgu.view(), t, 0), halves(dgu.view(), t, 1),
                            env.stream);
    };
    c.check = [&] {
      const HostTensor got = dout.download(env.stream);
      HostTensor want({t, n}, dt);
      return check_rows(t, [&](int64_t b, int64_t e) {
        const TensorView rows = gate_up.view().slice(b, e);
        kernels::ref::silu_and_mul(want.view().slice(b, e), halves(rows, e - b, 0),
                                   halves(rows, e - b, 1));
        return count_wrong(got.view().slice(b, e), want.view().slice(b, e), tolerance(dt));
      });
    };
    run_case(c);
  }
}

void bench_residual_add(const BenchEnv& env, const RunCase& run_case) {
  const Dims d = dims(env);
  const DType dt = env.dtype;
  for (int64_t t : d.tokens) {
    const HostTensor a = random_tensor({t, d.hidden}, dt, 61 + uint64_t(t));
    const HostTensor b = random_tensor({t, d.hidden}, dt, 62 + uint64_t(t));
    const DeviceBuffer da = upload(env, a), db = upload(env, b);
    const DeviceBuffer dout = poisoned(env, {t, d.hidden}, dt);
    KernelCase c = make_case(env, "residual_add", shape_str({t, d.hidden}),
                             3.0 * double(t * d.hidden) * bytes_of(dt));
    c.run = [&] { kernels::residual_add(dout.view(), da.view(), db.view(), env.stream); };
    c.check = [&] {
      const HostTensor got = dout.download(env.stream);
      HostTensor want({t, d.hidden}, dt);
      return check_rows(t, [&](int64_t r0, int64_t r1) {
        kernels::ref::residual_add(want.view().slice(r0, r1), a.view().slice(r0, r1),
                                   b.view().slice(r0, r1));
        return count_wrong(got.view().slice(r0, r1), want.view().slice(r0, r1), tolerance(dt));
      });
    };
    run_case(c);
  }
}

}  // namespace tidal::bench
