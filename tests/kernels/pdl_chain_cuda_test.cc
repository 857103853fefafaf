// SPDX-License-Identifier: Apache-2.0
// The decode layer's chain of programmatic dependent launches (kernels/pdl.cuh), two layers:
// rms_norm / fused_add_rms_norm -> QKV GEMV with RoPE and the KV append (linear_qkv_append) ->
// attention split (+ merge) -> o GEMV -> fused_add_rms_norm -> gate_up GEMV with SwiGLU
// (linear_swiglu) -> down GEMV, as llama_forward queues it at decode. Each
// kernel may start before the one before it ends (the GEMVs write their first weight loads before
// the wait) and waits in the kernel for its inputs. Run back to back on one stream, eagerly and as
// a CUDA graph replayed three times (starting with a device copy, so the first launch follows a
// memcpy node), the chain must give bit-identical results to the same ops run one at a time with a
// synchronize after each (where no overlap can happen): every kernel is deterministic, so any
// difference is a read before its producer finished. The attention rows cover the split kernels'
// roles: a selecting row (dense, logits written), a dense row and per-query-head lists, long enough
// for several splits and the merge; GQA runs the tensor-core split kernel, MHA the SIMT one.
// A sparse layers' chain runs too, as the engine's on one GPU: every token attends its lists,
// the launch is lists-only and reads them as cache rows (kernels/cache_rows.h: the token's own
// row, appended by the QKV GEMV before it, is marked as written this step, so its load waits).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/cache_rows.h"
#include "kernels/decode_attention.h"
#include "kernels/fill_random.h"
#include "kernels/linear.h"
#include "kernels/paged_kv_append.h"
#include "kernels/rms_norm.h"
#include "kernels/token_role.h"
#include "runtime/device.h"
#include "tests/testing/device_tensor.h"
#include "tests/testing/testing.h"

namespace tidal::kernels {
namespace {

using testing::DeviceTensor;

constexpr int64_t kHidden = 2048, kHeads = 16, kHeadDim = 128, kInter = 5632;
constexpr int64_t kLayers = 2, kPageSize = 16, kMaxPages = 64, kBudget = 24;
constexpr float kEps = 1e-5f;

struct ChainShape {
  int64_t tokens, kv_heads;
  bool sparse_layers = false;  // every token attends its lists, read as cache rows
};

struct Layer {
  DeviceTensor input_norm, w_qkv, wo, post_norm, w_gate_up, w_down;
  DeviceTensor roles;  // [tokens] u8: this layer's attention role of each token
};

struct Chain {
  ChainShape shape;
  std::vector<Layer> layers;
  DeviceTensor final_norm, x0, x, xn, q, k, v, attn, proj, gate_up, act;
  DeviceTensor k_cache, v_cache, block_tables, seq_ids, positions, lengths, inv_freq;
  DeviceTensor prior_lens;  // each token's position: its own row is appended in the chain
  DeviceTensor indices, counts, num_lists, logits, lse, workspace;
  DeviceTensor rows;  // sparse_layers: the lists as cache rows (the same pages in every layer)
};

DeviceTensor random_device(std::vector<int64_t> shape, DType dtype, uint64_t seed, float mean,
                           float std) {
  DeviceTensor t(shape, dtype);
  fill_random(t.view(), seed, mean, std, Stream{});
  return t;
}

template <typename V>
DeviceTensor host_to_device(std::vector<int64_t> shape, DType dtype, const std::vector<V>& values) {
  HostTensor h(shape, dtype);
  std::memcpy(h.view().data, values.data(), values.size() * sizeof(V));
  return DeviceTensor::from_host(h.view());
}

TensorView flat(TensorView t) {
  return make_view(t.data, t.dtype, {t.size(0), t.size(1) * t.size(2)}, t.device);
}

// Layer l's attention over the chain's cache slice (the caller adds out and the workspace).
DecodeAttentionParams attention_params(const Chain& c, int64_t l) {
  DecodeAttentionParams p;
  p.q = c.q.view();
  p.k_cache =
      c.k_cache.view().slice(l * c.shape.tokens * kMaxPages, (l + 1) * c.shape.tokens * kMaxPages);
  p.v_cache =
      c.v_cache.view().slice(l * c.shape.tokens * kMaxPages, (l + 1) * c.shape.tokens * kMaxPages);
  p.block_tables = c.block_tables.view();
  p.seq_ids = c.seq_ids.view();
  p.lengths = c.lengths.view();
  p.prior_lens = c.prior_lens.view();
  p.roles = c.layers[size_t(l)].roles.view();
  p.indices = c.indices.view();
  p.counts = c.counts.view();
  p.num_lists = c.num_lists.view();
  p.logits = c.logits.view();
  p.lse = c.lse.view();
  if (c.shape.sparse_layers) {
    p.lists_only = true;
    p.head_lists = c.shape.kv_heads < kHeads;
    p.rows = c.rows.view();
  }
  return p;
}

Chain make_chain(const ChainShape& shape) {
  const DType dt = DType::kBF16;
  const int64_t tokens = shape.tokens, kv = shape.kv_heads;
  Chain c;
  c.shape = shape;
  uint64_t seed = 100;
  const float w_std = 1.0f / std::sqrt(float(kHidden));
  // Roles: token t takes role (t + l) % 3 of {select, dense, per-query-head lists} in layer l.
  const TokenRole cycle[3] = {TokenRole::kSelect, TokenRole::kDense, TokenRole::kSparse};
  for (int64_t l = 0; l < kLayers; ++l) {
    Layer layer;
    layer.input_norm = random_device({kHidden}, dt, ++seed, 1.0f, 0.1f);
    layer.w_qkv = random_device({(kHeads + 2 * kv) * kHeadDim, kHidden}, dt, ++seed, 0, w_std);
    layer.wo = random_device({kHidden, kHeads * kHeadDim}, dt, ++seed, 0, w_std);
    layer.post_norm = random_device({kHidden}, dt, ++seed, 1.0f, 0.1f);
    layer.w_gate_up = random_device({2 * kInter, kHidden}, dt, ++seed, 0, w_std);
    layer.w_down = random_device({kHidden, kInter}, dt, ++seed, 0, 1.0f / std::sqrt(float(kInter)));
    std::vector<uint8_t> roles;
    for (int64_t t = 0; t < tokens; ++t) {
      roles.push_back(uint8_t(shape.sparse_layers ? TokenRole::kSparse : cycle[(t + l) % 3]));
    }
    layer.roles = host_to_device({tokens}, DType::kU8, roles);
    c.layers.push_back(std::move(layer));
  }
  c.final_norm = random_device({kHidden}, dt, ++seed, 1.0f, 0.1f);
  c.x0 = random_device({tokens, kHidden}, dt, ++seed, 0, 1.0f);
  c.x = DeviceTensor::filled({tokens, kHidden}, dt, 0xFF);
  c.xn = DeviceTensor::filled({tokens, kHidden}, dt, 0xFF);
  c.q = DeviceTensor::filled({tokens, kHeads, kHeadDim}, dt, 0xFF);
  c.k = DeviceTensor::filled({tokens, kv, kHeadDim}, dt, 0xFF);
  c.v = DeviceTensor::filled({tokens, kv, kHeadDim}, dt, 0xFF);
  c.attn = DeviceTensor::filled({tokens, kHeads, kHeadDim}, dt, 0xFF);
  c.proj = DeviceTensor::filled({tokens, kHidden}, dt, 0xFF);
  c.gate_up = DeviceTensor::filled({tokens, 2 * kInter}, dt, 0xFF);
  c.act = DeviceTensor::filled({tokens, kInter}, dt, 0xFF);
  // A random history in every layer's cache; the chain appends each token at its position.
  c.k_cache =
      random_device({kLayers * tokens * kMaxPages, kPageSize, kv, kHeadDim}, dt, ++seed, 0, 1.0f);
  c.v_cache =
      random_device({kLayers * tokens * kMaxPages, kPageSize, kv, kHeadDim}, dt, ++seed, 0, 1.0f);
  // Token t is sequence row t at position 700 + 37 t (several splits a dense row); rows own
  // distinct pages, in a shuffled order.
  std::mt19937 rng(7);
  std::vector<int32_t> pages(size_t(tokens * kMaxPages));
  std::iota(pages.begin(), pages.end(), 0);
  std::shuffle(pages.begin(), pages.end(), rng);
  std::vector<int32_t> rows, positions, lengths, indices, counts, num_lists;
  for (int64_t t = 0; t < tokens; ++t) {
    const int32_t pos = int32_t(700 + 37 * t);
    rows.push_back(int32_t(t));
    positions.push_back(pos);
    lengths.push_back(pos + 1);
    num_lists.push_back(int32_t(kHeads));
    for (int64_t h = 0; h < kHeads; ++h) {  // K - 1 earlier positions and the token itself
      std::vector<int32_t> earlier(static_cast<size_t>(pos));
      std::iota(earlier.begin(), earlier.end(), 0);
      std::shuffle(earlier.begin(), earlier.end(), rng);
      earlier.resize(kBudget - 1);
      earlier.push_back(pos);
      std::sort(earlier.begin(), earlier.end());
      indices.insert(indices.end(), earlier.begin(), earlier.end());
      counts.push_back(int32_t(kBudget));
    }
  }
  c.block_tables = host_to_device({tokens, kMaxPages}, DType::kI32, pages);
  c.seq_ids = host_to_device({tokens}, DType::kI32, rows);
  c.positions = host_to_device({tokens}, DType::kI32, positions);
  c.lengths = host_to_device({tokens}, DType::kI32, lengths);
  c.prior_lens = host_to_device({tokens}, DType::kI32, positions);
  c.indices = host_to_device({tokens, kHeads, kBudget}, DType::kI32, indices);
  c.counts = host_to_device({tokens, kHeads}, DType::kI32, counts);
  c.num_lists = host_to_device({tokens}, DType::kI32, num_lists);
  if (shape.sparse_layers) {
    std::vector<int32_t> rows_of(indices.size());
    for (int64_t t = 0; t < tokens; ++t) {
      for (int64_t h = 0; h < kHeads; ++h) {
        const int64_t at = (t * kHeads + h) * kBudget;
        resolve_cache_rows(pages.data() + t * kMaxPages, 1, indices.data() + at, kBudget, kBudget,
                           lengths[size_t(t)], int32_t(kPageSize), positions[size_t(t)],
                           rows_of.data() + at);
      }
    }
    c.rows = host_to_device({tokens, kHeads, kBudget}, DType::kI32, rows_of);
  }
  c.logits = DeviceTensor::filled({tokens, kHeads, kMaxPages * kPageSize}, DType::kF32, 0);
  c.lse = DeviceTensor::filled({tokens, kHeads}, DType::kF32, 0xFF);
  HostTensor freq({kHeadDim / 2}, DType::kF32);
  for (int64_t i = 0; i < kHeadDim / 2; ++i) {
    freq.view().data_as<float>()[i] = float(1.0 / std::pow(10000.0, double(2 * i) / kHeadDim));
  }
  c.inv_freq = DeviceTensor::from_host(freq.view());
  size_t ws = 0;
  for (int64_t l = 0; l < kLayers; ++l) {
    DecodeAttentionParams p = attention_params(c, l);
    p.out = c.attn.view();
    ws = std::max(ws, decode_attention_workspace_size(p));
  }
  c.workspace = DeviceTensor({int64_t(std::max<size_t>(ws, 1))}, DType::kU8);
  stream_synchronize(Stream{});
  return c;
}

// The chain, as llama_forward queues it. `sync_each`: a synchronize after every op.
void run_chain(Chain& c, Stream stream, bool sync_each) {
  auto step = [&] {
    if (sync_each) stream_synchronize(stream);
  };
  copy_view(c.x.view(), c.x0.view(), stream);
  step();
  for (int64_t l = 0; l < kLayers; ++l) {
    const Layer& w = c.layers[size_t(l)];
    if (l == 0) {
      rms_norm(c.xn.view(), c.x.view(), w.input_norm.view(), kEps, stream);
    } else {
      fused_add_rms_norm(c.xn.view(), c.x.view(), c.proj.view(), w.input_norm.view(), kEps, stream);
    }
    step();
    DecodeAttentionParams p = attention_params(c, l);
    linear_qkv_append({p.k_cache,
                       p.v_cache,
                       c.block_tables.view(),
                       c.seq_ids.view(),
                       c.positions.view(),
                       c.k.view(),
                       c.v.view(),
                       {},
                       {},
                       c.q.view(),
                       c.inv_freq.view(),
                       {},
                       /*plan_complete=*/true},  // host copies, before the first launch
                      c.xn.view(), w.w_qkv.view(), stream);
    step();
    p.out = c.attn.view();
    decode_attention(p, c.workspace.view(), stream);
    step();
    linear(c.proj.view(), flat(c.attn.view()), w.wo.view(), stream);
    step();
    fused_add_rms_norm(c.xn.view(), c.x.view(), c.proj.view(), w.post_norm.view(), kEps, stream);
    step();
    linear_swiglu(c.act.view(), c.xn.view(), w.w_gate_up.view(), c.gate_up.view(), stream);
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
  for (const DeviceTensor* t : {&c.xn, &c.x, &c.q, &c.k, &c.v, &c.attn, &c.act, &c.k_cache,
                                &c.v_cache, &c.logits, &c.lse}) {
    const HostTensor h = t->to_host();
    const uint8_t* p = static_cast<const uint8_t*>(h.view().data);
    bytes.insert(bytes.end(), p, p + h.view().nbytes());
  }
  return bytes;
}

class PdlChainCuda : public ::testing::TestWithParam<ChainShape> {};

TEST_P(PdlChainCuda, BackToBackEqualsOneAtATime) {
  TIDAL_SKIP_WITHOUT_CUDA();
  Stream stream;
  ASSERT_TRUE(stream_create(&stream).ok());
  Chain c = make_chain(GetParam());
  const DeviceTensor k_cache0 = DeviceTensor::from_host(c.k_cache.to_host().view());
  const DeviceTensor v_cache0 = DeviceTensor::from_host(c.v_cache.to_host().view());
  auto reset_cache = [&] {  // every run appends to the same history
    copy_view(c.k_cache.view(), k_cache0.view(), stream);
    copy_view(c.v_cache.view(), v_cache0.view(), stream);
  };
  reset_cache();
  run_chain(c, stream, /*sync_each=*/true);
  stream_synchronize(stream);
  const std::vector<uint8_t> want = snapshot(c);
  // The final normed rows and the attention outputs are finite (no poison left in the chain).
  for (float f : c.xn.to_floats()) ASSERT_TRUE(std::isfinite(f));
  for (float f : c.attn.to_floats()) ASSERT_TRUE(std::isfinite(f));

  for (int rep = 0; rep < 3; ++rep) {
    reset_cache();
    run_chain(c, stream, /*sync_each=*/false);
    stream_synchronize(stream);
    EXPECT_TRUE(snapshot(c) == want) << "eager, rep " << rep;
  }

  Graph::begin_capture(stream);
  reset_cache();
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

// 1 token: the batch-1 GEMV; 3 tokens: the tile of 4. 4 KV heads: GQA (tensor-core split
// kernel; its sparse layers' per-query-head lists, the SIMT one); 16: MHA (the SIMT one).
INSTANTIATE_TEST_SUITE_P(Shapes, PdlChainCuda,
                         ::testing::Values(ChainShape{1, 4}, ChainShape{3, 4}, ChainShape{1, 16},
                                           ChainShape{3, 16}, ChainShape{1, 4, true},
                                           ChainShape{1, 16, true}, ChainShape{3, 16, true}),
                         [](const auto& info) {
                           return std::to_string(info.param.tokens) + "_tokens_" +
                                  std::to_string(info.param.kv_heads) + "_kv_heads" +
                                  (info.param.sparse_layers ? "_sparse_layers" : "");
                         });

}  // namespace
}  // namespace tidal::kernels
