// SPDX-License-Identifier: Apache-2.0
// Weights loading (every missing / misshapen / mistyped tensor is a clear error), RoPE
// frequencies, and a GQA metamorphic check of the forward.
#include "model/llama.h"

#include <cmath>
#include <memory>

#include "tests/testing/llama_checkpoint.h"
#include "tests/testing/model_config.h"
#include "tests/testing/safetensors_writer.h"
#include "tests/testing/testing.h"

namespace tidal::model {
namespace {

using testing::TestTensor;

ModelConfig tiny(int64_t kv_heads) {
  testing::TinyLlama t;
  t.heads = 2;
  t.kv_heads = kv_heads;
  t.context = 32;
  t.vocab = 11;
  t.inter = 12;
  ModelConfig c = testing::tiny_llama(t);
  c.tie_word_embeddings = false;
  return c;
}

Status load_from(const std::vector<testing::TestTensor>& tensors, const ModelConfig& c,
                 LlamaWeights* w) {
  const std::string dir = testing::temp_dir("weights");
  testing::write_file(dir + "/model.safetensors", testing::build_safetensors(tensors));
  std::unique_ptr<SafetensorsCheckpoint> ckpt;
  TIDAL_RETURN_IF_ERROR(SafetensorsCheckpoint::open(dir, &ckpt));
  return load_llama_weights(c, *ckpt, w);
}

TEST(LlamaWeights, LoadsWhatWasWritten) {
  const ModelConfig c = tiny(1);
  LlamaWeights src, got;
  ASSERT_TRUE(init_random_llama_weights(c, 5, &src).ok());
  const Status st = load_from(testing::llama_tensors(c, src), c, &got);
  ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_EQ(testing::to_vector(got.layers[1].wk), testing::to_vector(src.layers[1].wk));
  EXPECT_EQ(testing::to_vector(got.lm_head), testing::to_vector(src.lm_head));
}

TEST(LlamaWeights, MissingMisshapenAndMistypedTensorsAreNamed) {
  const ModelConfig c = tiny(1);
  LlamaWeights src, got;
  ASSERT_TRUE(init_random_llama_weights(c, 5, &src).ok());

  auto missing = testing::llama_tensors(c, src);
  missing.erase(missing.begin() + 3);  // model.layers.0.self_attn.k_proj.weight
  Status st = load_from(missing, c, &got);
  EXPECT_EQ(st.code(), StatusCode::kNotFound);
  EXPECT_NE(st.message().find("'model.layers.0.self_attn.k_proj.weight'"), std::string::npos)
      << st.message();

  auto misshapen = testing::llama_tensors(c, src);
  misshapen[2].shape = {4, 16};  // q_proj [8, 8] declared [4, 16]: same bytes, wrong shape
  st = load_from(misshapen, c, &got);
  EXPECT_NE(st.message().find("has shape [4, 16], the config needs [8, 8]"), std::string::npos)
      << st.message();

  auto mistyped = testing::llama_tensors(c, src);
  mistyped[1].dtype = "I32";  // input_layernorm: 8 x 4 bytes either way
  st = load_from(mistyped, c, &got);
  EXPECT_NE(st.message().find("dtype i32"), std::string::npos) << st.message();

  auto no_head = testing::llama_tensors(c, src);
  no_head.pop_back();
  EXPECT_NE(load_from(no_head, c, &got).message().find("lm_head.weight"), std::string::npos);
}

// A misshapen or mistyped tensor of a sharded checkpoint is named with the shard that holds it.
TEST(LlamaWeights, ShapeAndDtypeErrorsNameTheShard) {
  const ModelConfig c = tiny(1);
  LlamaWeights src, got;
  ASSERT_TRUE(init_random_llama_weights(c, 5, &src).ok());
  for (const char* fault : {"shape", "dtype"}) {
    auto tensors = testing::llama_tensors(c, src);
    TestTensor& q1 = tensors[11];  // model.layers.1.self_attn.q_proj.weight, in the second shard
    ASSERT_EQ(q1.name, "model.layers.1.self_attn.q_proj.weight");
    if (std::string(fault) == "shape") q1.shape = {4, 16};
    if (std::string(fault) == "dtype") q1.dtype = "I32";
    const std::string dir = testing::temp_dir("weights_sharded");
    const std::string shard1 = "model-00001-of-00002.safetensors";
    const std::string shard2 = "model-00002-of-00002.safetensors";
    const size_t split = 10;
    testing::write_file(dir + "/" + shard1,
                        testing::build_safetensors({tensors.begin(), tensors.begin() + split}));
    testing::write_file(dir + "/" + shard2,
                        testing::build_safetensors({tensors.begin() + split, tensors.end()}));
    std::string index = "{\"weight_map\": {";
    for (size_t i = 0; i < tensors.size(); ++i) {
      index += std::string(i ? ", " : "") + "\"" + tensors[i].name + "\": \"" +
               (i < split ? shard1 : shard2) + "\"";
    }
    testing::write_file(dir + "/model.safetensors.index.json", index + "}}");
    std::unique_ptr<SafetensorsCheckpoint> ckpt;
    ASSERT_TRUE(SafetensorsCheckpoint::open(dir, &ckpt).ok());
    const Status st = load_llama_weights(c, *ckpt, &got);
    ASSERT_FALSE(st.ok()) << fault;
    EXPECT_NE(st.message().find(dir + "/" + shard2 + ": tensor '" + q1.name + "'"),
              std::string::npos)
        << st.message();
    EXPECT_NE(st.message().find(fault), std::string::npos) << st.message();
  }
}

// A checkpoint tensor the config has no place for (a layer past num_hidden_layers, a bias) was
// dropped without a word, loading a different model than the checkpoint's.
TEST(LlamaWeights, TensorsTheConfigLeavesOutAreAnError) {
  const ModelConfig c = tiny(1);
  ModelConfig deeper = c;
  deeper.num_layers = c.num_layers + 1;
  LlamaWeights src, got;
  ASSERT_TRUE(init_random_llama_weights(deeper, 5, &src).ok());
  Status st = load_from(testing::llama_tensors(deeper, src), c, &got);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("'model.layers.2.input_layernorm.weight'"), std::string::npos)
      << st.message();
  EXPECT_NE(st.message().find("num_hidden_layers"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("model.safetensors"), std::string::npos) << st.message();

  ASSERT_TRUE(init_random_llama_weights(c, 5, &src).ok());
  const std::string eight_floats = testing::bytes_of(std::vector<float>(8, 0.5f));
  auto biased = testing::llama_tensors(c, src);
  biased.push_back({"model.layers.1.self_attn.q_proj.bias", "F32", {8}, eight_floats});
  st = load_from(biased, c, &got);
  EXPECT_NE(st.message().find("'model.layers.1.self_attn.q_proj.bias'"), std::string::npos)
      << st.message();

  // Older conversions store RoPE's inv_freq buffers; they carry nothing and are skipped. A tied
  // model ignores a stored lm_head.weight, as transformers does.
  auto with_buffers = testing::llama_tensors(c, src);
  with_buffers.push_back(
      {"model.layers.0.self_attn.rotary_emb.inv_freq", "F32", {2}, eight_floats.substr(0, 8)});
  st = load_from(with_buffers, c, &got);
  EXPECT_TRUE(st.ok()) << st.to_string();
  ModelConfig tied = c;
  tied.tie_word_embeddings = true;
  st = load_from(testing::llama_tensors(c, src), tied, &got);
  EXPECT_TRUE(st.ok()) << st.to_string();
}

TEST(LlamaWeights, Bf16AndF16CheckpointsConvertExactly) {
  const ModelConfig c = tiny(1);
  LlamaWeights src, got;
  ASSERT_TRUE(init_random_llama_weights(c, 9, &src).ok());
  auto tensors = testing::llama_tensors(c, src);
  // Store the embedding as bf16 and the final norm as f16.
  std::vector<bf16> emb;
  for (float x : testing::to_vector(src.embed)) emb.push_back(f32_to_bf16(x));
  tensors[0].dtype = "BF16";
  tensors[0].bytes = testing::bytes_of(emb);
  std::vector<f16> norm;
  for (int i = 0; i < 8; ++i) norm.push_back(f32_to_f16(0.5f + float(i)));
  tensors[tensors.size() - 2].dtype = "F16";
  tensors[tensors.size() - 2].bytes = testing::bytes_of(norm);
  ASSERT_TRUE(load_from(tensors, c, &got).ok());
  EXPECT_EQ(got.embed.data_as<float>()[7], bf16_to_f32(emb[7]));
  EXPECT_EQ(got.final_norm.data_as<float>()[3], 3.5f);
}

TEST(RopeInvFreq, DefaultAndLlama3Scaling) {
  RopeConfig rope;
  rope.theta = 10000;
  const std::vector<float> plain = rope_inv_freq(rope, 8);
  EXPECT_TRUE(testing::all_close(plain, {1.0f, 0.1f, 0.01f, 0.001f}, 0, 1e-6f));

  // Llama-3.1: wavelengths under 8192/4 are kept, over 8192/1 divided by 8, smooth between.
  rope.theta = 500000;
  rope.type = RopeType::kLlama3;
  rope.factor = 8;
  const std::vector<float> base = [] {
    RopeConfig r;
    r.theta = 500000;
    return rope_inv_freq(r, 128);
  }();
  const std::vector<float> scaled = rope_inv_freq(rope, 128);
  for (size_t i = 0; i < scaled.size(); ++i) {
    const double wavelen = 2 * M_PI / base[i];
    if (wavelen < 2048) {
      EXPECT_EQ(scaled[i], base[i]) << i;
    }
    if (wavelen > 8192) {
      EXPECT_FLOAT_EQ(scaled[i], base[i] / 8) << i;
    }
    if (wavelen >= 2048 && wavelen <= 8192) {
      EXPECT_LE(scaled[i], base[i]);
      EXPECT_GE(scaled[i], base[i] / 8);
    }
    if (i > 0) {
      EXPECT_LT(scaled[i], scaled[i - 1]);
    }
  }
}

// Runs `prompt` through llama_forward on a one-sequence paged cache; logits of the last token.
std::vector<float> prefill_logits(const ModelConfig& c, const LlamaWeights& w,
                                  std::vector<int32_t> prompt) {
  const int64_t n = int64_t(prompt.size()), page_size = 4, pages = (n + 3) / 4;
  std::vector<HostTensor> caches;
  std::vector<KvLayer> kv;
  for (int64_t l = 0; l < c.num_layers; ++l) {
    caches.emplace_back(std::vector<int64_t>{pages, page_size, c.num_kv_heads, c.head_dim},
                        DType::kF32);
    caches.emplace_back(std::vector<int64_t>{pages, page_size, c.num_kv_heads, c.head_dim},
                        DType::kF32);
    KvLayer layer;
    layer.k = caches[caches.size() - 2].view();
    layer.v = caches.back().view();
    kv.push_back(layer);
  }
  std::vector<int32_t> table, positions, seq_ids(size_t(n), 0), rows = {int32_t(n - 1)};
  for (int64_t p = pages - 1; p >= 0; --p) table.push_back(int32_t(p));  // pages out of order
  for (int64_t i = 0; i < n; ++i) positions.push_back(int32_t(i));
  LlamaWorkspace ws;
  WorkspaceShape shape;
  shape.max_tokens = n;
  shape.max_decode = 1;
  shape.max_logits = 1;
  shape.num_rows = 1;
  shape.max_context = pages * page_size;
  shape.max_budget = 2;
  shape.page_size = page_size;
  EXPECT_TRUE(LlamaWorkspace::create(c, shape, &ws).ok());
  // One prefill chunk: the whole prompt of sequence row 0.
  std::vector<int32_t> starts = {0, int32_t(n)}, prefill_rows = {0}, context = {int32_t(n)};
  std::vector<int32_t> no_updates = {-1, 0, 0};
  ForwardBatch batch;
  batch.tokens = make_view(prompt.data(), DType::kI32, {n});
  batch.positions = make_view(positions.data(), DType::kI32, {n});
  batch.seq_ids = make_view(seq_ids.data(), DType::kI32, {n});
  batch.query_starts = make_view(starts.data(), DType::kI32, {2});
  batch.prefill_seq_ids = make_view(prefill_rows.data(), DType::kI32, {1});
  batch.context_lens = make_view(context.data(), DType::kI32, {1});
  batch.max_query_len = n;
  batch.block_tables = make_view(table.data(), DType::kI32, {1, pages});
  batch.page_updates = make_view(no_updates.data(), DType::kI32, {1, 3});
  batch.logit_rows = make_view(rows.data(), DType::kI32, {1});
  llama_forward(c, w, batch, kv, ws, Stream{});
  return testing::to_vector(ws.logits.slice(0, 1));
}

// GQA: a model with one KV head equals the MHA model whose two KV heads are copies of it.
TEST(LlamaForward, GqaEqualsMhaWithRepeatedKvHeads) {
  const ModelConfig gqa = tiny(1), mha = tiny(2);
  LlamaWeights wg, wm;
  ASSERT_TRUE(init_random_llama_weights(gqa, 21, &wg).ok());
  ASSERT_TRUE(init_random_llama_weights(mha, 21, &wm).ok());
  auto copy = [](TensorView dst, TensorView src, int64_t dst_row0) {
    for (int64_t r = 0; r < src.size(0); ++r) {
      for (int64_t i = 0; i < src.size(1); ++i) {
        dst.data_as<float>()[(dst_row0 + r) * dst.size(1) + i] =
            src.data_as<float>()[r * src.size(1) + i];
      }
    }
  };
  auto copy_all = [&](TensorView dst, TensorView src) { copy(dst, src, 0); };
  copy_all(wm.embed, wg.embed);
  for (size_t l = 0; l < 2; ++l) {
    LayerWeights &m = wm.layers[l], &g = wg.layers[l];
    for (auto [d, s] : {std::pair{m.wq, g.wq},
                        {m.wo, g.wo},
                        {m.w_gate_up, g.w_gate_up},
                        {m.w_down, g.w_down}}) {
      copy_all(d, s);
    }
    for (int64_t h = 0; h < 2; ++h) {  // both KV heads (4 rows each) copy the single one
      copy(m.wk, g.wk, h * 4);
      copy(m.wv, g.wv, h * 4);
    }
  }
  copy_all(wm.lm_head, wg.lm_head);

  const std::vector<float> a = prefill_logits(gqa, wg, {1, 4, 9, 3, 7});
  const std::vector<float> b = prefill_logits(mha, wm, {1, 4, 9, 3, 7});
  EXPECT_TRUE(testing::all_close(a, b, 1e-6f, 1e-5f));
}

}  // namespace
}  // namespace tidal::model
