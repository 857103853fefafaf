#!/bin/bash
# Call 98 (twenty-sixth session; any Hopper card). k98 = main b6f05ee + pending/0001 (kernel
# trace, with nvcc's anonymous-namespace kernel names fixed) + the dropped resident merge +
# pending/0002 + pending/0003 (gather ceiling, now with a "contiguous" form), built in /work/w97.
# 1. The tests call 97 could not pass: KernelTraceCuda (names were empty for kernels in anonymous
#    namespaces) and the four that read model/ under the build's source dir (/work/w97 here).
# 2. The gather ceiling's three forms beside the K=2048 per-q attention rows.
# 3. Named traces of llama3-8b 10K full and llama2-7b 100K tidal (where a step's time goes).
source launch/device_call.sh o98 k98:k
O=$OUT/o98; mkdir -p $O
K=/tmp/k/build
[[ -e /work/w97 ]] || ln -sfn "$PWD" /work/w97
T=${TOTAL:-240}
nvidia-smi --query-gpu=name --format=csv,noheader | tee $O/gpu.txt
timeout 60 $K/tests/launch/launch_cuda_test --gtest_color=no > $O/t_launch_cuda.txt 2>&1
el "launch_cuda_test rc=$?"; grep -E "^\[  (PASSED|FAILED|SKIPPED) " $O/t_launch_cuda.txt
timeout 120 $K/tests/engine/engine_cuda_test --gtest_filter='Fp8KvCuda.*:TidalTinyCuda.*' --gtest_color=no > $O/t_engine_model.txt 2>&1
el "engine model tests rc=$?"; grep -E "^\[  (PASSED|FAILED|SKIPPED) " $O/t_engine_model.txt
timeout 120 $K/benchmarks/kernel_bench --op gather_ceiling --op decode_attention --shape "K=2048 per-q" --shape n=100000 --graph-calls 32 > $O/kb_gather.txt 2>&1
el "kb gather rc=$?"; grep -E "^  (copy|gather_ceiling|decode_attention) " $O/kb_gather.txt | cut -c1-140
TIDAL_MERGE_RESIDENT=0 timeout 60 $K/launch/tidal bench --preset llama3-8b --budget 2048 --context 10K --policy full --no-breakdown --graph-replays 5 --kernel-trace $O/trace_l3.json > $O/l3_trace.txt 2>&1
el "l3 traced rc=$?"; row $O/l3_trace.txt "l3 trace"; grep -A14 "^# kernel_trace llama3" $O/l3_trace.txt | cut -c1-160
TIDAL_MERGE_RESIDENT=0 timeout 60 $K/launch/tidal bench --preset llama2-7b --budget 2048 --context 100K --policy full,tidal --granularity per-query-head --no-breakdown --graph-replays 5 --kernel-trace $O/trace_l2.json > $O/l2_trace.txt 2>&1
el "l2 traced rc=$?"; row $O/l2_trace.txt "l2 trace"; grep -A14 "tidal per-query-head K 2048: per replay" $O/l2_trace.txt | cut -c1-160
xz -9 -T4 $O/*.json
el done
