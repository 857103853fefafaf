// SPDX-License-Identifier: Apache-2.0
// kernel_bench cases for the dense ops: norms, projections, RoPE, activations, residuals and
// the embedding lookup, at Llama-3-8B widths (hidden 4096, inter 14336, 32/8 heads of 128).
// Each check recomputes the output here, in double, without calling the op's ref:: code.
#include <cmath>
#include <string>
#include <vector>

#include "benchmarks/kernels/bench_case.h"
#include "kernels/embedding_lookup.h"
#include "kernels/linear.h"
#include "kernels/residual_add.h"
#include "kernels/rms_norm.h"
#include "kernels/rotary_embedding.h"
#include "kernels/silu_and_mul.h"
#include "runtime/tensor.h"

namespace tidal::bench {
namespace {

constexpr int64_t kHidden = 4096;
constexpr int64_t kInter = 14336;
constexpr int64_t kHeads = 32;
constexpr int64_t kKvHeads = 8;
constexpr int64_t kHeadDim = 128;
constexpr int64_t kTokenCounts[] = {1, 16};  // a decode step, and a small prefill chunk
constexpr double kF32 = sizeof(float);

TensorView view_of(std::vector<float>& v, std::initializer_list<int64_t> shape) {
  return make_view(v.data(), DType::kF32, shape);
}

}  // namespace

std::vector<float> random_floats(size_t n, uint64_t seed, float scale) {
  std::vector<float> out(n);
  uint64_t state = seed * 0x9e3779b97f4a7c15ull + 1;
  for (float& v : out) {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    v = scale * (float(z >> 40) * (2.0f / 16777216.0f) - 1.0f);  // 24 random bits
  }
  return out;
}

std::string shape_str(std::initializer_list<int64_t> dims) {
  std::string s = "[";
  for (int64_t d : dims) s += (s.size() > 1 ? ", " : "") + std::to_string(d);
  return s + "]";
}

void bench_rms_norm(const RunCase& run_case) {
  for (int64_t t : kTokenCounts) {
    std::vector<float> x = random_floats(size_t(t * kHidden), 1);
    std::vector<float> w = random_floats(size_t(kHidden), 2);
    std::vector<float> y(x.size());
    const float eps = 1e-5f;
    KernelCase c =
        make_case("rms_norm", shape_str({t, kHidden}), kF32 * (2 * t * kHidden + kHidden));
    c.run = [&] {
      kernels::rms_norm(view_of(y, {t, kHidden}), view_of(x, {t, kHidden}), view_of(w, {kHidden}),
                        eps, Stream{});
    };
    c.check = [&] {
      int64_t wrong = 0;
      for (int64_t r = 0; r < t; ++r) {
        const float* xr = x.data() + r * kHidden;
        double sum_sq = 0.0;
        for (int64_t i = 0; i < kHidden; ++i) sum_sq += double(xr[i]) * xr[i];
        const double inv_rms = 1.0 / std::sqrt(sum_sq / double(kHidden) + eps);
        for (int64_t i = 0; i < kHidden; ++i) {
          wrong +=
              !is_close(y[size_t(r * kHidden + i)], xr[i] * inv_rms * w[size_t(i)], 1e-6, 1e-5);
        }
      }
      return wrong;
    };
    run_case(c);
  }
}

void bench_linear(const RunCase& run_case) {
  // q/o projections (4096 -> 4096) and gate/up (4096 -> 14336) of one decode token.
  const int64_t out_features[] = {kHidden, kInter};
  for (int64_t n : out_features) {
    const int64_t t = 1, k = kHidden;
    std::vector<float> x = random_floats(size_t(t * k), 3);
    std::vector<float> w = random_floats(size_t(n * k), 4, 0.02f);
    std::vector<float> y(static_cast<size_t>(t * n));
    KernelCase c = make_case("linear", shape_str({t, k}) + " x " + shape_str({n, k}),
                             kF32 * double(t * k + n * k + t * n), 2.0 * double(t * n * k));
    c.run = [&] { kernels::linear(view_of(y, {t, n}), view_of(x, {t, k}), view_of(w, {n, k}), Stream{}); };
    c.check = [&] {  // a naive double loop over 64 sampled outputs
      int64_t wrong = 0;
      for (int64_t s = 0; s < 64; ++s) {
        const int64_t o = (s * 7919) % n;
        double acc = 0.0;
        for (int64_t i = 0; i < k; ++i) acc += double(x[size_t(i)]) * w[size_t(o * k + i)];
        wrong += !is_close(y[size_t(o)], acc, 1e-5, 1e-4);
      }
      return wrong;
    };
    run_case(c);
  }
}

void bench_rotary_embedding(const RunCase& run_case) {
  for (int64_t t : kTokenCounts) {
    std::vector<float> q = random_floats(size_t(t * kHeads * kHeadDim), 5);
    std::vector<float> k = random_floats(size_t(t * kKvHeads * kHeadDim), 6);
    const std::vector<float> q0 = q, k0 = k;  // the op rotates in place
    std::vector<int32_t> pos(static_cast<size_t>(t));
    for (int64_t i = 0; i < t; ++i) pos[size_t(i)] = int32_t(4000 + 7 * i);
    std::vector<float> inv_freq(static_cast<size_t>(kHeadDim / 2));
    for (int64_t i = 0; i < kHeadDim / 2; ++i) {
      inv_freq[size_t(i)] = float(1.0 / std::pow(500000.0, double(2 * i) / double(kHeadDim)));
    }
    const double qk = double(t * (kHeads + kKvHeads) * kHeadDim);
    KernelCase c = make_case(
        "rotary_embedding",
        "q " + shape_str({t, kHeads, kHeadDim}) + " k " + shape_str({t, kKvHeads, kHeadDim}),
        kF32 * (2 * qk + double(kHeadDim / 2)) + 4.0 * double(t));
    c.run = [&] {
      kernels::rotary_embedding(
          view_of(q, {t, kHeads, kHeadDim}), view_of(k, {t, kKvHeads, kHeadDim}),
          make_view(pos.data(), DType::kI32, {t}), view_of(inv_freq, {kHeadDim / 2}), Stream{});
    };
    c.check = [&] {
      int64_t wrong = 0;
      const int64_t half = kHeadDim / 2;
      auto check_one = [&](const std::vector<float>& got, const std::vector<float>& in,
                           int64_t heads) {
        for (int64_t r = 0; r < t * heads; ++r) {
          const int32_t p = pos[size_t(r / heads)];
          for (int64_t i = 0; i < half; ++i) {
            const double angle = float(p) * inv_freq[size_t(i)];  // f32 product, as HF
            const double a = in[size_t(r * kHeadDim + i)];
            const double b = in[size_t(r * kHeadDim + i + half)];
            wrong += !is_close(got[size_t(r * kHeadDim + i)],
                               a * std::cos(angle) - b * std::sin(angle), 1e-6, 1e-5);
            wrong += !is_close(got[size_t(r * kHeadDim + i + half)],
                               b * std::cos(angle) + a * std::sin(angle), 1e-6, 1e-5);
          }
        }
      };
      check_one(q, q0, kHeads);
      check_one(k, k0, kKvHeads);
      return wrong;
    };
    run_case(c);
  }
}

void bench_silu_and_mul(const RunCase& run_case) {
  for (int64_t t : kTokenCounts) {
    std::vector<float> gate = random_floats(size_t(t * kInter), 7, 4.0f);
    std::vector<float> up = random_floats(size_t(t * kInter), 8);
    std::vector<float> out(gate.size());
    KernelCase c =
        make_case("silu_and_mul", shape_str({t, kInter}), kF32 * 3.0 * double(t * kInter));
    c.run = [&] {
      kernels::silu_and_mul(view_of(out, {t, kInter}), view_of(gate, {t, kInter}),
                            view_of(up, {t, kInter}), Stream{});
    };
    c.check = [&] {
      int64_t wrong = 0;
      for (size_t i = 0; i < out.size(); ++i) {
        const double g = gate[i];
        wrong += !is_close(out[i], g / (1.0 + std::exp(-g)) * up[i], 1e-6, 1e-5);
      }
      return wrong;
    };
    run_case(c);
  }
}

void bench_residual_add(const RunCase& run_case) {
  for (int64_t t : kTokenCounts) {
    std::vector<float> a = random_floats(size_t(t * kHidden), 9);
    std::vector<float> b = random_floats(size_t(t * kHidden), 10);
    std::vector<float> out(a.size());
    KernelCase c =
        make_case("residual_add", shape_str({t, kHidden}), kF32 * 3.0 * double(t * kHidden));
    c.run = [&] {
      kernels::residual_add(view_of(out, {t, kHidden}), view_of(a, {t, kHidden}),
                            view_of(b, {t, kHidden}), Stream{});
    };
    c.check = [&] {
      int64_t wrong = 0;
      for (size_t i = 0; i < out.size(); ++i)
        wrong += !is_close(out[i], double(a[i]) + b[i], 0, 1e-7);
      return wrong;
    };
    run_case(c);
  }
}

void bench_embedding_lookup(const RunCase& run_case) {
  // Only the looked-up rows move, so a 8192-row table stands in for a 128K vocabulary.
  const int64_t vocab = 8192;
  std::vector<float> table = random_floats(size_t(vocab * kHidden), 11);
  for (int64_t t : kTokenCounts) {
    std::vector<int32_t> ids(static_cast<size_t>(t));
    for (int64_t i = 0; i < t; ++i) ids[size_t(i)] = int32_t((i * 2654435761u + 17) % vocab);
    std::vector<float> out(static_cast<size_t>(t * kHidden));
    KernelCase c = make_case("embedding_lookup",
                             "ids " + shape_str({t}) + " table " + shape_str({vocab, kHidden}),
                             kF32 * 2.0 * double(t * kHidden) + 4.0 * double(t));
    c.run = [&] {
      kernels::embedding_lookup(view_of(out, {t, kHidden}), view_of(table, {vocab, kHidden}),
                                make_view(ids.data(), DType::kI32, {t}), Stream{});
    };
    c.check = [&] {  // a copy: must be exact
      int64_t wrong = 0;
      for (int64_t r = 0; r < t; ++r) {
        const float* want = table.data() + int64_t(ids[size_t(r)]) * kHidden;
        for (int64_t i = 0; i < kHidden; ++i) wrong += out[size_t(r * kHidden + i)] != want[i];
      }
      return wrong;
    };
    run_case(c);
  }
}

}  // namespace tidal::bench
