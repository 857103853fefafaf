#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""benchmarks/parallel/summarize.py on made-up `tidal bench` tables: the base of a configuration
is its layout of fewest ranks (one GPU when it fits, else the smallest that does), named in the
base column; speedup and efficiency follow from it, the collective columns pass through, a
layout that cannot hold a cell is listed, and OUT/scaling.md is written (the checks read it).
Exit 0 when every check passes."""

import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SUMMARIZE = os.path.join(ROOT, "benchmarks", "parallel", "summarize.py")


def row(context, ms, ar=None, agree=None, policy="tidal", granularity="shared", agreement="exact"):
    return {"preset": "llama3-8b", "context": context, "batch": 1, "policy": policy,
            "granularity": granularity, "agree": agreement, "budget": 2048, "ms": ms,
            "%ar": ar, "ar_us/L": None if ar is None else 12.5, "agree_us/sel": agree,
            "GB": 16.0, "%floor": 80.0, "GiB/rank": 40.0}


def write(out, name, parallel, kv, rows):
    header = {"bench": "tidal bench", "kv_dtype": kv}
    if parallel:
        header["parallel"] = parallel + " (mpirun)"
    with open(os.path.join(out, name), "w") as f:
        json.dump({"header": header, "rows": rows}, f)


def main():
    failures = []

    def check(ok, what):
        print(("ok    " if ok else "FAIL  ") + what)
        if not ok:
            failures.append(what)

    with tempfile.TemporaryDirectory() as out:
        # 100K: one rank holds it; 1M: only tp 2 and up do (one rank's file is a .nofit).
        write(out, "bench_tp1__a.json", None, "bf16", [row(100000, 8.0)])
        write(out, "bench_tp2__a.json", "tp 2 x pp 1", "bf16",
              [row(100000, 5.0, ar=10.0, agree=30.0), row(1000000, 20.0, ar=4.0, agree=90.0)])
        write(out, "bench_tp4__a.json", "tp 4 x pp 1", "bf16",
              [row(100000, 4.0, ar=20.0, agree=40.0), row(1000000, 12.0, ar=8.0, agree=60.0)])
        write(out, "bench_pp2__a.json", "tp 1 x pp 2", "bf16", [row(100000, 9.0, ar=0.0)])
        with open(os.path.join(out, "bench_tp1__b.nofit"), "w") as f:
            json.dump({"ranks": "1", "layout": "one rank", "preset": "llama3-8b",
                       "context": "1M", "kv": "default", "error": "tidal: error: does not fit"}, f)
        r = subprocess.run([sys.executable, SUMMARIZE, out], capture_output=True, text=True)
        check(r.returncode == 0, "summarize.py exits 0 (got %d: %s)" % (r.returncode, r.stderr))
        lines = r.stdout.splitlines()
        md = os.path.join(out, "scaling.md")
        table = [l for l in open(md).read().splitlines() if l.startswith("|")]
        cols = [c.strip() for c in table[0].strip("|").split("|")]
        rows = [dict(zip(cols, (c.strip() for c in l.strip("|").split("|")))) for l in table[2:]]
        by_layout = {(int(x["context"]), x["layout"]): x for x in rows}
        check(len(rows) == 6, "six rows: 4 layouts at 100K, 2 at 1M (got %d)" % len(rows))

        speed = ("base", "speedup", "efficiency")
        expected = [  # (context, layout, columns, their cells, what it shows)
            (100000, "one rank", speed, ["one rank", "1.00", "1.00"], "100K: one rank is the base"),
            (100000, "tp 2", speed, ["one rank", "1.60", "0.80"],
             "100K tp 2: speedup 8/5 = 1.60, efficiency 0.80"),
            (100000, "tp 2", ("%ar", "ar_us/L", "agree_us/sel"), ["10.0", "12.5", "30.0"],
             "100K tp 2: the collective columns pass through"),
            (100000, "pp 2", speed, ["one rank", "0.89", "0.44"],
             "100K pp 2: speedup 8/9, efficiency over 2 ranks"),
            (1000000, "tp 2", speed, ["tp 2", "1.00", "1.00"],
             "1M: tp 2, the smallest layout that holds it, is the base"),
            (1000000, "tp 4", speed, ["tp 2", "1.67", "0.83"],
             "1M tp 4: speedup 20/12 = 1.67, efficiency x 2/4 = 0.83"),
        ]
        for context, layout, names, want, what in expected:
            x = by_layout.get((context, layout))
            got = None if x is None else [x[n] for n in names]
            check(got == want, "%s (got %s)" % (what, got))
        check(any(l.startswith("does not fit: llama3-8b at 1M") and "one rank" in l
                  for l in lines), "the layout that cannot hold 1M is listed (stdout)")
        check(any(l.startswith("does not fit: llama3-8b at 1M") for l in open(md)),
              "... and in scaling.md")
        check(sum(1 for l in lines if l.lstrip().startswith("llama3-8b")) == 6,
              "the printed table holds the six rows")
        empty = tempfile.mkdtemp()
        r = subprocess.run([sys.executable, SUMMARIZE, empty], capture_output=True, text=True)
        check(r.returncode == 1 and "no bench_" in r.stderr, "nothing to summarize: exit 1")
        os.rmdir(empty)
    if failures:
        print("FAILED: " + "; ".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
