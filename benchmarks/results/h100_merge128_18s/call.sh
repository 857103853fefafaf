#!/bin/bash
# Call 80 (eighteenth session, 2026-12-06): p2 = main 9cb551d + pending/0001 (branch merge128b cdd9bf5).
# On any card: the merge A/B (TIDAL_MERGE_THREADS 256 = main's kernel vs 128) on llama3-8b,
# llama2-7b as the control, every GPU test (128-thread merge), the decode attention tests with 256;
# on an H200 also issue 9's suite first.
source launch/device_call.sh o80 p2:s
S=/tmp/s/build
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader | tee $O/gpu.txt
if grep -q H200 $O/gpu.txt; then
  TIDAL_MERGE_THREADS=256 bash benchmarks/suite/run_h200.sh $S $O/suite9 --suite benchmarks/suite/issue9.json --budget-seconds 200 > $O/suite9.log 2>&1
  el "suite rc=$?"; tail -3 $O/suite9.log
fi
for r in 1 2; do
  for mt in 256 128; do
    TIDAL_MERGE_THREADS=$mt timeout 60 $S/launch/tidal bench --preset llama3-8b --budget 2048 --context 10K,100K --policy full,tidal --granularity per-query-head,per-kv-head --no-breakdown > $O/l3_m${mt}_$r.txt 2>&1
    el "l3 merge=$mt r$r rc=$?"; row $O/l3_m${mt}_$r.txt "l3 m$mt r$r"
  done
done
for mt in 256 128; do
  TIDAL_MERGE_THREADS=$mt timeout 60 $S/launch/tidal bench --preset llama2-7b --budget 2048 --context 10K,100K --policy full,tidal --granularity per-query-head --no-breakdown > $O/l2_m${mt}.txt 2>&1
  el "l2 merge=$mt rc=$?"; row $O/l2_m${mt}.txt "l2 m$mt"
done
TIDAL_MERGE_THREADS=256 timeout 120 $S/tests/kernels/kernels_cuda_test --gtest_filter='*DecodeAttention*' --gtest_color=no > $O/da256.log 2>&1
el "decode attention tests, merge 256: rc=$?"; tail -1 $O/da256.log
left=$((585 - ($(date +%s) - device_call_t0)))
el "gpu_suite with ${left} s"
TIDAL_PYTHON=/bin/false timeout $left bash launch/gpu_suite.sh $S $O/tests tests > /dev/null 2>&1
el "gpu_suite rc=$?"; tail -1 $O/tests/summary.txt; grep rc= $O/tests/summary.txt | grep -v "failed=0 " | head
