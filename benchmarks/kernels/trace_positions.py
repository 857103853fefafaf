#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Where a decode step's time goes, kernel by kernel: reads the Chrome trace that
`tidal bench --kernel-trace FILE` writes (plain or .xz), cuts each row's records into graph
replays (a replay starts where the first kernel's graph node comes round again), and prints, for
each position of the replay, the medians over the replays of its start (from the replay's first
start), its duration and the gap before it (its start less the latest end of the kernels before
it: negative where it overlaps them, which the programmatic launches do). Then the positions with
the largest median gaps (where no kernel runs) and the kernel names by median busy time.

    trace_positions.py TRACE [--row SUBSTRING] [--top N] [--positions] [--json]

--positions prints the whole per-position table (long: ~300 lines a llama row); --json prints
the same figures as one JSON object (rows -> positions, gaps, names) for scripts."""

import argparse
import json
import lzma
import statistics
import sys


def load(path):
    opener = lzma.open if path.endswith(".xz") else open
    with opener(path, "rt") as f:
        return json.load(f)


def rows_of(trace):
    """{label: [events]} from the trace's process names and its complete ('X') events."""
    names, events = {}, {}
    for e in trace.get("traceEvents", []):
        if e.get("ph") == "M" and e.get("name") == "process_name":
            names[e["pid"]] = e["args"]["name"]
        elif e.get("ph") == "X":
            events.setdefault(e["pid"], []).append(e)
    return {names.get(pid, str(pid)): sorted(evs, key=lambda e: e["ts"])
            for pid, evs in sorted(events.items())}


def replays_of(events):
    """The events cut where the first event's graph node recurs; every replay must hold the same
    kernels (a graph replays its nodes alike), else ValueError. Kernels on parallel branches of
    the graph (a side stream's) may start in another order from one replay to the next: each
    replay is put in replay 0's order of graph nodes, so a position is one node."""
    if not events:
        return []
    node = events[0].get("args", {}).get("graph_node", 0)
    if not node:
        raise ValueError("the first kernel is not a graph node: not a graph replay")
    cuts = [i for i, e in enumerate(events) if e.get("args", {}).get("graph_node") == node]
    cuts.append(len(events))
    replays = [events[a:b] for a, b in zip(cuts, cuts[1:])]

    def nodes(r):
        return [e.get("args", {}).get("graph_node") for e in r]

    order = {n: i for i, n in enumerate(nodes(replays[0]))}
    first = [e["name"] for e in replays[0]]
    for i, r in enumerate(replays[1:], 1):
        if len(order) == len(r) and sorted(nodes(r), key=str) == sorted(order, key=str):
            r.sort(key=lambda e: order[e.get("args", {}).get("graph_node")])
        if [e["name"] for e in r] != first:
            raise ValueError("replay %d holds other kernels than replay 0 (%d against %d)"
                             % (i, len(r), len(first)))
    return replays


def positions_of(replays):
    """Per position: name, grid and the medians of start, duration and gap (us)."""
    starts, durs, gaps = [], [], []
    for r in replays:
        t0 = r[0]["ts"]
        latest_end = None
        s, d, g = [], [], []
        for e in r:
            s.append(e["ts"] - t0)
            d.append(e["dur"])
            g.append(0.0 if latest_end is None else e["ts"] - latest_end)
            end = e["ts"] + e["dur"]
            latest_end = end if latest_end is None else max(latest_end, end)
        starts.append(s)
        durs.append(d)
        gaps.append(g)
    out = []
    for i, e in enumerate(replays[0]):
        out.append({
            "index": i,
            "name": e["name"],
            "grid": e.get("args", {}).get("grid"),
            "start_us": statistics.median(s[i] for s in starts),
            "dur_us": statistics.median(d[i] for d in durs),
            "gap_us": statistics.median(g[i] for g in gaps),
        })
    return out


def summarize(events, top):
    replays = replays_of(events)
    pos = positions_of(replays)
    names = {}
    for p in pos:
        n = names.setdefault(p["name"], {"name": p["name"], "launches": 0, "busy_us": 0.0})
        n["launches"] += 1
        n["busy_us"] += p["dur_us"]
    for n in names.values():
        n["mean_us"] = n["busy_us"] / n["launches"]
    ends = [max(e["ts"] + e["dur"] for e in r) for r in replays]
    # From one replay's last end to the next one's first start: the graph launch between them.
    between = [b[0]["ts"] - end for end, b in zip(ends, replays[1:])]
    return {
        "replays": len(replays),
        "kernels": len(pos),
        "window_us": statistics.median(end - r[0]["ts"] for end, r in zip(ends, replays)),
        "between_us": statistics.median(between) if between else 0.0,
        "idle_us": sum(max(p["gap_us"], 0.0) for p in pos),
        "positions": pos,
        "gaps": sorted(pos, key=lambda p: -p["gap_us"])[:top],
        "names": sorted(names.values(), key=lambda n: -n["busy_us"])[:top],
    }


def short(name, width=70):
    return name if len(name) <= width else name[:width - 3] + "..."


def print_row(label, s, all_positions):
    print("# %s: %d replays of %d kernels; median replay %.1f us (first start to last end), "
          "idle (sum of the positions' positive median gaps) %.1f us; between replays %.1f us"
          % (label, s["replays"], s["kernels"], s["window_us"], s["idle_us"], s["between_us"]))
    table = s["positions"] if all_positions else s["gaps"]
    print("%s  %5s %9s %8s %8s  %-16s %s" % ("positions" if all_positions else "largest gaps",
                                              "index", "start_us", "dur_us", "gap_us", "grid",
                                              "kernel"))
    for p in table:
        grid = "x".join(str(g) for g in p["grid"]) if p["grid"] else "-"
        print("  %5d %9.2f %8.2f %8.2f  %-16s %s" % (p["index"], p["start_us"], p["dur_us"],
                                                    p["gap_us"], grid, short(p["name"])))
    print("by name  %9s %8s %8s  %s" % ("busy_us", "launches", "mean_us", "kernel"))
    for n in s["names"]:
        print("  %9.2f %8d %8.2f  %s" % (n["busy_us"], n["launches"], n["mean_us"],
                                         short(n["name"])))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trace")
    ap.add_argument("--row", default="", help="only rows whose label contains this")
    ap.add_argument("--top", type=int, default=12, help="gaps and names listed (default 12)")
    ap.add_argument("--positions", action="store_true", help="every position, not the top gaps")
    ap.add_argument("--json", action="store_true", help="the figures as JSON")
    a = ap.parse_args(argv)
    if a.top < 1:
        ap.error("--top must be at least 1")
    try:
        rows = rows_of(load(a.trace))
    except (OSError, ValueError, lzma.LZMAError) as e:
        print("trace_positions: %s: %s" % (a.trace, e), file=sys.stderr)
        return 1
    rows = {k: v for k, v in rows.items() if a.row in k}
    if not rows:
        print("trace_positions: %s: no row%s" % (a.trace, " matches '%s'" % a.row if a.row else ""),
              file=sys.stderr)
        return 1
    result = {}
    for label, events in rows.items():
        try:
            result[label] = summarize(events, a.top)
        except ValueError as e:
            print("trace_positions: %s: %s" % (label, e), file=sys.stderr)
            return 1
    if a.json:
        json.dump(result, sys.stdout, indent=1)
        print()
    else:
        for label, s in result.items():
            print_row(label, s, a.positions)
    return 0


if __name__ == "__main__":
    sys.exit(main())
