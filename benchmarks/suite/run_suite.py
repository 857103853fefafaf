#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""run_suite.py: Tidal's benchmark suite (issue 13), from a checked-in suite file.

It runs the suite's stages in order, each a sweep of cells:
  bench  `tidal bench` (random weights of a preset, a random KV cache): per-token latency, the
         attention breakdown by layer role and the bandwidth floor, per (preset, context, batch,
         policy, budget, granularity);
  torch  torch_reference.py: the same decode step in PyTorch (CUDA graphs, SDPA, torch.topk +
         gather), on the same device, reported against the same floor;
  serve  `tidal serve --preset` on a free port, loaded by serve_bench with N concurrent clients
         (TTFT, inter-token and end-to-end latency, throughput), per policy.
Cells that do not fit in memory are recorded as "does not fit" (the bench's own error, or implied
by a smaller context or batch that did not fit) and never retried. After every invocation the
results JSON is rewritten, so a run stopped by --budget-seconds, --max-invocations or a kill
resumes (--resume) where it stopped. Progress (cells done / total, elapsed, ETA) goes to stderr.
At the end (and with --report-only) it writes OUT/report.md and OUT/plots/*.png (the PNGs need
matplotlib; without it the report says so).

Standard library only, plus matplotlib for the plots (and torch in the subprocess that runs the
PyTorch reference, skipped with a note when torch is absent)."""
import argparse
import datetime
import json
import math
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import presets as P  # noqa: E402
import report as R  # noqa: E402

RESULTS = "results.json"
FINAL = ("ok", "does_not_fit", "skipped")  # statuses a resume does not run again
# An error line of a run that does not fit in memory (tidal: plan_fits / the page-id limit /
# an allocation that failed; torch: its OOM).
NOT_FIT = re.compile(r"does not fit|out of memory|exceeds the i32 page ids|cudaErrorMemoryAllocation",
                     re.IGNORECASE)


def now_iso():
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def hms(seconds):
    seconds = max(0, int(seconds))
    return "%d:%02d:%02d" % (seconds // 3600, seconds // 60 % 60, seconds % 60)


def log(msg):
    print("[suite] " + msg, file=sys.stderr, flush=True)


# --- the suite ------------------------------------------------------------------------------

def as_list(v):
    if v is None:
        return []
    return list(v) if isinstance(v, (list, tuple)) else [v]


def stage_variants(st):
    """(policy, granularity, budget) of a stage: policies x budgets x granularities, as
    `tidal bench` expands them (full once; quest per budget; tidal per budget and granularity)."""
    budgets = [P.parse_count(b) for b in as_list(st.get("budgets", [2048]))]
    grans = as_list(st.get("granularities", ["per-query-head"]))
    try:
        return P.policy_variants(as_list(st.get("policies", ["full", "quest", "tidal"])), budgets,
                                 grans)
    except ValueError as e:
        raise SystemExit("suite: unknown policy '%s' in stage %s" % (e, st["name"]))


def cell_key(kind, preset, context, batch, policy, gran, budget, extra=""):
    return "%s|%s|%d|%d|%s|%s|%d%s" % (kind, preset, context, batch, policy, gran, budget, extra)


class Cell:
    """One measurement. kv: "" (the KV cache in the activations' dtype) or "fp8"; an FP8 cell's
    key ends in |kv=fp8 (the keys of the other cells are those of results made before the KV
    dtype was a dimension)."""

    def __init__(self, kind, stage, preset, context, batch, policy, gran, budget, extra=None,
                 kv=""):
        self.kind, self.stage, self.preset = kind, stage, preset
        self.context, self.batch = context, batch
        self.policy, self.gran, self.budget = policy, gran, budget
        self.extra = extra or {}
        self.kv = kv
        tag = ""
        if kind == "serve":
            tag = "|c%d|new%d" % (self.extra["clients"], self.extra["max_new_tokens"])
        if kv:
            tag += "|kv=" + kv
        self.key = cell_key(kind, preset, context, batch, policy, gran, budget, tag)

    def params(self):
        d = dict(kind=self.kind, stage=self.stage, preset=self.preset, context=self.context,
                 batch=self.batch, policy=self.policy, granularity=self.gran,
                 budget=self.budget or None)
        if self.kv:
            d["kv_dtype"] = self.kv
        d.update(self.extra)
        return d

    def label(self):
        v = self.policy if self.policy == "full" else "%s K=%d%s" % (
            self.policy, self.budget, "" if self.gran == "-" else " " + self.gran)
        return "%s %s b%d%s %s" % (self.preset, P.context_label(self.context), self.batch,
                                   " fp8-kv" if self.kv else "", v)


class Invocation:
    """One process run (one engine): the cells it measures and how to run it."""

    def __init__(self, kind, stage, cells, group):
        self.kind, self.stage, self.cells, self.group = kind, stage, cells, group
        self.id = "%s|%s|%s" % (kind, stage["name"], group)

    def label(self):
        c = self.cells[0]
        variants = []
        for x in self.cells:
            v = x.label().split(" ", 4 if x.kv else 3)[-1]
            if v not in variants:
                variants.append(v)
        if self.kind == "serve":
            clients = sorted({x.extra["clients"] for x in self.cells})
            return "serve %s %s-token prompts%s: %s x %s clients" % (
                c.preset, P.context_label(c.context), ", fp8 KV" if c.kv else "",
                " and ".join(variants), ",".join(str(n) for n in clients))
        ctxs = sorted({x.context for x in self.cells})
        return "%s %s %s b%d%s: %s" % (self.kind, c.preset, ",".join(P.context_label(x) for x in ctxs),
                                       c.batch, " fp8 KV" if c.kv else "", ", ".join(sorted(variants)))


def load_suite(path):
    with open(path) as f:
        suite = json.load(f)
    names = set()
    for st in suite.get("stages", []):
        if st.get("kind") not in ("bench", "torch", "serve"):
            raise SystemExit("suite %s: stage %r has kind %r (bench, torch or serve)" %
                             (path, st.get("name"), st.get("kind")))
        if not st.get("name") or st["name"] in names:
            raise SystemExit("suite %s: every stage needs a unique name" % path)
        names.add(st["name"])
        if st["kind"] != "bench" and any(str(c).lower() == "max" for c in as_list(st.get("contexts"))):
            raise SystemExit("suite %s: stage %s: context \"max\" is for bench stages" % (path, st["name"]))
        for p in as_list(st.get("presets", st.get("preset"))):
            if p not in P.PRESETS:
                raise SystemExit("suite %s: stage %s: unknown preset %s" % (path, st["name"], p))
        try:
            kvs = stage_kvs(st)
        except ValueError as e:
            raise SystemExit("suite %s: stage %s: %s" % (path, st["name"], e))
        if st["kind"] == "torch" and kvs != [""]:
            raise SystemExit("suite %s: stage %s: the PyTorch reference has no FP8 KV cache" %
                             (path, st["name"]))
    return suite


def stage_kvs(st):
    """The stage's KV cache dtypes ("kv_dtype": "bf16", "fp8" or a list; default bf16), as
    P.kv_dtype_key gives them, in the stage's order."""
    out = []
    for v in as_list(st.get("kv_dtype", ["bf16"])):
        k = P.kv_dtype_key(v)
        if k not in out:
            out.append(k)
    return out


def expand(suite, kinds, stage_names, resolve_max=None):
    """Every stage's cells (a cell named by two stages belongs to the first) and invocations.
    A bench context "max" is the longest that fits (resolve_max(stage, preset, batch))."""
    seen = set()
    plan = []  # (stage, [Invocation])
    for st in suite["stages"]:
        if kinds and st["kind"] not in kinds:
            continue
        if stage_names and st["name"] not in stage_names:
            continue
        invs = []
        kind = st["kind"]
        variants = stage_variants(st)
        presets = as_list(st.get("presets", st.get("preset")))
        kvs = stage_kvs(st)
        if kind == "serve":
            prompt = P.parse_count(st.get("prompt_tokens", 32000))
            new = int(st.get("max_new_tokens", 64))
            for preset in presets:
                for kv in kvs:  # one server per preset and KV dtype
                    cells = []
                    for pol, gran, budget in variants:
                        for c in as_list(st.get("clients", [8, 32])):
                            cell = Cell("serve", st["name"], preset, prompt, int(c), pol, gran,
                                        budget, dict(clients=int(c), max_new_tokens=new,
                                                     requests=int(st.get("requests", 1))), kv=kv)
                            if cell.key not in seen:
                                seen.add(cell.key)
                                cells.append(cell)
                    if cells:
                        invs.append(Invocation("serve", st, cells, preset + ("|" + kv if kv else "")))
            plan.append((st, invs))
            continue
        batches = [int(b) for b in as_list(st.get("batches", [1]))]
        for preset in presets:
            for b in batches:
                contexts = []  # (context, the KV dtypes measured there)
                for c in as_list(st.get("contexts")):
                    if str(c).lower() != "max":
                        contexts.append((P.parse_count(c), kvs))
                    elif resolve_max is not None:
                        for kv in kvs:  # the longest context depends on the KV dtype
                            n = resolve_max(st, preset, b, kv)
                            if n:
                                contexts.append((n, [kv]))
                if kind == "torch":  # one process per (preset, batch): all its contexts
                    cells = []
                    for n, _ in contexts:
                        for pol, gran, budget in variants:
                            cell = Cell(kind, st["name"], preset, n, b, pol, gran, budget)
                            if cell.key not in seen:
                                seen.add(cell.key)
                                cells.append(cell)
                    if cells:
                        invs.append(Invocation(kind, st, cells, "%s|b%d" % (preset, b)))
                    continue
                # bench: one process per (preset, context, batch, KV dtype)
                for ci, (n, ctx_kvs) in enumerate(contexts):
                    for kv in ctx_kvs:
                        cells = []
                        for pol, gran, budget in variants:
                            cell = Cell(kind, st["name"], preset, n, b, pol, gran, budget, kv=kv)
                            if cell.key not in seen:
                                seen.add(cell.key)
                                cells.append(cell)
                        if cells:
                            inv = Invocation(kind, st, cells, "%s|%d|b%d%s" %
                                             (preset, n, b, "|" + kv if kv else ""))
                            inv.order = (b, ci, kvs.index(kv))
                            invs.append(inv)
        # Within a bench stage: by batch, then by the stage's order of contexts, presets alternating.
        if kind == "bench":
            invs.sort(key=lambda inv: inv.order)
        plan.append((st, invs))
    return plan


# --- results --------------------------------------------------------------------------------

class Results:
    def __init__(self, path):
        self.path = path
        self.data = {"format": 1, "cells": {}, "invocations": [], "runs": []}
        if os.path.exists(path):
            with open(path) as f:
                self.data = json.load(f)

    @property
    def cells(self):
        return self.data["cells"]

    def status(self, key):
        """A cell's status; None when it has none, or is a stale PyTorch row (R.is_stale)."""
        c = self.cells.get(key)
        return c["status"] if c and not R.is_stale(c) else None

    def save(self):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.data, f, indent=1, allow_nan=False, default=str)
        os.replace(tmp, self.path)

    def record(self, cell, status, row=None, reason=None, inv_id=None, version=None):
        entry = {"params": cell.params(), "status": status, "when": now_iso(), "invocation": inv_id}
        if row is not None:
            entry["row"] = row
        if reason:
            entry["reason"] = reason
        if version is not None:  # torch cells: the reference's version
            entry["version"] = version
        self.cells[cell.key] = entry


def clean(v):
    """JSON has no NaN: NaN / inf become None (the tables print '-')."""
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    if isinstance(v, dict):
        return {k: clean(x) for k, x in v.items()}
    if isinstance(v, list):
        return [clean(x) for x in v]
    return v


# --- time estimates -------------------------------------------------------------------------

class Estimator:
    """Seconds an invocation should take: a bandwidth model of each step, corrected by what the
    finished cells of this results file measured, plus a per-process start-up learned the same
    way."""

    def __init__(self, results, device, bench_cfg, torch_cfg, memory_bytes=None):
        self.r, self.device = results, device
        self.bench_cfg, self.torch_cfg = bench_cfg, torch_cfg
        self.memory = memory_bytes  # the device's (GPU memory, or the host's available memory)

    def fits(self, c):
        """False when the cell's engine plainly cannot fit (its run then fails at once)."""
        if not self.memory or c.kind == "serve":
            return True
        s = P.PRESETS[c.preset]
        elem = 2 if self.device == "cuda" else 4
        tokens = c.batch * (c.context + self.steps_per_cell(c.kind) + 16)
        need = P.weight_bytes(s, elem) + tokens * P.kv_bytes_per_token(s, elem, c.kv) * 17 / 16
        return need < self.memory

    def _model_ms(self, c):
        gbps = 3.0e12 if self.device == "cuda" else 5.0e9
        return 1e3 * P.step_bytes(c.preset, c.policy, c.context, c.batch, c.budget, c.gran,
                                  2 if self.device == "cuda" else 4, c.kv) / gbps

    def _ratio(self, kind):
        """Median measured / modelled ms of finished cells of this kind (1.0 without any)."""
        rs = []
        for e in self.r.cells.values():
            p, row = e["params"], e.get("row") or {}
            if p["kind"] == kind and e["status"] == "ok" and row.get("ms") and not R.is_stale(e):
                c = Cell(kind, p["stage"], p["preset"], p["context"], p["batch"], p["policy"],
                         p["granularity"], p["budget"] or 0, kv=p.get("kv_dtype") or "")
                rs.append(row["ms"] / self._model_ms(c))
        return statistics.median(rs) if rs else 1.0

    def _startup(self, kind):
        xs = [i["overhead_s"] for i in self.r.data["invocations"]
              if i.get("kind") == kind and i.get("overhead_s") is not None and i.get("rc") == 0]
        if xs:
            return statistics.median(xs)
        return {"bench": 12.0, "torch": 25.0, "serve": 30.0}[kind] if self.device == "cuda" \
            else {"bench": 1.0, "torch": 3.0, "serve": 2.0}[kind]

    def steps_per_cell(self, kind):
        cfg = self.bench_cfg if kind == "bench" else self.torch_cfg
        return int(cfg.get("steps", 100)) + int(cfg.get("warmup", 10)) + 3

    def cell_seconds(self, c, ratio=None):
        if c.kind == "serve":
            return self._serve_seconds(c)
        if not self.fits(c):
            return 0.0
        ratio = self._ratio(c.kind) if ratio is None else ratio
        fill = 0.2 + c.context * c.batch * 2e-7  # random KV fill, graph capture
        return self._model_ms(c) * ratio * self.steps_per_cell(c.kind) / 1e3 + fill

    def _serve_seconds(self, c):
        # Prefill dominates: measured prompt tokens/s of earlier serve rows, else a guess.
        rates = []
        for e in self.r.cells.values():
            row = e.get("row") or {}
            if e["params"]["kind"] == "serve" and e["status"] == "ok" and row.get("wall_s"):
                toks = row.get("requests", 0) * (row.get("prompt_avg") or 0)
                rates.append(toks / row["wall_s"])
        rate = statistics.median(rates) if rates else (12000.0 if self.device == "cuda" else 2000.0)
        toks = c.extra["clients"] * c.extra["requests"] * c.context
        decode = c.extra["max_new_tokens"] * c.extra["requests"] * (0.03 if self.device == "cuda" else 0.05)
        return toks / rate + decode

    def invocation_seconds(self, inv):
        ratio = self._ratio(inv.kind) if inv.kind != "serve" else None
        return self._startup(inv.kind) + sum(self.cell_seconds(c, ratio) for c in inv.cells)


# --- running processes ----------------------------------------------------------------------

def run_logged(cmd, log_path, timeout, env=None, on_line=None):
    """Runs cmd with stdout+stderr to log_path (and each stdout line to on_line). Returns (rc,
    seconds, timed_out). On timeout the process group is killed."""
    t0 = time.time()
    with open(log_path, "a") as logf:
        logf.write("$ %s\n" % " ".join(cmd))
        logf.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=logf, env=env,
                                start_new_session=True, text=True, bufsize=1)
        timed_out = False

        def killer():
            nonlocal timed_out
            timed_out = True
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        timer = threading.Timer(max(1.0, timeout), killer) if timeout else None
        if timer:
            timer.start()
        try:
            for line in proc.stdout:
                logf.write(line)
                if on_line:
                    on_line(line)
            proc.wait()
        finally:
            if timer:
                timer.cancel()
    return proc.returncode, time.time() - t0, timed_out


def tail(path, n=4000):
    try:
        with open(path, errors="replace") as f:
            return f.read()[-n:]
    except OSError:
        return ""


def error_line(text):
    """The last error line of a log ('tidal: error: ...' or the last non-empty line)."""
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    for l in reversed(lines):
        if "error" in l.lower() or NOT_FIT.search(l):
            return l[:400]
    return lines[-1][:400] if lines else "(no output)"


class Runner:
    def __init__(self, args, suite, results):
        self.a, self.suite, self.r = args, suite, results
        self.out = args.out
        self.logs = os.path.join(self.out, "logs")
        self.raw = os.path.join(self.out, "raw")
        os.makedirs(self.logs, exist_ok=True)
        os.makedirs(self.raw, exist_ok=True)
        self.device = args.device or suite.get("device", "cuda")
        self.bench_cfg = dict(suite.get("bench", {}))
        self.torch_cfg = dict(suite.get("torch", {}))
        self.est = Estimator(results, self.device, self.bench_cfg, self.torch_cfg,
                             args.memory_gib * 2**30 if args.memory_gib else device_memory(self.device))

    def info_plan(self, preset, batch, context, max_budget, kv=""):
        """(total, available, weights) bytes of `tidal info` for a bench process's engine at
        `context` (the bench sizes its cache as run_bench_on does), or None."""
        per_seq = context + int(self.bench_cfg.get("steps", 100)) + int(self.bench_cfg.get("warmup", 10)) + 2
        cmd = [self.a.tidal, "info", "--preset", preset, "--device", self.device,
               "--max-batch", str(batch), "--max-context", str(per_seq),
               "--kv-capacity", str(batch * per_seq + batch * 16), "--prefill-chunk", "4096"]
        if kv:
            cmd += ["--kv-dtype", kv]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.SubprocessError):
            return None
        text = p.stdout
        m_av = re.search(r"(\d+) bytes \([^)]*\) available", text)
        m_tot = re.search(r"total\s+(\d+) bytes", text)
        m_w = re.search(r"weights\s+(\d+) bytes", text)
        if not (m_av and m_tot and m_w):
            return None
        return int(m_tot.group(1)), int(m_av.group(1)), int(m_w.group(1))

    def resolve_max(self, stage, preset, batch, kv=""):
        """The longest context (a multiple of 1000) whose bench engine fits, by the memory plan of
        `tidal info`; cached in the results so a resumed run measures the same cells."""
        cache = self.r.data.setdefault("max_context", {})
        key = max_key(preset, batch, kv)
        if key in cache:
            return cache[key]
        budget = max([P.parse_count(b) for b in as_list(stage.get("budgets", [2048]))] + [2])
        probe = self.info_plan(preset, batch, 100000, budget, kv)
        if probe is None:
            log("cannot size the longest context of %s (tidal info failed)" % preset)
            return None
        total, avail, weights = probe
        per_token = max(1.0, (total - weights) / 100000.0)
        n = int((0.97 * avail - weights) / per_token)
        cap = stage.get("max_context_cap")
        if cap:
            n = min(n, P.parse_count(cap))
        n = n // 1000 * 1000
        for _ in range(12):
            probe = self.info_plan(preset, batch, n, budget, kv)
            if probe is None or probe[0] <= 0.97 * probe[1] or n <= 1000:  # a 3% margin
                break
            n = int(n * 0.98) // 1000 * 1000
        cache[key] = n if n >= 1000 else None
        log("longest context of %s at batch %d%s: %s (tidal info's plan)" %
            (preset, batch, " with an FP8 KV cache" if kv else "", P.context_label(n)))
        return cache[key]

    # Implied "does not fit" (bench): a smaller-or-equal context and batch of the same preset and
    # KV dtype already did not fit (one process holds every variant's KV, so the policy does not
    # matter).
    def implied_not_fit(self, c):
        if c.kind != "bench":
            return None
        for e in self.r.cells.values():
            p = e["params"]
            if e["status"] == "does_not_fit" and p["kind"] == "bench" and \
                    p["preset"] == c.preset and (p.get("kv_dtype") or "") == c.kv and \
                    p["context"] <= c.context and p["batch"] <= c.batch:
                return "%s at batch %d%s did not fit" % (P.context_label(p["context"]), p["batch"],
                                                         " (FP8 KV)" if c.kv else "")
        return None

    def bench_cmd(self, inv, cells, json_path):
        c0 = cells[0]
        pols = [p for p in ("full", "quest", "tidal") if any(c.policy == p for c in cells)]
        budgets = sorted({c.budget for c in cells if c.policy != "full"}) or [2048]
        grans = [g for g in ("per-query-head", "per-kv-head", "shared")
                 if any(c.gran == g for c in cells)] or ["per-query-head"]
        cmd = [self.a.tidal, "bench", "--preset", c0.preset, "--context", str(c0.context),
               "--batch", str(c0.batch), "--policy", ",".join(pols),
               "--budget", ",".join(str(b) for b in budgets), "--granularity", ",".join(grans),
               "--steps", str(self.bench_cfg.get("steps", 100)),
               "--warmup", str(self.bench_cfg.get("warmup", 10)),
               "--device", self.device, "--json", json_path]
        if c0.kv:
            cmd += ["--kv-dtype", c0.kv]
        if not inv.stage.get("breakdown", self.bench_cfg.get("breakdown", True)):
            cmd.append("--no-breakdown")
        for flag in as_list(inv.stage.get("bench_args", self.bench_cfg.get("args"))):
            cmd.append(str(flag))
        return cmd

    def run_bench(self, inv, cells, timeout):
        json_path = os.path.join(self.raw, safe(inv.id) + ".json")
        if os.path.exists(json_path):
            os.remove(json_path)
        log_path = os.path.join(self.logs, safe(inv.id) + ".log")
        cmd = self.bench_cmd(inv, cells, json_path)
        rc, wall, timed_out = run_logged(cmd, log_path, timeout)
        rec = {"id": inv.id, "kind": "bench", "cmd": cmd, "rc": rc, "wall_s": wall,
               "timed_out": timed_out, "log": os.path.relpath(log_path, self.out), "when": now_iso()}
        if timed_out:
            return rec, "interrupted"
        if rc != 0 or not os.path.exists(json_path):
            err = error_line(tail(log_path))
            status = "does_not_fit" if NOT_FIT.search(err) else "error"
            for c in cells:
                self.r.record(c, status, reason=err, inv_id=inv.id)
            return rec, status
        with open(json_path) as f:
            table = json.load(f)
        rows = table.get("rows", [])
        got = 0
        for c in cells:
            row = find_row(rows, c)
            if row is None:
                self.r.record(c, "error", reason="no row for this cell in the bench's JSON",
                              inv_id=inv.id)
            else:
                row = clean(row)
                row["header"] = table.get("header", {})
                self.r.record(c, "ok" if not row.get("#wrong") else "error", row=row,
                              reason="#wrong %s" % row.get("#wrong") if row.get("#wrong") else None,
                              inv_id=inv.id)
                got += 1
        steps = self.est.steps_per_cell("bench")
        busy = sum((r.get("ms") or 0) * steps / 1e3 for r in rows)
        rec["overhead_s"] = max(0.0, wall - busy)
        return rec, "ok"

    def run_torch(self, inv, cells, timeout):
        if self.a.no_torch:
            for c in cells:
                self.r.record(c, "skipped", reason=self.a.no_torch, inv_id=inv.id)
            return {"id": inv.id, "kind": "torch", "rc": None, "wall_s": 0}, "skipped"
        probe = subprocess.run([self.a.python, "-c", "import torch; print(torch.__version__)"],
                               capture_output=True, text=True)
        if probe.returncode != 0:
            for c in cells:
                self.r.record(c, "skipped", reason="torch is not installed for %s" % self.a.python,
                              inv_id=inv.id)
            return {"id": inv.id, "kind": "torch", "rc": None, "wall_s": 0}, "skipped"
        c0 = cells[0]
        pols = [p for p in ("full", "quest", "tidal") if any(c.policy == p for c in cells)]
        budgets = sorted({c.budget for c in cells if c.policy != "full"}) or [2048]
        grans = [g for g in ("per-query-head", "per-kv-head") if any(c.gran == g for c in cells)] \
            or ["per-query-head"]
        ctxs = sorted({c.context for c in cells})
        cmd = [self.a.python, os.path.join(HERE, "torch_reference.py"), "--preset", c0.preset,
               "--context", ",".join(str(n) for n in ctxs), "--batch", str(c0.batch),
               "--policy", ",".join(pols), "--budget", ",".join(str(b) for b in budgets),
               "--granularity", ",".join(grans),
               "--steps", str(self.torch_cfg.get("steps", 100)),
               "--warmup", str(self.torch_cfg.get("warmup", 10)), "--device", self.device]
        for flag in as_list(inv.stage.get("torch_args", self.torch_cfg.get("args"))):
            cmd.append(str(flag))
        log_path = os.path.join(self.logs, safe(inv.id) + ".log")
        header = {}
        by_key = {c.key: c for c in cells}
        busy = [0.0]

        def on_line(line):  # rows arrive one by one: a killed run keeps its finished cells
            try:
                obj = json.loads(line)
            except ValueError:
                return
            if obj.get("kind") == "header":
                header.update(obj)
                return
            key = cell_key("torch", obj["preset"], obj["context"], obj["batch"], obj["policy"],
                           obj["granularity"], obj.get("budget") or 0)
            c = by_key.get(key)
            if c is None:
                return
            obj = clean(obj)
            obj["header"] = dict(header)
            busy[0] += obj.get("wall_s") or 0
            self.r.record(c, obj["status"], row=obj if obj["status"] == "ok" else None,
                          reason=obj.get("reason"), inv_id=inv.id, version=header.get("version", 1))
            self.r.save()

        rc, wall, timed_out = run_logged(cmd, log_path, timeout, on_line=on_line)
        rec = {"id": inv.id, "kind": "torch", "cmd": cmd, "rc": rc, "wall_s": wall,
               "timed_out": timed_out, "log": os.path.relpath(log_path, self.out),
               "when": now_iso(), "overhead_s": max(0.0, wall - busy[0]) if rc == 0 else None}
        if timed_out:
            return rec, "interrupted"
        if rc != 0:
            err = error_line(tail(log_path))
            for c in cells:
                if self.r.status(c.key) not in FINAL:
                    self.r.record(c, "does_not_fit" if NOT_FIT.search(err) else "error",
                                  reason=err, inv_id=inv.id, version=P.TORCH_REFERENCE_VERSION)
            return rec, "error"
        for c in cells:
            if self.r.status(c.key) not in FINAL:
                self.r.record(c, "error", reason="torch_reference printed no row", inv_id=inv.id)
        return rec, "ok"

    def run_serve(self, inv, cells, timeout):
        """One `tidal serve --preset` on a free port (127.0.0.1:0; the address comes from its
        "serving on" line) for the invocation's cells, loaded by one serve_bench call per cell
        (the smaller client counts first, so a run cut short keeps whole rows). A server that does
        not start, or dies, fails its cells with its last error line; a serve_bench call that runs
        past the stage's timeout_s fails its cell; one cut by the time budget leaves the cells
        pending. The server is stopped (SIGTERM, then SIGKILL of its process group) whatever
        happens."""
        st = inv.stage
        t0 = time.time()
        if not self.a.serve_bench or not os.path.exists(self.a.serve_bench):
            for c in cells:
                self.r.record(c, "skipped", reason="no serve_bench binary (a build without gRPC?)",
                              inv_id=inv.id)
            return {"id": inv.id, "kind": "serve", "rc": None, "wall_s": 0}, "skipped"
        c0 = cells[0]
        srv = st.get("server", {})
        max_new = c0.extra["max_new_tokens"]
        max_ctx = int(srv.get("max_context", c0.context + max_new + 64))
        # Ends: the time budget's (cells stay pending) and the stage's own limit (cells fail).
        budget_end = t0 + timeout if timeout else None
        cap = float(st.get("timeout_s") or max(600.0, 4.0 * self.est.invocation_seconds(inv)))
        cap_end = t0 + cap
        end = cap_end if budget_end is None else min(budget_end, cap_end)
        by_budget = budget_end is not None and budget_end <= cap_end
        log_path = os.path.join(self.logs, safe(inv.id) + ".log")
        bench_log = os.path.join(self.logs, safe(inv.id) + ".serve_bench.log")
        cmd = [self.a.tidal, "serve", "--preset", c0.preset, "--listen", "127.0.0.1:0",
               "--device", self.device, "--quiet", "--drain-seconds", "0",
               "--max-batch", str(int(srv.get("max_batch", max(c.extra["clients"] for c in cells)))),
               "--max-context", str(max_ctx),
               "--prefill-chunk", str(int(srv.get("prefill_chunk", 4096)))]
        if c0.kv:
            cmd += ["--kv-dtype", c0.kv]
        for k in ("kv_capacity", "page_size", "threads"):  # kv_capacity 0 / absent: what fits
            if k in srv:
                cmd += ["--" + k.replace("_", "-"), str(srv[k])]
        rec = {"id": inv.id, "kind": "serve", "cmd": cmd, "when": now_iso(),
               "log": os.path.relpath(log_path, self.out),
               "serve_bench_log": os.path.relpath(bench_log, self.out), "limit_s": cap}
        logf = open(log_path, "a")
        logf.write("$ %s\n" % " ".join(cmd))
        logf.flush()
        server = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.PIPE, text=True,
                                  start_new_session=True, bufsize=1)
        address, lines = None, []
        start_limit = float(srv.get("start_timeout_s", 300))
        ready = threading.Event()

        def reader():  # the server's stderr: into the log, and its address once it serves
            nonlocal address
            for line in server.stderr:
                logf.write(line)
                logf.flush()
                lines.append(line)
                m = re.search(r"serving on (\S+)", line)
                if m and address is None:
                    address = m.group(1)
                    ready.set()
            ready.set()

        def server_error():
            return "tidal serve exited with %s: %s" % (server.returncode, error_line("".join(lines)))

        def fail(todo, status, reason):
            for c in todo:
                self.r.record(c, status, reason=reason, inv_id=inv.id)
            self.r.save()

        th = threading.Thread(target=reader, daemon=True)
        th.start()
        ready.wait(max(1.0, min(start_limit, end - time.time())))
        outcome = "ok"
        try:
            if address is None:
                if ready.is_set():  # its stderr closed without an address: the server is exiting
                    try:
                        server.wait(timeout=15)
                    except subprocess.TimeoutExpired:
                        pass
                if server.poll() is None:  # still starting
                    rec.update(rc=None, wall_s=time.time() - t0, timed_out=True)
                    if by_budget and time.time() >= end - 1:
                        return rec, "interrupted"
                    fail(cells, "error", "tidal serve printed no 'serving on' line in %.0f s" %
                         (time.time() - t0))
                    return rec, "error"
                th.join(timeout=5)
                err = server_error()
                fail(cells, "does_not_fit" if NOT_FIT.search(err) else "error", err)
                rec.update(rc=server.returncode, wall_s=time.time() - t0)
                return rec, "error"
            rec["server_start_s"] = time.time() - t0
            rec["address"] = address
            order = {"full": 0, "tidal": 1, "quest": 2}
            todo = sorted(cells, key=lambda c: (c.extra["clients"], order.get(c.policy, 3), c.budget))
            for i, c in enumerate(todo):
                if server.poll() is not None:
                    th.join(timeout=5)
                    fail(todo[i:], "error", server_error())
                    outcome = "error"
                    break
                left = end - time.time()
                if left < 2:
                    if by_budget:
                        outcome = "interrupted"
                    else:
                        fail(todo[i:], "error", "the serve stage's limit of %.0f s was reached" % cap)
                        outcome = "error"
                    break
                tag = "%s%s|c%d" % (c.policy, c.budget or "", c.extra["clients"])
                json_path = os.path.join(self.raw, safe(inv.id + "|" + tag) + ".json")
                if os.path.exists(json_path):
                    os.remove(json_path)
                bcmd = [self.a.serve_bench, "--server", address,
                        "--clients", str(c.extra["clients"]), "--requests", str(c.extra["requests"]),
                        "--prompt-mix", "%d:1" % c.context, "--max-new-tokens", str(max_new),
                        "--attention", c.policy, "--json", json_path]
                if c.policy != "full":
                    bcmd += ["--budget", str(c.budget)]
                for flag in as_list(st.get("serve_bench_args")):
                    bcmd.append(str(flag))
                log("serve: %s" % c.label())
                rc, wall, timed_out = run_logged(bcmd, bench_log, left)
                if timed_out:
                    if by_budget:
                        outcome = "interrupted"
                    else:
                        fail(todo[i:], "error", "serve_bench ran past the serve stage's limit of "
                             "%.0f s" % cap)
                        outcome = "error"
                    break
                table, row = {}, None
                if os.path.exists(json_path):
                    with open(json_path) as f:
                        table = json.load(f)
                    row = next((r for r in table.get("rows", [])
                                if r.get("clients") == c.extra["clients"]), None)
                if row is None:
                    why = "serve_bench rc %s: %s" % (rc, error_line(tail(bench_log)))
                    if server.poll() is not None:
                        th.join(timeout=5)
                        why += "; " + server_error()
                    fail([c], "error", why)
                    continue
                row = clean(row)
                row["header"] = table.get("header", {})
                row["policy"], row["budget"] = c.policy, c.budget or None
                row["serve_bench_s"] = wall
                wrong = row.get("#wrong")
                self.r.record(c, "ok" if not wrong else "error", row=row,
                              reason="#wrong %s: %s" % (wrong, error_line(tail(bench_log)))
                              if wrong else None, inv_id=inv.id)
                self.r.save()
        finally:
            if server.poll() is None:
                server.send_signal(signal.SIGTERM)
                try:
                    server.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(server.pid, signal.SIGKILL)
                    server.wait()
            th.join(timeout=5)
            logf.close()
            rec["server_rc"] = server.returncode
        rec.update(rc=0 if outcome == "ok" else None, wall_s=time.time() - t0,
                   timed_out=outcome == "interrupted")
        busy = sum((self.r.cells.get(c.key, {}).get("row") or {}).get("wall_s") or 0 for c in cells)
        rec["overhead_s"] = max(0.0, rec["wall_s"] - busy) if outcome == "ok" else None
        return rec, outcome


def max_key(preset, batch, kv=""):
    """The results' key of a resolved "max" context: one per preset, batch and KV dtype, whatever
    the stage."""
    return "%s|b%d%s" % (preset, batch, "|kv=" + kv if kv else "")


def find_row(rows, c):
    for r in rows:
        if r.get("preset") != c.preset or r.get("context") != c.context or r.get("batch") != c.batch:
            continue
        if r.get("policy") != c.policy:
            continue
        if c.policy == "full":
            return r
        if int(r.get("budget") or 0) != c.budget:
            continue
        if c.policy == "tidal" and r.get("granularity") != c.gran:
            continue
        return r
    return None


def device_memory(device):
    """Bytes of memory a run can hope for: the GPU's total (nvidia-smi), or the host's
    MemAvailable; None when unknown."""
    if device == "cuda":
        out = capture(["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"])
        try:
            return int(out.splitlines()[0]) * 2**20 if out else None
        except ValueError:
            return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def safe(text):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


# --- environment ----------------------------------------------------------------------------

def capture(cmd):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        return (p.stdout or p.stderr).strip() if p.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def environment(args):
    env = {"date": now_iso(), "host": platform.node(), "os": platform.platform(),
           "python": platform.python_version(), "driver_script": os.path.relpath(__file__)}
    if args.tidal:
        env["tidal_version"] = capture([args.tidal, "--version"])
    repo = os.path.dirname(os.path.dirname(HERE))
    env["commit"] = capture(["git", "-C", repo, "rev-parse", "--short", "HEAD"])
    smi = capture(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm,"
                   "clocks.max.mem", "--format=csv,noheader"])
    if smi:
        env["gpu"] = smi.splitlines()[0]
        top = capture(["nvidia-smi"]) or ""
        m = re.search(r"CUDA Version:\s*([0-9.]+)", top)
        if m:
            env["cuda_driver_api"] = m.group(1)
    nvcc = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc"
                                    if os.path.exists("/usr/local/cuda/bin/nvcc") else None)
    if nvcc:
        out = capture([nvcc, "--version"]) or ""
        m = re.search(r"release ([0-9.]+)", out)
        env["cuda_toolkit"] = m.group(1) if m else None
    try:
        import matplotlib
        env["matplotlib"] = matplotlib.__version__
    except ImportError:
        env["matplotlib"] = None
    return env


# --- main -----------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--suite", default=os.path.join(HERE, "suite.json"), help="the suite file")
    ap.add_argument("--out", required=True, help="output directory (results.json, report.md, plots/)")
    ap.add_argument("--build", default="build", help="build directory holding launch/tidal and "
                    "benchmarks/serve_bench")
    ap.add_argument("--tidal", help="the tidal binary (default BUILD/launch/tidal)")
    ap.add_argument("--serve-bench", help="serve_bench (default BUILD/benchmarks/serve_bench)")
    ap.add_argument("--python", default=sys.executable, help="the Python that runs torch_reference.py")
    ap.add_argument("--device", choices=["cuda", "cpu"], help="override the suite's device")
    ap.add_argument("--resume", action="store_true", help="continue OUT/results.json")
    ap.add_argument("--fresh", action="store_true", help="discard OUT/results.json first")
    ap.add_argument("--retry-errors", action="store_true", help="run cells that failed again")
    ap.add_argument("--budget-seconds", type=float, default=0,
                    help="stop before an invocation that would end past this many seconds (0: none)")
    ap.add_argument("--max-invocations", type=int, default=0, help="stop after N processes (0: none)")
    ap.add_argument("--only", default="", help="kinds to run: bench,torch,serve (default all)")
    ap.add_argument("--stage", "--only-stage", dest="stage", action="append", default=[],
                    help="run only this stage (repeatable), e.g. --only-stage serve")
    ap.add_argument("--no-torch", nargs="?", const="--no-torch", default=None, metavar="REASON",
                    help="record torch cells as skipped (with REASON when given)")
    ap.add_argument("--dry-run", action="store_true", help="list the pending invocations and exit")
    ap.add_argument("--memory-gib", type=float, default=0,
                    help="the device memory the time estimates assume (default: nvidia-smi's total, "
                    "or the host's available memory)")
    ap.add_argument("--report-only", action="store_true", help="rewrite the report from results.json")
    a = ap.parse_args(argv)
    a.tidal = a.tidal or os.path.join(a.build, "launch", "tidal")
    a.serve_bench = a.serve_bench or os.path.join(a.build, "benchmarks", "serve_bench")
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, RESULTS)
    if os.path.exists(path) and a.fresh:
        os.remove(path)
    elif os.path.exists(path) and not (a.resume or a.report_only):
        print("run_suite: %s exists: pass --resume to continue it or --fresh to start over" % path,
              file=sys.stderr)
        return 2
    suite = load_suite(a.suite)
    unknown = sorted(set(a.stage) - {st["name"] for st in suite["stages"]})
    if unknown:
        print("run_suite: no stage %s in %s (stages: %s)" % (", ".join(unknown), a.suite, ", ".join(
            st["name"] for st in suite["stages"])), file=sys.stderr)
        return 2
    results = Results(path)
    results.data["suite"] = suite
    results.data["suite_file"] = os.path.relpath(a.suite)
    if a.report_only:
        cached = results.data.get("max_context", {})  # "max" as the runs resolved it
        plan = expand(suite, [], [],
                      resolve_max=lambda st, preset, b, kv="": cached.get(max_key(preset, b, kv)))
        R.write_report(a.out, results.data, plan_keys=[c.key for _, invs in plan for inv in invs
                                                       for c in inv.cells])
        return 0
    kinds = [k for k in a.only.split(",") if k]
    runner = Runner(a, suite, results)
    plan = expand(suite, kinds, a.stage, resolve_max=runner.resolve_max if os.path.exists(a.tidal) else None)
    if not os.path.exists(a.tidal) and any(st["kind"] in ("bench", "serve") for st, _ in plan):
        print("run_suite: no tidal binary at %s (--build / --tidal)" % a.tidal, file=sys.stderr)
        return 2

    all_cells = [c for _, invs in plan for inv in invs for c in inv.cells]
    total = len(all_cells)

    final = FINAL + (() if a.retry_errors else ("error",))

    def pending(inv):
        return [c for c in inv.cells if results.status(c.key) not in final]

    if a.dry_run:
        t = 0.0
        for st, invs in plan:
            for inv in invs:
                cells = pending(inv)
                if cells:
                    sec = runner.est.invocation_seconds(Invocation(inv.kind, st, cells, inv.group))
                    t += sec
                    print("%-6s %-12s ~%5.0f s  %s" % (inv.kind, st["name"], sec, inv.label()))
        print("%d cells, %d pending, ~%s" % (total, sum(len(pending(i)) for _, v in plan for i in v),
                                              hms(t)))
        return 0

    run = {"started": now_iso(), "budget_s": a.budget_seconds or None, "environment": environment(a),
           "device": runner.device, "argv": sys.argv[1:]}
    results.data["runs"].append(run)
    results.save()
    t0 = time.time()
    deadline = t0 + a.budget_seconds if a.budget_seconds else None
    ran = 0
    stop_reason = "done"

    def counts():
        done = sum(1 for c in all_cells if results.status(c.key) in FINAL)
        nf = sum(1 for c in all_cells if results.status(c.key) == "does_not_fit")
        err = sum(1 for c in all_cells if results.status(c.key) == "error")
        return done, nf, err

    def eta():
        s = 0.0
        for st, invs in plan:
            for inv in invs:
                cells = pending(inv)
                if cells:
                    s += runner.est.invocation_seconds(Invocation(inv.kind, st, cells, inv.group))
        return s

    for st, invs in plan:
        for inv in invs:
            cells = pending(inv)
            if not cells:
                continue
            # Implied "does not fit" first (no process needed).
            todo = []
            for c in cells:
                why = runner.implied_not_fit(c)
                if why:
                    results.record(c, "does_not_fit", reason="implied: " + why,
                                   inv_id=inv.id)
                else:
                    todo.append(c)
            if not todo:
                results.save()
                continue
            if a.max_invocations and ran >= a.max_invocations:
                stop_reason = "max-invocations"
                break
            sub = Invocation(inv.kind, st, todo, inv.group)
            est = runner.est.invocation_seconds(sub)
            left = None if deadline is None else deadline - time.time()
            if left is not None and est > left and (ran > 0 or left < 5):
                # Deferred to the next run (which starts with it); a later, smaller one may fit.
                stop_reason = "budget"
                log("deferring %s: it needs ~%.0f s, %.0f s of the budget left" % (sub.label(), est, left))
                if left < 5:
                    break
                continue
            done, nf, err = counts()
            log("%d/%d cells (%d do not fit, %d errors), elapsed %s, ETA %s | %s (~%.0f s)" %
                (done, total, nf, err, hms(time.time() - t0), hms(eta()), sub.label(), est))
            fn = {"bench": runner.run_bench, "torch": runner.run_torch, "serve": runner.run_serve}
            rec, outcome = fn[inv.kind](sub, todo, left)
            rec["cells"] = [c.key for c in todo]
            rec["estimate_s"] = est
            results.data["invocations"].append(clean(rec))
            results.save()
            ran += 1
            if outcome == "interrupted":
                stop_reason = "budget"
                log("stopped inside %s: out of time; its unfinished cells stay pending" % sub.label())
                break
        else:
            continue
        break
    done, nf, err = counts()
    run.update(ended=now_iso(), seconds=time.time() - t0, stopped=stop_reason, invocations=ran)
    results.save()
    log("%s: %d/%d cells final (%d do not fit, %d errors) in %s; %d pending%s" %
        (stop_reason, done, total, nf, err, hms(time.time() - t0), total - done,
         " (resume: --resume)" if total > done else ""))
    R.write_report(a.out, results.data, plan_keys=[c.key for c in all_cells])
    return 0


if __name__ == "__main__":
    sys.exit(main())
