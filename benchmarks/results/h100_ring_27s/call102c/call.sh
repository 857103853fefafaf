#!/bin/bash
# Call 102c (twenty-seventh session; any Hopper card): k102 = branch ring 08d3636 (main 217a590 +
# the SIMT kernel's cp.async ring for lists-only launches; TIDAL_ATTN_RING=R forces R stages,
# default 0 = main's path). One call for what calls 102b and 102t held (little device time left):
# the A/B rows first (R = 0, 2, then 1, 3), the GPU tests (every ring depth in the
# decode-attention test; the engine's at R=2; main's engine, launch and parallel tests), the
# mixed-device job. Prediction: llama2-7b per-q tidal 100K -0.06 to -0.11 ms a step at R=2, full
# rows unchanged (dense launches keep R=0); llama3-8b per-q -0.05 to -0.1.
source launch/device_call.sh o102c k102:k
O=$OUT/o102c; mkdir -p $O
K=/tmp/k/build
[[ -e /work/l26 ]] || ln -sfn "$PWD" /work/l26
nvidia-smi --query-gpu=name --format=csv,noheader | tee $O/gpu.txt
l2() { TIDAL_ATTN_RING=$1 timeout 60 $K/launch/tidal bench --preset llama2-7b --budget 2048 --context 10K,100K --policy full,tidal --granularity per-query-head --no-breakdown > $O/l2_$1_$2.txt 2>&1
  el "l2 R=$1 $2 rc=$?"; row $O/l2_$1_$2.txt "l2 R=$1 $2"; }
l3() { TIDAL_ATTN_RING=$1 timeout 60 $K/launch/tidal bench --preset llama3-8b --budget 2048 --context 10K,100K --policy tidal --granularity per-query-head --no-breakdown > $O/l3_$1_$2.txt 2>&1
  el "l3 R=$1 $2 rc=$?"; row $O/l3_$1_$2.txt "l3 R=$1 $2"; }
l2 0 a; l2 2 a; l3 0 a; l3 2 a
timeout 120 $K/tests/kernels/kernels_cuda_test --gtest_filter='*DecodeAttention*' --gtest_color=no > $O/t_attn.txt 2>&1
el "attention tests (every ring depth) rc=$?"; grep -E "^\[  (PASSED|FAILED) |^\[  FAILED  \]" $O/t_attn.txt | head -8
TIDAL_ATTN_RING=2 timeout 150 $K/tests/engine/engine_cuda_test --gtest_color=no > $O/t_engine_2.txt 2>&1
el "engine tests R=2 rc=$?"; grep -E "^\[  (PASSED|FAILED) |^\[  FAILED  \]" $O/t_engine_2.txt | head -5
for t in engine/engine_cuda_test launch/launch_cuda_test parallel/parallel_cuda_test; do
  timeout 150 $K/tests/$t --gtest_color=no > $O/$(basename $t).txt 2>&1
  el "$t rc=$?"; grep -E "^\[  (PASSED|FAILED) |^\[  FAILED  \]" $O/$(basename $t).txt | head -8
done
G="$K/launch/tidal generate --preset tiny --prompt-ids 1,5,9 --max-new-tokens 4 --temperature 0 --print-ids --tp 2 --dtype f32 --device"
timeout 60 mpirun -np 1 --oversubscribe --allow-run-as-root $G cuda : -np 1 $G cpu > $O/mixed_device.txt 2>&1
el "mixed devices rc=$? (want 1, not 124)"; grep -c "ranks differ in --device" $O/mixed_device.txt
l2 0 b; l2 2 b; l2 1 b; l2 3 b
timeout 250 $K/tests/kernels/kernels_cuda_test --gtest_color=no > $O/kernels_cuda_test.txt 2>&1
el "kernels_cuda_test rc=$?"; grep -E "^\[  (PASSED|FAILED) |^\[  FAILED  \]" $O/kernels_cuda_test.txt | head -8
el done
