#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Scaling table of run_multi_gpu.sh's bench step: every row of OUT/bench_<layout>.json against
the same row of OUT/bench_tp1.json (one rank).

  python3 benchmarks/parallel/summarize.py OUT        # prints the table, writes OUT/scaling.md

speedup = tp1 ms / layout ms (per-token latency); efficiency = speedup / ranks. %ar, ar_us/L and
agree_us/sel are rank 0's all-reduce share of the step, all-reduce time per layer and list
agreement per selection layer (tidal bench's breakdown step); %floor is against the layout's own
floor (one TP rank's bytes of each stage at the copy bandwidth); GiB/rank is the largest rank's
memory. Exits 1 when a layout lacks a row that tp1 has, or a file is missing or unreadable."""

import glob
import json
import math
import os
import re
import sys


def load(path):
    with open(path) as f:
        table = json.load(f)
    header = table["header"]
    m = re.match(r"tp (\d+) x pp (\d+)", header.get("parallel", "tp 1 x pp 1"))
    layout = (int(m.group(1)), int(m.group(2))) if m else (1, 1)
    return layout, {key(r): r for r in table["rows"]}


def key(row):
    return (row["preset"], row["context"], row["batch"], row["policy"], row["granularity"],
            row.get("agree", "-"), row["budget"] or 0)


def fmt(v, digits):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return "%.*f" % (digits, v)


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = argv[1]
    base_path = os.path.join(out, "bench_tp1.json")
    try:
        _, base = load(base_path)
        layouts = []
        for path in sorted(glob.glob(os.path.join(out, "bench_*.json"))):
            if path != base_path:
                layouts.append((path,) + load(path))
    except (OSError, ValueError, KeyError) as e:
        print("summarize.py: %s" % e, file=sys.stderr)
        return 1
    if not layouts:
        print("summarize.py: no bench_<layout>.json beside %s" % base_path, file=sys.stderr)
        return 1
    layouts.sort(key=lambda x: (x[1][0] * x[1][1], -x[1][0]))
    cols = ["preset", "context", "batch", "policy", "granularity", "agree", "budget", "layout",
            "ms", "speedup", "efficiency", "%ar", "ar_us/L", "agree_us/sel", "GB", "%floor",
            "GiB/rank"]
    lines = []
    status = 0
    for k in sorted(base, key=lambda k: (k[0], k[1], k[2], k[3], k[4], k[5], k[6])):
        b = base[k]
        lines.append(list(map(str, k)) + ["tp 1", fmt(b["ms"], 3), "1.00", "1.00", "-", "-", "-",
                                          fmt(b["GB"], 2), fmt(b.get("%floor"), 1),
                                          fmt(b.get("GiB/rank"), 2)])
        for path, (tp, pp), rows in layouts:
            name = " x ".join(n for n in ("tp %d" % tp if tp > 1 else "",
                                          "pp %d" % pp if pp > 1 else "") if n) or "tp 1"
            r = rows.get(k)
            if r is None:
                print("summarize.py: %s has no row %s" % (path, k), file=sys.stderr)
                status = 1
                continue
            speedup = b["ms"] / r["ms"] if r["ms"] else float("nan")
            lines.append(list(map(str, k)) + [
                name, fmt(r["ms"], 3), fmt(speedup, 2), fmt(speedup / (tp * pp), 2),
                fmt(r.get("%ar"), 1), fmt(r.get("ar_us/L"), 1), fmt(r.get("agree_us/sel"), 1),
                fmt(r["GB"], 2), fmt(r.get("%floor"), 1), fmt(r.get("GiB/rank"), 2)])
    widths = [max(len(c), *(len(l[i]) for l in lines)) for i, c in enumerate(cols)]
    text = "\n".join(" ".join(v.rjust(w) for v, w in zip(l, widths)) for l in [cols] + lines)
    print(text)
    md = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    md += ["| " + " | ".join(l) + " |" for l in lines]
    with open(os.path.join(out, "scaling.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
