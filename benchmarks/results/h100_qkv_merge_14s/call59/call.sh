#!/bin/bash
# Call 59 (2026-12-06, fourteenth session): e59 = next-s14 fd956d7 (main c2596db +
#   the QKV GEMV's angles and slots read before its wait: TIDAL_QKV_EARLY=0 reads them after;
#   the merge kernel's partials loaded before the plan's round trips: TIDAL_MERGE_FIRST=0 after;
#   merge_splits reads each lse once (both modes)).
# Every GPU test first, then kernel_bench both ways, then the steps: a = both off, b = QKV only,
# c = both (the default); llama3-8b two interleaved rounds, llama2-7b a / c.
source launch/device_call.sh o59 e59:x
F=/tmp/x/build
nvidia-smi --query-gpu=name --format=csv,noheader | tee $O/gpu.txt
cuobjdump -sass $F/launch/tidal 2>/dev/null | grep -E "Function|ACQBULK|LDG|STG|MUFU|CALL" | grep -A40 "Function.*linear_qkv_append_kernel.*Li1ELi8ELb0" | head -45 > $O/qkv_sass.txt
cuobjdump -sass $F/launch/tidal 2>/dev/null | grep -E "Function|ACQBULK|LDG|STG|BAR" | grep -A20 "Function.*merge_kernelI13__nv_bfloat16Lb1" | head -24 > $O/merge_sass.txt
TIDAL_PYTHON=/bin/false timeout 300 bash launch/gpu_suite.sh $F $O/tests tests > /dev/null 2>&1
el "gpu_suite rc=$?"; tail -1 $O/tests/summary.txt; grep rc= $O/tests/summary.txt | grep -v "failed=0 " | head
TIDAL_MERGE_FIRST=0 TIDAL_QKV_EARLY=0 timeout 100 $F/tests/kernels/kernels_cuda_test --gtest_color=no --gtest_filter='*DecodeAttention*:*PdlChain*' > $O/tests_off.txt 2>&1
el "tests with both off rc=$?"; grep -hE "^\[  (PASSED|FAILED) " $O/tests_off.txt
kb() { timeout 60 $F/benchmarks/kernel_bench --graph-calls 32 --budget-ms 30 "$@"; }
for q in 0 1; do TIDAL_QKV_EARLY=$q TIDAL_MERGE_FIRST=$q kb --op linear_qkv_append --op linear_split --op decode_attention --shape 'h=32/8' > $O/kb_$q.txt 2>&1; done
paste <(grep -E "^ *(linear_qkv_append|linear_split|decode_attention) " $O/kb_0.txt | awk '{print $(NF-5)}') <(grep -E "^ *(linear_qkv_append|linear_split|decode_attention) " $O/kb_1.txt | awk '{s=""; for(i=1;i<=NF-7;i++) s=s" "$i; print $(NF-5), $(NF-4), $NF, s}')
el "kernel_bench done"
cfg() { case $1 in a) echo "TIDAL_QKV_EARLY=0 TIDAL_MERGE_FIRST=0";; b) echo "TIDAL_QKV_EARLY=1 TIDAL_MERGE_FIRST=0";; c) echo "TIDAL_QKV_EARLY=1 TIDAL_MERGE_FIRST=1";; esac; }
for r in 1 2; do for c in a b c; do
  env $(cfg $c) timeout 60 $F/launch/tidal bench --preset llama3-8b --budget 2048 --context 10K,100K --policy full,tidal --granularity per-query-head,per-kv-head --no-breakdown > $O/l3_${c}_r$r.txt 2>&1
  el "l3 $c r$r rc=$?"; row $O/l3_${c}_r$r.txt "l3 $c r$r"
done; done
for r in 1 2; do for c in a c; do
  env $(cfg $c) timeout 60 $F/launch/tidal bench --preset llama2-7b --budget 2048 --context 10K,100K --policy full,tidal --no-breakdown > $O/l2_${c}_r$r.txt 2>&1
  el "l2 $c r$r rc=$?"; row $O/l2_${c}_r$r.txt "l2 $c r$r"
done; done
left=$((545 - $(date +%s) + device_call_t0))
el "suite budget $left s"
if (( left > 90 )) && grep -q H200 $O/gpu.txt; then
  bash benchmarks/suite/run_h200.sh $F $O/suite9 --suite benchmarks/suite/issue9.json --budget-seconds $left > $O/suite9.log 2>&1
  el "suite rc=$?"; tail -3 $O/suite9.log
fi
