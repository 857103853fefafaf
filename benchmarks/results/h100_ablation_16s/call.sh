#!/bin/bash
# Call 70 (2026-12-06, sixteenth session, an H200 if one comes): t = next-s16b 4e203ee = main
# fe44f5c + two tidies (QkvAppend's early flag as a launcher argument, merge_splits' kBatch alias
# gone; otherwise bdae99e's GPU code); s = the throwaway TIDAL_SKIP ablation build (main 2d150bd +
# .carry/ablate_TIDAL_SKIP.patch, `tidal` only: TIDAL_SKIP=op leaves that op out of every layer).
# Issue 9's suite on t (H200 only: its llama3-8b batch 16 at 32K needs the H200's memory), the
# per-op ablation of llama3-8b 10K / 100K steps on s (two interleaved rounds), every GPU test on t.
source launch/device_call.sh o70 ts:x
export LD_LIBRARY_PATH=/tmp/x/t/lib:$LD_LIBRARY_PATH
T=/tmp/x/t/build S=/tmp/x/s/build
nvidia-smi --query-gpu=name --format=csv,noheader | tee $O/gpu.txt
if grep -q H200 $O/gpu.txt; then
  bash benchmarks/suite/run_h200.sh $T $O/suite9 --suite benchmarks/suite/issue9.json --budget-seconds 200 > $O/suite9.log 2>&1
  el "suite rc=$?"; tail -3 $O/suite9.log
fi
for r in 1 2; do for op in none norms qkv attn o gate_up down; do
  TIDAL_SKIP=$op timeout 40 $S/launch/tidal bench --preset llama3-8b --budget 2048 --context 10K,100K --policy full,tidal --granularity per-query-head,per-kv-head --no-breakdown > $O/a_${op}_$r.txt 2>&1
  el "skip $op r$r rc=$?"; row $O/a_${op}_$r.txt "skip $op r$r"
done; done
left=$((588 - ($(date +%s) - device_call_t0)))
el "gpu_suite t with ${left} s"
TIDAL_PYTHON=/bin/false timeout $left bash launch/gpu_suite.sh $T $O/tests tests > /dev/null 2>&1
el "gpu_suite t rc=$?"; tail -1 $O/tests/summary.txt; grep rc= $O/tests/summary.txt | grep -v "failed=0 " | head
