// SPDX-License-Identifier: Apache-2.0
// kernel_bench cases for the paged-KV ops: the append, decode attention (dense rows with and
// without the selection layer's logits, and TidalDecode's list rows, per query head and per KV
// head) and causal prefill attention, on caches whose pages are shuffled over the arena. At
// 100K positions the double-precision ref:: twin is slow, so a few (token, head) rows are
// checked, each by running the ref on a one-head view of the same caches, rows in parallel.
// Decode attention also runs over FP8 caches (e4m3 codes with a scale per row, the format
// `--kv-dtype fp8` stores), for Llama-3's GQA at 100K, 256K and 2^20 positions.
// Graph mode (Replicas) copies decode attention's K/V cache. Not the append's (it writes it) nor
// prefill's: a chunk's K/V were just written by its own append, and the op is compute-bound.
#include <algorithm>
#include <string>
#include <vector>

#include "benchmarks/common/parallel.h"
#include "benchmarks/kernels/case_util.h"
#include "benchmarks/kernels/gather_ceiling.h"
#include "kernels/cache_rows.h"
#include "kernels/decode_attention.h"
#include "kernels/paged_kv_append.h"
#include "kernels/prefill_attention.h"
#include "kernels/rotary_embedding.h"

namespace tidal::bench {
namespace {

constexpr int64_t kPage = 16;  // DESIGN.md §5's default page size

// One layer's paged K/V cache for `rows` sequences of up to `max_len` positions, on the host
// (for the ref) and on the device; the pages of every row are a random draw of the arena's.
// fp8: the caches hold e4m3 codes (u8) with f32 scales [pages, kv_heads, kPage], quantized
// from the random values as paged_kv_append would.
struct PagedCache {
  HostTensor k, v, block_tables;  // [pages, kPage, kv_heads, head_dim] x2, [rows, per_row] i32
  HostTensor k_scale, v_scale;    // FP8 only
  DeviceBuffer dk, dv, dtables, dk_scale, dv_scale;
  int64_t kv_heads = 0, head_dim = 0;
  bool fp8 = false;

  PagedCache(const BenchEnv& env, int64_t rows, int64_t max_len, int64_t kv_heads_,
             int64_t head_dim_, uint64_t seed, bool fp8_ = false)
      : kv_heads(kv_heads_), head_dim(head_dim_), fp8(fp8_) {
    const int64_t per_row = (max_len + kPage - 1) / kPage;
    k = random_tensor({rows * per_row, kPage, kv_heads, head_dim}, env.dtype, seed);
    v = random_tensor({rows * per_row, kPage, kv_heads, head_dim}, env.dtype, seed + 1);
    if (fp8) {
      quantize(&k, &k_scale);
      quantize(&v, &v_scale);
      dk_scale = upload(env, k_scale);
      dv_scale = upload(env, v_scale);
    }
    block_tables = int_tensor({rows, per_row}, DType::kI32, shuffled(rows * per_row, seed + 2));
    dk = upload(env, k);
    dv = upload(env, v);
    dtables = upload(env, block_tables);
  }
  // The cache's rows as e4m3 codes and their scales (page ranges in parallel).
  static void quantize(HostTensor* cache, HostTensor* scale) {
    const std::vector<int64_t> s = cache->shape();
    HostTensor codes(s, DType::kU8);
    *scale = HostTensor({s[0], s[2], s[1]}, DType::kF32);
    parallel_sum(64, [&](int64_t part) {
      const int64_t begin = s[0] * part / 64, end = s[0] * (part + 1) / 64;
      if (begin < end) {
        kernels::quantize_kv_cache(cache->view().slice(begin, end), codes.view().slice(begin, end),
                                   scale->view().slice(begin, end));
      }
      return int64_t(0);
    });
    *cache = std::move(codes);
  }
  // KV head `h` of a cache as a one-head cache: what a ref:: call checking one head reads.
  TensorView head(const HostTensor& cache, int64_t h) const {
    return sub_view(cache.view(), h * head_dim, {cache.shape()[0], kPage, 1, head_dim},
                    {kPage * kv_heads * head_dim, kv_heads * head_dim, head_dim, 1});
  }
  // KV head `h` of a scale tensor (FP8), likewise; empty without FP8.
  TensorView head_scale(const HostTensor& scale, int64_t h) const {
    if (!fp8) return {};
    return sub_view(scale.view(), h * kPage, {scale.shape()[0], 1, kPage},
                    {kv_heads * kPage, kPage, 1});
  }
};

// Element `i` of a per-token host array as a one-element view (a one-token ref:: call).
TensorView one(const HostTensor& t, int64_t i) { return sub_view(t.view(), i, {1}, {1}); }

HostTensor i32s(std::vector<int64_t> values) {
  const int64_t n = int64_t(values.size());
  return int_tensor({n}, DType::kI32, values);
}

// What a decode_attention row does: dense (optionally writing the selection logits and lse),
// or a kSparse list row with `lists` lists of `budget` positions. splits > 0 overrides the
// kernel's split count (1: nothing to merge), to tell a call's fixed costs apart. Counters are
// passed as the engine keeps them (MHA's split blocks then merge their own rows); merge_launch:
// without them, so the merge kernel follows (for comparison). sparse_layer: the hints the engine
// gives a layer whose tokens all attend lists (DecodeAttentionParams::lists_only, and head_lists
// for lists per query head under GQA). logits16: the selecting token picks lists a group of heads
// shares (L = 1) and its logits are written as f16 (DecodeAttentionParams::logits16), as the
// engine does for per-KV-head and shared lists.
struct Variant {
  kernels::TokenRole role;
  int64_t lists = 1, budget = 1;
  const char* name;
  int64_t splits = 0;
  bool merge_launch = false;
  bool sparse_layer = false;
  bool logits16 = false;
};

// q scaled so a head's scores spread over a few units: the softmax then concentrates on tens of
// positions, like a real head's, and the output is well above the tolerances' atol.
constexpr float kQScale = 9.0f;

void decode_case(const BenchEnv& env, const RunCase& run_case, const PagedCache& kv,
                 const HostTensor& q, const DeviceBuffer& dq, int64_t n, const Variant& var) {
  using kernels::TokenRole;
  const DType dt = env.dtype;
  const int64_t tokens = q.shape()[0], heads = q.shape()[1], dim = q.shape()[2];
  const int64_t group = heads / kv.kv_heads;
  const bool selecting = var.role == TokenRole::kSelect;
  const bool sparse = var.role == TokenRole::kSparse;
  const int64_t lists = sparse ? var.lists : 1, budget = sparse ? var.budget : 1;
  std::vector<int64_t> seqs, lens, index_values, count_values;
  for (int64_t t = 0; t < tokens; ++t) {
    seqs.push_back(t);
    lens.push_back(n - 7 * t);  // a batch's sequences differ in length
    for (int64_t l = 0; l < lists; ++l) {
      const std::vector<int64_t> list =
          sparse ? random_list(lens.back(), budget, 1000 * uint64_t(t) + uint64_t(l))
                 : std::vector<int64_t>{0};
      index_values.insert(index_values.end(), list.begin(), list.end());
      count_values.push_back(int64_t(list.size()));
    }
  }
  // Dense rows still get well-formed [tokens, 1, 1] lists: the kernel reads lists only for list
  // roles, but the entry point checks every view's shape.
  const HostTensor seq_ids = i32s(seqs), lengths = i32s(lens);
  const HostTensor roles =
      int_tensor({tokens}, DType::kU8, std::vector<int64_t>(size_t(tokens), int64_t(var.role)));
  const HostTensor num_lists = i32s(std::vector<int64_t>(size_t(tokens), lists));
  const HostTensor indices = int_tensor({tokens, lists, budget}, DType::kI32, index_values);
  const HostTensor counts = int_tensor({tokens, lists}, DType::kI32, count_values);
  const DeviceBuffer dseq = upload(env, seq_ids), dlen = upload(env, lengths);
  const DeviceBuffer droles = upload(env, roles), dnum = upload(env, num_lists);
  const DeviceBuffer dind = upload(env, indices), dcounts = upload(env, counts);
  const DeviceBuffer dout = poisoned(env, {tokens, heads, dim}, dt);
  DeviceBuffer dlogits, dlse;
  if (selecting) {
    dlogits = poisoned(env, {tokens, heads, n}, var.logits16 ? DType::kF16 : DType::kF32);
    dlse = poisoned(env, {tokens, heads}, DType::kF32);
  }
  // The device call's params; the check builds one-head host twins of them.
  kernels::DecodeAttentionParams p;
  p.out = dout.view();
  p.q = dq.view();
  p.k_cache = kv.dk.view();
  p.v_cache = kv.dv.view();
  if (kv.fp8) {
    p.k_scale = kv.dk_scale.view();
    p.v_scale = kv.dv_scale.view();
  }
  p.block_tables = kv.dtables.view();
  p.seq_ids = dseq.view();
  p.lengths = dlen.view();
  p.roles = droles.view();
  p.indices = dind.view();
  p.counts = dcounts.view();
  p.num_lists = dnum.view();
  (var.logits16 ? p.logits16 : p.logits) = dlogits.view();
  p.lse = dlse.view();
  p.num_splits = var.splits;
  p.lists_only = var.sparse_layer;
  p.head_lists = var.sparse_layer && lists > kv.kv_heads;
  // The engine's bound: each token's own row is the one its step appends.
  std::vector<int64_t> prior;
  for (int64_t len : lens) prior.push_back(len - 1);
  const DeviceBuffer dprior = upload(env, i32s(prior));
  p.prior_lens = dprior.view();
  // A sparse layer reads its lists as cache rows, as the engine's commit resolves them on one GPU
  // (kernels/cache_rows.h; TIDAL_ATTN_ROWS=0 times the positions and block tables instead).
  DeviceBuffer drows;
  if (sparse && var.sparse_layer) {
    const int64_t per_row = kv.block_tables.shape()[1];
    std::vector<int32_t> rows(size_t(tokens * lists * budget));
    for (int64_t t = 0; t < tokens; ++t) {
      const int32_t* table = kv.block_tables.view().data_as<int32_t>() + t * per_row;
      for (int64_t l = 0; l < lists; ++l) {
        const int64_t at = (t * lists + l) * budget;
        kernels::resolve_cache_rows(
            table, 1, index_values.data() + at, count_values[size_t(t * lists + l)], budget,
            int32_t(lens[size_t(t)]), int32_t(kPage), int32_t(prior[size_t(t)]), rows.data() + at);
      }
    }
    drows = upload(env, int_tensor({tokens, lists, budget}, DType::kI32,
                                   std::vector<int64_t>(rows.begin(), rows.end())));
    p.rows = drows.view();
  }
  const DeviceBuffer ws = workspace(env, kernels::decode_attention_workspace_size(p));
  DeviceBuffer counters;
  if (!var.merge_launch) {
    counters = upload(env, i32s(std::vector<int64_t>(size_t(tokens * heads), 0)));
    p.merge_counters = counters.view();
  }

  // Traffic: each list row reads its own K and V rows (per-query-head lists under GQA read G
  // times the rows of per-KV-head ones); dense rows read their sequence's cache once.
  // q and out are in the activations' dtype, also over an FP8 cache (its rows: codes + a scale).
  const double row_bytes = kv.fp8 ? double(dim) + 4.0 : double(dim) * bytes_of(dt);
  double bytes = 2.0 * double(tokens * heads * dim) * bytes_of(dt), flops = 0.0;
  double cache_bytes = 0.0;  // of the K/V rows (graph mode's replicas)
  for (int64_t len : lens) {
    const int64_t keys = sparse ? budget : len;  // per attending head
    cache_bytes += 2.0 * row_bytes * double(sparse ? lists * budget : kv.kv_heads * len);
    bytes += sparse ? 4.0 * double(lists * (budget + 1)) : 0.0;
    bytes += selecting ? (var.logits16 ? 2.0 : 4.0) * double(heads * len) + 4.0 * heads : 0.0;
    flops += 4.0 * double(heads * keys * dim);
  }
  bytes += cache_bytes;
  const std::string shape = "b=" + std::to_string(tokens) + " n=" + std::to_string(n) +
                            " h=" + std::to_string(heads) + "/" + std::to_string(kv.kv_heads) +
                            " d=" + std::to_string(dim) + (kv.fp8 ? " fp8 " : " ") + var.name;
  KernelCase c = make_case(env, "decode_attention", shape, bytes, flops);
  // Graph mode: copies of the cache (a layer's K/V: a step reads them once). q, the lists and the
  // block tables are the step's own (in L2 in a real step too), so every copy shares them.
  std::vector<const DeviceBuffer*> cache = {&kv.dk, &kv.dv};
  if (kv.fp8) cache.insert(cache.end(), {&kv.dk_scale, &kv.dv_scale});
  const Replicas caches(env, cache, cache_bytes);
  caches.bind(&c, [&](int i) {
    kernels::DecodeAttentionParams pi = p;
    pi.k_cache = caches.view(i, 0);
    pi.v_cache = caches.view(i, 1);
    if (kv.fp8) {
      pi.k_scale = caches.view(i, 2);
      pi.v_scale = caches.view(i, 3);
    }
    kernels::decode_attention(pi, ws.view(), env.stream);
  });
  c.check = [&] {
    const HostTensor got = dout.download(env.stream);
    HostTensor got_logits, got_lse;
    if (selecting) {
      got_logits = dlogits.download(env.stream);
      got_lse = dlse.download(env.stream);
    }
    // A few heads of the first and the last token, each checked by a one-head ref:: call.
    std::vector<std::pair<int64_t, int64_t>> units;
    for (int64_t t : spread(tokens, 2)) {
      for (int64_t h : spread(heads, 4)) units.emplace_back(t, h);
    }
    // Each unit is one query head of one token: the ref sees a one-head view of the very caches
    // and block tables the kernel read, and that head's own list as the token's only list.
    const HostTensor single_list = i32s({1});
    return parallel_sum(int64_t(units.size()), [&](int64_t u) {
      const auto [t, h] = units[size_t(u)];
      const int64_t l = sparse ? h / (heads / lists) : 0, len = lens[size_t(t)];
      HostTensor out({1, 1, dim}, dt), logits({1, 1, len}, DType::kF32), lse({1, 1}, DType::kF32);
      kernels::DecodeAttentionParams r;
      r.out = out.view();
      r.q = sub_view(q.view(), (t * heads + h) * dim, {1, 1, dim}, {heads * dim, dim, 1});
      r.k_cache = kv.head(kv.k, h / group);
      r.v_cache = kv.head(kv.v, h / group);
      r.k_scale = kv.head_scale(kv.k_scale, h / group);
      r.v_scale = kv.head_scale(kv.v_scale, h / group);
      r.block_tables = kv.block_tables.view();
      r.seq_ids = one(seq_ids, t);
      r.lengths = one(lengths, t);
      r.roles = sub_view(roles.view(), t, {1}, {1});
      r.indices = sub_view(indices.view(), (t * lists + l) * budget, {1, 1, budget},
                           {lists * budget, budget, 1});
      r.counts = sub_view(counts.view(), t * lists + l, {1, 1}, {lists, 1});
      r.num_lists = single_list.view();
      if (selecting) {
        r.logits = logits.view();
        r.lse = lse.view();
      }
      kernels::ref::decode_attention(r);
      const Tolerance tol = tolerance(dt);
      int64_t wrong = count_wrong(
          sub_view(got.view(), (t * heads + h) * dim, {1, 1, dim}, {heads * dim, dim, 1}),
          out.view(), tol);
      if (selecting) {
        // (f16 logits: the ref:: twin's f32 ones rounded, within f16's tolerance of them.)
        wrong += count_wrong(
            sub_view(got_logits.view(), (t * heads + h) * n, {1, 1, len}, {heads * n, n, 1}),
            logits.view(), var.logits16 ? tolerance(DType::kF16) : tol);
        wrong += count_wrong(sub_view(got_lse.view(), t * heads + h, {1, 1}, {heads, 1}),
                             lse.view(), tol);
      }
      return wrong;
    });
  };
  run_case(c);
}

}  // namespace

void bench_paged_kv_append(const BenchEnv& env, const RunCase& run_case) {
  const DType dt = env.dtype;
  const int64_t dim = env.quick ? 64 : 128, max_len = env.quick ? 128 : 4096;
  const std::vector<int64_t> kv_heads =
      env.quick ? std::vector<int64_t>{2} : std::vector<int64_t>{8, 32};
  for (int64_t kvh : kv_heads) {
    for (int64_t t : {int64_t(1), env.quick ? int64_t(37) : int64_t(2048)}) {
      PagedCache kv(env, 1, max_len, kvh, dim, 100 + uint64_t(kvh));
      // One decode token at the end of the sequence, or a chunk starting a quarter in.
      const int64_t first = t == 1 ? max_len - 1 : max_len / 4;
      std::vector<int64_t> positions;
      for (int64_t i = 0; i < t; ++i) positions.push_back(first + i);
      const HostTensor seq_ids = i32s(std::vector<int64_t>(size_t(t), 0)), pos = i32s(positions);
      const HostTensor k = random_tensor({t, kvh, dim}, dt, 110),
                       v = random_tensor({t, kvh, dim}, dt, 111);
      const DeviceBuffer dseq = upload(env, seq_ids), dpos = upload(env, pos);
      const DeviceBuffer dk = upload(env, k), dv = upload(env, v);
      kernels::PagedKvAppendParams p{kv.dk.view(), kv.dv.view(), kv.dtables.view(), dseq.view(),
                                     dpos.view(),  dk.view(),    dv.view()};
      KernelCase c =
          make_case(env, "paged_kv_append",
                    "k,v " + shape_str({t, kvh, dim}) + " cache n=" + std::to_string(max_len),
                    4.0 * double(t * kvh * dim) * bytes_of(dt) + 8.0 * double(t));
      c.run = [&] { kernels::paged_kv_append(p, env.stream); };
      c.check = [&] {  // the whole caches: right slots written, nothing else touched
        const HostTensor got_k = kv.dk.download(env.stream), got_v = kv.dv.download(env.stream);
        HostTensor want_k = clone(kv.k.view()), want_v = clone(kv.v.view());
        kernels::ref::paged_kv_append({want_k.view(), want_v.view(), kv.block_tables.view(),
                                       seq_ids.view(), pos.view(), k.view(), v.view()});
        return count_wrong(got_k.view(), want_k.view(), {0.0, 0.0}) +
               count_wrong(got_v.view(), want_v.view(), {0.0, 0.0});
      };
      run_case(c);

      // The same append with RoPE first (rope_q: one launch rotates q and k, then appends), 32
      // query heads as both presets have; the same slots, so the check starts from kv.k again.
      const int64_t heads = env.quick ? 8 : 32;
      const HostTensor q = random_tensor({t, heads, dim}, dt, 112);
      const HostTensor inv_freq = llama3_inv_freq(dim);
      const DeviceBuffer dq = upload(env, q), dk_rope = upload(env, k),
                         dfreq = upload(env, inv_freq);
      kernels::PagedKvAppendParams pr = p;
      pr.k = dk_rope.view();
      pr.rope_q = dq.view();
      pr.rope_inv_freq = dfreq.view();
      // q and k read and written, v read, k and v written to the cache.
      KernelCase cr =
          make_case(env, "paged_kv_append",
                    "rope, q " + shape_str({t, heads, dim}) + " k,v " + shape_str({t, kvh, dim}) +
                        " cache n=" + std::to_string(max_len),
                    double((2 * heads + 5 * kvh) * t * dim) * bytes_of(dt) + 8.0 * double(t));
      cr.run = [&] { kernels::paged_kv_append(pr, env.stream); };
      cr.check = [&] {  // q, k and the caches after one call (rotation to rounding)
        HostTensor want_q = clone(q.view()), want_k = clone(k.view());
        kernels::ref::rotary_embedding(want_q.view(), want_k.view(), pos.view(), inv_freq.view());
        HostTensor want_kc = clone(kv.k.view()), want_vc = clone(kv.v.view());
        kernels::ref::paged_kv_append({want_kc.view(), want_vc.view(), kv.block_tables.view(),
                                       seq_ids.view(), pos.view(), want_k.view(), v.view()});
        const auto tol = tolerance(dt);
        return count_wrong(dq.download(env.stream).view(), want_q.view(), tol) +
               count_wrong(dk_rope.download(env.stream).view(), want_k.view(), tol) +
               count_wrong(kv.dk.download(env.stream).view(), want_kc.view(), tol) +
               count_wrong(kv.dv.download(env.stream).view(), want_vc.view(), {0.0, 0.0});
      };
      run_case(cr);
    }
  }
}

void bench_decode_attention(const BenchEnv& env, const RunCase& run_case) {
  using kernels::TokenRole;
  const int64_t heads = env.quick ? 4 : 32, dim = env.quick ? 64 : 128;
  // 10K: where a step's attention is a small share and its fixed cost per call shows.
  const int64_t ten_k = env.quick ? 128 : 10000;
  const int64_t short_n = env.quick ? 300 : 32768, long_n = env.quick ? 1000 : 100000;
  const int64_t big_k = env.quick ? 64 : 2048, small_k = env.quick ? 16 : 256;
  const Variant dense{TokenRole::kDense, 1, 1, "dense"};
  const Variant select{TokenRole::kSelect, 1, 1, "dense+logits"};
  const Variant select16{TokenRole::kSelect, 1, 1, "dense+logits16", 0, false, false, true};
  for (int64_t kv_heads : {heads, heads / 4}) {  // MHA (Llama-2), GQA 4:1 (Llama-3)
    const bool gqa = kv_heads != heads;
    struct Config {
      int64_t tokens, n;
      std::vector<int64_t> budgets;  // list rows at these K
    };
    const Config configs[] = {
        {1, ten_k, {}}, {1, short_n, {}}, {4, short_n, {big_k}}, {1, long_n, {big_k, small_k}}};
    uint64_t seed = 200 + uint64_t(kv_heads);
    for (const Config& cfg : configs) {
      const int64_t tokens = env.quick && cfg.tokens > 1 ? 3 : cfg.tokens;
      const PagedCache kv(env, tokens, cfg.n, kv_heads, dim, seed += 10);
      const HostTensor q =
          random_tensor({tokens, heads, dim}, env.dtype, seed + 5, -kQScale, kQScale);
      const DeviceBuffer dq = upload(env, q);
      decode_case(env, run_case, kv, q, dq, cfg.n, dense);
      decode_case(env, run_case, kv, q, dq, cfg.n, select);
      if (gqa && cfg.tokens == 1) decode_case(env, run_case, kv, q, dq, cfg.n, select16);
      if (!gqa && cfg.n == long_n && cfg.tokens == 1) {  // what MHA's own merge replaces
        decode_case(env, run_case, kv, q, dq, cfg.n,
                    {TokenRole::kDense, 1, 1, "dense merge-launch", 0, true});
        const std::string lists = "K=" + std::to_string(big_k) + " per-q merge-launch";
        decode_case(env, run_case, kv, q, dq, cfg.n,
                    {TokenRole::kSparse, heads, big_k, lists.c_str(), 0, true});
      }
      for (int64_t k : cfg.budgets) {
        const std::string per_q = "K=" + std::to_string(k) + " per-q";
        const std::string per_kv = "K=" + std::to_string(k) + " per-kv";
        decode_case(env, run_case, kv, q, dq, cfg.n, {TokenRole::kSparse, heads, k, per_q.c_str()});
        if (gqa) {  // under MHA per-KV-head lists are per-query-head lists
          decode_case(env, run_case, kv, q, dq, cfg.n,
                      {TokenRole::kSparse, kv_heads, k, per_kv.c_str()});
          // As a sparse layer launches them (DecodeAttentionParams::lists_only: on 16-bit caches
          // the default launch unless TIDAL_ATTN_CLUSTER asks for clusters).
          const std::string q_layer = per_q + " sparse-layer", kv_layer = per_kv + " sparse-layer";
          decode_case(env, run_case, kv, q, dq, cfg.n,
                      {TokenRole::kSparse, heads, k, q_layer.c_str(), 0, false, true});
          decode_case(env, run_case, kv, q, dq, cfg.n,
                      {TokenRole::kSparse, kv_heads, k, kv_layer.c_str(), 0, false, true});
        }
        if (gqa && k == small_k) {  // the same short lists with fewer splits: the merge's share
          for (const int64_t splits : {int64_t(4), int64_t(1)}) {
            const std::string name = per_kv + " splits=" + std::to_string(splits);
            decode_case(env, run_case, kv, q, dq, cfg.n,
                        {TokenRole::kSparse, kv_heads, k, name.c_str(), splits});
          }
        }
        if (k == big_k &&
            cfg.tokens == 1) {  // long lists: fewer, longer splits against the default
          for (const int64_t splits : {int64_t(16), int64_t(8)}) {
            const std::string q_name = per_q + " splits=" + std::to_string(splits);
            decode_case(env, run_case, kv, q, dq, cfg.n,
                        {TokenRole::kSparse, heads, k, q_name.c_str(), splits});
            if (!gqa) continue;
            const std::string kv_name = per_kv + " splits=" + std::to_string(splits);
            decode_case(env, run_case, kv, q, dq, cfg.n,
                        {TokenRole::kSparse, kv_heads, k, kv_name.c_str(), splits});
          }
        }
      }
    }
  }
  // FP8 caches: Llama-3's GQA (and MHA at 100K), batch 1, dense, with logits, per-KV-head lists;
  // Llama-3 at 2^20 positions is issue 14's million-token context.
  if (env.dtype == DType::kF32) return;  // 16-bit activations only (what --kv-dtype fp8 serves)
  for (const int64_t kv_heads : {heads / 4, heads}) {
    for (const int64_t n : {long_n, int64_t(262144), int64_t(1) << 20}) {
      if ((env.quick || kv_heads == heads) && n != long_n) continue;
      const PagedCache kv(env, 1, n, kv_heads, dim, 400 + uint64_t(n + kv_heads), true);
      const HostTensor q = random_tensor({1, heads, dim}, env.dtype, 405, -kQScale, kQScale);
      const DeviceBuffer dq = upload(env, q);
      decode_case(env, run_case, kv, q, dq, n, dense);
      decode_case(env, run_case, kv, q, dq, n, select);
      if (kv_heads != heads) decode_case(env, run_case, kv, q, dq, n, select16);
      const std::string per_kv = "K=" + std::to_string(big_k) + " per-kv";
      decode_case(env, run_case, kv, q, dq, n,
                  {TokenRole::kSparse, kv_heads, big_k, per_kv.c_str()});
      if (kv_heads != heads) {  // a sparse layer's launch: clusters of 8 splits
        const std::string kv_layer = per_kv + " sparse-layer";
        decode_case(env, run_case, kv, q, dq, n,
                    {TokenRole::kSparse, kv_heads, big_k, kv_layer.c_str(), 0, false, true});
      }
    }
  }
}

// The rows decode attention's "K=2048 per-q" case reads (each query head's own list over a
// 100K-position cache of shuffled pages), read by gather_ceiling.h's kernel: through the block
// table as the attention does ("paged"), and from cache rows resolved beforehand ("rows": the
// same addresses without the table's dependent load). What scattered rows of this size allow;
// "contiguous": as many rows, one unbroken stretch of the cache read by the same kernel (what
// this many bytes in one such launch allow, scattered or not).
void bench_gather_ceiling(const BenchEnv& env, const RunCase& run_case) {
  const int64_t heads = env.quick ? 4 : 32, dim = env.quick ? 64 : 128;
  const int64_t n = env.quick ? 1000 : 100000, budget = env.quick ? 64 : 2048;
  const DType dt = env.dtype;
  for (const int64_t kv_heads : {heads, heads / 4}) {
    const PagedCache kv(env, 1, n, kv_heads, dim, 500 + uint64_t(kv_heads));
    std::vector<int64_t> positions, rows, contiguous;
    const int32_t* table = kv.block_tables.view().data_as<int32_t>();
    const int64_t group = heads / kv_heads;
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t pos : random_list(n, budget, 510 + uint64_t(h))) {
        positions.push_back(pos);
        rows.push_back(int64_t(table[pos / kPage]) * kPage + pos % kPage);
      }
      // The group's heads take consecutive runs of rows: together every KV head's first
      // group x budget rows, one contiguous stretch of the cache, each word read once.
      for (int64_t i = 0; i < budget; ++i) contiguous.push_back(h % group * budget + i);
    }
    enum Form { kPaged, kRows, kContiguous };
    for (const Form form : {kPaged, kRows, kContiguous}) {
      if (form == kContiguous && group * budget > n) continue;
      const bool paged = form == kPaged;
      const std::vector<int64_t>& entries =
          form == kPaged ? positions : form == kRows ? rows : contiguous;
      const HostTensor lists = int_tensor({heads, budget}, DType::kI32, entries);
      const DeviceBuffer dlists = upload(env, lists);
      GatherCeilingArgs a;
      a.block_table = paged ? kv.dtables.view().data_as<int32_t>() : nullptr;
      a.lists = dlists.view().data_as<int32_t>();
      a.heads = heads;
      a.kv_heads = kv_heads;
      a.budget = budget;
      a.page_size = kPage;
      a.row_bytes = dim * int64_t(dtype_size(dt));
      const int64_t blocks = gather_ceiling_blocks_per_head(a);
      const DeviceBuffer dout = poisoned(env, {heads, blocks}, DType::kI32);
      a.out = static_cast<uint32_t*>(dout.view().data);
      const double cache_bytes = 2.0 * double(heads * budget * a.row_bytes);
      const std::string shape = "n=" + std::to_string(n) + " h=" + std::to_string(heads) + "/" +
                                std::to_string(kv_heads) + " d=" + std::to_string(dim) + " K=" +
                                std::to_string(budget) + " per-q " +
                                (form == kPaged ? "paged" : form == kRows ? "rows" : "contiguous");
      KernelCase c = make_case(env, "gather_ceiling", shape, cache_bytes + 4.0 * heads * budget);
      const Replicas caches(env, {&kv.dk, &kv.dv}, cache_bytes);
      caches.bind(&c, [&, a](int i) mutable {
        a.k = caches.view(i, 0).data;
        a.v = caches.view(i, 1).data;
#if TIDAL_WITH_CUDA
        if (env.cuda()) {
          gather_ceiling_cuda(a, env.stream);
          return;
        }
#endif
        gather_ceiling_host(a);
      });
      c.check = [&] {  // every block's XOR, exactly
        const HostTensor got = dout.download(env.stream);
        HostTensor want({heads, blocks}, DType::kI32);
        GatherCeilingArgs h = a;
        h.k = kv.k.view().data;
        h.v = kv.v.view().data;
        h.block_table = paged ? table : nullptr;
        h.lists = lists.view().data_as<int32_t>();
        h.out = static_cast<uint32_t*>(want.view().data);
        gather_ceiling_host(h);
        return count_wrong(got.view(), want.view(), {0.0, 0.0});
      };
      run_case(c);
    }
  }
}

void bench_prefill_attention(const BenchEnv& env, const RunCase& run_case) {
  const DType dt = env.dtype;
  const int64_t heads = env.quick ? 4 : 32, dim = env.quick ? 64 : 128;
  struct Config {
    int64_t n, kv_heads;
  };
  const std::vector<Config> configs = env.quick
                                          ? std::vector<Config>{{100, 2}, {257, 4}}
                                          : std::vector<Config>{{4096, 8}, {4096, 32}, {32768, 8}};
  for (const Config& cfg : configs) {
    const int64_t n = cfg.n;
    const PagedCache kv(env, 1, n, cfg.kv_heads, dim, 300 + uint64_t(n));
    const HostTensor q = random_tensor({n, heads, dim}, dt, 301, -kQScale, kQScale);
    const HostTensor starts = i32s({0, n}), seq_ids = i32s({0}), context = i32s({n});
    const DeviceBuffer dq = upload(env, q), dout = poisoned(env, {n, heads, dim}, dt);
    const DeviceBuffer dstarts = upload(env, starts), dseq = upload(env, seq_ids);
    const DeviceBuffer dcontext = upload(env, context);
    const kernels::PrefillAttentionParams p{dout.view(),  dq.view(),         kv.dk.view(),
                                            kv.dv.view(), kv.dtables.view(), dstarts.view(),
                                            dseq.view(),  dcontext.view(),   n,
                                            0.0f};
    const double bytes = 2.0 * double(n * (heads + cfg.kv_heads) * dim) * bytes_of(dt);
    const double flops = 4.0 * double(n) * double(n) / 2.0 * double(dim * heads);
    KernelCase c =
        make_case(env, "prefill_attention",
                  "n=" + std::to_string(n) + " h=" + std::to_string(heads) + "/" +
                      std::to_string(cfg.kv_heads) + " d=" + std::to_string(dim) + " causal",
                  bytes, flops);
    c.run = [&] { kernels::prefill_attention(p, env.stream); };
    c.check = [&] {
      const HostTensor got = dout.download(env.stream);
      std::vector<std::pair<int64_t, int64_t>> units;  // (query row, head)
      for (int64_t r : spread(n, 5)) {
        for (int64_t h : spread(heads, 3)) units.emplace_back(r, h);
      }
      const HostTensor first_row = i32s({0, 1});
      return parallel_sum(int64_t(units.size()), [&](int64_t u) {
        const auto [row, h] = units[size_t(u)];
        // Query `row` alone: a one-query sequence whose context ends at its own position.
        const HostTensor context_one = i32s({row + 1});
        HostTensor out({1, 1, dim}, dt);
        kernels::PrefillAttentionParams r = p;
        r.out = out.view();
        r.q = sub_view(q.view(), (row * heads + h) * dim, {1, 1, dim}, {heads * dim, dim, 1});
        r.k_cache = kv.head(kv.k, h / (heads / cfg.kv_heads));
        r.v_cache = kv.head(kv.v, h / (heads / cfg.kv_heads));
        r.block_tables = kv.block_tables.view();
        r.query_starts = first_row.view();
        r.seq_ids = seq_ids.view();
        r.context_lens = context_one.view();
        r.max_query_len = 1;
        kernels::ref::prefill_attention(r);
        return count_wrong(
            sub_view(got.view(), (row * heads + h) * dim, {1, 1, dim}, {heads * dim, dim, 1}),
            out.view(), tolerance(dt));
      });
    };
    run_case(c);
  }
}

}  // namespace tidal::bench
