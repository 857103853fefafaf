# SPDX-License-Identifier: Apache-2.0
"""The suite's report: OUT/report.md and OUT/plots/*.png from results.json (run_suite.py).

Standard library for the markdown; matplotlib (Agg) for the PNGs, which are skipped with a note
in the report when it is absent."""
import os

import presets as P

# reference/TIDALDECODE.md §4.1: the paper's Figure 10, Llama-2-7B fp16, batch 1, A100 SXM4 80 GB,
# contexts 10240 / 32768 / 102400, ms per token read off the figure (±~0.3 ms); decoder layers
# only, with a synchronisation around every layer and no CUDA graphs (§1.7).
PAPER_A100 = {
    "context_labels": {10000: "10K (10240)", 32000: "32K (32768)", 100000: "100K (102400)"},
    "full": {10000: 19.2, 32000: 25.7, 100000: 45.8},
    "quest": {10000: 20.2, 32000: 21.3, 100000: 25.7},  # K = 2048
    "tidal": {10000: 17.3, 32000: 18.4, 100000: 21.6},  # K = 2048 (10K: top of 16.9-17.3)
}
PAPER_TABLE = """| context | Full | Quest (K = 32 → 4096) | TD (K = 32 → 4096) | Full/TD | Quest/TD |
|---|---|---|---|---|---|
| 10K | ≈19.2 | 20.4, 19.9, 19.4, 19.3, 20.2, 19.9, 20.2, 21.1 (≥ Full) | ≈16.9–17.3 (K ≤ 2048), 17.6 @4096 | ≈1.1× | ≈1.15–1.2× |
| 32K | ≈25.7 | ≈20.5–21.1 (K ≤ 1024), 21.3 @2048, 22.1 @4096 | ≈17.6–18.0 (K ≤ 1024), 18.4 @2048, 18.9 @4096 | ≈1.4× | ≈1.15× |
| 100K | ≈45.8 | ≈24.8–25.1 (K ≤ 1024), 25.7 @2048, 26.1 @4096 | ≈21.2–21.4 (K ≤ 1024), 21.6 @2048, 22.3 @4096 | **≈2.1×** | ≈1.17× |"""

# reference/TIDALDECODE.md §4.2 (README Fig. 2): attention-only latency relative to full = 1.00,
# (Quest, TD) by model depth and context; the budget is not stated in the figure.
PAPER_ATTENTION = {32: {10000: (1.24, 0.65), 32000: (0.66, 0.37), 100000: (0.41, 0.24)},
                   64: {10000: (1.25, 0.61), 32000: (0.65, 0.32), 100000: (0.39, 0.18)}}

ROLE_COLORS = {"dense": "#4c72b0", "select": "#dd8452", "sparse": "#55a868", "quest": "#c44e52"}


def fmt(v, digits=2, suffix=""):
    if v is None:
        return "-"
    if isinstance(v, float):
        return ("%." + str(digits) + "f%s") % (v, suffix)
    return "%s%s" % (v, suffix)


def vlabel(policy, gran, budget):
    if policy == "full":
        return "full"
    if policy == "quest":
        return "quest K=%d" % budget
    return "tidal K=%d %s" % (budget, {"per-query-head": "per-q", "per-kv-head": "per-kv",
                                       "shared": "shared"}.get(gran, gran))


def kv_of(e):
    """A cell's KV cache dtype: "fp8", or "" for the activations' dtype."""
    return e["params"].get("kv_dtype") or ""


def is_stale(e):
    """A PyTorch row measured by an older torch_reference.py (its version below
    P.TORCH_REFERENCE_VERSION): shown marked, measured again by the next run."""
    if e["params"].get("kind") != "torch" or e.get("status") not in ("ok", "does_not_fit"):
        return False
    version = e.get("version") or ((e.get("row") or {}).get("header") or {}).get("version") or 1
    return version < P.TORCH_REFERENCE_VERSION


STALE_MARK = "†"
STALE_NOTE = ("%s: measured by version 1 of the PyTorch reference, whose GQA attention passed the "
              "query group as SDPA's query sequence to one backend (slow on llama3-8b); the next "
              "suite run measures it again." % STALE_MARK)


class View:
    """Indexed cells of a results file: those of one KV cache dtype (kv: "" or "fp8"), or of
    every one (kv=None)."""

    def __init__(self, data, kv=""):
        self.data = data
        self.kv = kv
        self.cells = {k: e for k, e in data.get("cells", {}).items() if kv is None or kv_of(e) == kv}
        self.ok, self.stale = {}, set()
        for e in self.cells.values():
            p = e["params"]
            key = (p["kind"], p["preset"], p["context"], p["batch"], p["policy"],
                   p["granularity"], p["budget"] or 0)
            if p["kind"] == "serve":
                key = key + (p.get("clients"),)
            e["_key"] = key
            if e["status"] == "ok":
                self.ok[key] = e.get("row") or {}
                if is_stale(e):
                    self.stale.add(key)

    def row(self, kind, preset, n, b, pol, gran, budget):
        return self.ok.get((kind, preset, n, b, pol, gran, budget or 0))

    def ms(self, kind, preset, n, b, pol, gran, budget, digits=3):
        """The row's ms for a table (marked when stale), or its status."""
        r = self.row(kind, preset, n, b, pol, gran, budget)
        if not r:
            return status_of(self, kind, preset, n, b, pol, gran, budget)
        stale = (kind, preset, n, b, pol, gran, budget or 0) in self.stale
        return fmt(r.get("ms"), digits) + (STALE_MARK if stale else "")

    def presets(self, kind="bench"):
        seen = []
        for e in self.cells.values():
            p = e["params"]
            if p["kind"] == kind and p["preset"] not in seen:
                seen.append(p["preset"])
        return seen

    def contexts(self, kind, preset, batch=None, ok_only=False):
        return sorted({e["params"]["context"] for e in self.cells.values()
                       if e["params"]["kind"] == kind and e["params"]["preset"] == preset and
                       (batch is None or e["params"]["batch"] == batch) and
                       (not ok_only or e["status"] == "ok")})

    def variants(self, kind, preset, batch=None):
        out = []
        for e in self.cells.values():
            p = e["params"]
            if p["kind"] == kind and p["preset"] == preset and (batch is None or p["batch"] == batch):
                v = (p["policy"], p["granularity"], p["budget"] or 0)
                if v not in out:
                    out.append(v)
        order = {"full": 0, "quest": 1, "tidal": 2}
        return sorted(out, key=lambda v: (order.get(v[0], 3), v[2], v[1]))

    def batches(self, kind, preset):
        return sorted({e["params"]["batch"] for e in self.cells.values()
                       if e["params"]["kind"] == kind and e["params"]["preset"] == preset})

    def floor(self, preset, n, b, pol, gran, budget):
        """Tidal's floor of this configuration (the same bytes formula for both)."""
        r = self.row("bench", preset, n, b, pol, gran, budget)
        return r.get("floor_ms") if r else None


def table(headers, rows):
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" if i == 0 else "---:"
                                                            for i in range(len(headers))) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(x) for x in r) + " |")
    return "\n".join(out)


def ratio(a, b):
    return a / b if a and b else None


def floor_cell(r, t, digits=3):
    """The floor of a row: Tidal's (r, from a copy measured in its own run); else PyTorch's own
    (t, its process's copy), marked as such. Returns (value, text)."""
    if (r or {}).get("floor_ms"):
        return r["floor_ms"], fmt(r["floor_ms"], digits)
    if (t or {}).get("floor_ms"):
        return t["floor_ms"], fmt(t["floor_ms"], digits) + " (PyTorch's)"
    return None, "-"


# --- markdown -------------------------------------------------------------------------------

def environment_lines(data):
    runs = data.get("runs", [])
    env = runs[-1].get("environment", {}) if runs else {}
    v = View(data)
    header = {}
    for e in v.cells.values():
        if e["params"]["kind"] == "bench" and e["status"] == "ok":
            header = (e.get("row") or {}).get("header", {})
            break
    theader = {}
    for e in sorted(v.cells.values(), key=is_stale):  # a current row's header first
        if e["params"]["kind"] == "torch" and e["status"] == "ok":
            theader = (e.get("row") or {}).get("header", {})
            break
    rows = [
        ("device", header.get("device") or env.get("gpu") or "-"),
        ("GPU (nvidia-smi: name, driver, memory, max SM / memory clocks)", env.get("gpu") or "-"),
        ("CUDA (driver API / toolkit)", "%s / %s" % (env.get("cuda_driver_api") or "-",
                                                     env.get("cuda_toolkit") or "-")),
        ("tidal", env.get("tidal_version") or "-"),
        ("commit (bench header / repository)", "%s / %s" % (header.get("commit", "-"),
                                                            env.get("commit") or "-")),
        ("build / compiler", "%s / %s" % (header.get("build_type", "-"), header.get("compiler", "-"))),
        ("tidal bench", "dtype %s, graphs %s, copy %s, steps %s" % (
            header.get("dtype", "-"), header.get("graphs", "-"), header.get("copy", "-"),
            header.get("steps", "-"))),
        ("PyTorch reference", "version %s: torch %s (CUDA %s), %s, graphs %s, attention %s, "
         "copy %s TB/s" % (
             theader.get("version", 1), theader.get("torch", "-"), theader.get("cuda", "-"),
             theader.get("dtype", "-"), theader.get("graphs", "-"), theader.get("attention", "-"),
             fmt(theader.get("copy_tbps"), 3)) if theader else "not run"),
        ("date of the last run", env.get("date") or "-"),
        ("host", "%s (%s)" % (env.get("host", "-"), env.get("os", "-"))),
        ("suite", "%s (`%s`)" % ((data.get("suite") or {}).get("name", "-"), data.get("suite_file", "-"))),
    ]
    return table(["", ""], rows)


def headline_variants(hl):
    return [(x["policy"], x.get("granularity", "-" if x["policy"] != "tidal" else "per-query-head"),
             int(x.get("budget", 0))) for x in hl.get("variants", [
                 {"policy": "full"}, {"policy": "quest", "budget": 2048},
                 {"policy": "tidal", "budget": 2048, "granularity": "per-query-head"}])]


def headline_section(data, v, hl):
    presets = hl.get("presets", ["llama2-7b", "llama3-8b"])
    contexts = [P.parse_count(c) for c in hl.get("contexts", ["10K", "32K", "100K"])]
    batch = int(hl.get("batch", 1))
    variants = headline_variants(hl)
    out = []
    for preset in presets:
        rows = []
        for n in contexts:
            full = v.row("bench", preset, n, batch, "full", "-", 0)
            tfull = v.row("torch", preset, n, batch, "full", "-", 0)
            for pol, gran, budget in variants:
                r = v.row("bench", preset, n, batch, pol, gran, budget)
                t = v.row("torch", preset, n, batch, pol, gran, budget)
                floor, floor_text = floor_cell(r, t)
                paper = PAPER_A100.get(pol, {}).get(n) if preset == "llama2-7b" else None
                paper_full = PAPER_A100["full"].get(n) if preset == "llama2-7b" else None
                rows.append([
                    P.context_label(n), vlabel(pol, gran, budget),
                    fmt((r or {}).get("ms"), 3) if r else status_of(v, "bench", preset, n, batch, pol, gran, budget),
                    floor_text,
                    fmt(ratio((r or {}).get("ms"), floor), 2, "x"),
                    fmt(ratio((full or {}).get("ms"), (r or {}).get("ms")), 2, "x"),
                    v.ms("torch", preset, n, batch, pol, gran, budget),
                    fmt(ratio((t or {}).get("ms"), floor), 2, "x"),
                    fmt(ratio((tfull or {}).get("ms"), (t or {}).get("ms")), 2, "x"),
                    fmt(ratio((t or {}).get("ms"), (r or {}).get("ms")), 2, "x"),
                    fmt(paper, 1), fmt(ratio(paper_full, paper), 2, "x")])
        out.append("### %s, batch %d\n\n" % (preset, batch) + table(
            ["context", "policy", "Tidal ms", "floor ms", "Tidal / floor", "Tidal speedup vs full",
             "PyTorch ms", "PyTorch / floor", "PyTorch speedup vs full", "PyTorch / Tidal",
             "paper A100 ms", "paper speedup vs full"], rows))
    return "\n\n".join(out)


def status_of(v, kind, preset, n, b, pol, gran, budget):
    for e in v.cells.values():
        p = e["params"]
        if (p["kind"], p["preset"], p["context"], p["batch"], p["policy"], p["granularity"],
                p["budget"] or 0) == (kind, preset, n, b, pol, gran, budget or 0):
            return {"does_not_fit": "does not fit", "error": "error", "skipped": "skipped"}.get(
                e["status"], e["status"])
    return "not run"


def attention_section(v, hl):
    """Attention-only time relative to full, beside the paper's README Fig. 2."""
    variants = [x for x in headline_variants(hl) if x[0] != "full"]
    rows = []
    for preset in v.presets("bench"):
        depth = P.PRESETS[preset]["layers"]
        for n in (10000, 32000, 100000):
            full = v.row("bench", preset, n, 1, "full", "-", 0)
            if not full or not full.get("attn_ms"):
                continue
            cells = []
            for var in variants:
                r = v.row("bench", preset, n, 1, *var)
                cells.append(fmt(ratio((r or {}).get("attn_ms"), full["attn_ms"]), 2))
            paper = PAPER_ATTENTION.get(depth, {}).get(n)
            rows.append([preset, depth, P.context_label(n), fmt(full["attn_ms"], 3)] + cells +
                         [fmt(paper[0], 2) if paper else "-", fmt(paper[1], 2) if paper else "-"])
    if not rows:
        return None
    return table(["preset", "layers", "context", "full attention ms"] +
                 ["%s / full" % vlabel(*x) for x in variants] +
                 ["paper Quest / full", "paper TD / full"], rows)


def longest_section(v, v8=None):
    """The longest context of each preset (and, from v8, each preset with an FP8 KV cache)."""
    rows = []
    for v, tag in ((v, ""), (v8, " (FP8 KV)")):
        if v is not None:
            rows += longest_rows(v, tag)
    return table(["preset", "longest context (Tidal, batch 1)", "latency there",
                  "longest (PyTorch)", "first context that does not fit", "all that do not fit"],
                 rows)


def longest_rows(v, tag):
    rows = []
    for preset in v.presets("bench"):
        ok = [n for n in v.contexts("bench", preset, 1, ok_only=True)]
        nofit = sorted({e["params"]["context"] for e in v.cells.values()
                        if e["params"]["kind"] == "bench" and e["params"]["preset"] == preset and
                        e["params"]["batch"] == 1 and e["status"] == "does_not_fit"})
        if not ok:
            rows.append([preset + tag, "-", "-", "-", "-", P.context_label(nofit[0]) if nofit else "-"])
            continue
        n = max(ok)
        lat = []
        for pol, gran, budget in v.variants("bench", preset, 1):
            r = v.row("bench", preset, n, 1, pol, gran, budget)
            if r:
                pct = r.get("%floor")
                lat.append("%s %.3f ms (%s of floor)" % (vlabel(pol, gran, budget), r["ms"],
                                                      "%.0f%%" % pct if pct else "-"))
        t = [e for e in v.cells.values() if e["params"]["kind"] == "torch" and
             e["params"]["preset"] == preset and e["params"]["batch"] == 1 and e["status"] == "ok"]
        tmax = max((e["params"]["context"] for e in t), default=None)
        bigger_nofit = [x for x in nofit if x > n]
        rows.append([preset + tag, P.context_label(n), "; ".join(lat),
                     P.context_label(tmax) if tmax else "-",
                     "-" if not bigger_nofit else P.context_label(bigger_nofit[0]),
                     ", ".join(P.context_label(x) for x in nofit) or "-"])
    return rows


def kv_label(v):
    """The name of a view's KV cache dtype: fp8, or the bench's kv_dtype / dtype (bf16)."""
    if v.kv:
        return v.kv.upper()
    for e in v.cells.values():
        if e["params"]["kind"] == "bench" and e["status"] == "ok":
            h = (e.get("row") or {}).get("header") or {}
            return h.get("kv_dtype") or h.get("dtype") or "bf16"
    return "bf16"


def kv_table(v, v8, cfg):
    """One suite-configured comparison of the two KV dtypes: per context and variant, each
    dtype's latency, floor and % of floor (from tidal bench's row: its floor counts FP8's bytes,
    a byte per element and a 4-byte scale per row) and the speedup of FP8."""
    preset, batch = cfg.get("preset", "llama3-8b"), int(cfg.get("batch", 1))
    variants = headline_variants(cfg)
    name, name8 = kv_label(v), kv_label(v8)

    def cell(view, n, var):
        r = view.row("bench", preset, n, batch, *var)
        if r:
            return r, [fmt(r.get("ms"), 3), fmt(r.get("floor_ms"), 3), fmt(r.get("%floor"), 1)]
        st = status_of(view, "bench", preset, n, batch, *var)
        return None, [{"not run": "pending"}.get(st, st), "-", "-"]

    rows = []
    for c in cfg.get("contexts", []):
        n = P.parse_count(c)
        for var in variants:
            r, a = cell(v, n, var)
            r8, b = cell(v8, n, var)
            rows.append([P.context_label(n), vlabel(*var)] + a + b +
                        [fmt(ratio((r or {}).get("ms"), (r8 or {}).get("ms")), 2, "x"),
                         fmt((r or {}).get("GB"), 2), fmt((r8 or {}).get("GB"), 2)])
    return "**%s, batch %d.**\n\n" % (preset, batch) + table(
        ["context", "policy", "%s ms" % name, "%s floor ms" % name, "%s %% floor" % name,
         "%s ms" % name8, "%s floor ms" % name8, "%s %% floor" % name8,
         "%s ms / %s ms" % (name, name8), "%s GB/step" % name, "%s GB/step" % name8], rows)


def preset_section(v, preset, batch):
    rows = []
    for n in v.contexts("bench", preset, batch):
        full = v.row("bench", preset, n, batch, "full", "-", 0)
        for pol, gran, budget in v.variants("bench", preset, batch):
            r = v.row("bench", preset, n, batch, pol, gran, budget)
            if not r:
                st = status_of(v, "bench", preset, n, batch, pol, gran, budget)
                if st != "not run":
                    rows.append([P.context_label(n), vlabel(pol, gran, budget), st] + ["-"] * 12)
                continue
            rows.append([P.context_label(n), vlabel(pol, gran, budget), fmt(r.get("ms"), 3),
                         fmt(r.get("p90_ms"), 3), fmt(r.get("tok/s"), 1), fmt(r.get("attn_ms"), 3),
                         fmt(r.get("dense_ms"), 3), fmt(r.get("select_ms"), 3),
                         fmt(r.get("sparse_ms"), 3), fmt(r.get("quest_ms"), 3), fmt(r.get("GB"), 2),
                         fmt(r.get("floor_ms"), 3), fmt(r.get("%floor"), 1),
                         fmt(ratio((full or {}).get("ms"), r.get("ms")), 2, "x"),
                         fmt(ratio((full or {}).get("attn_ms"), r.get("attn_ms")), 2, "x")])
    return table(["context", "policy", "ms", "p90 ms", "tok/s", "attn ms", "dense", "select",
                  "sparse", "quest", "GB/step", "floor ms", "% floor", "speedup vs full",
                  "attention speedup"], rows)


def batch_section(v, preset):
    rows = []
    bs = v.batches("bench", preset)
    if len(bs) < 2:
        return None
    for n in v.contexts("bench", preset):
        for pol, gran, budget in v.variants("bench", preset):
            cells = [v.row("bench", preset, n, b, pol, gran, budget) for b in bs]
            if sum(1 for c in cells if c) < 2:
                continue
            base = cells[0]
            rows.append([P.context_label(n), vlabel(pol, gran, budget)] +
                        ["%s (%s)" % (fmt(c.get("tok/s"), 0), fmt(ratio(c.get("tok/s"),
                                                                        (base or {}).get("tok/s")), 2, "x"))
                         if c else status_of(v, "bench", preset, n, b, pol, gran, budget)
                         for b, c in zip(bs, cells)])
    if not rows:
        return None
    return table(["context", "policy"] + ["batch %d tok/s (vs batch %d)" % (b, bs[0]) for b in bs], rows)


def torch_section(v):
    rows = []
    for preset in v.presets("torch"):
        for b in v.batches("torch", preset):
            for n in v.contexts("torch", preset, b):
                for pol, gran, budget in v.variants("torch", preset, b):
                    t = v.row("torch", preset, n, b, pol, gran, budget)
                    r = v.row("bench", preset, n, b, pol, gran, budget)
                    if not t:
                        st = status_of(v, "torch", preset, n, b, pol, gran, budget)
                        if st != "not run":
                            rows.append([preset, P.context_label(n), b, vlabel(pol, gran, budget),
                                         st, "-", "-", "-", "-", "-", "-"])
                        continue
                    floor, floor_text = floor_cell(r, t)
                    rows.append([preset, P.context_label(n), b, vlabel(pol, gran, budget),
                                 v.ms("torch", preset, n, b, pol, gran, budget),
                                 fmt(t.get("p90_ms"), 3), floor_text,
                                 fmt(ratio(t.get("ms"), floor), 2, "x"),
                                 fmt((r or {}).get("ms"), 3),
                                 fmt(ratio(t.get("ms"), (r or {}).get("ms")), 2, "x"),
                                 t.get("attention") or "-"])
    if not rows:
        return None
    return table(["preset", "context", "batch", "policy", "PyTorch ms", "p90 ms",
                  "floor ms (Tidal's unless marked)", "PyTorch / floor", "Tidal ms", "PyTorch / Tidal",
                  "SDPA backend per call site"], rows)


def planned_serve_cells(suite):
    """Placeholders ({"params", "status": "pending"}) for the suite's serving cells."""
    out = []
    for st in suite.get("stages", []):
        if st.get("kind") != "serve":
            continue
        presets = st.get("presets", st.get("preset", []))
        presets = presets if isinstance(presets, list) else [presets]
        kvs = st.get("kv_dtype", ["bf16"])
        kvs = [P.kv_dtype_key(k) for k in (kvs if isinstance(kvs, list) else [kvs])]
        budgets = [P.parse_count(b) for b in st.get("budgets", [2048])]
        variants = []
        for pol in st.get("policies", ["full", "tidal"]):
            if pol == "full":
                variants.append(("full", "-", None))
            else:
                variants += [(pol, "per-query-head" if pol == "tidal" else "-", b) for b in budgets]
        for preset in presets:
            for kv in kvs:
                for pol, gran, budget in variants:
                    for c in st.get("clients", [8, 32]):
                        p = dict(kind="serve", preset=preset, context=P.parse_count(
                            st.get("prompt_tokens", 32000)), batch=int(c), policy=pol,
                            granularity=gran, budget=budget, clients=int(c))
                        if kv:
                            p["kv_dtype"] = kv
                        out.append({"params": p, "status": "pending"})
    return out


def serve_section(v, suite=None):
    rows = []
    have = {(e["params"]["preset"], kv_of(e), e["params"]["clients"], e["params"]["policy"],
             e["params"]["budget"] or 0) for e in v.cells.values() if e["params"]["kind"] == "serve"}
    planned = [e for e in planned_serve_cells(suite or {})
               if (e["params"]["preset"], kv_of(e), e["params"]["clients"], e["params"]["policy"],
                   e["params"]["budget"] or 0) not in have]
    for e in sorted(list(v.cells.values()) + planned,
                    key=lambda e: (e["params"]["preset"], kv_of(e), e["params"].get("clients", 0),
                                   e["params"]["policy"])):
        p = e["params"]
        if p["kind"] != "serve":
            continue
        r = e.get("row") or {}
        kv = kv_of(e) or "-"
        if e["status"] != "ok":
            rows.append([p["preset"], kv, p["clients"], vlabel(p["policy"], p["granularity"], p["budget"] or 0),
                         P.context_label(p["context"]), {"does_not_fit": "does not fit"}.get(
                             e["status"], e["status"]) + (": " + e.get("reason", "")[:80].replace("|", "/")
                                                          if e.get("reason") else "")] + ["-"] * 9)
            continue
        rows.append([p["preset"], kv, p["clients"], vlabel(p["policy"], p["granularity"], p["budget"] or 0),
                     fmt(r.get("prompt_avg"), 0), r.get("requests"), fmt(r.get("ttft_p50"), 1),
                     fmt(r.get("ttft_p99"), 1), fmt(r.get("itl_p50"), 2), fmt(r.get("itl_p99"), 2),
                     fmt(r.get("e2e_p50"), 2), fmt(r.get("e2e_p99"), 2), fmt(r.get("tok/s"), 1),
                     fmt(r.get("req/s"), 3), (r.get("header") or {}).get("kv_tokens", "-")])
    if not rows:
        return None
    return table(["preset", "KV dtype", "clients", "policy", "prompt tokens", "requests",
                  "TTFT p50 ms", "TTFT p99 ms", "ITL p50 ms", "ITL p99 ms", "e2e p50 s", "e2e p99 s",
                  "gen tok/s", "req/s", "server KV tokens"], rows)


def problems_section(v):
    rows = []
    for key, e in sorted(v.cells.items()):
        if e["status"] in ("error", "skipped") or (e["status"] == "does_not_fit" and
                                                  not (e.get("reason") or "").startswith("implied")):
            p = e["params"]
            rows.append([p["kind"], p["preset"] + (" (FP8 KV)" if kv_of(e) else ""),
                         P.context_label(p["context"]), p["batch"],
                         vlabel(p["policy"], p["granularity"], p["budget"] or 0),
                         e["status"].replace("_", " "),
                         (e.get("reason") or "").replace("|", "/")[:160]])
    if not rows:
        return None
    return table(["kind", "preset", "context", "batch", "policy", "status", "why"], rows)


# --- plots ----------------------------------------------------------------------------------

def make_plots(out, v, hl):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None, "matplotlib is not installed: no plots"
    os.makedirs(os.path.join(out, "plots"), exist_ok=True)
    made = []

    def context_axes(ax, ctxs, ylabel, title):
        """A log context axis labelled 10K, 32K, ..., a grid and a legend: the line plots' frame."""
        ax.set_xscale("log")
        ax.set_xticks(ctxs)
        ax.set_xticklabels([P.context_label(n) for n in ctxs])
        ax.set_xlabel("context (tokens)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)

    def save(fig, name, caption):
        path = os.path.join("plots", name)
        fig.tight_layout()
        fig.savefig(os.path.join(out, path), dpi=110)
        plt.close(fig)
        made.append((path, caption))

    colors = {}
    palette = ["#000000", "#c44e52", "#4c72b0", "#55a868", "#8172b2", "#937860", "#da8bc3",
               "#8c8c8c", "#ccb974", "#64b5cd"]

    fixed = {("full", "-"): "#000000", ("quest", "-"): "#c44e52", ("tidal", "per-query-head"): "#2ca02c",
             ("tidal", "per-kv-head"): "#1f77b4", ("tidal", "shared"): "#8172b2"}
    main_budgets = {x[2] for x in headline_variants(hl)} | {0}

    def color(v3):
        """One colour per policy and granularity; budgets other than the headline's are lighter."""
        fam = (v3[0], v3[1])
        if fam not in colors:
            colors[fam] = fixed.get(fam, palette[(len(colors) + 5) % len(palette)])
        c = colors[fam]
        if v3[2] in main_budgets:
            return c
        r, g, b = (int(c[i:i + 2], 16) for i in (1, 3, 5))
        return "#%02x%02x%02x" % tuple(int(x + (255 - x) * 0.55) for x in (r, g, b))

    for preset in v.presets("bench"):
        ctxs = v.contexts("bench", preset, 1, ok_only=True)
        if not ctxs:
            continue
        vars1 = v.variants("bench", preset, 1)
        # 1. latency against context
        fig, ax = plt.subplots(figsize=(8, 5))
        for var in vars1:
            pts = [(n, v.row("bench", preset, n, 1, *var)) for n in ctxs]
            pts = [(n, r["ms"]) for n, r in pts if r]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=color(var),
                        label="Tidal " + vlabel(*var))
            tp = [(n, v.row("torch", preset, n, 1, *var)) for n in v.contexts("torch", preset, 1)]
            tp = [(n, r["ms"]) for n, r in tp if r]
            if tp:
                ax.plot([p[0] for p in tp], [p[1] for p in tp], "s--", color=color(var), alpha=0.6,
                        label="PyTorch " + vlabel(*var))
        for var, style in ((("full", "-", 0), ":"),):
            fp = [(n, v.row("bench", preset, n, 1, *var)) for n in ctxs]
            fp = [(n, r.get("floor_ms")) for n, r in fp if r and r.get("floor_ms")]
            if fp:
                ax.plot([p[0] for p in fp], [p[1] for p in fp], style, color="gray",
                        label="floor of full")
        tid = [x for x in vars1 if x[0] == "tidal"]
        if tid:
            fp = [(n, v.row("bench", preset, n, 1, *tid[-1])) for n in ctxs]
            fp = [(n, r.get("floor_ms")) for n, r in fp if r and r.get("floor_ms")]
            if fp:
                ax.plot([p[0] for p in fp], [p[1] for p in fp], "-.", color="gray",
                        label="floor of " + vlabel(*tid[-1]))
        context_axes(ax, ctxs, "ms per token (batch 1)", "%s: decode latency against context" % preset)
        save(fig, "latency_%s.png" % preset,
             "%s: per-token latency against context, batch 1; solid Tidal, dashed PyTorch, gray the floors." % preset)
        # 2. speedup over full
        fig, ax = plt.subplots(figsize=(8, 5))
        for var in vars1:
            if var[0] == "full":
                continue
            pts = []
            for n in ctxs:
                r, f = v.row("bench", preset, n, 1, *var), v.row("bench", preset, n, 1, "full", "-", 0)
                if r and f:
                    pts.append((n, f["ms"] / r["ms"]))
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=color(var),
                        label="Tidal " + vlabel(*var))
            tp = []
            for n in v.contexts("torch", preset, 1):
                r, f = v.row("torch", preset, n, 1, *var), v.row("torch", preset, n, 1, "full", "-", 0)
                if r and f:
                    tp.append((n, f["ms"] / r["ms"]))
            if tp:
                ax.plot([p[0] for p in tp], [p[1] for p in tp], "s--", color=color(var), alpha=0.6,
                        label="PyTorch " + vlabel(*var))
        if preset == "llama2-7b":
            pp = sorted(PAPER_A100["tidal"])
            ax.plot(pp, [PAPER_A100["full"][n] / PAPER_A100["tidal"][n] for n in pp], "^:",
                    color="#999999", label="paper A100 TD K=2048")
        ax.axhline(1.0, color="gray", lw=0.8)
        context_axes(ax, ctxs, "speedup over full (same runtime)",
                     "%s: speedup over full attention, batch 1" % preset)
        save(fig, "speedup_%s.png" % preset,
             "%s: each policy's speedup over full attention in the same runtime, batch 1." % preset)
        # 3. attention breakdown, stacked: the headline's variants, grouped by context; beside
        # each group's bars their time relative to full (the paper's README Fig. 2 is relative).
        bvars = [x for x in headline_variants(hl) if any(v.row("bench", preset, n, 1, *x) for n in ctxs)]
        bars, x = [], []
        for gi, n in enumerate(ctxs):
            for vi, var in enumerate(bvars):
                r = v.row("bench", preset, n, 1, *var)
                if r and r.get("attn_ms") is not None:
                    bars.append((n, var, r))
                    x.append(gi * (len(bvars) + 1) + vi)
        if bars:
            fig, ax = plt.subplots(figsize=(max(8, 0.5 * len(x) + 3), 5))
            bottom = [0.0] * len(bars)
            for role, col in (("dense", "dense_ms"), ("select", "select_ms"),
                              ("sparse", "sparse_ms"), ("quest", "quest_ms")):
                vals = [b[2].get(col) or 0.0 for b in bars]
                ax.bar(x, vals, bottom=bottom, color=ROLE_COLORS[role],
                       label={"dense": "dense layers", "select": "selection layers",
                              "sparse": "sparse layers", "quest": "Quest layers"}[role])
                bottom = [a + b for a, b in zip(bottom, vals)]
            top = max(bottom) if bottom else 1.0
            for xi, (n, var, r), h in zip(x, bars, bottom):
                full = v.row("bench", preset, n, 1, "full", "-", 0)
                if full and full.get("attn_ms") and var[0] != "full":
                    ax.text(xi, h + 0.01 * top, "%.2f" % (r["attn_ms"] / full["attn_ms"]),
                            ha="center", va="bottom", fontsize=7)
            ax.set_xticks(x)
            ax.set_xticklabels(["%s\n%s" % (P.context_label(b[0]), vlabel(*b[1]).replace(" K=", "\nK="))
                                for b in bars], fontsize=7)
            ax.set_ylabel("attention ms per token (one eager step)")
            ax.set_title("%s: attention time by layer role, batch 1 (numbers: relative to full)" % preset,
                         fontsize=10)
            ax.legend(fontsize=8)
            ax.grid(True, axis="y", alpha=0.3)
            save(fig, "breakdown_%s.png" % preset,
                 "%s: attention-only time per token split by layer role (dense / selection / sparse / "
                 "Quest), each bar's total relative to full at the same context above it." % preset)
        # 4. % of floor
        fig, ax = plt.subplots(figsize=(8, 5))
        width = 0.8 / max(1, len(vars1) + 1)
        for i, var in enumerate(vars1):
            # No bar (nan) where a cell has no figure: a 0 would read as "0% of the floor".
            vals = [(v.row("bench", preset, n, 1, *var) or {}).get("%floor") or float("nan")
                    for n in ctxs]
            ax.bar([j + i * width for j in range(len(ctxs))], vals, width, color=color(var),
                   label="Tidal " + vlabel(*var))
        tv = [x for x in vars1 if any(v.row("torch", preset, n, 1, *x) for n in ctxs)]
        for k, var in enumerate(tv):
            vals = []
            for n in ctxs:
                t = v.row("torch", preset, n, 1, *var)
                f = v.floor(preset, n, 1, *var) or (t or {}).get("floor_ms")
                vals.append(100.0 * f / t["ms"] if t and f else float("nan"))
            ax.bar([j + (len(vars1) + k * 0.5) * width for j in range(len(ctxs))], vals, width * 0.5,
                   color=color(var), alpha=0.45, hatch="//", label="PyTorch " + vlabel(*var))
        ax.axhline(100.0, color="gray", lw=0.8)
        ax.set_xticks([j + 0.4 for j in range(len(ctxs))])
        ax.set_xticklabels([P.context_label(n) for n in ctxs])
        ax.set_ylabel("% of the bandwidth floor (floor / measured)")
        ax.set_title("%s: how close each step runs to its floor, batch 1" % preset)
        ax.legend(fontsize=7)
        ax.grid(True, axis="y", alpha=0.3)
        save(fig, "floor_%s.png" % preset,
             "%s: %% of floor (floor ms / measured ms; 100%% = at the floor), Tidal solid, PyTorch hatched." % preset)
        # 5. batch scaling
        bs = v.batches("bench", preset)
        if len(bs) > 1:
            fig, ax = plt.subplots(figsize=(8, 5))
            for n in v.contexts("bench", preset):
                for var in v.variants("bench", preset):
                    if var[0] == "quest":
                        continue
                    pts = [(b, v.row("bench", preset, n, b, *var)) for b in bs]
                    pts = [(b, r["tok/s"]) for b, r in pts if r]
                    if len(pts) > 1:
                        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-",
                                label="%s %s" % (P.context_label(n), vlabel(*var)))
            ax.set_xscale("log", base=2)
            ax.set_xticks(bs)
            ax.set_xticklabels([str(b) for b in bs])
            ax.set_xlabel("batch")
            ax.set_ylabel("tokens / s")
            ax.set_title("%s: throughput against batch" % preset)
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=6)
            save(fig, "batch_%s.png" % preset, "%s: decode tokens/s against batch size." % preset)

    # 6. the headline: the paper's figure on this device
    presets = hl.get("presets", ["llama2-7b"])
    contexts = [P.parse_count(c) for c in hl.get("contexts", ["10K", "32K", "100K"])]
    hvars = headline_variants(hl)
    if presets and any(v.row("bench", presets[0], n, 1, *var) for n in contexts for var in hvars):
        fig, axes = plt.subplots(1, len(presets), figsize=(6.5 * len(presets), 5), squeeze=False)
        for ax, preset in zip(axes[0], presets):
            series = [("Tidal", "bench", 1.0, None), ("PyTorch", "torch", 0.55, "//")]
            if preset == "llama2-7b":
                series.append(("paper A100", "paper", 0.3, ".."))
            width = 0.8 / (len(hvars) * len(series))
            for si, (name, kind, alpha, hatch) in enumerate(series):
                for vi, var in enumerate(hvars):
                    vals = []
                    for n in contexts:
                        if kind == "paper":
                            vals.append(PAPER_A100.get(var[0], {}).get(n) or 0)
                        else:
                            vals.append((v.row(kind, preset, n, 1, *var) or {}).get("ms") or 0)
                    xs = [j + (si * len(hvars) + vi) * width for j in range(len(contexts))]
                    ax.bar(xs, vals, width, color=color(var), alpha=alpha, hatch=hatch,
                           label="%s %s" % (name, vlabel(*var)))
            for j, n in enumerate(contexts):
                for vi, var in enumerate(hvars):
                    f = v.floor(preset, n, 1, *var)
                    if f:
                        x0 = j + vi * width
                        ax.plot([x0 - width / 2, x0 + (len(series) - 1) * len(hvars) * width + width / 2],
                                [f, f], color=color(var), lw=0.8, ls=":")
            ax.set_xticks([j + 0.4 - width / 2 for j in range(len(contexts))])
            ax.set_xticklabels([P.context_label(n) for n in contexts])
            ax.set_ylabel("ms per token, batch 1")
            ax.set_title("%s: %s" % (preset, " / ".join(vlabel(*x) for x in hvars)), fontsize=9)
            ax.grid(True, axis="y", alpha=0.3)
            ax.legend(fontsize=6, ncol=2)
        save(fig, "headline.png", "The paper's Figure 10 on this device: Tidal (solid), the PyTorch "
             "reference (hatched) and the paper's A100 numbers (faint, Llama-2-7B only); dotted lines: each Tidal row's floor.")

    # 7. serving
    srows = [e for e in v.cells.values() if e["params"]["kind"] == "serve" and e["status"] == "ok"]
    if srows:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
        labels = sorted({(e["params"]["clients"], vlabel(e["params"]["policy"], e["params"]["granularity"],
                                                          e["params"]["budget"] or 0)) for e in srows})
        for ax, (metric, name) in zip(axes, (("itl_p50", "inter-token latency p50 (ms)"),
                                             ("ttft_p50", "time to first token p50 (ms)"))):
            vals = []
            for c, lab in labels:
                r = next(e["row"] for e in srows if e["params"]["clients"] == c and
                         vlabel(e["params"]["policy"], e["params"]["granularity"],
                                e["params"]["budget"] or 0) == lab)
                vals.append(r.get(metric) or 0)
            ax.bar(range(len(labels)), vals, color=["#000000" if "full" in l else "#55a868"
                                                    for _, l in labels])
            ax.set_xticks(range(len(labels)))
            ax.set_xticklabels(["%d clients\n%s" % (c, l) for c, l in labels], fontsize=7)
            ax.set_ylabel(name)
            ax.grid(True, axis="y", alpha=0.3)
        fig.suptitle("tidal serve under load")
        save(fig, "serve.png", "Serving: inter-token latency and time to first token, full against tidal.")
    return made, None


# --- the report -----------------------------------------------------------------------------

def write_report(out, data, plan_total=None, plan_keys=None):
    """plan_keys: the keys of every cell of the suite's plan (pending = those without a final,
    current status); else plan_total cells, or those in the results."""
    v, v8, vall = View(data), View(data, "fp8"), View(data, None)
    suite = data.get("suite") or {}
    hl = (suite.get("report") or {}).get("headline", {})
    plots, why_not = make_plots(out, v, hl)
    cells = data.get("cells", {})
    n_final = sum(1 for e in cells.values()
                  if e["status"] in ("ok", "does_not_fit", "skipped") and not is_stale(e))
    runs = data.get("runs", [])
    parts = ["# Tidal benchmark report: %s" % suite.get("name", "suite"), ""]
    if suite.get("description"):
        parts += [suite["description"], ""]
    if plan_keys is not None:
        total = len(plan_keys)
        pending = sum(1 for k in plan_keys if k not in cells or is_stale(cells[k]) or
                      cells[k]["status"] not in ("ok", "does_not_fit", "skipped"))
    else:
        total = plan_total if plan_total is not None else len(cells)
        pending = max(0, total - n_final)
    state = "complete" if pending == 0 else "partial: %d of %d cells pending (resume with " \
        "`run_suite.py --resume`)" % (pending, total)
    parts += ["Status: %s. %d runs of the driver, %.0f s in all." %
              (state, len(runs), sum(r.get("seconds") or 0 for r in runs)), ""]
    parts += ["## Machine and software", "", environment_lines(data), ""]
    parts += ["## The paper's Figure 10 on this device", "",
              "Per-token decode latency, batch 1, random weights of the preset and a random KV cache "
              "(no prefill). *floor* = the bytes a step must move (every weight once + the KV rows "
              "its attention reads) / the device-to-device copy bandwidth measured in the same run "
              "(DESIGN.md §7); *x / floor* is latency over floor (1.00x = at the floor). The PyTorch "
              "reference (`torch_reference.py`: CUDA graphs, SDPA, torch.topk + gather) is shown "
              "against Tidal's floor for the same configuration. The paper's numbers are Llama-2-7B "
              "fp16 on an A100 (reference/TIDALDECODE.md §4.1; contexts 10240 / 32768 / 102400, "
              "decoder layers only, a synchronisation around every layer, no CUDA graphs).", "",
              headline_section(data, v, hl), ""]
    if v.stale:
        parts += [STALE_NOTE, ""]
    parts += ["### The paper's A100 table (reference/TIDALDECODE.md §4.1)", "",
              "Llama-2-7B-chat, fp16, batch 1, A100 SXM4 80 GB, ms per token read off the paper's "
              "Figure 10 (±~0.3 ms).", "", PAPER_TABLE, ""]
    at = attention_section(v, hl)
    if at:
        parts += ["## Attention-only time relative to full (the paper's README Fig. 2)", "",
                  "The attention launches of one eager step (all layers), over full attention's at "
                  "the same context, batch 1; the paper's values are read off its README Fig. 2 "
                  "(32- and 64-layer models; its budget is not stated). The stacked bars of "
                  "`breakdown_*.png` split each into dense / selection / sparse / Quest layers.", "",
                  at, ""]
    parts += ["## Longest context reached on one GPU", "", longest_section(v, v8), ""]
    for cfg in (suite.get("report") or {}).get("kv_tables", []):
        parts += ["## %s" % cfg.get("title", "bf16 against FP8 KV"), ""]
        if cfg.get("text"):
            parts += [cfg["text"], ""]
        parts += ["Each dtype's *floor* is tidal bench's: the weights once plus the KV bytes the "
                  "step reads, an FP8 row being a byte per element and a 4-byte scale (the Quest "
                  "page bounds stay in the activations' dtype); *% floor* = floor / ms. *pending*: "
                  "not measured yet; *does not fit*: the engine's memory plan exceeds the GPU.", "",
                  kv_table(v, v8, cfg), ""]
    for preset in v.presets("bench"):
        for b in v.batches("bench", preset):
            parts += ["## %s, batch %d: every configuration" % (preset, b), "",
                      "attn ms and its split (dense / select / sparse / quest layers) come from one "
                      "extra eager step with events around each layer's attention; *speedup* is "
                      "full's ms over the row's at the same context.", "",
                      preset_section(v, preset, b), ""]
        bt = batch_section(v, preset)
        if bt:
            parts += ["## %s: batch scaling" % preset, "", bt, ""]
    tt = torch_section(v)
    if tt:
        parts += ["## The PyTorch reference", "",
                  "The same decode step as a PyTorch user would write it (benchmarks/suite/"
                  "torch_reference.py), on the same device in the same suite run. Attention is "
                  "SDPA with q [B, H, 1, D] against the cache's [B, KV, n, D] (enable_gqa) or the "
                  "query group as the query sequence, sparse rows gathered by index_select; per "
                  "step and call site the fastest backend that computes the right result is "
                  "captured (last column).", "", tt, ""]
        if v.stale:
            parts += [STALE_NOTE, ""]
    st = serve_section(vall, suite)
    if st:
        parts += ["## Serving under load", "",
                  "`tidal serve --preset` (random weights) on a free port, loaded by `serve_bench`: "
                  "N concurrent clients, one request each of the given prompt length, measured by the "
                  "clients (TTFT: request to first token; ITL: between tokens; e2e: whole request).",
                  "", st, ""]
    parts += ["## Plots", ""]
    if plots:
        for path, caption in plots:
            parts += ["![%s](%s)" % (caption, path), "", "*%s*" % caption, ""]
    else:
        parts += [why_not or "no data to plot", ""]
    pt = problems_section(vall)
    if pt:
        parts += ["## Cells that did not run", "", pt, ""]
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write("\n".join(parts))
    return os.path.join(out, "report.md")
