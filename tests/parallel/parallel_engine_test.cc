// SPDX-License-Identifier: Apache-2.0
// The engine split over ranks under mpirun (-np 2: tp 2, pp 2; -np 4: tp 2 x pp 2, tp 4, pp 4;
// -np 8: tp 8, tp 4 x pp 2, tp 2 x pp 4, the EightRanks tests only) against one rank, on
// stories260K (a real GQA Llama, 8 query / 4 KV heads, head_dim 8) and random GQA models with
// head_dim 128: the same tokens under every policy; agreed lists identical on every rank that
// shares them (and, for the exact variant, equal to one rank's); each rank holding only its share
// of the weights and KV cache; a load failure on one rank stopping all.
// Rank 0 compares; checks after collectives use EXPECT so that no rank leaves a test early.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "runtime/engine/engine.h"
#include "runtime/engine/generate.h"
#include "tests/parallel/parallel_testing.h"
#include "tests/testing/testing.h"

namespace tidal::engine {
namespace {

using model::Agreement;
using model::Granularity;
using testing::ParallelLayout;

constexpr const char* kStories = "models/stories260K/hf";

struct Case {
  std::string name;
  model::AttentionPolicy policy;
  float temperature = 0.0f;
};

struct Subject {
  std::string dir;
  std::vector<int32_t> prompt;
  int64_t tokens = 0;  // generated per case
  int64_t budget = 0;  // tidal budget (quest: twice it)
};

std::vector<Case> every_policy(int64_t budget) {
  return {
      {"full", model::AttentionPolicy()},
      {"full_sampled", model::AttentionPolicy(), 0.8f},
      {"tidal_per_query_head", testing::tidal_policy(budget, Granularity::kPerQueryHead)},
      {"tidal_per_kv_head", testing::tidal_policy(budget, Granularity::kPerKvHead)},
      {"tidal_per_kv_head_exact",
       testing::tidal_policy(budget, Granularity::kPerKvHead, Agreement::kExact)},
      {"tidal_shared_approx", testing::tidal_policy(budget, Granularity::kShared)},
      {"tidal_shared_exact",
       testing::tidal_policy(budget, Granularity::kShared, Agreement::kExact)},
      {"quest", testing::quest_policy(2 * budget)},
  };
}

Subject stories() {
  Subject s;
  s.dir = testing::shared_path(kStories);
  // BOS and the start of the model's own greedy story: a prompt it continues fluently.
  s.prompt = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426};
  s.tokens = 40;
  s.budget = 16;
  return s;
}

Subject gqa128(int rank, int64_t heads = 4, int64_t kv_heads = 2) {
  Subject s;
  s.dir = testing::write_gqa128_model(rank, heads, kv_heads);
  for (int i = 0; i < 40; ++i) s.prompt.push_back(int32_t(3 + (i * 37) % 250));
  s.tokens = 24;
  s.budget = 8;
  return s;
}

std::unique_ptr<Engine> load(const std::string& dir, const Distributed* dist) {
  EngineConfig config;
  config.distributed = dist;
  std::unique_ptr<Engine> e;
  const Status st = Engine::load(dir, config, &e);
  EXPECT_TRUE(st.ok()) << st.to_string();
  return e;
}

// Every case on one rank (rank 0) and on every layout of the world; rank 0 compares tokens.
void expect_tokens_equal_one_rank(const Subject& s, const std::vector<Case>& cases) {
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  std::vector<std::vector<int32_t>> want;
  if (rank == 0) {
    std::unique_ptr<Engine> one = load(s.dir, nullptr);
    for (const Case& c : cases) {
      want.push_back(testing::generate_tokens(*one, s.prompt, s.tokens, c.policy, c.temperature));
    }
  }
  for (auto [tp, pp] : testing::layouts_for_world(size)) {
    ParallelLayout layout(tp, pp);
    std::unique_ptr<Engine> e = load(s.dir, &layout.dist);
    if (e == nullptr) continue;  // every rank failed alike (agreed)
    if (rank != 0) {
      EXPECT_TRUE(e->serve().ok());
      continue;
    }
    for (size_t i = 0; i < cases.size(); ++i) {
      const std::vector<int32_t> got =
          testing::generate_tokens(*e, s.prompt, s.tokens, cases[i].policy, cases[i].temperature);
      EXPECT_EQ(got, want[i]) << layout.name() << " " << cases[i].name;
    }
  }
}

TEST(ParallelEngine, StoriesTokensEqualOneRankUnderEveryPolicy) {
  TIDAL_SKIP_WITHOUT_SHARED(kStories);
  const Subject s = stories();
  expect_tokens_equal_one_rank(s, every_policy(s.budget));
}

TEST(ParallelEngine, GqaHeadDim128TokensEqualOneRankUnderEveryPolicy) {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  const Subject s = gqa128(rank);
  expect_tokens_equal_one_rank(s, every_policy(s.budget));
}

// Eight ranks (the layouts of issue 16's GPU runs, on the CPU): 16 query heads over 8 KV heads, so
// tp 8 gives each rank one KV head and two query heads.
// The budget is 24, not 8: this model's heads each put nearly all their mass on one position, so a
// shared score (the sum over the 16 heads) of such a peak is 1 + O(1e-6), and the order among up
// to 16 peaks is decided by those residuals, which rounding moves: the row-parallel all-reduces
// before a selection layer do not add in one rank's order, so no tensor-parallel run reproduces
// one rank's hidden state bit for bit. At K = 8, tp 8 measured s33 = 0.9999993 against s37 =
// 1.0000017 where one rank had 1.0000031 against 1.0000018, and kept 37 instead of 33. A budget
// above the head count keeps every peak, and the lists' edge falls among small scores whose
// order rounding does not move.
Subject kv8(int rank) {
  Subject s = gqa128(rank, 16, 8);
  s.budget = 24;
  return s;
}

// The same tokens as one rank under every policy and agreement variant.
TEST(ParallelEngine, EightRanksKv8TokensEqualOneRankUnderEveryPolicy) {
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size != 8) GTEST_SKIP() << "needs mpirun -np 8";
  const Subject s = kv8(rank);
  expect_tokens_equal_one_rank(s, every_policy(s.budget));
}

// Several sequences decoded together: under pp the decode steps cross the stages in
// micro-batches (stage s on one part while stage s + 1 runs the part before); every sequence
// still gets one rank's tokens, under mixed policies in one batch.
TEST(ParallelEngine, BatchedDecodeInMicroBatchesEqualsOneRank) {
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const Subject s = gqa128(rank);
  std::vector<GenerationRequest> requests;
  const model::AttentionPolicy policies[] = {
      model::AttentionPolicy(), testing::tidal_policy(8, Granularity::kShared),
      testing::tidal_policy(8, Granularity::kPerQueryHead, Agreement::kExact),
      testing::quest_policy(16)};
  for (int i = 0; i < 4; ++i) {
    GenerationRequest r;
    r.prompt = s.prompt;
    r.prompt.resize(size_t(20 + 5 * i));
    r.attention = policies[i];
    r.sampling.temperature = 0;
    r.stop.max_new_tokens = 16;
    r.stop.ignore_eos = true;
    requests.push_back(r);
  }
  auto run_all = [&](Engine& e) {
    std::vector<GenerationResult> results;
    const Status st = generate(
        e, requests, nullptr, [](const GenerationEvent&) { return true; }, &results);
    EXPECT_TRUE(st.ok()) << st.to_string();
    std::vector<std::vector<int32_t>> tokens;
    for (const GenerationResult& r : results) tokens.push_back(r.tokens);
    return tokens;
  };
  std::vector<std::vector<int32_t>> want;
  if (rank == 0) want = run_all(*load(s.dir, nullptr));
  for (auto [tp, pp] : testing::layouts_for_world(size)) {
    if (pp == 1) continue;
    ParallelLayout layout(tp, pp);
    std::unique_ptr<Engine> e = load(s.dir, &layout.dist);
    ASSERT_NE(e, nullptr);
    if (rank != 0) {
      EXPECT_TRUE(e->serve().ok());
      continue;
    }
    EXPECT_EQ(run_all(*e), want) << layout.name();
  }
}

// The lists of every decode token in every layer a rank holds, per rank, for one generation.
struct RankTraces {
  std::vector<std::vector<int32_t>> flat;  // by world rank
  std::vector<model::LayerTrace> mine;
};

RankTraces trace_generation(ParallelLayout& layout, const Subject& s,
                            const model::AttentionPolicy& policy) {
  RankTraces out;
  std::unique_ptr<Engine> e = load(s.dir, &layout.dist);
  if (e == nullptr) return out;
  e->set_rank_trace(&out.mine);
  if (layout.rank() == 0) {
    testing::generate_tokens(*e, s.prompt, s.tokens, policy);
    e.reset();  // shutdown: the other ranks leave serve()
  } else {
    EXPECT_TRUE(e->serve().ok());
  }
  out.flat = testing::all_gather_vectors(*layout.world, testing::flatten(out.mine));
  return out;
}

// Lists of non-dense entries by (position, layer).
std::map<std::pair<int64_t, int64_t>, std::vector<std::vector<int32_t>>> by_step(
    const std::vector<model::LayerTrace>& trace) {
  std::map<std::pair<int64_t, int64_t>, std::vector<std::vector<int32_t>>> m;
  for (const model::LayerTrace& t : trace) {
    if (t.role != model::LayerRole::kDense) m[{t.position, t.layer}] = t.lists;
  }
  return m;
}

// Shared lists agree on every TP rank of a stage (approx and exact), under every layout of the
// world with tp > 1; the exact variant's lists are one rank's lists. `sparse_start`: the first
// selection layer; every stage must hold a selection or sparse layer, so that every rank has lists.
void expect_shared_lists_agree(const Subject& s, int64_t sparse_start = 2) {
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  for (Agreement a : {Agreement::kApprox, Agreement::kExact}) {
    model::AttentionPolicy policy = testing::tidal_policy(s.budget, Granularity::kShared, a);
    policy.tidal.sparse_start = sparse_start;
    std::vector<model::LayerTrace> one;
    if (rank == 0) {
      std::unique_ptr<Engine> e = load(s.dir, nullptr);
      e->set_rank_trace(&one);
      testing::generate_tokens(*e, s.prompt, s.tokens, policy);
    }
    for (auto [tp, pp] : testing::layouts_for_world(size)) {
      if (tp == 1) continue;
      ParallelLayout layout(tp, pp);
      const RankTraces t = trace_generation(layout, s, policy);
      ASSERT_EQ(t.flat.size(), size_t(size));
      int64_t selections = 0;  // entries with lists
      for (int r = 0; r < size; ++r) {
        const int first_of_stage = r / tp * tp;
        EXPECT_EQ(t.flat[size_t(r)], t.flat[size_t(first_of_stage)])
            << layout.name() << " " << model::agreement_name(a) << ": rank " << r
            << " holds other lists than rank " << first_of_stage;
      }
      // Stages without a selection layer read the lists that crossed from the stage before.
      for (const model::LayerTrace& tr : t.mine) selections += !tr.lists.empty();
      EXPECT_GT(selections, 0) << "no lists on rank " << rank;
      if (a != Agreement::kExact || rank != 0) continue;
      // Rank 0 holds the first stage's layers; their lists are one rank's.
      const auto want = by_step(one);
      int64_t compared = 0;
      for (const auto& [step, lists] : by_step(t.mine)) {
        if (want.count(step) == 0) {  // (EXPECT, not ASSERT: the other ranks go on to collectives)
          ADD_FAILURE() << layout.name() << " position " << step.first << " layer " << step.second
                        << ": not in the one-rank run";
          continue;
        }
        EXPECT_EQ(lists, want.at(step))
            << layout.name() << " position " << step.first << " layer " << step.second;
        ++compared;
      }
      EXPECT_GT(compared, 0);
    }
  }
}

TEST(ParallelEngine, SharedListsAreIdenticalOnEveryTpRankAndExactOnesEqualOneRank) {
  TIDAL_SKIP_WITHOUT_SHARED(kStories);
  Subject s = stories();
  s.budget = 8;
  expect_shared_lists_agree(s);
}

// tp 4 over 2 KV heads: each KV head lives on 2 ranks, which agree on its per-KV-head list.
TEST(ParallelEngine, ReplicatedKvHeadListsAgreeWithinTheirRanks) {
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size != 4) GTEST_SKIP() << "needs mpirun -np 4 (tp 4 over 2 KV heads)";
  const Subject s = gqa128(rank);
  for (Agreement a : {Agreement::kApprox, Agreement::kExact}) {
    ParallelLayout layout(4, 1);
    const RankTraces t =
        trace_generation(layout, s, testing::tidal_policy(s.budget, Granularity::kPerKvHead, a));
    EXPECT_EQ(t.flat[0], t.flat[1]) << "ranks 0 and 1 share KV head 0";
    EXPECT_EQ(t.flat[2], t.flat[3]) << "ranks 2 and 3 share KV head 1";
    EXPECT_NE(t.flat[0], t.flat[2]) << "KV heads 0 and 1 should pick different lists";
  }
}

// Eight ranks: shared lists, both agreement variants, identical on every rank of a tp group, and
// the exact variant's equal to one rank's. Layer 0 selects, so that each stage of tp 2 x pp 4 (one
// layer each) holds lists.
TEST(ParallelEngine, EightRanksSharedListsAreIdenticalOnEveryTpRank) {
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size != 8) GTEST_SKIP() << "needs mpirun -np 8";
  expect_shared_lists_agree(kv8(rank), /*sparse_start=*/0);
}

// The per-rank memory is the model's share: every rank holds less than the whole, the ranks
// together hold the whole once (plus per-rank copies of the norms, and of a KV head's
// projections where tp exceeds the KV heads), and the KV cache of a token is split the same way.
TEST(ParallelEngine, EachRankHoldsItsShareOfWeightsAndKvCache) {
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const Subject s = gqa128(rank);
  MemoryPlan whole;
  {
    std::unique_ptr<Engine> one = load(s.dir, nullptr);
    ASSERT_NE(one, nullptr);
    whole = one->memory_plan();
  }
  for (auto [tp, pp] : testing::layouts_for_world(size)) {
    ParallelLayout layout(tp, pp);
    std::unique_ptr<Engine> e = load(s.dir, &layout.dist);
    ASSERT_NE(e, nullptr);
    const MemoryPlan& p = e->memory_plan();
    std::vector<int32_t> mine = {int32_t(p.weight_bytes), int32_t(p.kv_bytes_per_token),
                                 int32_t(p.workspace_bytes)};
    const auto all = testing::all_gather_vectors(*layout.world, mine);
    if (rank == 0) {
      int64_t weights = 0, kv = 0;
      std::printf("[ memory ] %s: whole model weights %zu B, KV %lld B/token, workspace %zu B\n",
                  layout.name().c_str(), whole.weight_bytes,
                  static_cast<long long>(whole.kv_bytes_per_token), whole.workspace_bytes);
      for (int r = 0; r < size; ++r) {
        std::printf("[ memory ]   rank %d: weights %d B (%.1f%%), KV %d B/token, workspace %d B\n",
                    r, all[size_t(r)][0], 100.0 * all[size_t(r)][0] / double(whole.weight_bytes),
                    all[size_t(r)][1], all[size_t(r)][2]);
        EXPECT_LT(size_t(all[size_t(r)][0]), whole.weight_bytes) << "rank " << r;
        weights += all[size_t(r)][0];
        kv += all[size_t(r)][1];
      }
      // tp beyond the 2 KV heads replicates each KV head (its k/v projections and its cache)
      // on tp / 2 ranks; everything else is split.
      const int64_t replicas = tp > 2 ? tp / 2 : 1;
      const double kv_weights = 4.0 * 2 * 2 * 128 * 256 * 4;  // layers x (k, v) x [kv_dim, hidden]
      const double want = double(whole.weight_bytes) + double(replicas - 1) * kv_weights;
      EXPECT_LE(double(weights), 1.02 * want) << layout.name();
      EXPECT_GE(double(weights), want) << layout.name();
      EXPECT_EQ(kv, replicas * whole.kv_bytes_per_token) << layout.name();
      e.reset();
    } else {
      EXPECT_TRUE(e->serve().ok());
    }
  }
}

SequenceOptions greedy() {
  SequenceOptions o;
  o.sampling.temperature = 0.0f;
  return o;
}

// The logits rank 0 asks for come back whole (gathered over the vocabulary shards, then from the
// last stage), and greedy sampling over shards (each rank's best, merged) picks their argmax.
TEST(ParallelEngine, PrefillLogitsEqualOneRank) {
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const Subject s = gqa128(rank);
  std::vector<float> want;
  if (rank == 0) {
    std::unique_ptr<Engine> one = load(s.dir, nullptr);
    SeqId id = 0;
    // EXPECT, not ASSERT: rank 0 leaving here would leave the others in the layouts' collectives.
    EXPECT_TRUE(one->add_sequence(s.prompt, greedy(), &id).ok());
    want.resize(size_t(one->model_config().vocab));
    EXPECT_TRUE(one->prefill(id, make_view(want.data(), DType::kF32, {int64_t(want.size())})).ok());
  }
  for (auto [tp, pp] : testing::layouts_for_world(size)) {
    ParallelLayout layout(tp, pp);
    std::unique_ptr<Engine> e = load(s.dir, &layout.dist);
    ASSERT_NE(e, nullptr);
    if (rank != 0) {
      EXPECT_TRUE(e->serve().ok());
      continue;
    }
    SeqId id = 0;
    EXPECT_TRUE(e->add_sequence(s.prompt, greedy(), &id).ok());
    std::vector<float> got(want.size());
    int32_t sampled = -1;
    EXPECT_TRUE(
        e->prefill(id, make_view(got.data(), DType::kF32, {int64_t(got.size())}), &sampled).ok());
    EXPECT_TRUE(testing::all_close(got, want, 1e-4f, 1e-4f)) << layout.name();
    EXPECT_EQ(sampled, int32_t(std::max_element(want.begin(), want.end()) - want.begin()));
  }
}

// A rank that cannot load ends the load on every rank, each with the failing rank and cause.
TEST(ParallelEngine, ALoadFailureOnOneRankFailsEveryRankNamingIt) {
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const Subject s = gqa128(rank);
  ParallelLayout layout(size, 1);
  EngineConfig config;
  config.distributed = &layout.dist;
  std::unique_ptr<Engine> e;
  const std::string dir = rank == 1 ? s.dir + "/missing" : s.dir;
  const Status st = Engine::load(dir, config, &e);
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(e, nullptr);
  EXPECT_NE(st.message().find("rank 1: "), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("missing"), std::string::npos) << st.message();
  // Every rank got the same words.
  std::vector<int32_t> text(st.message().begin(), st.message().end());
  const auto all = testing::all_gather_vectors(*layout.world, text);
  for (int r = 0; r < size; ++r) EXPECT_EQ(all[size_t(r)], all[0]) << "rank " << r;
}

// agree_status carries messages whole, however long (a memory plan's refusal runs to 400
// characters): the failing rank's, named, or the one every rank shares; ok when all are ok.
TEST(ParallelEngine, AgreedFailuresKeepTheirWholeMessage) {
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  ParallelLayout layout(size, 1);
  std::string long_text;
  for (int i = 0; i < 100; ++i) long_text += "part " + std::to_string(i) + "; ";
  ASSERT_GT(long_text.size(), 600u);
  EXPECT_TRUE(agree_status(*layout.world, ok_status()).ok());
  const int last = size - 1;
  const Status one =
      agree_status(*layout.world, rank == last ? out_of_memory(long_text) : ok_status());
  EXPECT_EQ(one.code(), StatusCode::kOutOfMemory);
  EXPECT_EQ(one.message(), "rank " + std::to_string(last) + ": " + long_text);
  const Status all = agree_status(*layout.world, invalid_argument(long_text + "!"));
  EXPECT_EQ(all.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(all.message(), long_text + "!");
}

// Ranks follow rank 0's plans and join its collectives, so the model and every setting that sizes
// a plan, a table or a collective must match. One that differs on the last rank is an error on
// every rank naming it and both values; not a step that aborts mid-generation (max_context: a
// block table too narrow; dtype f32 against bf16: a truncated all-reduce; quest bounds) or that
// runs to the end with wrong tokens (f16 summed as bf16, a KV cache in FP8 on some ranks, a
// checkpoint whose RoPE base differs).
TEST(ParallelEngine, RanksWithDifferentSettingsOrModelsRefuseToStart) {
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const Subject s = gqa128(rank);
  const bool last = rank == size - 1;
  // The same checkpoint with another rope_theta, as another host's copy of another version.
  std::string theta_dir = s.dir;
  if (last) {
    theta_dir = testing::temp_dir("gqa128_theta");
    std::string config = testing::read_file(s.dir + "/config.json");
    const size_t at = config.find("\"rope_theta\": 10000.0");
    ASSERT_NE(at, std::string::npos);
    config.replace(at, 21, "\"rope_theta\": 500000.0");
    testing::write_file(theta_dir + "/config.json", config);
    testing::write_file(theta_dir + "/model.safetensors",
                        testing::read_file(s.dir + "/model.safetensors"));
  }
  const std::string other = std::to_string(size - 1);
  struct Mismatch {
    std::function<void(EngineConfig*)> change;  // on the last rank
    std::string dir;                            // the last rank's model
    std::string want;
  };
  const std::vector<Mismatch> cases = {
      {[](EngineConfig* c) { c->max_batch = 4; }, s.dir,
       "ranks differ in max_batch: rank 0 has 8, rank " + other + " has 4"},
      {[](EngineConfig* c) { c->max_context = 256; }, s.dir,
       "ranks differ in max_context: rank 0 has 512, rank " + other + " has 256"},
      {[](EngineConfig* c) { c->dtype = DType::kBF16; }, s.dir,
       "ranks differ in dtype: rank 0 has f32, rank " + other + " has bf16"},
      {[](EngineConfig* c) { c->kv_dtype = KvDtype::kFp8; }, s.dir,
       "ranks differ in kv_dtype: rank 0 has the activations' dtype, rank " + other + " has fp8"},
      {[](EngineConfig* c) { c->quest_bounds = false; }, s.dir,
       "ranks differ in quest_bounds: rank 0 has true, rank " + other + " has false"},
      {[](EngineConfig*) {}, theta_dir,
       "ranks differ in the model's rope_theta: rank 0 has 10000, rank " + other + " has 500000"},
  };
  for (const Mismatch& m : cases) {
    ParallelLayout layout(size, 1);
    EngineConfig config;
    config.distributed = &layout.dist;
    if (last) m.change(&config);
    std::unique_ptr<Engine> e;
    const Status st = Engine::load(last ? m.dir : s.dir, config, &e);
    EXPECT_FALSE(st.ok()) << m.want;
    EXPECT_NE(st.message().find(m.want), std::string::npos) << st.message();
    // Where the ranks (wrongly) started, the others serve until rank 0's engine shuts down.
    if (e != nullptr && rank != 0) {
      EXPECT_TRUE(e->serve().ok());
    }
  }
}

}  // namespace
}  // namespace tidal::engine
