#!/bin/bash
# Call 74 (2026-12-06, seventeenth session): s2 = side-stream da9d780 (main 333f1ef + Quest's
# page-bound update beside the layer where no token of it runs Quest; the workspace's side stream
# renamed: TIDAL_SIDE_STREAM). The bounds' cost in an engine that keeps them (tidal's default;
# `tidal bench` keeps them only when a quest row runs): full / tidal rows with and without a quest
# row beside them, TIDAL_SIDE_STREAM=0 / 1, two interleaved rounds; then every GPU test.
source launch/device_call.sh o74 s2:s
S=/tmp/s/build
nvidia-smi --query-gpu=name --format=csv,noheader | tee $O/gpu.txt
for r in 1 2; do
  for p in llama3-8b llama2-7b; do
    timeout 60 $S/launch/tidal bench --preset $p --budget 2048 --context 10K,100K --policy full,tidal --granularity per-query-head --no-breakdown > $O/${p}_nobounds_$r.txt 2>&1
    el "$p no bounds r$r rc=$?"; row $O/${p}_nobounds_$r.txt "$p nob r$r"
    for mode in 0 1; do
      TIDAL_SIDE_STREAM=$mode timeout 90 $S/launch/tidal bench --preset $p --budget 2048 --context 10K,100K --policy full,tidal,quest --granularity per-query-head --no-breakdown > $O/${p}_bounds_${mode}_$r.txt 2>&1
      el "$p bounds mode=$mode r$r rc=$?"; row $O/${p}_bounds_${mode}_$r.txt "$p b$mode r$r"
    done
  done
done
left=$((588 - ($(date +%s) - device_call_t0)))
el "gpu_suite with ${left} s"
TIDAL_PYTHON=/bin/false timeout $left bash launch/gpu_suite.sh $S $O/tests tests > /dev/null 2>&1
el "gpu_suite rc=$?"; tail -1 $O/tests/summary.txt; grep rc= $O/tests/summary.txt | grep -v "failed=0 " | head
