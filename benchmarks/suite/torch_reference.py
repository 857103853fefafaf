#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The decode step a PyTorch user would write, timed the way `tidal bench` times Tidal's.

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

Attention: torch.nn.functional.scaled_dot_product_attention (torch >= 2.0) with the query group
of a KV head as the query sequence ([B, KV, G, D] against [B, KV, n, D]: no repeat_kv copy);
torch < 2.0 (the CPU test machine's 1.13) falls back to matmul + softmax ("attention": "matmul").

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
from presets import (PRESETS, QUEST_PAGE, default_reselect, kv_rows_read,  # noqa: E402
                     layer_roles, parse_count, stream_bytes, weight_bytes)

HAS_SDPA = hasattr(F, "scaled_dot_product_attention")


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


def attend(q, k, v, mask=None):
    """q [..., Lq, D] against k, v [..., S, D] (no causal mask: every key precedes the query)."""
    if HAS_SDPA:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    s = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
    if mask is not None:
        s = s + mask
    return torch.matmul(torch.softmax(s.float(), dim=-1).to(q.dtype), v)


class DecodeStep:
    """One decode step at a fixed context over a preallocated cache (static shapes: graphable)."""

    def __init__(self, model, batch, n, policy, budget, granularity, sparse_start, reselect,
                 dtype, device):
        s = model.s
        self.m, self.s, self.B, self.n = model, s, batch, n
        self.policy, self.granularity = policy, granularity
        self.K = max(2, min(budget, n + 1)) if policy != "full" else 0
        self.roles = layer_roles(s, policy, sparse_start, reselect)
        L, kvh, d = s["layers"], s["kv_heads"], s["head_dim"]
        self.G = s["heads"] // kvh
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
        lists = s["heads"] if granularity == "per-query-head" else kvh
        self.current = torch.full((batch, lists, 1), n, dtype=torch.long, device=device)
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
            # The current page's slots past position n hold nothing yet: masked.
            mask = torch.zeros(self.kp * QUEST_PAGE, dtype=dtype, device=device)
            first = (self.pages - 1) * QUEST_PAGE
            for j in range(QUEST_PAGE):
                if first + j > n:
                    mask[(self.kp - 1) * QUEST_PAGE + j] = float("-inf")
            self.quest_mask = mask.view(1, 1, 1, -1)

    # --- attention by role ------------------------------------------------------------------
    def dense(self, q4, layer):
        return attend(q4, self.kc[layer], self.vc[layer])

    def select(self, q4, layer):
        """Dense output + the lists of the following sparse layers."""
        out = attend(q4, self.kc[layer], self.vc[layer])
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
        B, kvh, G, d = self.B, self.s["kv_heads"], self.G, self.s["head_dim"]
        K = self.idx.shape[-1]
        kl, vl = self.kc[layer], self.vc[layer]  # [B, KV, S, D]
        if self.granularity == "per-query-head":
            idx = self.idx.view(B, kvh, G, K, 1).expand(B, kvh, G, K, d)
            S = kl.shape[2]
            ks = torch.gather(kl.unsqueeze(2).expand(B, kvh, G, S, d), 3, idx)
            vs = torch.gather(vl.unsqueeze(2).expand(B, kvh, G, S, d), 3, idx)
            out = attend(q4.reshape(B, kvh * G, 1, d), ks.view(B, kvh * G, K, d),
                         vs.view(B, kvh * G, K, d))
            return out.view(B, kvh, G, d)
        idx = self.idx.view(B, kvh, K, 1).expand(B, kvh, K, d)
        return attend(q4, torch.gather(kl, 2, idx), torch.gather(vl, 2, idx))

    def quest_positions(self, q4, k_new, layer):
        """Folds the new key into the current page's bounds; returns the positions [B, KV, G, T]
        of the chosen pages (the top kp - 1 earlier pages by q+ . max + q- . min, then the
        current page), those past n clamped to n (and masked by quest_mask)."""
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
        B, G = self.B, self.G
        kvh, d = self.s["kv_heads"], self.s["head_dim"]
        pos = self.quest_positions(q4, k_new, layer)
        T, S = pos.shape[-1], self.kc.shape[3]
        idx = pos.view(B, kvh, G, T, 1).expand(B, kvh, G, T, d)
        ks = torch.gather(self.kc[layer].unsqueeze(2).expand(B, kvh, G, S, d), 3, idx)
        vs = torch.gather(self.vc[layer].unsqueeze(2).expand(B, kvh, G, S, d), 3, idx)
        out = attend(q4.reshape(B, kvh * G, 1, d), ks.view(B, kvh * G, T, d),
                     vs.view(B, kvh * G, T, d), self.quest_mask)
        return out.view(B, kvh, G, d)

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
            q4 = q.view(B, kvh, G, d)  # a KV head's query group as SDPA's query sequence
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
    out = []
    for p in policies:
        if p == "full":
            out.append(("full", "-", 0))
        elif p == "quest":
            out.extend(("quest", "-", k) for k in budgets)
        elif p == "tidal":
            out.extend(("tidal", g, k) for k in budgets for g in granularities)
        else:
            raise SystemExit("torch_reference: unknown policy '%s' (full, quest, tidal)" % p)
    return out


def is_oom(e):
    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    return (oom is not None and isinstance(e, oom)) or "out of memory" in str(e).lower()


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
          "graphs": "on" if graphs else "off", "attention": "sdpa" if HAS_SDPA else "matmul",
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
                                  reselect, dtype, device)
                med, p90 = time_step(step, device, graphs, a.warmup, a.steps)
                roles = step.roles
                rows = kv_rows_read(s, roles, n + 1, budget, gran, a.batch)
                gb = (stream_bytes(s, elem) + rows * s["head_dim"] * elem) / 1e9
                floor = gb * 1e9 / copy * 1e3 if copy > 0 else None
                row.update(status="ok", ms=med, p90_ms=p90, **{"tok/s": a.batch / (med * 1e-3)},
                           GB=gb, floor_ms=floor,
                           **{"%floor": 100.0 * floor / med if floor else None},
                           copy_tbps=copy / 1e12, wall_s=time.time() - t1)
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
