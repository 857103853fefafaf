#!/bin/bash
# Call 100 (twenty-sixth session; any Hopper card): k100 = main 3b53662 + the L2 look-ahead
# (branch l2ahead: TIDAL_ATTN_L2_AHEAD=N, the SIMT kernel's early prologue asks L2 for its next N
# steps of rows before the wait). Prediction: llama2-7b per-q tidal at 100K -0.08 to -0.12 ms a
# step at N = 1-3 (the sparse layers' exposed attention 21.5 -> ~17-18 us); full rows within
# +-0.02 ms (a dense chunk's few prefetched rows); if L2 thrashes, tidal slower with N.
source launch/device_call.sh o100 k100:k
O=$OUT/o100; mkdir -p $O
K=/tmp/k/build
[[ -e /work/l26 ]] || ln -sfn "$PWD" /work/l26
nvidia-smi --query-gpu=name --format=csv,noheader | tee $O/gpu.txt
for n in 0 3; do
  TIDAL_ATTN_L2_AHEAD=$n timeout 200 $K/tests/kernels/kernels_cuda_test --gtest_filter='*DecodeAttention*' --gtest_color=no > $O/t_attn_$n.txt 2>&1
  el "attention tests N=$n rc=$?"; grep -E "^\[  (PASSED|FAILED) " $O/t_attn_$n.txt
done
for r in 1 2; do
  for n in 0 1 2 4; do
    TIDAL_ATTN_L2_AHEAD=$n timeout 60 $K/launch/tidal bench --preset llama2-7b --budget 2048 --context 10K,100K --policy full,tidal --granularity per-query-head --no-breakdown > $O/l2_${n}_$r.txt 2>&1
    el "l2 N=$n round $r rc=$?"; row $O/l2_${n}_$r.txt "l2 N=$n r$r"
    TIDAL_ATTN_L2_AHEAD=$n timeout 60 $K/launch/tidal bench --preset llama3-8b --budget 2048 --context 100K --policy tidal --granularity per-query-head --no-breakdown > $O/l3_${n}_$r.txt 2>&1
    el "l3 N=$n round $r rc=$?"; row $O/l3_${n}_$r.txt "l3 N=$n r$r"
  done
done
TIDAL_ATTN_L2_AHEAD=2 timeout 60 $K/launch/tidal bench --preset llama2-7b --budget 2048 --context 100K --policy tidal --granularity per-query-head --no-breakdown --graph-replays 5 --kernel-trace $O/trace_l2_n2.json > $O/l2_trace_n2.txt 2>&1
el "trace N=2 rc=$?"; xz -9 $O/*.json
el done
