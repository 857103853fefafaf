// SPDX-License-Identifier: Apache-2.0
// A rank's shard of a model: its layers, heads, FFN columns and vocabulary rows, and the weights
// it loads: exactly the rows and columns of the whole checkpoint that sharding.h assigns it, and
// nothing of the layers other stages hold.
#include "model/shard.h"

#include <memory>
#include <string>
#include <vector>

#include "model/weights.h"
#include "tests/testing/llama_checkpoint.h"
#include "tests/testing/model_config.h"
#include "tests/testing/safetensors_writer.h"
#include "tests/testing/testing.h"

namespace tidal::model {
namespace {

ModelConfig stories_shaped() {
  ModelConfig c;
  c.vocab = 512;
  c.hidden = 64;
  c.inter = 172;
  c.num_layers = 5;
  c.num_heads = 8;
  c.num_kv_heads = 4;
  c.head_dim = 8;
  c.max_position_embeddings = 512;
  return c;
}

TEST(ModelShard, StageLayersAndTensorSlices) {
  ModelShard s;
  ASSERT_TRUE(make_model_shard(stories_shaped(), {2, 2}, {1, 1}, &s).ok());
  EXPECT_EQ(s.layer_begin, 3);
  EXPECT_EQ(s.layer_end, 5);
  EXPECT_FALSE(s.first_stage());
  EXPECT_TRUE(s.last_stage());
  EXPECT_EQ(s.heads.q_heads.begin, 4);
  EXPECT_EQ(s.heads.kv_heads.begin, 2);
  EXPECT_EQ(s.inter.begin, 86);
  EXPECT_EQ(s.vocab.begin, 256);
  EXPECT_TRUE(s.vocab_split);
  const ModelConfig local = s.local(stories_shaped());
  EXPECT_EQ(local.num_heads, 4);
  EXPECT_EQ(local.num_kv_heads, 2);
  EXPECT_EQ(local.inter, 86);
  EXPECT_EQ(local.vocab, 256);
  EXPECT_EQ(local.num_layers, 5);  // layer indices stay the model's
  EXPECT_TRUE(local.validate().ok());
}

TEST(ModelShard, ImpossibleLayoutsAreErrors) {
  ModelShard s;
  EXPECT_FALSE(make_model_shard(stories_shaped(), {3, 1}, {0, 0}, &s).ok());  // 8 heads / 3
  EXPECT_FALSE(make_model_shard(stories_shaped(), {1, 6}, {0, 0}, &s).ok());  // 6 stages, 5 layers
  EXPECT_FALSE(make_model_shard(stories_shaped(), {8, 1}, {0, 0}, &s).ok());  // inter 172 / 8
}

// The whole model's weights written as a checkpoint; returns its directory.
std::string write_checkpoint(const ModelConfig& c, const LlamaWeights& w) {
  const std::vector<testing::TestTensor> out = testing::llama_tensors(c, w);
  const std::string dir = testing::temp_dir("shard");
  testing::write_file(dir + "/model.safetensors", testing::build_safetensors(out));
  return dir;
}

// Rows [r0, r0 + rows) and columns [c0, c0 + cols) of a 2-D f32 view, row-major.
std::vector<float> block(TensorView t, int64_t r0, int64_t rows, int64_t c0, int64_t cols) {
  std::vector<float> out;
  for (int64_t r = r0; r < r0 + rows; ++r) {
    for (int64_t c = c0; c < c0 + cols; ++c) out.push_back(t.data_as<float>()[r * t.size(1) + c]);
  }
  return out;
}

// The whole model's random weights (seed 9), and the checkpoint they are written to.
std::unique_ptr<SafetensorsCheckpoint> whole_random_checkpoint(const ModelConfig& c,
                                                              LlamaWeights* whole) {
  EXPECT_TRUE(init_random_llama_weights(c, 9, whole).ok());
  std::unique_ptr<SafetensorsCheckpoint> ckpt;
  EXPECT_TRUE(SafetensorsCheckpoint::open(write_checkpoint(c, *whole), &ckpt).ok());
  return ckpt;
}

void expect_slices_of_whole(bool tied) {
  const ModelConfig c = testing::sharding_llama(tied);
  LlamaWeights whole;
  const std::unique_ptr<SafetensorsCheckpoint> ckpt = whole_random_checkpoint(c, &whole);
  ASSERT_NE(ckpt, nullptr);
  const int64_t hd = c.head_dim, h = c.hidden;
  for (int pp = 0; pp < 2; ++pp) {
    for (int tp = 0; tp < 2; ++tp) {
      SCOPED_TRACE("tp rank " + std::to_string(tp) + ", pp rank " + std::to_string(pp));
      ModelShard s;
      ASSERT_TRUE(make_model_shard(c, {2, 2}, {tp, pp}, &s).ok());
      WeightPlacement place;
      place.shard = &s;
      LlamaWeights w;
      const Status st = load_llama_weights(c, *ckpt, &w, place);
      ASSERT_TRUE(st.ok()) << st.to_string();
      // The arena holds what the shard's plan counts (rounded up to whole pages).
      EXPECT_GE(w.bytes(), llama_weight_bytes(c, DType::kF32, &s));
      EXPECT_LT(llama_weight_bytes(c, DType::kF32, &s), llama_weight_bytes(c, DType::kF32));
      const int64_t q0 = s.heads.q_heads.begin * hd, q = s.heads.q_heads.size * hd;
      const int64_t k0 = s.heads.kv_heads.begin * hd, k = s.heads.kv_heads.size * hd;
      const int64_t f0 = s.inter.begin, f = s.inter.size, v0 = s.vocab.begin, v = s.vocab.size;
      for (int64_t l = 0; l < c.num_layers; ++l) {
        const LayerWeights& got = w.layers[size_t(l)];
        const LayerWeights& all = whole.layers[size_t(l)];
        if (!s.holds_layer(l)) {
          EXPECT_EQ(got.wq.data, nullptr) << "layer " << l << " belongs to another stage";
          continue;
        }
        EXPECT_EQ(testing::to_vector(got.wq), block(all.wq, q0, q, 0, h));
        EXPECT_EQ(testing::to_vector(got.wk), block(all.wk, k0, k, 0, h));
        EXPECT_EQ(testing::to_vector(got.wv), block(all.wv, k0, k, 0, h));
        EXPECT_EQ(testing::to_vector(got.wo), block(all.wo, 0, h, q0, q));
        EXPECT_EQ(testing::to_vector(got.w_gate()), block(all.w_gate(), f0, f, 0, h));
        EXPECT_EQ(testing::to_vector(got.w_up()), block(all.w_up(), f0, f, 0, h));
        EXPECT_EQ(testing::to_vector(got.w_down), block(all.w_down, 0, h, f0, f));
        EXPECT_EQ(testing::to_vector(got.post_norm), testing::to_vector(all.post_norm));
      }
      EXPECT_EQ(w.embed.data != nullptr, s.first_stage());
      if (s.first_stage()) {
        EXPECT_EQ(testing::to_vector(w.embed), block(whole.embed, v0, v, 0, h));
      }
      EXPECT_EQ(w.lm_head.data != nullptr, s.last_stage());
      if (s.last_stage()) {  // tied: the embedding's rows, loaded again on the last stage
        EXPECT_EQ(testing::to_vector(w.lm_head), block(whole.lm_head, v0, v, 0, h));
      }
    }
  }
}

TEST(ShardedWeights, EachRankLoadsItsRowsAndColumnsOfTheCheckpoint) {
  expect_slices_of_whole(false);
}

TEST(ShardedWeights, ATiedHeadOnTheLastStageIsTheEmbeddingsRows) { expect_slices_of_whole(true); }

// Every tensor of two weight sets of one shard, equal element for element.
void expect_same_weights(const LlamaWeights& got, const LlamaWeights& want) {
  ASSERT_EQ(got.layers.size(), want.layers.size());
  auto same = [](TensorView a, TensorView b, const std::string& what) {
    ASSERT_EQ(a.data == nullptr, b.data == nullptr) << what;
    if (a.data != nullptr) {
      EXPECT_EQ(testing::to_vector(a), testing::to_vector(b)) << what;
    }
  };
  same(got.embed, want.embed, "embed");
  for (size_t l = 0; l < got.layers.size(); ++l) {
    const LayerWeights &g = got.layers[l], &w = want.layers[l];
    const std::string at = "layer " + std::to_string(l) + " ";
    same(g.input_norm, w.input_norm, at + "input_norm");
    same(g.wq, w.wq, at + "wq");
    same(g.wk, w.wk, at + "wk");
    same(g.wv, w.wv, at + "wv");
    same(g.wo, w.wo, at + "wo");
    same(g.post_norm, w.post_norm, at + "post_norm");
    same(g.w_gate_up, w.w_gate_up, at + "w_gate_up");
    same(g.w_down, w.w_down, at + "w_down");
  }
  same(got.final_norm, want.final_norm, "final_norm");
  same(got.lm_head, want.lm_head, "lm_head");
}

// A preset's random weights under tp x pp are the whole model's draw, sharded: a rank's random
// init equals its shard of the whole random model written out and loaded, for every layout of
// 4 ranks (tp 4 replicates the 2 KV heads) and a tied head.
TEST(ShardedWeights, RandomInitOfAShardIsThatShardOfTheWholeDraw) {
  for (bool tied : {false, true}) {
    const ModelConfig c = testing::sharding_llama(tied);
    LlamaWeights whole;
    const std::unique_ptr<SafetensorsCheckpoint> ckpt = whole_random_checkpoint(c, &whole);
    ASSERT_NE(ckpt, nullptr);
    for (const parallel::ParallelConfig layout :
         {parallel::ParallelConfig{2, 1}, parallel::ParallelConfig{1, 2},
          parallel::ParallelConfig{2, 2}, parallel::ParallelConfig{4, 1}}) {
      for (int tp = 0; tp < layout.tp_size; ++tp) {
        for (int pp = 0; pp < layout.pp_size; ++pp) {
          SCOPED_TRACE("tp " + std::to_string(layout.tp_size) + " x pp " +
                       std::to_string(layout.pp_size) + ", rank (" + std::to_string(tp) + ", " +
                       std::to_string(pp) + ")" + (tied ? ", tied" : ""));
          ModelShard s;
          ASSERT_TRUE(make_model_shard(c, layout, {tp, pp}, &s).ok());
          WeightPlacement place;
          place.shard = &s;
          LlamaWeights loaded, drawn;
          ASSERT_TRUE(load_llama_weights(c, *ckpt, &loaded, place).ok());
          ASSERT_TRUE(init_random_llama_weights(c, 9, &drawn, place).ok());
          expect_same_weights(drawn, loaded);
        }
      }
    }
  }
}

}  // namespace
}  // namespace tidal::model
