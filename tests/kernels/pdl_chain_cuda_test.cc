// SPDX-License-Identifier: Apache-2.0
// The decode step's chain of programmatic dependent launches (kernels/pdl.cuh): rms_norm /
// fused_add_rms_norm -> linear_split (QKV) -> rotary_embedding -> paged_kv_append -> linear (o) ->
// fused_add_rms_norm -> linear (gate_up) -> silu_and_mul -> linear (down), two layers. Each kernel
// may start before the one before it ends (the GEMVs stream their first weights early) and waits
// in the kernel for its inputs. Run back to back on one stream, eagerly and as a CUDA graph
// replayed three times (starting with a device copy, so the first launch follows a memcpy node),
// the chain must give bit-identical results to the same ops run one at a time with a synchronize
// after each (where no overlap can happen): every kernel is deterministic, so any difference is a
// read before its producer finished.
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/fill_random.h"
#include "kernels/linear.h"
#include "kernels/paged_kv_append.h"
#include "kernels/rms_norm.h"
#include "kernels/rotary_embedding.h"
#include "kernels/silu_and_mul.h"
#include "runtime/device.h"
#include "tests/testing/device_tensor.h"
#include "tests/testing/testing.h"

namespace tidal::kernels {
namespace {

using testing::DeviceTensor;

constexpr int64_t kHidden = 2048, kHeads = 16, kKvHeads = 4, kHeadDim = 128, kInter = 5632;
constexpr int64_t kLayers = 2, kPageSize = 16, kPages = 16, kMaxPages = 4;
constexpr float kEps = 1e-5f;

struct Layer {
  DeviceTensor input_norm, w_qkv, wo, post_norm, w_gate_up, w_down;
};

struct Chain {
  int64_t tokens;
  std::vector<Layer> layers;
  DeviceTensor final_norm, x0, x, xn, q, k, v, proj, gate_up, act;
  DeviceTensor k_cache, v_cache, block_tables, seq_ids, positions, inv_freq;
};

DeviceTensor random_device(std::vector<int64_t> shape, DType dtype, uint64_t seed, float mean,
                           float std) {
  DeviceTensor t(shape, dtype);
  fill_random(t.view(), seed, mean, std, Stream{});
  return t;
}

DeviceTensor i32_device(std::vector<int64_t> shape, const std::vector<int32_t>& values) {
  HostTensor h(shape, DType::kI32);
  std::memcpy(h.view().data, values.data(), values.size() * sizeof(int32_t));
  return DeviceTensor::from_host(h.view());
}

Chain make_chain(int64_t tokens) {
  const DType dt = DType::kBF16;
  Chain c;
  c.tokens = tokens;
  uint64_t seed = 100;
  const float w_std = 1.0f / std::sqrt(float(kHidden));
  for (int64_t l = 0; l < kLayers; ++l) {
    Layer layer;
    layer.input_norm = random_device({kHidden}, dt, ++seed, 1.0f, 0.1f);
    layer.w_qkv =
        random_device({(kHeads + 2 * kKvHeads) * kHeadDim, kHidden}, dt, ++seed, 0, w_std);
    layer.wo = random_device({kHidden, kHeads * kHeadDim}, dt, ++seed, 0, w_std);
    layer.post_norm = random_device({kHidden}, dt, ++seed, 1.0f, 0.1f);
    layer.w_gate_up = random_device({2 * kInter, kHidden}, dt, ++seed, 0, w_std);
    layer.w_down = random_device({kHidden, kInter}, dt, ++seed, 0, 1.0f / std::sqrt(float(kInter)));
    c.layers.push_back(std::move(layer));
  }
  c.final_norm = random_device({kHidden}, dt, ++seed, 1.0f, 0.1f);
  c.x0 = random_device({tokens, kHidden}, dt, ++seed, 0, 1.0f);
  c.x = DeviceTensor::filled({tokens, kHidden}, dt, 0xFF);
  c.xn = DeviceTensor::filled({tokens, kHidden}, dt, 0xFF);
  c.q = DeviceTensor::filled({tokens, kHeads, kHeadDim}, dt, 0xFF);
  c.k = DeviceTensor::filled({tokens, kKvHeads, kHeadDim}, dt, 0xFF);
  c.v = DeviceTensor::filled({tokens, kKvHeads, kHeadDim}, dt, 0xFF);
  c.proj = DeviceTensor::filled({tokens, kHidden}, dt, 0xFF);
  c.gate_up = DeviceTensor::filled({tokens, 2 * kInter}, dt, 0xFF);
  c.act = DeviceTensor::filled({tokens, kInter}, dt, 0xFF);
  c.k_cache = DeviceTensor::filled({kLayers * kPages, kPageSize, kKvHeads, kHeadDim}, dt, 0);
  c.v_cache = DeviceTensor::filled({kLayers * kPages, kPageSize, kKvHeads, kHeadDim}, dt, 0);
  // Token i is sequence row i at position 21 + 5 i; rows own distinct pages.
  std::vector<int32_t> tables, rows, positions;
  for (int64_t r = 0; r < tokens; ++r) {
    for (int64_t p = 0; p < kMaxPages; ++p) tables.push_back(int32_t(r * kMaxPages + p));
    rows.push_back(int32_t(r));
    positions.push_back(int32_t(21 + 5 * r));
  }
  c.block_tables = i32_device({tokens, kMaxPages}, tables);
  c.seq_ids = i32_device({tokens}, rows);
  c.positions = i32_device({tokens}, positions);
  HostTensor freq({kHeadDim / 2}, DType::kF32);
  for (int64_t i = 0; i < kHeadDim / 2; ++i) {
    freq.view().data_as<float>()[i] = float(1.0 / std::pow(10000.0, double(2 * i) / kHeadDim));
  }
  c.inv_freq = DeviceTensor::from_host(freq.view());
  stream_synchronize(Stream{});
  return c;
}

TensorView flat(TensorView t) {
  return make_view(t.data, t.dtype, {t.size(0), t.size(1) * t.size(2)}, t.device);
}

// The chain, as llama_forward queues it (attention left out: o_proj reads q). `sync_each`: a
// synchronize after every op.
void run_chain(Chain& c, Stream stream, bool sync_each) {
  auto step = [&] {
    if (sync_each) stream_synchronize(stream);
  };
  copy_view(c.x.view(), c.x0.view(), stream);
  step();
  TensorView gate = c.gate_up.view(), up = c.gate_up.view();
  gate.shape[1] = up.shape[1] = kInter;
  up.data = static_cast<uint8_t*>(up.data) + kInter * dtype_size(up.dtype);
  for (int64_t l = 0; l < kLayers; ++l) {
    const Layer& w = c.layers[size_t(l)];
    if (l == 0) {
      rms_norm(c.xn.view(), c.x.view(), w.input_norm.view(), kEps, stream);
    } else {
      fused_add_rms_norm(c.xn.view(), c.x.view(), c.proj.view(), w.input_norm.view(), kEps, stream);
    }
    step();
    linear_split(flat(c.q.view()), flat(c.k.view()), flat(c.v.view()), c.xn.view(), w.w_qkv.view(),
                 stream);
    step();
    rotary_embedding(c.q.view(), c.k.view(), c.positions.view(), c.inv_freq.view(), stream);
    step();
    const TensorView k_cache = c.k_cache.view().slice(l * kPages, (l + 1) * kPages);
    const TensorView v_cache = c.v_cache.view().slice(l * kPages, (l + 1) * kPages);
    paged_kv_append({k_cache, v_cache, c.block_tables.view(), c.seq_ids.view(), c.positions.view(),
                     c.k.view(), c.v.view()},
                    stream);
    step();
    linear(c.proj.view(), flat(c.q.view()), w.wo.view(), stream);
    step();
    fused_add_rms_norm(c.xn.view(), c.x.view(), c.proj.view(), w.post_norm.view(), kEps, stream);
    step();
    linear(c.gate_up.view(), c.xn.view(), w.w_gate_up.view(), stream);
    step();
    silu_and_mul(c.act.view(), gate, up, stream);
    step();
    linear(c.proj.view(), c.act.view(), w.w_down.view(), stream);
    step();
  }
  fused_add_rms_norm(c.xn.view(), c.x.view(), c.proj.view(), c.final_norm.view(), kEps, stream);
  step();
}

// Everything the chain leaves behind, as raw bytes.
std::vector<uint8_t> snapshot(const Chain& c) {
  std::vector<uint8_t> bytes;
  for (const DeviceTensor* t : {&c.xn, &c.x, &c.q, &c.k, &c.v, &c.act, &c.k_cache, &c.v_cache}) {
    const HostTensor h = t->to_host();
    const uint8_t* p = static_cast<const uint8_t*>(h.view().data);
    bytes.insert(bytes.end(), p, p + h.view().nbytes());
  }
  return bytes;
}

class PdlChainCuda : public ::testing::TestWithParam<int64_t> {};

TEST_P(PdlChainCuda, BackToBackEqualsOneAtATime) {
  TIDAL_SKIP_WITHOUT_CUDA();
  Stream stream;
  ASSERT_TRUE(stream_create(&stream).ok());
  Chain c = make_chain(GetParam());
  run_chain(c, stream, /*sync_each=*/true);
  stream_synchronize(stream);
  const std::vector<uint8_t> want = snapshot(c);
  // The final normed rows are finite (no poison left anywhere in the chain).
  for (float f : c.xn.to_floats()) ASSERT_TRUE(std::isfinite(f));

  for (int rep = 0; rep < 3; ++rep) {
    run_chain(c, stream, /*sync_each=*/false);
    stream_synchronize(stream);
    EXPECT_TRUE(snapshot(c) == want) << "eager, rep " << rep;
  }

  Graph::begin_capture(stream);
  run_chain(c, stream, /*sync_each=*/false);
  const Graph graph = Graph::end_capture(stream);
  ASSERT_TRUE(graph.valid());
  for (int rep = 0; rep < 3; ++rep) {
    graph.launch(stream);
    stream_synchronize(stream);
    EXPECT_TRUE(snapshot(c) == want) << "graph replay " << rep;
  }
  stream_destroy(stream);
}

// 1 token: the batch-1 GEMV tile (2 rows a block); 3 tokens: the tile of 4 (4 rows a block).
INSTANTIATE_TEST_SUITE_P(Tokens, PdlChainCuda, ::testing::Values(int64_t(1), int64_t(3)),
                         [](const auto& info) { return std::to_string(info.param) + "_tokens"; });

}  // namespace
}  // namespace tidal::kernels
