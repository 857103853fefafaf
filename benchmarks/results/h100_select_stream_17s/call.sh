#!/bin/bash
# Call 73 (2026-12-06, seventeenth session): ss = select-stream 6d18812 = main 284ec2a + a
# selection layer's group sums, top-k and list commit on a side stream beside its MLP
# (LlamaWorkspace::select_stream; TIDAL_SELECT_STREAM=0 keeps them on the main stream, =low on a
# side stream of the lowest priority; graphs instantiated with per-node priorities). A/B of the
# step in one binary (interleaved), the new engine test first, then every GPU test.
source launch/device_call.sh o73 ss:s
S=/tmp/s/build
nvidia-smi --query-gpu=name --format=csv,noheader | tee $O/gpu.txt
ab() {  # round
  for mode in 0 1 low; do
    TIDAL_SELECT_STREAM=$mode timeout 60 $S/launch/tidal bench --preset llama2-7b --budget 2048 --context 10K,32K,100K --policy tidal --granularity per-query-head --no-breakdown > $O/l2_${mode}_$1.txt 2>&1
    el "l2 mode=$mode r$1 rc=$?"; row $O/l2_${mode}_$1.txt "l2 $mode r$1"
    TIDAL_SELECT_STREAM=$mode timeout 60 $S/launch/tidal bench --preset llama3-8b --budget 2048 --context 10K,100K --policy tidal --granularity per-query-head,per-kv-head --no-breakdown > $O/l3_${mode}_$1.txt 2>&1
    el "l3 mode=$mode r$1 rc=$?"; row $O/l3_${mode}_$1.txt "l3 $mode r$1"
  done
}
ab 1
timeout 120 $S/tests/engine/engine_cuda_test --gtest_filter='*SelectStream*:*MixedStep*:*CpuVsCuda*' > $O/engine_sel.txt 2>&1
el "engine tests rc=$?"; grep -E "^\[  (PASSED|FAILED) " $O/engine_sel.txt | head
ab 2
left=$((588 - ($(date +%s) - device_call_t0)))
el "gpu_suite with ${left} s"
TIDAL_PYTHON=/bin/false timeout $left bash launch/gpu_suite.sh $S $O/tests tests > /dev/null 2>&1
el "gpu_suite rc=$?"; tail -1 $O/tests/summary.txt; grep rc= $O/tests/summary.txt | grep -v "failed=0 " | head
