#!/bin/bash
# Call 55 (2026-12-05, eleventh session): main 5252283 (review: the chunk-tie test on 8 rows, the
# batched head_group_probs bench's lse for the selecting token only): its kernel tests of
# sample_tokens / head_group_probs and the head_group_probs bench rows.
source launch/device_call.sh o55 e55:x
K=/tmp/x/build
nvidia-smi --query-gpu=name --format=csv,noheader | tee $O/gpu.txt
timeout 60 $K/tests/kernels/kernels_cuda_test --gtest_color=no --gtest_filter='*SampleTokens*:*HeadGroup*:*PdlChain*:CudaHarness*' > $O/kernel_tests.txt 2>&1
el "kernel tests rc=$?"; grep -hE "^\[  (PASSED|FAILED) |ChunkBoundaries" $O/kernel_tests.txt
timeout 60 $K/benchmarks/kernel_bench --op head_group_probs --graph-calls 32 --budget-ms 8 > $O/kb_hgp.txt 2>&1
grep -h "head_group_probs" $O/kb_hgp.txt | awk '{s=""; for(i=2;i<=NF-7;i++) s=s" "$i; printf "%-58s %s us wrong=%s\n", s, $(NF-5), $NF}'
el done
