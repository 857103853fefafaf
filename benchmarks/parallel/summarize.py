#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Scaling table of run_multi_gpu.sh's bench step, from OUT/bench_*.json (one `tidal bench` run
each: a layout and a cell) and OUT/bench_*.nofit (a layout that cannot hold a cell).

  python3 benchmarks/parallel/summarize.py OUT        # prints the table, writes OUT/scaling.md

Rows are grouped by configuration (preset, context, KV dtype, batch, policy, granularity,
agreement, budget). The base of a group is its layout of fewest ranks (one GPU when it holds the
cell; the `base` column names it): speedup = base ms / ms (per-token latency); efficiency =
speedup x base ranks / ranks.
%ar, ar_us/L and agree_us/sel are rank 0's all-reduce share of the step, all-reduce time per
layer and list agreement per selection layer (tidal bench's breakdown step); %floor is against
the layout's own floor (one TP rank's bytes of each stage at the copy bandwidth); GiB/rank is the
largest rank's memory. Exits 1 when there is nothing to summarize or a file cannot be read."""

import glob
import json
import math
import os
import re
import sys


def layout_of(header):
    m = re.match(r"tp (\d+) x pp (\d+)", header.get("parallel", "tp 1 x pp 1"))
    tp, pp = (int(m.group(1)), int(m.group(2))) if m else (1, 1)
    name = " x ".join(n for n in ("tp %d" % tp if tp > 1 else "", "pp %d" % pp if pp > 1 else "")
                      if n)
    return tp * pp, -tp, name or "one rank"


def fmt(v, digits):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return "%.*f" % (digits, v)


COLS = ["preset", "context", "kv", "batch", "policy", "granularity", "agree", "budget", "layout",
        "ms", "base", "speedup", "efficiency", "%ar", "ar_us/L", "agree_us/sel", "GB", "%floor",
        "GiB/rank"]


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = argv[1]
    groups = {}  # configuration -> [(layout sort key, layout name, row)]
    try:
        for path in sorted(glob.glob(os.path.join(out, "bench_*.json"))):
            with open(path) as f:
                table = json.load(f)
            ranks, neg_tp, name = layout_of(table["header"])
            kv = table["header"].get("kv_dtype", "-")
            for r in table["rows"]:
                k = (r["preset"], r["context"], kv, r["batch"], r["policy"], r["granularity"],
                     r.get("agree", "-"), r["budget"] or 0)
                groups.setdefault(k, []).append(((ranks, neg_tp), name, r))
        nofit = []
        for path in sorted(glob.glob(os.path.join(out, "bench_*.nofit"))):
            with open(path) as f:
                nofit.append(json.load(f))
    except (OSError, ValueError, KeyError) as e:
        print("summarize.py: %s" % e, file=sys.stderr)
        return 1
    if not groups:
        print("summarize.py: no bench_*.json in %s" % out, file=sys.stderr)
        return 1
    lines = []
    for k in sorted(groups):
        runs = sorted(groups[k], key=lambda x: x[0])
        (base_ranks, _), base_name, base = runs[0]
        for (ranks, _), name, r in runs:
            speedup = base["ms"] / r["ms"] if r["ms"] else float("nan")
            lines.append([str(v) for v in k] + [
                name, fmt(r["ms"], 3), base_name, fmt(speedup, 2), fmt(speedup * base_ranks / ranks, 2),
                fmt(r.get("%ar"), 1), fmt(r.get("ar_us/L"), 1), fmt(r.get("agree_us/sel"), 1),
                fmt(r["GB"], 2), fmt(r.get("%floor"), 1), fmt(r.get("GiB/rank"), 2)])
    widths = [max(len(c), *(len(l[i]) for l in lines)) for i, c in enumerate(COLS)]
    print("\n".join(" ".join(v.rjust(w) for v, w in zip(l, widths)) for l in [COLS] + lines))
    md = ["| " + " | ".join(COLS) + " |", "|" + "---|" * len(COLS)]
    md += ["| " + " | ".join(l) + " |" for l in lines]
    for n in nofit:
        line = "does not fit: %s at %s (KV %s) on %s: %s" % (n["preset"], n["context"], n["kv"],
                                                            n["layout"], n["error"])
        print(line)
        md.append("")
        md.append(line)
    with open(os.path.join(out, "scaling.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
