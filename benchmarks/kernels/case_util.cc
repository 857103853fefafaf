// SPDX-License-Identifier: Apache-2.0
#include "benchmarks/kernels/case_util.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <unordered_set>
#include <utility>

#include "benchmarks/common/parallel.h"
#include "runtime/device.h"
#include "runtime/tensor_access.h"

namespace tidal::bench {

uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

HostTensor random_tensor(std::vector<int64_t> shape, DType dtype, uint64_t seed, float lo,
                         float hi) {
  HostTensor t(std::move(shape), dtype);
  const TensorView v = t.view();
  const int64_t n = v.numel();
  // Chunks of 1M elements over the cores: a 100K-position MHA cache is 400M elements.
  constexpr int64_t kChunk = int64_t(1) << 20;
  const uint64_t base = mix64(seed) * 0x2545f4914f6cdd1dull;
  parallel_for((n + kChunk - 1) / kChunk, [&](int64_t c) {
    const int64_t end = std::min(n, (c + 1) * kChunk);
    for (int64_t i = c * kChunk; i < end; ++i) {
      const float u = float(mix64(base + uint64_t(i)) >> 40) * (1.0f / 16777216.0f);  // [0, 1)
      store_f32(v.data, dtype, i, lo + (hi - lo) * u);
    }
  });
  return t;
}

HostTensor int_tensor(std::vector<int64_t> shape, DType dtype, const std::vector<int64_t>& values) {
  HostTensor t(std::move(shape), dtype);
  const TensorView v = t.view();
  TIDAL_CHECK(int64_t(values.size()) == v.numel(), "int_tensor: value count != shape");
  for (size_t i = 0; i < values.size(); ++i) {
    switch (dtype) {
      case DType::kI32: static_cast<int32_t*>(v.data)[i] = int32_t(values[i]); break;
      case DType::kI64: static_cast<int64_t*>(v.data)[i] = values[i]; break;
      case DType::kU8: static_cast<uint8_t*>(v.data)[i] = uint8_t(values[i]); break;
      default: TIDAL_CHECK(false, "int_tensor: not an integer dtype");
    }
  }
  return t;
}

HostTensor clone(const TensorView& v) {
  TIDAL_CHECK(v.on_cpu() && v.is_contiguous(), "clone: contiguous host view");
  HostTensor t(std::vector<int64_t>(v.shape, v.shape + v.rank), v.dtype);
  std::memcpy(t.view().data, v.data, v.nbytes());
  return t;
}

HostTensor llama3_inv_freq(int64_t head_dim) {
  std::vector<float> freqs(static_cast<size_t>(head_dim / 2));
  for (size_t i = 0; i < freqs.size(); ++i) {
    freqs[i] = float(1.0 / std::pow(500000.0, double(2 * i) / double(head_dim)));
  }
  return HostTensor::from({head_dim / 2}, freqs);
}

std::vector<int64_t> shuffled(int64_t n, uint64_t seed) {
  std::vector<int64_t> p(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) p[size_t(i)] = i;
  Rng rng(seed);
  for (int64_t i = n - 1; i > 0; --i) std::swap(p[size_t(i)], p[size_t(rng.below(i + 1))]);
  return p;  // Fisher-Yates with our own generator: std::shuffle differs between libraries
}

std::vector<int64_t> random_list(int64_t n, int64_t count, uint64_t seed) {
  TIDAL_CHECK(count >= 1 && count <= n, "random_list: count outside 1..n");
  std::vector<int64_t> out;
  if (count == n) {
    for (int64_t i = 0; i < n; ++i) out.push_back(i);
    return out;
  }
  // Rejection sampling: lists are at most a few percent of the positions in the real cases.
  std::unordered_set<int64_t> seen;
  Rng rng(seed);
  while (int64_t(seen.size()) < count - 1) seen.insert(rng.below(n - 1));
  out.assign(seen.begin(), seen.end());
  std::sort(out.begin(), out.end());
  out.push_back(n - 1);
  return out;
}

std::vector<int64_t> spread(int64_t n, int64_t count) {
  std::vector<int64_t> out;
  for (int64_t i = 0; i < count && n > 0; ++i) {
    // Evenly spaced, nudged off round numbers so the checked rows are not all tile-aligned.
    int64_t v = count == 1 ? 0 : i * (n - 1) / (count - 1);
    if (i > 0 && i + 1 < count) v = std::min(n - 1, v + 1);
    if (out.empty() || out.back() != v) out.push_back(v);
  }
  return out;
}

TensorView sub_view(const TensorView& base, int64_t offset, std::initializer_list<int64_t> shape,
                    std::initializer_list<int64_t> stride) {
  TIDAL_CHECK(shape.size() == stride.size() && shape.size() <= size_t(kMaxRank),
              "sub_view: one stride per dimension, rank <= 4");
  TensorView v = base;
  v.data = static_cast<uint8_t*>(base.data) + offset * int64_t(dtype_size(base.dtype));
  v.rank = int(shape.size());
  int d = 0;
  for (int64_t s : shape) v.shape[d++] = s;
  d = 0;
  for (int64_t s : stride) v.stride[d++] = s;
  for (; d < kMaxRank; ++d) v.shape[d] = v.stride[d] = 0;
  return v;
}

DeviceBuffer upload(const BenchEnv& env, const HostTensor& host) {
  return DeviceBuffer::upload(env.device, host.view(), env.stream);
}

DeviceBuffer poisoned(const BenchEnv& env, std::vector<int64_t> shape, DType dtype) {
  return DeviceBuffer::filled(env.device, std::move(shape), dtype, 0xFF, env.stream);
}

DeviceBuffer workspace(const BenchEnv& env, size_t bytes) {
  return DeviceBuffer(env.device, {int64_t(bytes)}, DType::kU8);
}

Tolerance tolerance(DType dtype) {
  switch (dtype) {
    case DType::kF32: return {1e-5, 1e-4};
    case DType::kF16: return {2e-3, 2e-3};
    case DType::kBF16: return {1e-2, 1.6e-2};
    default: return {0.0, 0.0};
  }
}

namespace {

int64_t load_int(const void* base, DType dtype, int64_t i) {
  switch (dtype) {
    case DType::kI32: return static_cast<const int32_t*>(base)[i];
    case DType::kI64: return static_cast<const int64_t*>(base)[i];
    case DType::kU8: return static_cast<const uint8_t*>(base)[i];
    default: TIDAL_CHECK(false, "load_int: not an integer dtype");
  }
}

bool is_float(DType d) { return d == DType::kF32 || d == DType::kF16 || d == DType::kBF16; }

}  // namespace

int64_t count_wrong(const TensorView& got, const TensorView& want, Tolerance tol) {
  TIDAL_CHECK(same_shape(got, want) && is_float(got.dtype) == is_float(want.dtype),
              "count_wrong: " + got.describe() + " against " + want.describe());
  // Walk both views as rank 4, the missing leading dims of size 1, through their own strides.
  int64_t n[kMaxRank] = {1, 1, 1, 1};
  for (int d = 0; d < got.rank; ++d) n[kMaxRank - got.rank + d] = got.shape[d];
  auto offset = [](const TensorView& v, const int64_t* i) {
    int64_t o = 0;
    for (int d = 0; d < v.rank; ++d) o += i[kMaxRank - v.rank + d] * v.stride[d];
    return o;
  };
  int64_t wrong = 0, i[kMaxRank];
  for (i[0] = 0; i[0] < n[0]; ++i[0]) {
    for (i[1] = 0; i[1] < n[1]; ++i[1]) {
      for (i[2] = 0; i[2] < n[2]; ++i[2]) {
        for (i[3] = 0; i[3] < n[3]; ++i[3]) {
          const int64_t og = offset(got, i), ow = offset(want, i);
          if (!is_float(got.dtype)) {
            wrong += load_int(got.data, got.dtype, og) != load_int(want.data, want.dtype, ow);
            continue;
          }
          const double g = load_f32(got.data, got.dtype, og);
          const double w = load_f32(want.data, want.dtype, ow);
          wrong += !(std::isfinite(g) && std::fabs(g - w) <= tol.atol + tol.rtol * std::fabs(w));
        }
      }
    }
  }
  return wrong;
}

Replicas::Replicas(const BenchEnv& env, std::vector<const DeviceBuffer*> inputs, double read_bytes)
    : inputs_(std::move(inputs)) {
  const double two_l2 = 2.0 * double(env.l2_bytes);
  if (!env.cuda() || env.graph_calls <= 1 || read_bytes <= 0.0 || read_bytes >= two_l2) return;
  size_t bytes = 0;  // of one copy
  for (const DeviceBuffer* b : inputs_) bytes += b->view().nbytes();
  TIDAL_CHECK(bytes > 0, "Replicas: nothing to copy");
  DeviceInfo d;
  TIDAL_CHECK(cuda_device_info(env.device.index, &d).ok(), "Replicas: no device info");
  constexpr size_t kReserve = size_t(1) << 30;  // for the graph and what the case allocates later
  const double fit = d.free_bytes > kReserve ? double((d.free_bytes - kReserve) / bytes) : 0.0;
  count_ =
      int(std::min({double(env.graph_calls), std::ceil(two_l2 / read_bytes) + 1.0, fit + 1.0}));
  copies_.reserve(size_t(count_ - 1) * inputs_.size());
  for (int i = 1; i < count_; ++i) {
    for (const DeviceBuffer* b : inputs_) {
      const TensorView v = b->view();
      copies_.emplace_back(env.device, std::vector<int64_t>(v.shape, v.shape + v.rank), v.dtype);
      copy_bytes(copies_.back().view().data, env.device, v.data, env.device, v.nbytes(),
                 env.stream);
    }
  }
  stream_synchronize(env.stream);  // the copies are complete before any call or capture
}

TensorView Replicas::view(int i, int j) const {
  TIDAL_CHECK(i >= 0 && i < count_ && j >= 0 && size_t(j) < inputs_.size(), "Replicas::view");
  return i == 0 ? inputs_[size_t(j)]->view()
                : copies_[size_t(i - 1) * inputs_.size() + size_t(j)].view();
}

void Replicas::bind(KernelCase* c, std::function<void(int)> call) const {
  c->replicas = count_;
  c->run = [call] { call(0); };
  c->run_replica = std::move(call);
}

KernelCase make_case(const BenchEnv& env, std::string op, std::string shape, double bytes,
                     double flops) {
  KernelCase c;
  c.op = std::move(op);
  c.dtype = dtype_name(env.dtype);
  c.shape = std::move(shape);
  c.bytes = bytes;
  c.flops = flops;
  return c;
}

int64_t check_rows(int64_t rows, const std::function<int64_t(int64_t, int64_t)>& fn) {
  constexpr int64_t kBlock = 64;
  return parallel_sum((rows + kBlock - 1) / kBlock,
                      [&](int64_t b) { return fn(b * kBlock, std::min(rows, (b + 1) * kBlock)); });
}

std::string shape_str(std::initializer_list<int64_t> dims) {
  std::string s = "[";
  for (int64_t d : dims) s += (s.size() > 1 ? ", " : "") + std::to_string(d);
  return s + "]";
}

}  // namespace tidal::bench
