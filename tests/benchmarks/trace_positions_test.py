#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""benchmarks/kernels/trace_positions.py on a made-up trace in the form launch/kernel_trace.cc
writes (a process per row, 'X' events with args.graph_node and args.grid, times in us): replays
cut at the first node's return, per-position medians of start, duration and gap, the largest
gaps, names by busy time, .xz input, and the refusals (a trace not of graph replays, replays
that differ, no matching row). Prints FAILED on any mismatch."""

import io
import json
import lzma
import os
import sys
import tempfile
from contextlib import redirect_stderr, redirect_stdout

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks", "kernels"))
import trace_positions as T  # noqa: E402

failures = []


def check(what, got, want):
    if got != want:
        failures.append("%s: got %r, want %r" % (what, got, want))


def event(pid, name, ts, dur, node, grid=(1, 1, 1)):
    return {"ph": "X", "pid": pid, "tid": 7, "name": name, "ts": ts, "dur": dur,
            "args": {"graph_node": node, "grid": list(grid)}}


def trace():
    """Row 0 ("llama full"): three replays, 100 us apart, of
         gemv  [0, 10)  node 11
         attn  [8, 30)  node 12   (starts 2 us before gemv's end: gap -2)
         merge [35, 40) node 13   (gap 5)
       with attn's duration 22, 23, 30 (median 23) and merge's start 35, 36, 35: gaps 5, 5 and
       -3 (replay 2's longer attn ends at 38), median 5.
       Row 1 ("other"): one kernel, once."""
    ev = [{"ph": "M", "pid": 0, "name": "process_name", "args": {"name": "llama full"}},
          {"ph": "M", "pid": 1, "name": "process_name", "args": {"name": "other"}}]
    for r, (attn_dur, merge_at) in enumerate([(22, 35), (23, 36), (30, 35)]):
        base = 1000 + 100 * r
        ev.append(event(0, "merge", base + merge_at, 5, 13))  # out of order: the reader sorts
        ev.append(event(0, "gemv", base, 10, 11, (128, 1, 1)))
        ev.append(event(0, "attn", base + 8, attn_dur, 12, (16, 32, 1)))
    ev.append(event(1, "solo", 5, 3, 21))
    return {"traceEvents": ev, "displayTimeUnit": "ns"}


def run(args):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = T.main(args)
    return rc, out.getvalue(), err.getvalue()


def main():
    with tempfile.TemporaryDirectory() as work:
        path = os.path.join(work, "t.json")
        with open(path, "w") as f:
            json.dump(trace(), f)
        rc, out, err = run([path, "--json", "--row", "llama"])
        check("rc", rc, 0)
        res = json.loads(out)
        check("rows", list(res), ["llama full"])
        s = res["llama full"]
        check("replays", s["replays"], 3)
        check("kernels", s["kernels"], 3)
        pos = s["positions"]
        check("names", [p["name"] for p in pos], ["gemv", "attn", "merge"])
        check("grid", pos[1]["grid"], [16, 32, 1])
        check("starts", [p["start_us"] for p in pos], [0, 8, 35])
        check("durations", [p["dur_us"] for p in pos], [10, 23, 5])
        # gaps: gemv 0; attn 8 - 10 = -2 each replay; merge 35-30, 36-31, 35-38: median 5
        check("gaps", [p["gap_us"] for p in pos], [0.0, -2, 5])
        check("idle", s["idle_us"], 5)
        # replay ends at 40, 41, 40 from its start; the next starts at 100: 60, 59 between
        check("window", s["window_us"], 40)
        check("between", s["between_us"], 59.5)
        check("largest gap first", s["gaps"][0]["name"], "merge")
        check("names by busy time", [n["name"] for n in s["names"]], ["attn", "gemv", "merge"])

        xz = os.path.join(work, "t.json.xz")
        with lzma.open(xz, "wt") as f:
            json.dump(trace(), f)
        rc, out, err = run([xz, "--top", "2"])
        check("xz rc", rc, 0)
        check("both rows printed", ("# llama full:" in out, "# other:" in out), (True, True))
        check("top 2 gaps", out.split("by name")[0].count("\n  "), 2)  # row 'llama full'

        # A side stream's kernel (node 14, beside attn) starts before attn in replay 1 only: the
        # replays are still alike, and its position is node 14's in every replay.
        side = trace()
        for r, at in enumerate([9, 7, 9]):
            side["traceEvents"].append(event(0, "topk", 1000 + 100 * r + at, 4, 14))
        with open(path, "w") as f:
            json.dump(side, f)
        rc, out, err = run([path, "--json", "--row", "llama"])
        check("side branch rc", (rc, err), (0, ""))
        if rc == 0:
            sp = json.loads(out)["llama full"]["positions"]
            check("side branch names", [p["name"] for p in sp], ["gemv", "attn", "topk", "merge"])
            check("side branch starts", [p["start_us"] for p in sp], [0, 8, 9, 35])

        rc, out, err = run([path, "--row", "nothing"])
        check("no row rc", rc, 1)
        check("no row says so", "no row matches 'nothing'" in err, True)

        bad = trace()
        for e in bad["traceEvents"]:
            if e.get("name") == "attn" and e["ts"] == 1108:
                e["name"] = "attn2"
        with open(path, "w") as f:
            json.dump(bad, f)
        rc, out, err = run([path])
        check("differing replays rc", rc, 1)
        check("differing replays named", "replay 1 holds other kernels" in err, True)

        for e in bad["traceEvents"]:
            if e.get("ph") == "X":
                e["args"]["graph_node"] = 0
        with open(path, "w") as f:
            json.dump(bad, f)
        rc, out, err = run([path])
        check("not a graph rc", rc, 1)
        check("not a graph says so", "not a graph node" in err, True)

        with open(path, "w") as f:
            f.write("{not json")
        rc, out, err = run([path])
        check("unreadable rc", rc, 1)
    if failures:
        for f in failures:
            print("FAILED", f)
        return 1
    print("trace_positions: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
