// SPDX-License-Identifier: Apache-2.0
// list_agreement_bench: what agreeing on shared selection lists costs per selection layer under
// tensor parallelism (DESIGN.md §6), run under mpirun (tp = the world size). For each batch,
// context and budget, every rank holds partial summed scores of one list per token (a common
// heavy-tailed importance times a per-rank factor, as heads on different ranks roughly agree);
// the engine's own agreement steps (model/parallel_forward.h) run on them:
//   exact:  all-reduce each token's score row (n floats), then the top-k;
//   approx: local top-k, all-gather of the positions, every rank's scores of every candidate
//           all-reduced (tp x K floats), merge, re-select.
// bytes: what this rank puts into the collectives per selection layer (exact: n x 4 per token;
// approx: K x 4 positions + tp x K x 4 scores per token). agree_ms: the agreement calls alone
// (approx's includes its re-selection over the merged row); select_ms: the selection layer's
// list work with them (exact: agreement + top-k; approx: local top-k + agreement). On the CPU
// path the top-k is the ref:: oracle (a sort of n positions), which dominates at long context.
// recall%: approx's positions that the exact lists hold. #wrong: lists that differ between ranks.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "benchmarks/common/stats.h"
#include "benchmarks/common/table.h"
#include "kernels/topk_per_row.h"
#include "model/parallel_forward.h"
#include "parallel/mpi_communicator.h"

namespace tidal::bench {
namespace {

struct Setup {
  int64_t batch = 1, context = 0, budget = 0;
  int tp = 1, rank = 0;
};

// Partial scores of `rank` for token t: importance_j * factor_rj (both lognormal).
std::vector<float> partial_scores(const Setup& s, int64_t t, int rank) {
  std::mt19937 common(uint32_t(1000 + t)), mine(uint32_t(7919 * (rank + 1) + t));
  std::normal_distribution<float> z(0.0f, 1.0f);
  std::vector<float> out(size_t(s.context));
  for (float& v : out) {
    const float importance = std::exp(2.5f * z(common));
    v = importance * std::exp(0.5f * z(mine)) / float(s.tp);
  }
  return out;
}

struct Lists {
  std::vector<std::vector<int32_t>> per_token;
};

Lists read_lists(const model::LlamaWorkspace& ws, int64_t batch) {
  Lists l;
  for (int64_t t = 0; t < batch; ++t) {
    const int32_t* p = ws.new_lists.select(t).data_as<int32_t>();
    const int32_t n = ws.new_counts.data_as<int32_t>()[t * ws.new_counts.stride[0]];
    l.per_token.emplace_back(p, p + n);
  }
  return l;
}

}  // namespace
}  // namespace tidal::bench

int main(int argc, char** argv) {
  using namespace tidal;
  using namespace tidal::bench;
  parallel::MpiWorld mpi;
  if (!parallel::mpi_init(&argc, &argv, &mpi).ok()) return 1;
  CLI::App app{"list_agreement_bench: bytes and time of exact vs approx list agreement"};
  std::vector<int64_t> contexts = {4096, 32768, 131072}, budgets = {256, 2048}, batches = {1, 8};
  int reps = 20;
  app.add_option("--context", contexts, "context lengths n")->delimiter(',');
  app.add_option("--budget", budgets, "budgets K")->delimiter(',');
  app.add_option("--batch", batches, "decode tokens per step")->delimiter(',');
  app.add_option("--reps", reps, "timed repetitions per row");
  CLI11_PARSE(app, argc, argv);

  parallel::MpiCommunicator& world = mpi.comm();
  const int rank = world.rank(), tp = world.size();
  BenchInfo info = collect_bench_info("list_agreement_bench");
  info.extra = {{"ranks", std::to_string(tp) + " (mpirun, MPI on the CPU)"},
                {"reps", std::to_string(reps)}};
  Table table(info, {{"tp", 4, true, 0},
                     {"batch", 5, true, 0},
                     {"context", 8, true, 0},
                     {"budget", 6, true, 0},
                     {"variant", 7, false},
                     {"bytes/layer", 12, true, 0},
                     {"agree_ms", 9, true, 3},
                     {"select_ms", 9, true, 3},
                     {"min_select", 10, true, 3},
                     {"recall%", 8, true, 2},
                     {"#wrong", 6, true, 0}});
  if (rank == 0) table.print_header();

  // Rows whose lists differ between ranks: the same count on every rank (from the all-gathered
  // checksums), so every rank exits alike and mpirun reports the failure.
  int64_t failed = 0;
  for (int64_t d : batches) {
    for (int64_t n : contexts) {
      for (int64_t k : budgets) {
        const Setup s{d, n, k, tp, rank};
        model::ModelConfig local;
        local.vocab = 8;
        local.hidden = 8;
        local.inter = 8;
        local.num_layers = 1;
        local.num_heads = 1;  // one list per token; row 0 is the rank's summed scores
        local.num_kv_heads = 1;
        local.head_dim = 2;
        local.max_position_embeddings = n;
        model::WorkspaceShape shape;
        shape.max_tokens = d;
        shape.max_decode = d;
        shape.max_logits = 1;
        shape.num_rows = 1;
        shape.max_context = n;
        shape.max_budget = k;
        model::LlamaWorkspace ws;
        if (!model::LlamaWorkspace::create(local, shape, &ws).ok()) return 1;
        model::ParallelShape ps;
        ps.max_decode = d;
        ps.max_budget = k;
        ps.max_logits = 1;
        ps.vocab = 8;
        ps.vocab_shard = 8;
        ps.tp_size = tp;
        model::ParallelBuffers buffers;
        if (!model::ParallelBuffers::create(ps, nullptr, &buffers).ok()) return 1;
        model::ForwardParallel par;
        par.tp = &world;
        par.buffers = &buffers;
        // The step: d decode tokens selecting in layer 0 with one list of budget k.
        std::vector<int32_t> lengths(static_cast<size_t>(d), int32_t(n));
        std::vector<int32_t> budgets_v(static_cast<size_t>(d), int32_t(k));
        std::vector<int32_t> lists_v(size_t(d), 1);
        std::vector<uint8_t> roles(size_t(d), uint8_t(kernels::TokenRole::kSelect));
        std::vector<uint8_t> agreement(static_cast<size_t>(d));
        model::ForwardBatch b;
        b.num_decode = d;
        b.lengths = make_view(lengths.data(), DType::kI32, {d});
        b.budgets = make_view(budgets_v.data(), DType::kI32, {d});
        b.num_lists = make_view(lists_v.data(), DType::kI32, {d});
        b.roles = make_view(roles.data(), DType::kU8, {1, d});
        b.agreement = make_view(agreement.data(), DType::kU8, {d});
        b.host = &b;
        std::vector<std::vector<float>> partial;
        for (int64_t t = 0; t < d; ++t) partial.push_back(partial_scores(s, t, rank));
        auto load_scores = [&]() {
          for (int64_t t = 0; t < d; ++t) {
            std::copy(partial[size_t(t)].begin(), partial[size_t(t)].end(),
                      ws.scores.select(t).data_as<float>());
          }
        };
        auto topk = [&]() {
          kernels::TopkPerRowParams p;
          p.indices = ws.new_lists.slice(0, d);
          p.counts = ws.new_counts.slice(0, d);
          p.scores = ws.scores.slice(0, d);
          p.lengths = b.lengths;
          p.budgets = b.budgets;
          p.num_lists = b.num_lists;
          p.roles = b.roles.select(0);
          p.active_roles = kernels::kSelectingRoles;
          kernels::topk_per_row(p, ws.scratch, Stream{});
        };
        Lists exact, approx;
        for (const char* variant : {"exact", "approx"}) {
          const bool is_exact = std::string(variant) == "exact";
          std::fill(
              agreement.begin(), agreement.end(),
              uint8_t(is_exact ? model::ListAgreement::kExactTp : model::ListAgreement::kApproxTp));
          std::vector<double> agree_ms, select_ms;
          const model::AgreementCounters before = par.counters;
          using Clock = std::chrono::steady_clock;
          auto ms_since = [](Clock::time_point t) {
            return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
          };
          for (int r = 0; r < reps + 2; ++r) {
            load_scores();
            world.barrier();
            const auto t0 = Clock::now();
            if (!is_exact) topk();  // the local top-k the candidates come from
            const auto t1 = Clock::now();
            if (is_exact) {
              model::agree_exact(par, b, 0, ws, Stream{});
            } else {
              model::agree_approx(par, b, 0, ws, Stream{});
            }
            const double agree = ms_since(t1);
            if (is_exact) topk();
            const double select = ms_since(t0);
            if (r >= 2) {  // two warm-up repetitions
              agree_ms.push_back(agree);
              select_ms.push_back(select);
            }
          }
          (is_exact ? exact : approx) = read_lists(ws, d);
          const int64_t bytes = (is_exact ? par.counters.exact_bytes - before.exact_bytes
                                          : par.counters.approx_bytes - before.approx_bytes) /
                                (reps + 2);
          // Every rank must hold the same lists: compare a checksum of them.
          const Lists& mine = is_exact ? exact : approx;
          int64_t sum = 0, wrong = 0;
          for (const auto& l : mine.per_token) {
            for (int32_t v : l) sum = sum * 1000003 + v;
          }
          std::vector<int64_t> sums(static_cast<size_t>(tp));
          world.all_gather(make_view(sums.data(), DType::kI64, {tp}),
                           make_view(&sum, DType::kI64, {1}));
          for (int64_t v : sums) wrong += v != sums[0];
          failed += wrong > 0 ? 1 : 0;
          double recall = NAN;
          if (!is_exact) {
            int64_t kept = 0, total = 0;
            for (int64_t t = 0; t < d; ++t) {
              const std::set<int32_t> e(exact.per_token[size_t(t)].begin(),
                                        exact.per_token[size_t(t)].end());
              for (int32_t v : approx.per_token[size_t(t)]) kept += e.count(v);
              total += int64_t(exact.per_token[size_t(t)].size());
            }
            recall = 100.0 * double(kept) / double(std::max<int64_t>(total, 1));
          }
          const SampleStats a = summarize(agree_ms), st = summarize(select_ms);
          if (rank == 0) {
            table.add_row(
                {tp, d, n, k, variant, bytes, a.median, st.median, st.min, recall, wrong});
          }
        }
      }
    }
  }
  if (failed > 0) {
    if (rank == 0) {
      std::fprintf(stderr, "list_agreement_bench: FAILED: %lld rows have #wrong > 0\n",
                   static_cast<long long>(failed));
    }
    return 1;
  }
  return 0;
}
