// SPDX-License-Identifier: Apache-2.0
#include "tests/parallel/parallel_testing.h"

#include <gtest/gtest.h>

#include "runtime/engine/generate.h"
#include "tests/testing/safetensors_writer.h"
#include "tests/testing/testing.h"

namespace tidal::testing {

ParallelLayout::ParallelLayout(int tp, int pp) {
  world = parallel::MpiCommunicator::dup(MPI_COMM_WORLD);
  parallel::ParallelConfig cfg;
  cfg.tp_size = tp;
  cfg.pp_size = pp;
  const Status st = parallel::make_parallel_groups(*world, cfg, &groups);
  TIDAL_CHECK(st.ok(), st.to_string());
  dist.parallel = cfg;
  dist.world = world.get();
  dist.tp = groups.tp.get();
  dist.pp = groups.pp.get();
}

std::string ParallelLayout::name() const {
  return "tp" + std::to_string(dist.parallel.tp_size) + "_pp" +
         std::to_string(dist.parallel.pp_size);
}

std::vector<std::pair<int, int>> layouts_for_world(int world_size) {
  std::vector<std::pair<int, int>> all = {{2, 1}, {1, 2}, {2, 2}, {4, 1},
                                          {1, 4}, {8, 1}, {4, 2}, {2, 4}};
  std::vector<std::pair<int, int>> out;
  for (auto [tp, pp] : all) {
    if (tp * pp == world_size) out.push_back({tp, pp});
  }
  return out;
}

std::string write_gqa128_model(int rank, int64_t heads, int64_t kv) {
  const int64_t vocab = 256, hidden = 256, hd = 128, inter = 256, layers = 4;
  const std::string dir = temp_dir("gqa128_h" + std::to_string(heads) + "_kv" +
                                   std::to_string(kv) + "_rank" + std::to_string(rank));
  write_file(dir + "/config.json", R"({
  "architectures": ["LlamaForCausalLM"], "model_type": "llama",
  "hidden_size": 256, "intermediate_size": 256, "num_hidden_layers": 4,
  "num_attention_heads": )" + std::to_string(heads) + R"(, "num_key_value_heads": )" +
                                       std::to_string(kv) + R"(, "head_dim": 128,
  "vocab_size": 256, "max_position_embeddings": 512, "rms_norm_eps": 1e-05,
  "rope_theta": 10000.0, "tie_word_embeddings": false, "hidden_act": "silu",
  "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32"
})");
  uint32_t seed = 1000;
  std::vector<TestTensor> tensors;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, float scale, bool ones) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<float> v =
        ones ? std::vector<float>(size_t(n), 1.0f) : random_normal(size_t(n), seed++, scale);
    tensors.push_back({name, "F32", shape, bytes_of(v)});
  };
  add("model.embed_tokens.weight", {vocab, hidden}, 1.0f, false);
  for (int64_t l = 0; l < layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {hidden}, 0, true);
    // Large q/k: peaked attention, so a budget of a few tokens changes the output.
    add(p + "self_attn.q_proj.weight", {heads * hd, hidden}, 0.25f, false);
    add(p + "self_attn.k_proj.weight", {kv * hd, hidden}, 0.25f, false);
    add(p + "self_attn.v_proj.weight", {kv * hd, hidden}, 0.06f, false);
    add(p + "self_attn.o_proj.weight", {hidden, heads * hd}, 0.04f, false);
    add(p + "post_attention_layernorm.weight", {hidden}, 0, true);
    add(p + "mlp.gate_proj.weight", {inter, hidden}, 0.06f, false);
    add(p + "mlp.up_proj.weight", {inter, hidden}, 0.06f, false);
    add(p + "mlp.down_proj.weight", {hidden, inter}, 0.06f, false);
  }
  add("model.norm.weight", {hidden}, 0, true);
  add("lm_head.weight", {vocab, hidden}, 0.06f, false);
  write_file(dir + "/model.safetensors", build_safetensors(tensors));
  return dir;
}

std::vector<int32_t> flatten(const std::vector<model::LayerTrace>& trace) {
  std::vector<int32_t> out;
  for (const model::LayerTrace& t : trace) {
    out.insert(out.end(),
               {int32_t(t.position), int32_t(t.layer), int32_t(t.role), int32_t(t.lists.size())});
    for (const std::vector<int32_t>& l : t.lists) {
      out.push_back(int32_t(l.size()));
      out.insert(out.end(), l.begin(), l.end());
    }
  }
  return out;
}

std::vector<std::vector<int32_t>> all_gather_vectors(parallel::MpiCommunicator& world,
                                                     const std::vector<int32_t>& mine) {
  const int n = world.size();
  std::vector<int32_t> sizes(static_cast<size_t>(n));
  int32_t my_size = int32_t(mine.size());
  MPI_Allgather(&my_size, 1, MPI_INT32_T, sizes.data(), 1, MPI_INT32_T, world.comm());
  std::vector<int> counts(sizes.begin(), sizes.end()), offsets(size_t(n), 0);
  for (int r = 1; r < n; ++r) offsets[size_t(r)] = offsets[size_t(r - 1)] + counts[size_t(r - 1)];
  std::vector<int32_t> all(size_t(offsets.back() + counts.back()));
  MPI_Allgatherv(mine.data(), my_size, MPI_INT32_T, all.data(), counts.data(), offsets.data(),
                 MPI_INT32_T, world.comm());
  std::vector<std::vector<int32_t>> out;
  for (int r = 0; r < n; ++r) {
    out.emplace_back(all.begin() + offsets[size_t(r)],
                     all.begin() + offsets[size_t(r)] + counts[size_t(r)]);
  }
  return out;
}

model::AttentionPolicy tidal_policy(int64_t budget, model::Granularity g, model::Agreement a) {
  model::AttentionPolicy p;
  p.kind = model::AttentionKind::kTidal;
  p.tidal.budget = budget;
  p.tidal.granularity = g;
  p.tidal.agreement = a;
  return p;
}

model::AttentionPolicy quest_policy(int64_t budget) {
  model::AttentionPolicy p;
  p.kind = model::AttentionKind::kQuest;
  p.quest.budget = budget;
  return p;
}

}  // namespace tidal::testing
