// SPDX-License-Identifier: Apache-2.0
// kernel_bench cases for the selection and sampling ops: head_group_probs and topk_per_row over
// the selection layer's logits at 100K and 2^20 positions (TidalDecode), Quest's page scores
// and page expansion, and sample_tokens over Llama-3's vocabulary. Index outputs must match the
// ref:: twin exactly; every list / row / head is checked (one-row ref:: calls in parallel).
// Graph mode (Replicas) copies only Quest's page bounds (a layer's metadata, read once a step):
// the other ops read what the kernel before them just wrote (logits, probabilities, lists), which
// a real step has in L2 too.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "benchmarks/common/parallel.h"
#include "benchmarks/kernels/case_util.h"
#include "kernels/head_group_probs.h"
#include "kernels/quest.h"
#include "kernels/sample_tokens.h"
#include "kernels/topk_per_row.h"

namespace tidal::bench {
namespace {

using kernels::TokenRole;
constexpr int64_t kPage = 16;  // Quest's page, the KV cache's

TensorView one(const HostTensor& t, int64_t i) { return sub_view(t.view(), i, {1}, {1}); }

HostTensor filled_i32(int64_t n, int64_t value) {
  return int_tensor({n}, DType::kI32, std::vector<int64_t>(size_t(n), value));
}
HostTensor roles_of(int64_t n, TokenRole role) {
  return int_tensor({n}, DType::kU8, std::vector<int64_t>(size_t(n), int64_t(role)));
}

// Logits with a few strong positions per row over a flat background, as attention and LM
// heads have: probabilities then span many orders of magnitude and the largest are near 1, so
// the tolerances' rtol bites and not only their atol.
HostTensor spiky_logits(std::vector<int64_t> shape, uint64_t seed, float spike) {
  HostTensor t = random_tensor(shape, DType::kF32, seed, -4.0f, 4.0f);
  const int64_t len = shape.back(), rows = t.view().numel() / len;
  float* x = static_cast<float*>(t.view().data);
  Rng rng(seed + 1);
  for (int64_t r = 0; r < rows; ++r) {
    for (int i = 0; i < 8; ++i) x[r * len + rng.below(len)] += spike * (0.5f + 0.1f * float(i));
  }
  return t;
}

}  // namespace

void bench_head_group_probs(const BenchEnv& env, const RunCase& run_case) {
  const int64_t heads = env.quick ? 8 : 32;
  struct Config {
    int64_t n, lists, tokens;  // tokens > 1: a batch whose first token alone selects
  };
  // Per-KV-head under GQA 4:1 and shared at 100K; per-KV-head at 2^20 (an FP8 cache's million);
  // one selecting token of a batch of 16 at 256K (the grid is sized for every token's lists).
  const std::vector<Config> configs =
      env.quick ? std::vector<Config>{{3000, heads / 4, 1}, {3000, 1, 1}, {3000, heads / 4, 4}}
                : std::vector<Config>{{100000, heads / 4, 1},
                                      {100000, 1, 1},
                                      {int64_t(1) << 20, heads / 4, 1},
                                      {int64_t(1) << 18, heads / 4, 16}};
  for (const auto& [n, lists, tokens] : configs) {
    const HostTensor scores = spiky_logits({tokens, heads, n}, 400 + uint64_t(lists), 16.0f);
    // The lse decode_attention would have written, for token 0's heads: the only selecting token,
    // so the only lse the kernel and the ref read.
    std::vector<float> lse_values(static_cast<size_t>(tokens * heads), 0.0f);
    for (int64_t h = 0; h < heads; ++h) {
      const float* row = static_cast<const float*>(scores.view().data) + h * n;
      const double m = *std::max_element(row, row + n);
      double sum = 0.0;
      for (int64_t j = 0; j < n; ++j) sum += std::exp(double(row[j]) - m);
      lse_values[size_t(h)] = float(m + std::log(sum));
    }
    const HostTensor lse = HostTensor::from({tokens, heads}, lse_values);
    const HostTensor lengths = filled_i32(tokens, n), num_lists = filled_i32(tokens, lists);
    HostTensor roles = roles_of(tokens, TokenRole::kSparse);
    static_cast<uint8_t*>(roles.view().data)[0] = uint8_t(TokenRole::kSelect);
    const DeviceBuffer dscores = upload(env, scores), dlse = upload(env, lse);
    const DeviceBuffer dlen = upload(env, lengths), dnum = upload(env, num_lists);
    const DeviceBuffer droles = upload(env, roles);
    // The logits as decode attention leaves them for group lists with logits16 (f16).
    HostTensor logits16({tokens, heads, n}, DType::kF16);
    for (int64_t i = 0; i < tokens * heads * n; ++i) {
      static_cast<f16*>(logits16.view().data)[i] =
          f32_to_f16(static_cast<const float*>(scores.view().data)[i]);
    }
    const DeviceBuffer dlogits16 = upload(env, logits16);
    for (const bool f16_logits : {false, true}) {
      kernels::HeadGroupProbsParams p{dscores.view(), dlse.view(),   dlen.view(),
                                      dnum.view(),    droles.view(), TensorView()};
      if (f16_logits) p.logits16 = dlogits16.view();
      KernelCase c =
          make_case(env, "head_group_probs",
                    shape_str({tokens, heads, n}) + " lists=" + std::to_string(lists) +
                        (tokens > 1 ? " 1-selecting" : "") + (f16_logits ? " logits16" : ""),
                    (f16_logits ? 2.0 : 4.0) * double(heads * n) + 4.0 * double(lists * n + heads));
      c.dtype = f16_logits ? "f16" : "f32";
      c.run = [&] { kernels::head_group_probs(p, env.stream); };
      c.check = [&] {  // the whole tensor: the group rows rewritten, the others untouched
        const HostTensor got = dscores.download(env.stream);
        HostTensor want = clone(scores.view());
        kernels::HeadGroupProbsParams r{want.view(),      lse.view(),   lengths.view(),
                                        num_lists.view(), roles.view(), TensorView()};
        if (f16_logits) r.logits16 = logits16.view();
        kernels::ref::head_group_probs(r);
        return count_wrong(got.view(), want.view(), tolerance(DType::kF32));
      };
      run_case(c);
    }
  }
}

// What a selection layer's top-k reads for lists of `group` heads: each list's first row holds
// the sum over its heads of softmax probabilities (head_group_probs), here of logits uniform in
// [-spread, spread]. A flat head (small spread: a random-valued KV cache, or a head attending
// broadly) puts nearly every key in a few pass-0 buckets of the radix select.
HostTensor group_probs(int64_t tokens, int64_t heads, int64_t group, int64_t n, float spread,
                       uint64_t seed) {
  HostTensor t = random_tensor({tokens, heads, n}, DType::kF32, seed, -spread, spread);
  float* x = static_cast<float*>(t.view().data);
  parallel_sum(tokens * heads, [&](int64_t row) {  // each row -> its probabilities
    float* r = x + row * n;
    double sum = 0.0;
    for (int64_t j = 0; j < n; ++j) sum += std::exp(double(r[j]) - spread);
    const double log_sum = spread + std::log(sum);
    for (int64_t j = 0; j < n; ++j) r[j] = float(std::exp(double(r[j]) - log_sum));
    return int64_t(0);
  });
  parallel_sum(tokens * (heads / group), [&](int64_t list) {  // first row of each list: the sum
    float* first = x + list * group * n;
    for (int64_t h = 1; h < group; ++h) {
      for (int64_t j = 0; j < n; ++j) first[j] += first[h * n + j];
    }
    return int64_t(0);
  });
  return t;
}

void bench_topk_per_row(const BenchEnv& env, const RunCase& run_case) {
  struct Config {
    int64_t tokens, heads, lists, n, budget;
    float spread = 0.0f;       // > 0: head-group probabilities of logits in [-spread, spread]
    int64_t buffer_lists = 0;  // list rows the output buffers hold (0: lists)
  };
  const std::vector<Config> configs =
      env.quick
          ? std::vector<Config>{{1, 4, 4, 3000, 64},
                                {1, 4, 1, 3000, 64},
                                {2, 1, 1, 20000, 64},
                                {1, 4, 2, 3000, 64, 0.5f}}
          : std::vector<Config>{{1, 32, 32, 100000, 2048},  // per query head
                                {1, 32, 32, 100000, 256},
                                {1, 32, 8, 100000, 2048},   // per KV head (GQA 4:1)
                                {2, 1, 1, 1000000, 2048},   // two 1M-position rows
                                {1, 32, 8, 1 << 20, 2048},  // per KV head at 2^20
                                // ... on probabilities of flat and of spread heads
                                {1, 32, 8, 100000, 2048, 0.5f},
                                {1, 32, 8, 1 << 20, 2048, 0.5f},
                                {1, 32, 8, 1 << 20, 2048, 8.0f},
                                // ... in buffers of 32 list rows, as a step's workspace holds them
                                {1, 32, 8, 1 << 20, 2048, 0.5f, 32}};
  for (const Config& cfg : configs) {
    // t_n tokens of h_n score rows; l_n lists per token read rows l * (h_n / l_n).
    const int64_t t_n = cfg.tokens, h_n = cfg.heads, l_n = cfg.lists, n = cfg.n, k = cfg.budget;
    // Uniform: 24 random bits per score: among 100K+ positions some scores tie, which exercises
    // the contract's tie rule (the lower position wins) on the GPU as well.
    const HostTensor scores =
        cfg.spread > 0.0f
            ? group_probs(t_n, h_n, h_n / l_n, n, cfg.spread, 600 + uint64_t(n))
            : random_tensor({t_n, h_n, n}, DType::kF32, 500 + uint64_t(n), -10.0f, 10.0f);
    const HostTensor lengths = filled_i32(t_n, n), budgets = filled_i32(t_n, k);
    const HostTensor num_lists = filled_i32(t_n, l_n), roles = roles_of(t_n, TokenRole::kSelect);
    const DeviceBuffer dscores = upload(env, scores), dlen = upload(env, lengths);
    const DeviceBuffer dbudgets = upload(env, budgets), dnum = upload(env, num_lists);
    const DeviceBuffer droles = upload(env, roles);
    const int64_t m_n = cfg.buffer_lists > 0 ? cfg.buffer_lists : l_n;  // list rows held
    const DeviceBuffer dind = poisoned(env, {t_n, m_n, k}, DType::kI32);
    const DeviceBuffer dcounts = poisoned(env, {t_n, m_n}, DType::kI32);
    const kernels::TopkPerRowParams p{dind.view(),   dcounts.view(),          dscores.view(),
                                      dlen.view(),   dbudgets.view(),         dnum.view(),
                                      droles.view(), kernels::kSelectingRoles};
    const DeviceBuffer ws = workspace(env, kernels::topk_per_row_workspace_size(p));
    KernelCase c = make_case(
        env, "topk_per_row",
        std::to_string(t_n * l_n) + " rows x " + std::to_string(n) + " K=" + std::to_string(k) +
            " b=" + std::to_string(t_n) + " lists=" + std::to_string(l_n) + "/" +
            std::to_string(h_n) +
            (cfg.spread > 0.0f ? (cfg.spread < 1.0f ? " flat-probs" : " spread-probs") : "") +
            (m_n != l_n ? " in " + std::to_string(m_n) + " rows" : ""),
        4.0 * double(t_n * l_n * (n + k + 1)));
    c.dtype = "f32";
    c.run = [&] { kernels::topk_per_row(p, ws.view(), env.stream); };
    c.check = [&] {
      const HostTensor got = dind.download(env.stream), got_counts = dcounts.download(env.stream);
      const HostTensor single = filled_i32(1, 1);
      return parallel_sum(t_n * l_n, [&](int64_t u) {  // every list, one ref:: call each
        const int64_t t = u / l_n, l = u % l_n;
        HostTensor ind({1, 1, k}, DType::kI32), cnt({1, 1}, DType::kI32);
        const kernels::TopkPerRowParams r{
            ind.view(),
            cnt.view(),
            sub_view(scores.view(), (t * h_n + l * (h_n / l_n)) * n, {1, 1, n}, {h_n * n, n, 1}),
            one(lengths, t),
            one(budgets, t),
            single.view(),
            sub_view(roles.view(), t, {1}, {1}),
            kernels::kSelectingRoles};
        kernels::ref::topk_per_row(r);
        const int64_t held = t * m_n + l;  // the list's row in the buffers
        return count_wrong(sub_view(got.view(), held * k, {1, 1, k}, {k, k, 1}), ind.view(), {}) +
               count_wrong(sub_view(got_counts.view(), held, {1, 1}, {1, 1}), cnt.view(), {});
      });
    };
    run_case(c);
  }
}

void bench_quest_page_scores(const BenchEnv& env, const RunCase& run_case) {
  const DType dt = env.dtype;
  const int64_t heads = env.quick ? 4 : 32, dim = env.quick ? 64 : 128;
  const int64_t n = env.quick ? 3000 : 100000, pages = (n + kPage - 1) / kPage;
  const int64_t full_pages = (n - 1) / kPage;  // the current page is not scored
  for (int64_t kvh : {heads / 4, heads}) {
    // Bounds as the metadata update would leave them (min <= 0 <= max), on shuffled pages.
    const HostTensor key_max =
        random_tensor({pages, kvh, dim}, dt, 600 + uint64_t(kvh), 0.0f, 1.0f);
    const HostTensor key_min =
        random_tensor({pages, kvh, dim}, dt, 601 + uint64_t(kvh), -1.0f, 0.0f);
    const HostTensor q = random_tensor({1, heads, dim}, dt, 602);
    const HostTensor tables = int_tensor({1, pages}, DType::kI32, shuffled(pages, 603));
    const HostTensor seq_ids = filled_i32(1, 0), lengths = filled_i32(1, n);
    const HostTensor roles = roles_of(1, TokenRole::kQuest);
    const DeviceBuffer dmax = upload(env, key_max), dmin = upload(env, key_min),
                       dq = upload(env, q);
    const DeviceBuffer dtables = upload(env, tables), dseq = upload(env, seq_ids);
    const DeviceBuffer dlen = upload(env, lengths), droles = upload(env, roles);
    const DeviceBuffer dout = poisoned(env, {1, heads, pages}, DType::kF32);
    const kernels::QuestPageScoresParams p{dout.view(), dq.view(),      dmax.view(),
                                           dmin.view(), dtables.view(), dseq.view(),
                                           dlen.view(), droles.view(),  kPage};
    // Graph mode: copies of the bounds, a layer's metadata that a step reads once (its append
    // rewrites one page's); q and the block tables are the step's own, in L2 in a real step too.
    const double bound_bytes = 2.0 * double(full_pages * kvh * dim) * bytes_of(dt);
    const Replicas bounds(env, {&dmax, &dmin}, bound_bytes);
    KernelCase c = make_case(
        env, "quest_page_scores",
        std::to_string(pages) + " pages h=" + std::to_string(heads) + "/" + std::to_string(kvh) +
            " d=" + std::to_string(dim),
        bound_bytes + double(heads * dim) * bytes_of(dt) + 4.0 * double(heads * full_pages));
    bounds.bind(&c, [&](int i) {
      kernels::QuestPageScoresParams pi = p;
      pi.key_max = bounds.view(i, 0);
      pi.key_min = bounds.view(i, 1);
      kernels::quest_page_scores(pi, env.stream);
    });
    c.check = [&] {
      const HostTensor got = dout.download(env.stream);
      return parallel_sum(heads, [&](int64_t h) {  // every head, one ref:: call each
        const int64_t kv = h / (heads / kvh);
        HostTensor out({1, 1, pages}, DType::kF32);
        kernels::QuestPageScoresParams r = p;
        r.out = out.view();
        r.q = sub_view(q.view(), h * dim, {1, 1, dim}, {heads * dim, dim, 1});
        r.key_max = sub_view(key_max.view(), kv * dim, {pages, 1, dim}, {kvh * dim, dim, 1});
        r.key_min = sub_view(key_min.view(), kv * dim, {pages, 1, dim}, {kvh * dim, dim, 1});
        r.block_tables = tables.view();
        r.seq_ids = seq_ids.view();
        r.lengths = lengths.view();
        r.roles = roles.view();
        kernels::ref::quest_page_scores(r);
        return count_wrong(sub_view(got.view(), h * pages, {full_pages}, {1}),
                           sub_view(out.view(), 0, {full_pages}, {1}), tolerance(dt));
      });
    };
    run_case(c);
  }
}

void bench_expand_pages(const BenchEnv& env, const RunCase& run_case) {
  // The last page of each sequence is cut short (n - 1 is not at a page end).
  const int64_t n = env.quick ? 2997 : 99997, budget = env.quick ? 64 : 2048;
  const int64_t page_budget = budget / kPage;
  for (const auto& [tokens, lists] : {std::pair<int64_t, int64_t>{1, env.quick ? 4 : 32},
                                      std::pair<int64_t, int64_t>{4, env.quick ? 2 : 8}}) {
    std::vector<int64_t> lens, page_values;
    for (int64_t t = 0; t < tokens; ++t) {
      lens.push_back(n - 7 * t);
      for (int64_t l = 0; l < lists; ++l) {  // chosen pages ascending, the current one last
        const std::vector<int64_t> chosen =
            random_list((lens.back() - 1) / kPage + 1, page_budget, 700 + uint64_t(t * lists + l));
        page_values.insert(page_values.end(), chosen.begin(), chosen.end());
      }
    }
    const HostTensor pages = int_tensor({tokens, lists, page_budget}, DType::kI32, page_values);
    const HostTensor page_counts = int_tensor(
        {tokens, lists}, DType::kI32, std::vector<int64_t>(size_t(tokens * lists), page_budget));
    const HostTensor lengths = int_tensor({tokens}, DType::kI32, lens);
    const HostTensor num_lists = filled_i32(tokens, lists),
                     roles = roles_of(tokens, TokenRole::kQuest);
    const DeviceBuffer dpages = upload(env, pages), dpc = upload(env, page_counts);
    const DeviceBuffer dlen = upload(env, lengths), dnum = upload(env, num_lists);
    const DeviceBuffer droles = upload(env, roles);
    const DeviceBuffer dpos = poisoned(env, {tokens, lists, budget}, DType::kI32);
    const DeviceBuffer dcounts = poisoned(env, {tokens, lists}, DType::kI32);
    const kernels::ExpandPagesParams p{dpos.view(), dcounts.view(), dpages.view(), dpc.view(),
                                       dlen.view(), dnum.view(),    droles.view(), kPage};
    KernelCase c =
        make_case(env, "expand_pages",
                  "b=" + std::to_string(tokens) + " " + std::to_string(lists) + " lists x " +
                      std::to_string(page_budget) + " pages -> K=" + std::to_string(budget),
                  4.0 * double(tokens * lists * (page_budget + budget + 2)));
    c.dtype = "i32";
    c.run = [&] { kernels::expand_pages(p, env.stream); };
    c.check = [&] {
      const HostTensor got = dpos.download(env.stream), got_counts = dcounts.download(env.stream);
      HostTensor want({tokens, lists, budget}, DType::kI32),
          want_counts({tokens, lists}, DType::kI32);
      kernels::ref::expand_pages({want.view(), want_counts.view(), pages.view(), page_counts.view(),
                                  lengths.view(), num_lists.view(), roles.view(), kPage});
      return count_wrong(got.view(), want.view(), {}) +
             count_wrong(got_counts.view(), want_counts.view(), {});
    };
    run_case(c);
  }
}

void bench_sample_tokens(const BenchEnv& env, const RunCase& run_case) {
  const int64_t vocab = env.quick ? 1000 : 128256;
  struct Config {
    const char* name;
    int64_t rows;
    float temperature, top_p, min_p;
    int64_t top_k;
  };
  const Config configs[] = {{"greedy", 1, 0.0f, 1.0f, 0.0f, 0},
                            {"greedy", 16, 0.0f, 1.0f, 0.0f, 0},
                            {"greedy", 64, 0.0f, 1.0f, 0.0f, 0},
                            {"top-p 0.9", 1, 0.8f, 0.9f, 0.0f, 0},
                            {"top-k 50 p 0.9 min-p 0.05", 16, 0.8f, 0.9f, 0.05f, 50},
                            {"top-k 50 p 0.9 min-p 0.05", 64, 0.8f, 0.9f, 0.05f, 50}};
  for (const Config& cfg : configs) {
    const int64_t b = cfg.rows;
    const HostTensor logits = spiky_logits({b, vocab}, 800 + uint64_t(b), 8.0f);
    const HostTensor temperature =
        HostTensor::from({b}, std::vector<float>(size_t(b), cfg.temperature));
    const HostTensor top_p = HostTensor::from({b}, std::vector<float>(size_t(b), cfg.top_p));
    const HostTensor min_p = HostTensor::from({b}, std::vector<float>(size_t(b), cfg.min_p));
    const HostTensor top_k = filled_i32(b, cfg.top_k);
    // The draw is a pure function of (seed, counter), so the GPU must pick the ref's token.
    std::vector<int64_t> seed_values, counter_values;
    for (int64_t r = 0; r < b; ++r) {
      seed_values.push_back(int64_t(mix64(uint64_t(r)) >> 1));
      counter_values.push_back(7 + r);
    }
    const HostTensor seeds = int_tensor({b}, DType::kI64, seed_values);
    const HostTensor counters = int_tensor({b}, DType::kI64, counter_values);
    const DeviceBuffer dlogits = upload(env, logits), dtemp = upload(env, temperature);
    const DeviceBuffer dtop_k = upload(env, top_k), dtop_p = upload(env, top_p);
    const DeviceBuffer dmin_p = upload(env, min_p), dseeds = upload(env, seeds);
    const DeviceBuffer dcounters = upload(env, counters);
    const DeviceBuffer dtokens = poisoned(env, {b}, DType::kI32);
    const kernels::SampleParams p{dtokens.view(), dlogits.view(), dtemp.view(),  dtop_k.view(),
                                  dtop_p.view(),  dmin_p.view(),  dseeds.view(), dcounters.view()};
    const DeviceBuffer ws = workspace(env, kernels::sample_tokens_workspace_size(p));
    KernelCase c = make_case(env, "sample_tokens", shape_str({b, vocab}) + " " + cfg.name,
                             4.0 * double(b * (vocab + 1)));
    c.dtype = "f32";
    c.run = [&] { kernels::sample_tokens(p, ws.view(), env.stream); };
    c.check = [&] {
      const HostTensor got = dtokens.download(env.stream);
      return parallel_sum(b, [&](int64_t r) {  // every row, one ref:: call each
        HostTensor token({1}, DType::kI32);
        const kernels::SampleParams one_row{token.view(),
                                            logits.view().slice(r, r + 1),
                                            one(temperature, r),
                                            one(top_k, r),
                                            one(top_p, r),
                                            one(min_p, r),
                                            sub_view(seeds.view(), r, {1}, {1}),
                                            sub_view(counters.view(), r, {1}, {1})};
        kernels::ref::sample_tokens(one_row);
        return count_wrong(sub_view(got.view(), r, {1}, {1}), token.view(), {});
      });
    };
    run_case(c);
  }
}

}  // namespace tidal::bench
