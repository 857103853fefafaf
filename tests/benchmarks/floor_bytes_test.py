#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The floor's byte count in benchmarks/suite/presets.py (what the suite's estimates and the
PyTorch reference's own floor use) against `tidal bench`'s (the engine's count of the KV rows
each step reads, launch/bench.cc): the tiny preset on the CPU, every policy and granularity,
the KV cache in f32 and in FP8, at a context that is not a multiple of Quest's page. Both are the
same DESIGN.md §7 count (weights once + the KV rows read, Quest's page bounds in the activations'
dtype), so they must agree to rounding. Exit 0 when every row does.
    floor_bytes_test.py TIDAL_BINARY"""

import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks", "suite"))
import presets as P  # noqa: E402

CONTEXT, WARMUP, STEPS, BUDGET = 517, 2, 4, 64


def main():
    tidal = sys.argv[1]
    failures = []
    with tempfile.TemporaryDirectory() as work:
        for kv in ("", "fp8"):
            out = os.path.join(work, "rows%s.json" % kv)
            cmd = [tidal, "bench", "--device", "cpu", "--preset", "tiny", "--context",
                   str(CONTEXT), "--steps", str(STEPS), "--warmup", str(WARMUP), "--budget",
                   str(BUDGET), "--policy", "full,quest,tidal", "--granularity",
                   "per-query-head,per-kv-head,shared", "--no-breakdown", "--json", out]
            if kv:
                cmd += ["--kv-dtype", kv]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            with open(out) as f:
                rows = json.load(f)["rows"]
            if len(rows) != 5:
                failures.append("kv %r: %d rows, not 5" % (kv, len(rows)))
            for r in rows:
                # Timed step i attends CONTEXT + WARMUP + i + 1 positions; GB is their mean.
                want = sum(P.step_bytes("tiny", r["policy"], CONTEXT + WARMUP + i + 1, 1,
                                        r["budget"] or 0, r["granularity"], 4, kv)
                           for i in range(STEPS)) / STEPS / 1e9
                got = r["GB"]
                ok = abs(got - want) <= 1e-9 * want
                print("%s kv=%-3s %-5s %-14s K=%-4s bench %.9f GB, presets %.9f GB" % (
                    "ok    " if ok else "FAILED", kv or "f32", r["policy"], r["granularity"],
                    r["budget"] or "-", got, want))
                if not ok:
                    failures.append("%s %s kv %r" % (r["policy"], r["granularity"], kv))
    if failures:
        print("FAILED: presets.step_bytes differs from tidal bench's GB: " + "; ".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
