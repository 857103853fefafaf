#!/bin/bash
# Call 84 (twentieth session, 2026-12-06; any card): pf = branch gemv-prefetch (main 18701d6 + the
# GEMV's post-wait L2 prefetch of its second step; TIDAL_GEMV_PREFETCH=0 is main's GEMV, 1 a
# bulk prefetch a row, 2 a line a lane). The
# GEMV tests and the engine's, the A/B (kernel_bench GEMV rows, llama3-8b and llama2-7b steps),
# then every GPU test with the time left.
source launch/device_call.sh o84 pf:s
S=/tmp/s/build
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader | tee $O/gpu.txt
timeout 120 $S/tests/kernels/kernels_cuda_test --gtest_filter='*Linear*:*Pdl*' --gtest_color=no > $O/linear_tests.log 2>&1
el "linear tests rc=$?"; tail -1 $O/linear_tests.log
for pf in 0 1 2; do
  TIDAL_GEMV_PREFETCH=$pf timeout 60 $S/benchmarks/kernel_bench --graph-calls 32 --budget-ms 20 --op linear --op linear_split --op linear_qkv_append --op linear_swiglu > $O/kb_pf${pf}.txt 2>&1
  el "kb pf=$pf rc=$?"; grep -E "\[1, (4096|14336|11008)\]" $O/kb_pf${pf}.txt | cut -c1-120
done
for pf in 0 1 2 0 1 2; do
  TIDAL_GEMV_PREFETCH=$pf timeout 60 $S/launch/tidal bench --preset llama3-8b --budget 2048 --context 10K,100K --policy full,tidal --granularity per-query-head --no-breakdown >> $O/l3_pf${pf}.txt 2>&1
  el "l3 pf=$pf rc=$?"; row $O/l3_pf${pf}.txt "l3 pf$pf"
done
for pf in 0 1; do
  TIDAL_GEMV_PREFETCH=$pf timeout 60 $S/launch/tidal bench --preset llama2-7b --budget 2048 --context 10K,100K --policy full,tidal --granularity per-query-head --no-breakdown > $O/l2_pf${pf}.txt 2>&1
  el "l2 pf=$pf rc=$?"; row $O/l2_pf${pf}.txt "l2 pf$pf"
done
left=$((585 - ($(date +%s) - device_call_t0)))
el "gpu_suite with ${left} s"
TIDAL_PYTHON=/bin/false timeout $left bash launch/gpu_suite.sh $S $O/tests tests > /dev/null 2>&1
el "gpu_suite rc=$?"; tail -1 $O/tests/summary.txt; grep rc= $O/tests/summary.txt | grep -v "failed=0 " | head
