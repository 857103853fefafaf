#!/bin/bash
# Call 88 (prepared in the twentieth session, 2026-12-06; any card, an H200 preferred): g87 =
# branch gemv-prefetch b799ac9 = main 18701d6 + pending/0001-gemv-post-wait-prefetch.patch (its
# build; TIDAL_GEMV_PREFETCH=0 is main's GEMV). On an H200 first issue 9's suite on it; then the
# A/B on llama3-8b (two interleaved rounds) and llama2-7b (one), then every GPU test with the time
# left (257 s on an H100 in call 84).
source launch/device_call.sh o88 g87:s
S=/tmp/s/build
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader | tee $O/gpu.txt
if grep -q H200 $O/gpu.txt; then
  bash benchmarks/suite/run_h200.sh $S $O/suite9 --suite benchmarks/suite/issue9.json --budget-seconds ${SUITE:-200} > $O/suite9.log 2>&1
  el "suite rc=$?"; tail -3 $O/suite9.log
fi
for r in 1 2; do
  for pf in 0 1; do
    TIDAL_GEMV_PREFETCH=$pf timeout 60 $S/launch/tidal bench --preset llama3-8b --budget 2048 --context 10K,100K --policy full,tidal --granularity per-query-head,per-kv-head --no-breakdown > $O/l3_pf${pf}_$r.txt 2>&1
    el "l3 pf=$pf r$r rc=$?"; row $O/l3_pf${pf}_$r.txt "l3 pf$pf r$r"
  done
done
for pf in 0 1; do
  TIDAL_GEMV_PREFETCH=$pf timeout 60 $S/launch/tidal bench --preset llama2-7b --budget 2048 --context 10K,100K --policy full,tidal --granularity per-query-head --no-breakdown > $O/l2_pf${pf}.txt 2>&1
  el "l2 pf=$pf rc=$?"; row $O/l2_pf${pf}.txt "l2 pf$pf"
done
left=$((${TOTAL:-585} - ($(date +%s) - device_call_t0)))
el "gpu_suite with ${left} s"
TIDAL_PYTHON=/bin/false timeout $left bash launch/gpu_suite.sh $S $O/tests tests > /dev/null 2>&1
el "gpu_suite rc=$?"; tail -1 $O/tests/summary.txt; grep rc= $O/tests/summary.txt | grep -v "failed=0 " | head
