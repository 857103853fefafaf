#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The decode step a PyTorch user would write, timed with CUDA events around each step after a
warm-up, as `tidal bench` times Tidal's. Tidal's timed step also holds its host planning, the plan's
upload and the copy of the sampled ids to the host; this one replays a graph with the next token
kept on the device, so the comparison, if anything, favours PyTorch.

One batch-B decode step of a Llama-shaped model with seeded random weights of a preset's shapes
(the same presets as `tidal bench`), a KV cache of `context` random positions, and:

- `full`:  SDPA over the whole cache in every layer;
- `tidal`: TidalDecode (reference/TIDALDECODE.md §1): layers below sparse_start dense, the
           selection layers (sparse_start and the re-selection layer, Tidal's defaults: 2 and
           round(13 L / 32)) dense plus q.K^T and torch.topk of the top (K - 1) earlier positions
           (+ the current one), every other layer torch.gather of those K rows and SDPA over them;
           per query head (default) or per KV head (softmax probabilities summed over the group);
- `quest`: Quest (§5): the first 2 layers dense, then per layer the page bounds (element-wise
           min / max of each 16-token page's keys, the current page updated each step), the
           upper bound q+ . max + q- . min as two matmuls, torch.topk of K/16 - 1 pages plus the
           current page, gather and SDPA with the current page's unwritten slots masked.

Projections are HF-style F.linear calls (q, k, v, o, gate, up, down separately), RMSNorm in
fp32, rotate-half RoPE, greedy argmax fed back as the next token. On a GPU the whole step is
captured once per (context, variant) into a CUDA graph and replayed; every replay is bracketed
by two CUDA events; the median and p90 of --steps replays after --warmup are reported. Each
replay writes the new token's K/V at position `context` (the cache holds context + 1 slots), so
every timed step attends exactly `context` + 1 positions.

Attention (torch_attention.py): q [B, H, 1, D] against the cache's k, v [B, KV, n, D] through
scaled_dot_product_attention(..., enable_gqa=True) (torch >= 2.5) or with a KV head's query group
as the query sequence, never a repeat_interleave copy of K / V; sparse rows are gathered with
index_select on the flattened cache. Per step and call site (dense, sparse, Quest) every SDPA
backend (flash, efficient, cudnn) that runs the shapes is checked against fp32 attention and timed
on the real shapes; the fastest is captured into the graph. Each row records the backends it ran
("attention") and every candidate's time ("attention_candidates"). torch < 2.0 (the CPU test
machine's 1.13) falls back to matmul + softmax. --self-test checks all of it on small shapes on
the device in seconds (exit 1 on a mismatch).

The floor is Tidal's (DESIGN.md §7): every weight once (the embedding table only when tied) plus
the KV rows the step reads, over the device-to-device copy bandwidth measured in this process
(1 GiB, median of 20). run_suite.py prefers the floor of Tidal's matching row, measured by the
same formula, so the two sit on one floor.

Output: one JSON object per line on stdout ({"kind": "header", ...}, then {"kind": "row", ...} per
cell as it finishes, so a killed run keeps its finished cells), and --json FILE with all of them.
Runs on the CPU at the `tiny` preset for tests (--device cpu: f32, no graphs, host timer).
"""
import argparse
import json
import math
import os
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from presets import (PRESETS, QUEST_PAGE, TORCH_REFERENCE_VERSION as VERSION,  # noqa: E402
                     default_reselect, kv_read_bytes, layer_roles, parse_count, policy_variants,
                     stream_bytes, weight_bytes)
import torch_attention as A  # noqa: E402

HAS_SDPA = A.HAS_SDPA


class Model:
    """Random weights of a preset in one dtype on one device."""

    def __init__(self, s, dtype, device, seed):
        self.s = s
        torch.manual_seed(seed)
        h, d, L = s["hidden"], s["head_dim"], s["layers"]

        def mat(rows, cols, scale=0.02):
            w = torch.empty(rows, cols, dtype=dtype, device=device)
            return w.normal_(0.0, scale)

        res = 0.02 / math.sqrt(2 * L)
        self.embed = mat(s["vocab"], h)
        self.lm_head = self.embed if s["tied"] else mat(s["vocab"], h)
        self.final_norm = torch.ones(h, dtype=dtype, device=device)
        self.layers = []
        for _ in range(L):
            self.layers.append(dict(
                attn_norm=torch.ones(h, dtype=dtype, device=device),
                mlp_norm=torch.ones(h, dtype=dtype, device=device),
                q=mat(s["heads"] * d, h), k=mat(s["kv_heads"] * d, h), v=mat(s["kv_heads"] * d, h),
                o=mat(h, s["heads"] * d, res), gate=mat(s["inter"], h), up=mat(s["inter"], h),
                down=mat(h, s["inter"], res)))


def rms_norm(x, w, eps):
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return w * xf.to(x.dtype)


def rope(x, cos, sin):
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


class DecodeStep:
    """One decode step at a fixed context over a preallocated cache (static shapes: graphable).

    The attention methods take a KV head's query group as q4 [B, KV, G, D] and return the
    attention output in that shape; inside, SDPA sees q [B, H, 1, D]."""

    def __init__(self, model, batch, n, policy, budget, granularity, sparse_start, reselect,
                 dtype, device, sdpa="auto", gqa_layout="auto"):
        s = model.s
        self.m, self.s, self.B, self.n = model, s, batch, n
        self.policy, self.granularity = policy, granularity
        self.K = max(2, min(budget, n + 1)) if policy != "full" else 0
        self.roles = layer_roles(s, policy, sparse_start, reselect)
        L, kvh, d = s["layers"], s["kv_heads"], s["head_dim"]
        H = s["heads"]
        self.G = H // kvh
        # The cache: n random positions + the slot the step writes (position n).
        self.kc = torch.empty(L, batch, kvh, n + 1, d, dtype=dtype, device=device)
        self.vc = torch.empty_like(self.kc)
        for layer in range(L):
            self.kc[layer].normal_()
            self.vc[layer].normal_()
        self.tokens = torch.ones(batch, dtype=torch.long, device=device)
        inv = 1.0 / (s["theta"] ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
        ang = float(n) * inv
        cos = torch.cat([torch.cos(ang), torch.cos(ang)]).to(dtype).to(device)
        sin = torch.cat([torch.sin(ang), torch.sin(ang)]).to(dtype).to(device)
        self.cos, self.sin = cos, sin
        # Sparse lists always end in the current position n.
        lists = H if granularity == "per-query-head" else kvh
        self.current = torch.full((batch, lists, 1), n, dtype=torch.long, device=device)
        # Row of (sequence b, KV head of list i, position 0) in a layer's cache flattened to
        # [B * KV * (n + 1), D]: a list's positions + its base are the rows index_select reads.
        S = n + 1
        seq = torch.arange(batch, dtype=torch.long, device=device).view(batch, 1, 1) * kvh
        self.base_q = (seq + torch.arange(H, dtype=torch.long, device=device).view(1, H, 1)
                       // self.G) * S  # [B, H, 1]: per query head
        self.base_kv = (seq + torch.arange(kvh, dtype=torch.long, device=device).view(1, kvh, 1)) * S
        if policy == "quest":
            self.pages = -(-(n + 1) // QUEST_PAGE)
            self.kp = max(1, min(self.K // QUEST_PAGE, self.pages))
            # Page bounds of positions 0..n-1, layer by layer (no copy of the cache): full pages,
            # then the current page's earlier positions (none: it starts empty, -inf / +inf); the
            # step folds the new key (position n) in.
            self.kmax = torch.empty(L, batch, kvh, self.pages, d, dtype=dtype, device=device)
            self.kmin = torch.empty_like(self.kmax)
            full = n // QUEST_PAGE
            for layer in range(L):
                kl = self.kc[layer]
                if full:
                    pk = kl[:, :, :full * QUEST_PAGE].reshape(batch, kvh, full, QUEST_PAGE, d)
                    self.kmax[layer][:, :, :full] = pk.amax(dim=3)
                    self.kmin[layer][:, :, :full] = pk.amin(dim=3)
                if full * QUEST_PAGE < n:
                    self.kmax[layer][:, :, full] = kl[:, :, full * QUEST_PAGE:n].amax(dim=2)
                    self.kmin[layer][:, :, full] = kl[:, :, full * QUEST_PAGE:n].amin(dim=2)
                else:
                    self.kmax[layer][:, :, full] = float("-inf")
                    self.kmin[layer][:, :, full] = float("inf")
            self.last_page = torch.full((batch, kvh, self.G, 1), self.pages - 1, dtype=torch.long,
                                        device=device)
            self.page_offsets = torch.arange(QUEST_PAGE, dtype=torch.long, device=device)
            # The chosen pages' positions: kp - 1 whole earlier pages, then the current page's
            # slots up to n (its later slots hold nothing yet: left out, so no mask is needed
            # and every SDPA backend can run it).
            self.quest_rows = (self.kp - 1) * QUEST_PAGE + (n - (self.pages - 1) * QUEST_PAGE + 1)
        self.tune(sdpa, gqa_layout)

    # --- attention backends ----------------------------------------------------------------
    def sites(self):
        """(site, kind, list length) of the attention calls this step makes."""
        out = [("dense", "grouped", self.n + 1)]
        if self.policy == "tidal" and self.K - 1 < self.n:
            out.append(("sparse", "mha" if self.granularity == "per-query-head" else "grouped",
                        self.K))
        if self.policy == "quest" and self.kp < self.pages:
            out.append(("quest", "mha", self.quest_rows))
        return out

    def tune(self, sdpa="auto", gqa_layout="auto", exclude=()):
        """Picks each call site's backend (torch_attention.tune) on its real shapes."""
        B, s = self.B, self.s
        H, kvh, d = s["heads"], s["kv_heads"], s["head_dim"]
        dtype, device = self.kc.dtype, self.kc.device
        g = torch.Generator(device="cpu").manual_seed(17)

        def rnd(*shape):
            return torch.randn(*shape, generator=g).to(device=device, dtype=dtype)

        self.attn, self.attn_report = {}, {}
        for site, kind, length in self.sites():
            q = rnd(B, H, 1, d)
            if site == "dense":
                k, v = self.kc[0], self.vc[0]
            else:
                heads = H if kind == "mha" else kvh
                k, v = rnd(B, heads, length, d), rnd(B, heads, length, d)
            choice, report = A.tune(kind, q, k, v, sdpa, gqa_layout, exclude=exclude)
            self.attn[site], self.attn_report[site] = choice, report
            del q, k, v

    def attention_label(self):
        return "; ".join("%s %s" % (site, c.label()) for site, c in self.attn.items())

    def backends(self):
        return {c.backend for c in self.attn.values()}

    def gather(self, layer, idx, base):
        """Rows idx [B, lists, K] (+ base [B, lists, 1]) of a layer's K and V: [B, lists, K, D]."""
        d = self.s["head_dim"]
        rows = (idx + base).reshape(-1)
        shape = tuple(idx.shape) + (d,)
        return (self.kc[layer].view(-1, d).index_select(0, rows).view(shape),
                self.vc[layer].view(-1, d).index_select(0, rows).view(shape))

    def q_heads(self, q4):
        B, kvh, G, d = q4.shape
        return q4.reshape(B, kvh * G, 1, d)

    # --- attention by role ------------------------------------------------------------------
    def dense(self, q4, layer):
        out = self.attn["dense"](self.q_heads(q4), self.kc[layer], self.vc[layer])
        return out.reshape(q4.shape)

    def select(self, q4, layer):
        """Dense output + the lists of the following sparse layers."""
        out = self.dense(q4, layer)
        n, B = self.n, self.B
        if self.K - 1 >= n:  # every position fits the budget: the next layers stay dense
            self.idx = None
            return out
        scores = torch.matmul(q4, self.kc[layer][:, :, :n].transpose(-1, -2))  # [B, KV, G, n]
        if self.granularity == "per-query-head":
            top = torch.topk(scores.view(B, -1, n), self.K - 1, dim=-1).indices  # [B, H, K-1]
        else:  # per KV head: softmax probabilities summed over the group
            probs = torch.softmax(scores.float() * (1.0 / math.sqrt(q4.shape[-1])), dim=-1)
            top = torch.topk(probs.sum(dim=2), self.K - 1, dim=-1).indices  # [B, KV, K-1]
        self.idx = torch.cat([top, self.current], dim=-1)
        return out

    def sparse(self, q4, layer):
        if self.idx is None:
            return self.dense(q4, layer)
        base = self.base_q if self.granularity == "per-query-head" else self.base_kv
        ks, vs = self.gather(layer, self.idx, base)  # [B, H or KV, K, D]
        return self.attn["sparse"](self.q_heads(q4), ks, vs).reshape(q4.shape)

    def quest_positions(self, q4, k_new, layer):
        """Folds the new key into the current page's bounds; returns the positions [B, KV, G, T]
        of the chosen pages (the top kp - 1 earlier pages by q+ . max + q- . min, then the
        current page), those past n clamped to n (quest() reads the first quest_rows: the
        clamped ones come last)."""
        B, G = self.B, self.G
        kvh = self.s["kv_heads"]
        p = self.pages - 1  # the current page
        self.kmax[layer][:, :, p] = torch.maximum(self.kmax[layer][:, :, p], k_new)
        self.kmin[layer][:, :, p] = torch.minimum(self.kmin[layer][:, :, p], k_new)
        qpos, qneg = q4.clamp(min=0), q4.clamp(max=0)
        kmax, kmin = self.kmax[layer][:, :, :p], self.kmin[layer][:, :, :p]  # earlier pages
        bound = torch.matmul(qpos, kmax.transpose(-1, -2)) + torch.matmul(qneg, kmin.transpose(-1, -2))
        pages = torch.topk(bound, self.kp - 1, dim=-1).indices  # [B, KV, G, kp-1]
        pages = torch.cat([pages, self.last_page], dim=-1)
        pos = (pages.unsqueeze(-1) * QUEST_PAGE + self.page_offsets).view(B, kvh, G, -1)
        return pos.clamp(max=self.n)

    def quest(self, q4, k_new, layer):
        if self.kp >= self.pages:
            return self.dense(q4, layer)
        B, H = self.B, self.s["heads"]
        pos = self.quest_positions(q4, k_new, layer)[..., :self.quest_rows]  # [B, KV, G, T]
        ks, vs = self.gather(layer, pos.reshape(B, H, self.quest_rows), self.base_q)
        return self.attn["quest"](self.q_heads(q4), ks, vs).reshape(q4.shape)

    # --- the step ---------------------------------------------------------------------------
    def __call__(self):
        s, m, B, n = self.s, self.m, self.B, self.n
        H, kvh, d, G, eps = s["heads"], s["kv_heads"], s["head_dim"], self.G, s["eps"]
        self.idx = None
        x = m.embed[self.tokens]  # [B, hidden]
        for layer, w in enumerate(m.layers):
            h = rms_norm(x, w["attn_norm"], eps)
            q = rope(F.linear(h, w["q"]).view(B, H, d), self.cos, self.sin)
            k = rope(F.linear(h, w["k"]).view(B, kvh, d), self.cos, self.sin)
            v = F.linear(h, w["v"]).view(B, kvh, d)
            self.kc[layer][:, :, n] = k
            self.vc[layer][:, :, n] = v
            q4 = q.view(B, kvh, G, d)  # query heads by KV head (the attention methods' shape)
            role = self.roles[layer]
            if role == "dense":
                o = self.dense(q4, layer)
            elif role == "select":
                o = self.select(q4, layer)
            elif role == "sparse":
                o = self.sparse(q4, layer)
            else:
                o = self.quest(q4, k, layer)
            x = x + F.linear(o.reshape(B, H * d), w["o"])
            h = rms_norm(x, w["mlp_norm"], eps)
            x = x + F.linear(F.silu(F.linear(h, w["gate"])) * F.linear(h, w["up"]), w["down"])
        self.logits = F.linear(rms_norm(x, m.final_norm, eps), m.lm_head)
        self.tokens.copy_(self.logits.argmax(dim=-1))


def measure_copy_bytes_per_s(device):
    if device.type != "cuda":
        return 0.0
    n = 1 << 30
    a = torch.empty(n, dtype=torch.uint8, device=device).fill_(0x3C)
    b = torch.empty_like(a)
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    ms = []
    for i in range(25):
        start.record()
        b.copy_(a)
        stop.record()
        stop.synchronize()
        if i >= 5:
            ms.append(start.elapsed_time(stop))
    del a, b
    return 2.0 * n / (statistics.median(ms) * 1e-3)


def quantile(sorted_ms, q):
    if not sorted_ms:
        return float("nan")
    pos = q * (len(sorted_ms) - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(sorted_ms) - 1)
    return sorted_ms[lo] + (sorted_ms[hi] - sorted_ms[lo]) * (pos - lo)


def time_step(step, device, graphs, warmup, steps):
    """Per-step ms (median, p90) of `steps` runs after `warmup`."""
    if device.type == "cuda":
        run = step
        if graphs:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    step()
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                step()
            run = graph.replay
        for _ in range(warmup):
            run()
        torch.cuda.synchronize()
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        ms = []
        for _ in range(steps):
            start.record()
            run()
            stop.record()
            stop.synchronize()
            ms.append(start.elapsed_time(stop))
    else:
        for _ in range(warmup):
            step()
        ms = []
        for _ in range(steps):
            t0 = time.perf_counter()
            step()
            ms.append((time.perf_counter() - t0) * 1e3)
    ms.sort()
    return statistics.median(ms), quantile(ms, 0.9)


def variants(policies, budgets, granularities):
    try:
        return policy_variants(policies, budgets, granularities)
    except ValueError as e:
        raise SystemExit("torch_reference: unknown policy '%s' (full, quest, tidal)" % e)


def is_oom(e):
    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    return (oom is not None and isinstance(e, oom)) or "out of memory" in str(e).lower()


def self_test(device, dtype):
    """--self-test: every attention backend on small shapes (torch_attention.self_test), then the
    decode step's fast paths at the tiny preset on `device` against fp32 attention restricted to
    the positions they chose, and a graph-captured step of every policy. Returns the exit code."""
    print("torch_reference self-test on %s, %s, torch %s: SDPA backends %s, enable_gqa %s" %
          (device, dtype, torch.__version__, sorted(A.BACKENDS) or "-", A.HAS_GQA), flush=True)
    failures = [A.self_test(device, dtype, log=lambda line: print(line, flush=True))]
    tol = A.tolerance(dtype)

    def check(cond, what):
        print("  %s %s" % ("ok   " if cond else "FAIL ", what), flush=True)
        failures.append(0 if cond else 1)

    def restricted(q, keys, values, positions):
        """fp32 softmax(q.k / sqrt(d)) v over the listed positions of one head."""
        q, k, v = q.float(), keys[positions].float(), values[positions].float()
        return torch.softmax(k @ q / math.sqrt(q.shape[0]), dim=0) @ v

    s = PRESETS["tiny"]
    kvh, d = s["kv_heads"], s["head_dim"]
    model = Model(s, dtype, device, 1)
    g = torch.Generator(device="cpu").manual_seed(9)
    n, B = 300, 2
    for gran, K in (("per-query-head", 24), ("per-kv-head", 40)):
        step = DecodeStep(model, B, n, "tidal", K, gran, 2, [], dtype, device)
        q4 = (torch.randn(B, kvh, step.G, d, generator=g) * 2).to(device=device, dtype=dtype)
        step.select(q4, 2)
        idx = step.idx  # [B, lists, K]
        distinct = all(len(set(r)) == K for r in idx.view(-1, K).tolist())
        check(bool((idx[..., -1] == n).all()) and bool((idx[..., :-1] < n).all()) and distinct,
              "%s: %d distinct positions per list, the current one last" % (gran, K))
        scores = torch.matmul(q4.double(), step.kc[2][:, :, :n].double().transpose(-1, -2))
        if gran == "per-query-head":
            want = torch.topk(scores.view(B, -1, n), K - 1, dim=-1).indices
        else:
            want = torch.topk(torch.softmax(scores / math.sqrt(d), dim=-1).sum(dim=2), K - 1,
                              dim=-1).indices
        same = sum(len(set(a) & set(b)) for a, b in zip(want.view(-1, K - 1).tolist(),
                                                          idx[..., :-1].reshape(-1, K - 1).tolist()))
        frac = same / float(want.numel())
        check(frac >= (1.0 if dtype == torch.float32 else 0.9),
              "%s: the lists are the top K - 1 of fp64 scores (%.0f%% agree)" % (gran, 100 * frac))
        out = step.sparse(q4, 3)
        err = 0.0
        for b in range(B):
            for h in range(s["heads"]):
                kv, gi = divmod(h, step.G)
                lst = idx[b, h] if gran == "per-query-head" else idx[b, kv]
                want_o = restricted(q4[b, kv, gi], step.kc[3][b, kv], step.vc[3][b, kv], lst)
                err = max(err, A.rel_error(out[b, kv, gi], want_o))
        check(err <= tol, "%s: gather + %s = attention over the list (relative error %.2g)" %
              (gran, step.attn["sparse"].label(), err))
    for n_q in (203, 192):  # the current page holds 12 of 16 slots, or 1
        step = DecodeStep(model, B, n_q, "quest", 64, "-", 2, [], dtype, device)
        q4 = (torch.randn(B, kvh, step.G, d, generator=g) * 2).to(device=device, dtype=dtype)
        k_new = torch.randn(B, kvh, d, generator=g).to(device=device, dtype=dtype)
        step.kc[2][:, :, n_q] = k_new
        pos = step.quest_positions(q4, k_new, 2)  # folding k_new again in quest() changes nothing
        out = step.quest(q4, k_new, 2)
        err = 0.0
        for b in range(B):
            for kv in range(kvh):
                for gi in range(step.G):
                    lst = torch.tensor(sorted(set(p for p in pos[b, kv, gi].tolist() if p <= n_q)),
                                       device=device)
                    want_o = restricted(q4[b, kv, gi], step.kc[2][b, kv], step.vc[2][b, kv], lst)
                    err = max(err, A.rel_error(out[b, kv, gi], want_o))
        check(err <= tol and len(lst) == step.quest_rows,
              "quest at n = %d: %d positions, attention over them (%s, relative error %.2g)" %
              (n_q, step.quest_rows, step.attn["quest"].label(), err))
    torch.manual_seed(4)
    full = DecodeStep(model, 1, 100, "full", 0, "-", 2, [], dtype, device)
    torch.manual_seed(4)
    wide = DecodeStep(model, 1, 100, "tidal", 150, "per-query-head", 2, [], dtype, device)
    full()
    wide()
    err = A.rel_error(wide.logits, full.logits.float())
    check(err <= tol, "tidal with K > n is full attention (logits' relative error %.2g)" % err)
    graphs = device.type == "cuda"
    for policy, gran, K in (("full", "-", 0), ("tidal", "per-query-head", 32),
                            ("tidal", "per-kv-head", 32), ("quest", "-", 64)):
        step = DecodeStep(model, B, 500, policy, K, gran, 2, [], dtype, device)
        med, p90 = time_step(step, device, graphs, 1, 3)
        check(0 < med <= p90 and bool(torch.isfinite(step.logits.float()).all()),
              "%s %s: %s step %.3f ms (%s)" % (policy, gran, "graph-captured" if graphs else "eager",
                                               med, step.attention_label()))
    if device.type == "cuda":  # which backend wins at llama3-8b's shapes (information only)
        for S in (32001, 100001):
            q = torch.randn(1, 32, 1, 128, device=device, dtype=dtype)
            kv = torch.randn(2, 1, 8, S, 128, device=device, dtype=dtype)
            best, report = A.tune("grouped", q, kv[0], kv[1])
            print("  llama3-8b dense attention at %d keys: %s; candidates (ms): %s" %
                  (S, best.label(), json.dumps(report)), flush=True)
            del kv
    bad = sum(failures)
    print("self-test: %s (%d failures)" % ("FAILED" if bad else "passed", bad), flush=True)
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="llama2-7b", choices=sorted(PRESETS))
    ap.add_argument("--context", default="10K,32K,100K", help="e.g. 10K,32K,100K (K = 1000)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--policy", default="full,quest,tidal")
    ap.add_argument("--budget", default="2048")
    ap.add_argument("--granularity", default="per-query-head",
                    help="tidal: per-query-head, per-kv-head (comma list)")
    ap.add_argument("--sparse-start", type=int, default=2)
    ap.add_argument("--reselect-layers", default="",
                    help="tidal: comma list, 'none'; default: round(13 L / 32) as Tidal")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--device", default="auto", help="auto, cuda or cpu")
    ap.add_argument("--dtype", default="auto", help="auto (bf16 on cuda, f32 on cpu), bf16, f16, f32")
    ap.add_argument("--no-graphs", action="store_true", help="cuda: eager steps")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", default="", help="also write every line's object to this file")
    ap.add_argument("--sdpa", default="auto", choices=["auto", "flash", "efficient", "cudnn", "math",
                                                        "matmul", "default"],
                    help="attention backend (auto: the fastest correct one per call site)")
    ap.add_argument("--gqa-layout", default="auto", choices=["auto", "gqa", "group"],
                    help="grouped attention: enable_gqa=True, or the query group as the query "
                    "sequence (auto: the faster)")
    ap.add_argument("--self-test", action="store_true",
                    help="check every attention backend and the sparse paths against fp32 "
                    "attention on small shapes (seconds); exit 1 on a mismatch")
    a = ap.parse_args()

    if a.device == "auto":
        a.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("torch_reference: error: --device cuda but torch sees no GPU", file=sys.stderr)
        return 2
    if a.dtype == "auto":
        a.dtype = "bf16" if device.type == "cuda" else "f32"
    dtype = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}[a.dtype]
    if a.self_test:
        return self_test(device, dtype)
    elem = torch.tensor([], dtype=dtype).element_size()
    s = PRESETS[a.preset]
    contexts = [parse_count(c) for c in a.context.split(",") if c]
    budgets = [parse_count(b) for b in a.budget.split(",") if b]
    granularities = [g for g in a.granularity.split(",") if g]
    policies = [p for p in a.policy.split(",") if p]
    if a.reselect_layers == "none":
        reselect = []
    elif a.reselect_layers:
        reselect = [int(x) for x in a.reselect_layers.split(",")]
    else:
        reselect = default_reselect(s["layers"], a.sparse_start)
    graphs = device.type == "cuda" and not a.no_graphs
    out_lines = []

    def emit(obj):
        out_lines.append(obj)
        print(json.dumps(obj), flush=True)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    copy = measure_copy_bytes_per_s(device)
    emit({"kind": "header", "bench": "torch_reference", "device": name,
          "torch": torch.__version__, "cuda": getattr(torch.version, "cuda", None),
          "python": platform.python_version(), "dtype": a.dtype,
          "graphs": "on" if graphs else "off", "version": VERSION,
          "attention": ("sdpa, fastest backend per call site (rows: attention)" if a.sdpa == "auto"
                        else "sdpa " + a.sdpa) if HAS_SDPA else "matmul",
          "sdpa_backends": sorted(A.BACKENDS), "enable_gqa": A.HAS_GQA,
          "copy_tbps": copy / 1e12, "steps": a.steps, "warmup": a.warmup,
          "sparse_start": a.sparse_start, "reselect_layers": reselect, "preset": a.preset})

    t0 = time.time()
    model = Model(s, dtype, device, a.seed)
    if device.type == "cuda":
        torch.cuda.synchronize()
    print("torch_reference: %s weights %.2f GiB made in %.1f s" %
          (a.preset, weight_bytes(s, elem) / 2**30, time.time() - t0), file=sys.stderr)
    kv_per_token = 2 * s["layers"] * s["kv_heads"] * s["head_dim"] * elem
    too_big_at = None  # the smallest context that did not fit
    for n in sorted(contexts):
        for policy, gran, budget in variants(policies, budgets, granularities):
            row = {"kind": "row", "device": name, "preset": a.preset, "context": n,
                   "batch": a.batch, "policy": policy, "granularity": gran,
                   "budget": budget if policy != "full" else None}
            need = kv_per_token * a.batch * (n + 1)
            free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else None
            if too_big_at is not None and n >= too_big_at:
                row.update(status="does_not_fit",
                           reason="a context of %d did not fit at batch %d" % (too_big_at, a.batch))
                emit(row)
                continue
            if free is not None and need * (1.25 if policy == "quest" else 1.0) > 0.95 * free:
                row.update(status="does_not_fit",
                           reason="KV cache %.1f GiB, %.1f GiB free" % (need / 2**30, free / 2**30))
                emit(row)
                if policy == "full":
                    too_big_at = n
                continue
            step = None
            try:
                t1 = time.time()
                step = DecodeStep(model, a.batch, n, policy, budget, gran, a.sparse_start,
                                  reselect, dtype, device, a.sdpa, a.gqa_layout)
                try:
                    med, p90 = time_step(step, device, graphs, a.warmup, a.steps)
                except RuntimeError as e:  # e.g. a backend that cannot be graph-captured
                    if is_oom(e) or a.sdpa != "auto" or not graphs:
                        raise
                    used = step.backends() & set(A.FAST)
                    print("torch_reference: %s failed (%s); again without %s" %
                          (step.attention_label(), str(e).splitlines()[0][:200], ", ".join(sorted(used))),
                          file=sys.stderr)
                    torch.cuda.synchronize()
                    step.tune(a.sdpa, a.gqa_layout, exclude=used)
                    med, p90 = time_step(step, device, graphs, a.warmup, a.steps)
                roles = step.roles
                gb = (stream_bytes(s, elem) +
                      kv_read_bytes(s, roles, n + 1, budget, gran, a.batch, elem)) / 1e9
                floor = gb * 1e9 / copy * 1e3 if copy > 0 else None
                row.update(status="ok", ms=med, p90_ms=p90, **{"tok/s": a.batch / (med * 1e-3)},
                           GB=gb, floor_ms=floor,
                           **{"%floor": 100.0 * floor / med if floor else None},
                           copy_tbps=copy / 1e12, wall_s=time.time() - t1,
                           attention=step.attention_label(), attention_candidates=step.attn_report)
            except Exception as e:  # noqa: BLE001 - a failed cell is reported, the next one runs
                if not is_oom(e):
                    raise
                row.update(status="does_not_fit", reason="out of memory: %s" % str(e)[:200])
                if policy == "full":
                    too_big_at = n
            finally:
                del step
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            emit(row)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out_lines, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
