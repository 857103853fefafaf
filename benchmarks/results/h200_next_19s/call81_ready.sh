#!/bin/bash
# Call 81 (nineteenth session, 2026-12-06; H200 only): m19 = main f73d90b's build (its GPU code is 9cb551d's:
# the side stream, graph_ms). Issue 9's suite, the side stream's A/B on llama2-7b (the
# 100K ratio), the attention / GEMV / top-k kernel rows in a graph of 32, every GPU test with the rest.
source launch/device_call.sh o81 m19:s
S=/tmp/s/build
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader | tee $O/gpu.txt
grep -q H200 $O/gpu.txt || { echo "not an H200"; exit 0; }
bash benchmarks/suite/run_h200.sh $S $O/suite9 --suite benchmarks/suite/issue9.json --budget-seconds 240 > $O/suite9.log 2>&1
el "suite rc=$?"; tail -3 $O/suite9.log
for r in 1 2; do
  for mode in 0 1; do
    TIDAL_SIDE_STREAM=$mode timeout 60 $S/launch/tidal bench --preset llama2-7b --budget 2048 --context 10K,100K --policy full,tidal --granularity per-query-head --no-breakdown > $O/l2_s${mode}_$r.txt 2>&1
    el "l2 side=$mode r$r rc=$?"; row $O/l2_s${mode}_$r.txt "l2 s$mode r$r"
  done
done
timeout 150 $S/benchmarks/kernel_bench --graph-calls 32 --budget-ms 30 --op decode_attention --op linear --op topk_per_row > $O/kb_graph.txt 2>&1
el "kernel_bench rc=$?"; grep -c . $O/kb_graph.txt
left=$((585 - ($(date +%s) - device_call_t0)))
el "gpu_suite with ${left} s"
TIDAL_PYTHON=/bin/false timeout $left bash launch/gpu_suite.sh $S $O/tests tests > /dev/null 2>&1
el "gpu_suite rc=$?"; tail -1 $O/tests/summary.txt; grep rc= $O/tests/summary.txt | grep -v "failed=0 " | head
