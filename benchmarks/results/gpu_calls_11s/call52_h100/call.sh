#!/bin/bash
# Call 52 (2026-12-05, eleventh session): the candidate next-sample2 c48a6ac (f = main 7ce4e7e +
# head_group_probs' chunk loop and 8-chunk cap, sample_tokens in clusters of 8 while rows x 8 fit
# the SMs (one block an SM), else a block a row) against c = e23 (7ce4e7e + the chunk loop; the old
# sample_tokens) for the steps.
# Prediction (kernel_bench, H200, call 51's rows): greedy 1 row 5.0 us, 64 rows 11.3; top-p 1 row
# ~202; filtered 16 rows ~254, 64 rows ~322. llama3-8b bf16 10K steps -0.004 to -0.006 ms.
source launch/device_call.sh o52 e52:x
F=/tmp/x/f/build; C=/tmp/x/c/build
row2() {  # TAG FILE: context, policy, granularity, ms, floor, x floor (any device name)
  grep -E "^ +NVIDIA" "$2" | awk -v t="$1" '{ for (i = 1; i <= NF; ++i) if ($i ~ /^llama/) break;
    printf "%-8s %s %s %s ms=%s floor=%s x=%.3f\n", t, $(i+1), $(i+3), $(i+4), $(i+7), $(NF-5), $(i+7) / $(NF-5) }'
}
nvidia-smi --query-gpu=name --format=csv,noheader | tee $O/gpu.txt
timeout 60 $F/tests/engine/engine_cuda_test --gtest_color=no > $O/engine_tests.txt 2>&1
rc1=$?
timeout 100 $F/tests/kernels/kernels_cuda_test --gtest_color=no --gtest_filter='*SampleTokens*:*HeadGroup*:*PdlChain*:CudaHarness*' > $O/kernel_tests.txt 2>&1
rc2=$?
el "engine tests rc=$rc1, kernel tests rc=$rc2"
grep -hE "^\[  (PASSED|FAILED) " $O/engine_tests.txt $O/kernel_tests.txt
timeout 90 $F/benchmarks/kernel_bench --op sample_tokens --op head_group_probs --graph-calls 32 --budget-ms 8 > $O/kb_f.txt 2>&1
grep -hE "sample_tokens|head_group_probs" $O/kb_f.txt | awk '{s=""; for(i=2;i<=NF-7;i++) s=s" "$i; printf "%-58s %s us (min %s) wrong=%s\n", s, $(NF-5), $(NF-4), $NF}'
el kernel_bench
for r in 1 2; do
  for v in c f; do
    b=$C; [ $v = f ] && b=$F
    timeout 60 $b/launch/tidal bench --preset llama3-8b --budget 2048 --context 10K --policy full,tidal --granularity per-kv-head --no-breakdown > $O/bf16_$v$r.txt 2>&1
    row2 "bf16 $v$r" $O/bf16_$v$r.txt
  done
done
el steps
