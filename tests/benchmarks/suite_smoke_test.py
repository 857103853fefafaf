#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""benchmarks.suite_smoke: the suite driver (benchmarks/suite/run_suite.py) end to end on the CPU
with benchmarks/suite/smoke.json (the tiny preset): a run stopped after 3 processes, a refused
re-run without --resume, the resumed run to the end (no cell measured twice), the results JSON
(FP8 KV cells beside the others, keyed apart, with tidal bench's FP8 bytes), the markdown report
and (with matplotlib) the plots; then a run whose process outlives the time budget (a stub tidal
that sleeps) is killed and leaves its cells pending; --only-stage; a server that fails to start
fails its serving cells with its error; a PyTorch row of an older reference is measured again.

The PyTorch reference cells must be measured when torch imports in this Python and are skipped
otherwise; the serving cells need serve_bench (--serve-bench, empty in builds without gRPC).

  suite_smoke_test.py --tidal BIN [--serve-bench BIN] --work DIR"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DRIVER = os.path.join(SRC, "benchmarks", "suite", "run_suite.py")
SMOKE = os.path.join(SRC, "benchmarks", "suite", "smoke.json")
failures = []


def check(cond, what):
    print(("ok    " if cond else "FAIL  ") + what, flush=True)
    if not cond:
        failures.append(what)


def importable(module):
    return subprocess.run([sys.executable, "-c", "import " + module],
                          capture_output=True).returncode == 0


def driver(args, *extra):
    cmd = [sys.executable, DRIVER, "--suite", SMOKE, "--out", args.out, "--tidal", args.tidal,
           "--serve-bench", args.serve_bench or "/nonexistent/serve_bench"] + list(extra)
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True)
    sys.stderr.write(p.stderr[-3000:])
    return p.returncode, time.time() - t0, p.stderr


def load(args):
    with open(os.path.join(args.out, "results.json")) as f:
        return json.load(f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tidal", required=True)
    ap.add_argument("--serve-bench", default="")
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    if os.path.exists(args.work):
        shutil.rmtree(args.work)
    os.makedirs(args.work)
    args.out = os.path.join(args.work, "out")
    have_torch, have_mpl = importable("torch"), importable("matplotlib")
    have_serve = bool(args.serve_bench) and os.path.exists(args.serve_bench)
    print("torch %s, matplotlib %s, serve_bench %s" % (have_torch, have_mpl, have_serve))

    # 1. Stopped after three processes: partial results, a partial report.
    rc, _, _ = driver(args, "--max-invocations", "3")
    check(rc == 0, "the first run exits 0")
    d = load(args)
    done1 = {k: e for k, e in d["cells"].items() if e["status"] in ("ok", "does_not_fit", "skipped")}
    check(d["runs"][-1]["stopped"] == "max-invocations", "the first run stopped at --max-invocations")
    check(d["runs"][-1]["invocations"] == 3, "the first run started 3 processes")
    check(0 < len(done1) < 40, "the first run left cells pending (%d final)" % len(done1))
    with open(os.path.join(args.out, "report.md")) as f:
        check("partial:" in f.read(), "the first report says it is partial")

    # 2. Without --resume an existing results file is not overwritten.
    rc, _, err = driver(args)
    check(rc == 2 and "--resume" in err, "a re-run without --resume is refused")

    # 3. Resumed to the end.
    rc, _, _ = driver(args, "--resume")
    check(rc == 0, "the resumed run exits 0")
    d = load(args)
    cells = d["cells"]
    check(d["runs"][-1]["stopped"] == "done", "the resumed run finished the suite")
    check(all(e["status"] in ("ok", "does_not_fit", "skipped") for e in cells.values()),
          "every cell is final (%s)" % sorted({e["status"] for e in cells.values()}))
    for k, e in done1.items():
        if cells[k].get("when") != e.get("when"):
            check(False, "cell %s was measured again on resume" % k)
            break
    else:
        check(True, "no cell of the first run was measured again")
    seen = {}
    for inv in d["invocations"]:
        for k in inv.get("cells", []):
            seen[k] = seen.get(k, 0) + 1
    check(max(seen.values()) == 1, "no cell belongs to two processes")

    def of(kind, **kw):
        return [e for e in cells.values() if e["params"]["kind"] == kind and
                all(e["params"].get(a) == b for a, b in kw.items())]

    bench_ok = [e for e in of("bench") if e["status"] == "ok"]
    check(len(of("bench", stage="headline")) == 6 and
          all(e["status"] == "ok" for e in of("bench", stage="headline")),
          "the 6 headline cells were measured")
    check(all(e["row"]["ms"] > 0 and e["row"]["#wrong"] == 0 and e["row"]["attn_ms"] is not None
              for e in bench_ok), "every measured bench row has ms > 0, #wrong 0 and attn_ms")
    tidal_rows = [e["row"] for e in bench_ok if e["params"]["policy"] == "tidal"]
    check(tidal_rows and all((r["select_ms"] or 0) > 0 and (r["sparse_ms"] or 0) > 0
                             for r in tidal_rows), "tidal rows carry selection and sparse time")
    nofit = [e for e in of("bench", context=200000000) if not e["params"].get("kv_dtype")]
    check(len(nofit) == 10 and all(e["status"] == "does_not_fit" for e in nofit),
          "the 200M cells do not fit (%d)" % len(nofit))
    fp8 = {(e["params"]["context"], e["params"]["policy"]): e for e in of("bench", kv_dtype="fp8")}
    check(sorted(fp8) == [(512, "full"), (512, "tidal"), (200000000, "full"), (200000000, "tidal")],
          "4 FP8 KV cells (%s)" % sorted(fp8))
    check(all(k.endswith("|kv=fp8") for k, e in cells.items() if e["params"].get("kv_dtype")) and
          len({k for k in cells if k.endswith("|kv=fp8")}) == 4, "FP8 cells are keyed apart")
    for pol, gran in (("full", "-"), ("tidal", "per-kv-head")):
        e8 = fp8.get((512, pol))
        e16 = [e for e in of("bench", context=512, batch=1, policy=pol, granularity=gran)
               if not e["params"].get("kv_dtype") and e["params"]["budget"] in (None, 64)]
        ok = e8 is not None and e8["status"] == "ok" and len(e16) == 1 and e16[0]["status"] == "ok"
        check(ok and e8["row"]["header"].get("kv_dtype") == "fp8" and
              e16[0]["row"]["header"].get("kv_dtype") == "f32" and
              e8["row"]["GB"] < e16[0]["row"]["GB"] and e8["row"]["#wrong"] == 0,
              "%s at 512 with an FP8 KV cache: measured, its bytes below f32's" % pol)
    check(all(fp8[(200000000, p)]["status"] == "does_not_fit" and
              not fp8[(200000000, p)].get("reason", "").startswith("implied")
              for p in ("full", "tidal")),
          "FP8 at 200M: its own does-not-fit, not implied by the f32 cache's")
    check(any("does not fit in cpu memory" in e.get("reason", "") for e in nofit),
          "tidal bench's own error is the reason")
    check(all(e.get("reason", "").startswith("implied") for e in nofit if e["params"]["batch"] == 2),
          "batch 2 at 200M was implied, not run")
    check(d.get("max_context", {}).get("tiny|b1") == 1000 and
          len([e for e in of("bench", context=1000) if e["status"] == "ok"]) == 10,
          "context \"max\" was sized by tidal info (capped at 1000) and measured")
    torch_cells = of("torch")
    check(len(torch_cells) == 6, "6 torch cells")
    if have_torch:
        check(all(e["status"] == "ok" and e["row"]["ms"] > 0 for e in torch_cells),
              "torch cells measured")
    else:
        check(all(e["status"] == "skipped" for e in torch_cells), "torch cells skipped without torch")
    serve_cells = of("serve")
    check(len(serve_cells) == 4, "4 serving cells")
    if have_serve:
        check(all(e["status"] == "ok" and e["row"]["#wrong"] == 0 and e["row"]["itl_p50"] > 0 and
                  e["row"]["requests"] == e["params"]["clients"] for e in serve_cells),
              "serving cells measured (one request per client, #wrong 0)")
    else:
        check(all(e["status"] == "skipped" for e in serve_cells), "serving skipped without serve_bench")

    with open(os.path.join(args.out, "report.md")) as f:
        md = f.read()
    for heading in ("## Machine and software", "## The paper's Figure 10 on this device",
                    "### The paper's A100 table", "## Longest context reached on one GPU",
                    "## tiny, batch 1: every configuration", "## tiny, batch 2: every configuration",
                    "## tiny: batch scaling", "## Cells that did not run"):
        check(heading in md, "the report has '%s'" % heading)
    check("Status: complete" in md, "the report says it is complete")
    check("| 1K |" in md and "200M" in md, "the longest context (1K) and the 200M that does not fit")
    check("≈45.8" in md, "the paper's table is in the report")
    kv_md = "\n".join(line for line in md.split("## bf16 against FP8 KV cache", 1)[-1].split(
        "\n## ", 1)[0].splitlines() if line.startswith("|"))
    check("| f32 ms |" in kv_md and "| FP8 ms |" in kv_md and "| 512 | full |" in kv_md and
          "does not fit" in kv_md and "pending" not in kv_md,
          "the report compares the KV dtypes")
    check("| tiny (FP8 KV) | 512 |" in md, "the longest-context table has the FP8 row")
    if have_torch:
        check("## The PyTorch reference" in md, "the report has the PyTorch table")
    if have_serve:
        check("## Serving under load" in md, "the report has the serving table")
    pngs = ["headline.png", "latency_tiny.png", "speedup_tiny.png", "breakdown_tiny.png",
            "floor_tiny.png", "batch_tiny.png"] + (["serve.png"] if have_serve else [])
    if have_mpl:
        for name in pngs:
            path = os.path.join(args.out, "plots", name)
            ok = os.path.exists(path) and open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
            check(ok, "plots/%s is a PNG" % name)
            check("](plots/%s)" % name in md, "the report shows plots/%s" % name)
    else:
        check("matplotlib is not installed" in md, "the report says why there are no plots")

    # 4. The time budget: a process that outlives it is killed; its cells stay pending.
    tidal = args.tidal
    stub = os.path.join(args.work, "slow_tidal")
    with open(stub, "w") as f:
        f.write("#!/bin/sh\n[ \"$1\" = info ] && exit 1\n[ \"$1\" = --version ] && exit 0\nsleep 60\n")
    os.chmod(stub, 0o755)
    args.out = os.path.join(args.work, "budget")
    args.tidal = stub
    rc, wall, _ = driver(args, "--only", "bench", "--budget-seconds", "6")
    d = load(args)
    check(rc == 0 and wall < 30, "the budgeted run ends in time (%.1f s)" % wall)
    check(d["runs"][-1]["stopped"] == "budget", "it stopped for the budget")
    check(d["invocations"] and d["invocations"][0]["timed_out"], "its process was killed")
    check(not any(e["status"] in ("ok", "error") for e in d["cells"].values()),
          "the killed process's cells stay pending")

    # 5. --only-stage: that stage's cells only; an unknown stage is refused.
    args.tidal = tidal
    args.out = os.path.join(args.work, "only")
    rc, _, _ = driver(args, "--only-stage", "kv")
    d = load(args)
    check(rc == 0 and d["cells"] and all(e["params"]["stage"] == "kv" for e in d["cells"].values()),
          "--only-stage kv ran the kv stage only (%d cells)" % len(d["cells"]))
    rc, _, err = driver(args, "--resume", "--only-stage", "nosuch")
    check(rc == 2 and "no stage nosuch" in err, "an unknown --only-stage is refused")

    # 6. A PyTorch row of an older reference (version 1) is pending again: measured (or skipped
    # without torch) by the next run.
    d["cells"] = {}
    key = "torch|tiny|256|1|full|-|0"
    d["cells"][key] = {"params": {"kind": "torch", "stage": "torch-headline", "preset": "tiny",
                                  "context": 256, "batch": 1, "policy": "full", "granularity": "-",
                                  "budget": None},
                       "status": "ok", "when": "v1", "row": {"ms": 1.0, "header": {}}}
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(d, f)
    rc, _, _ = driver(args, "--resume", "--only-stage", "torch-headline")
    e = load(args)["cells"][key]
    check(rc == 0 and e["when"] != "v1" and (e["status"] == "skipped" or e.get("version") == 2),
          "the version-1 PyTorch row was run again (%s)" % e["status"])

    # 7. A server that does not start fails its cells with its error line, even when its stderr
    # closes before its exit can be reaped (the stub holds that window open for 0.3 s).
    stub = os.path.join(args.work, "broken_tidal")
    with open(stub, "w") as f:
        f.write("#!/bin/sh\n[ \"$1\" = --version ] && exit 0\n"
                "[ \"$1\" = serve ] && { echo 'tidal: error: no GPU for this test' >&2; "
                "exec 2>&-; sleep 0.3; exit 1; }\n"
                "exit 1\n")
    os.chmod(stub, 0o755)
    args.out = os.path.join(args.work, "broken_serve")
    args.tidal, serve_bench = stub, args.serve_bench
    args.serve_bench = stub  # only needs to exist: the server fails first
    rc, _, _ = driver(args, "--only-stage", "serve")
    sc = load(args)["cells"].values()
    check(rc == 0 and len(sc) == 4 and all(
        e["status"] == "error" and "no GPU for this test" in e.get("reason", "") for e in sc),
        "the serving cells failed with the server's error")
    args.serve_bench = serve_bench

    if failures:
        print("FAILED: %d checks: %s" % (len(failures), "; ".join(failures)))
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
