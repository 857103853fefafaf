// SPDX-License-Identifier: Apache-2.0
// A preset's random weights drawn on the GPU for one rank of a tp x pp layout are, byte for byte,
// that rank's part of the whole model drawn on the GPU: row parts (q, k, v, gate, up, the
// vocabulary rows) and column parts (o, down: one 2-D copy out of the whole draw) alike, in f32
// and bf16, with the KV heads and vocabulary split (tp 2) and replicated (tp 4), and a tied head. The CPU test
// of the same draw is ShardedWeights.RandomInitOfAShardIsThatShardOfTheWholeDraw (model_test).
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "model/shard.h"
#include "model/weights.h"
#include "runtime/device.h"
#include "tests/testing/device_tensor.h"
#include "tests/testing/model_config.h"

namespace tidal::model {
namespace {

// A device view's bytes on the host.
std::vector<uint8_t> host_bytes(TensorView t) {
  std::vector<uint8_t> out(t.nbytes());
  copy_bytes(out.data(), Device{}, t.data, t.device, out.size(), Stream{});
  stream_synchronize(Stream{});
  return out;
}

// Rows [r0, r0 + rows) and columns [c0, c0 + cols) of a 2-D device view, as bytes, row-major.
std::vector<uint8_t> block(TensorView t, int64_t r0, int64_t rows, int64_t c0, int64_t cols) {
  const std::vector<uint8_t> all = host_bytes(t);
  const size_t es = dtype_size(t.dtype), width = size_t(t.size(1));
  std::vector<uint8_t> out;
  for (int64_t r = r0; r < r0 + rows; ++r) {
    const uint8_t* row = all.data() + (size_t(r) * width + size_t(c0)) * es;
    out.insert(out.end(), row, row + size_t(cols) * es);
  }
  return out;
}

std::vector<uint8_t> all_of(TensorView t) { return block(t, 0, t.size(0), 0, t.size(1)); }

TEST(ShardedWeightsCuda, RandomInitOfAShardIsThatShardOfTheWholeGpuDraw) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const Device gpu{DeviceKind::kCuda, 0};
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    for (bool tied : {false, true}) {
      const ModelConfig c = testing::sharding_llama(tied);
      WeightPlacement whole_place;
      whole_place.device = gpu;
      whole_place.dtype = dtype;
      LlamaWeights whole;
      ASSERT_TRUE(init_random_llama_weights(c, 9, &whole, whole_place).ok());
      const int64_t hd = c.head_dim, h = c.hidden;
      for (const parallel::ParallelConfig layout :
           {parallel::ParallelConfig{2, 1}, parallel::ParallelConfig{1, 2},
            parallel::ParallelConfig{2, 2}, parallel::ParallelConfig{4, 1}}) {
        for (int tp = 0; tp < layout.tp_size; ++tp) {
          for (int pp = 0; pp < layout.pp_size; ++pp) {
            SCOPED_TRACE(std::string(dtype_name(dtype)) + ", tp " +
                         std::to_string(layout.tp_size) + " x pp " +
                         std::to_string(layout.pp_size) + ", rank (" + std::to_string(tp) + ", " +
                         std::to_string(pp) + ")" + (tied ? ", tied" : ""));
            ModelShard s;
            ASSERT_TRUE(make_model_shard(c, layout, {tp, pp}, &s).ok());
            WeightPlacement place = whole_place;
            place.shard = &s;
            LlamaWeights w;
            ASSERT_TRUE(init_random_llama_weights(c, 9, &w, place).ok());
            const int64_t q0 = s.heads.q_heads.begin * hd, q = s.heads.q_heads.size * hd;
            const int64_t k0 = s.heads.kv_heads.begin * hd, k = s.heads.kv_heads.size * hd;
            const int64_t f0 = s.inter.begin, f = s.inter.size;
            const int64_t v0 = s.vocab.begin, v = s.vocab.size;
            for (int64_t l = s.layer_begin; l < s.layer_end; ++l) {
              SCOPED_TRACE("layer " + std::to_string(l));
              const LayerWeights& got = w.layers[size_t(l)];
              const LayerWeights& all = whole.layers[size_t(l)];
              EXPECT_EQ(host_bytes(got.input_norm), host_bytes(all.input_norm));
              EXPECT_EQ(all_of(got.wq), block(all.wq, q0, q, 0, h));
              EXPECT_EQ(all_of(got.wk), block(all.wk, k0, k, 0, h));
              EXPECT_EQ(all_of(got.wv), block(all.wv, k0, k, 0, h));
              EXPECT_EQ(all_of(got.wo), block(all.wo, 0, h, q0, q));
              EXPECT_EQ(all_of(got.w_gate()), block(all.w_gate(), f0, f, 0, h));
              EXPECT_EQ(all_of(got.w_up()), block(all.w_up(), f0, f, 0, h));
              EXPECT_EQ(all_of(got.w_down), block(all.w_down, 0, h, f0, f));
              EXPECT_EQ(host_bytes(got.post_norm), host_bytes(all.post_norm));
            }
            if (s.first_stage()) {
              EXPECT_EQ(all_of(w.embed), block(whole.embed, v0, v, 0, h));
            }
            if (s.last_stage()) {
              EXPECT_EQ(all_of(w.lm_head), block(whole.lm_head, v0, v, 0, h));
              EXPECT_EQ(host_bytes(w.final_norm), host_bytes(whole.final_norm));
            }
          }
        }
      }
    }
  }
}

// copy_rows between every pair of host and device memory: a column block of a row-major matrix
// (pitches wider than the rows), and a single run (no pitch needed).
TEST(CopyRowsCuda, ColumnBlocksBetweenHostAndDevice) {
  TIDAL_SKIP_WITHOUT_CUDA();
  const Device gpu{DeviceKind::kCuda, 0};
  constexpr size_t kRows = 37, kCols = 300, kFirst = 17, kWidth = 100;  // bytes
  std::vector<uint8_t> src(kRows * kCols);
  for (size_t i = 0; i < src.size(); ++i) src[i] = uint8_t(i * 7 + i / 251);
  std::vector<uint8_t> want;
  for (size_t r = 0; r < kRows; ++r) {
    want.insert(want.end(), src.begin() + long(r * kCols + kFirst),
                src.begin() + long(r * kCols + kFirst + kWidth));
  }
  void *d_src = nullptr, *d_dst = nullptr;
  ASSERT_TRUE(device_malloc(src.size(), "test", &d_src).ok());
  ASSERT_TRUE(device_malloc(want.size(), "test", &d_dst).ok());
  copy_bytes(d_src, gpu, src.data(), Device{}, src.size(), Stream{});
  for (const bool from_device : {false, true}) {
    for (const bool to_device : {false, true}) {
      SCOPED_TRACE(std::string(from_device ? "device" : "host") + " to " +
                   (to_device ? "device" : "host"));
      std::vector<uint8_t> got(want.size(), 0);
      const uint8_t* from =
          static_cast<const uint8_t*>(from_device ? d_src : static_cast<void*>(src.data()));
      void* to = to_device ? d_dst : static_cast<void*>(got.data());
      copy_rows(to, to_device ? gpu : Device{}, kWidth, from + kFirst,
                from_device ? gpu : Device{}, kCols, kWidth, kRows, Stream{});
      if (to_device) copy_bytes(got.data(), Device{}, d_dst, gpu, got.size(), Stream{});
      stream_synchronize(Stream{});
      EXPECT_EQ(got, want);
    }
  }
  std::vector<uint8_t> one(kWidth, 0);  // rows == 1: the pitches are not used
  copy_rows(one.data(), Device{}, 0, static_cast<uint8_t*>(d_src) + kFirst, gpu, 0, kWidth, 1,
            Stream{});
  stream_synchronize(Stream{});
  EXPECT_EQ(one, std::vector<uint8_t>(want.begin(), want.begin() + long(kWidth)));
  device_free(d_src);
  device_free(d_dst);
}

}  // namespace
}  // namespace tidal::model
