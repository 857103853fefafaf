#!/bin/bash
# Call 54 (2026-12-05, eleventh session; call 53 again, to catch an H200): main c48a6ac's binary (f of e52) on an H200: the engine GPU
# tests (7ce4e7e's Fp8KvCuda.StepScratchCoversTheFp8SplitKernel among them), issue 14's accuracy
# runs (bf16 against FP8 KV on the embedded model) and sample_tokens / head_group_probs timings.
source launch/device_call.sh o54 e52:x
F=/tmp/x/f/build
nvidia-smi --query-gpu=name --format=csv,noheader | tee $O/gpu.txt
timeout 60 $F/tests/engine/engine_cuda_test --gtest_color=no > $O/engine_tests.txt 2>&1
el "engine tests rc=$?"; grep -hE "^\[  (PASSED|FAILED) |StepScratch" $O/engine_tests.txt
timeout 60 $F/tests/kernels/kernels_cuda_test --gtest_color=no --gtest_filter='*SampleTokens*:*HeadGroup*:*PdlChain*:CudaHarness*' > $O/kernel_tests.txt 2>&1
el "kernel tests rc=$?"; grep -hE "^\[  (PASSED|FAILED) " $O/kernel_tests.txt
T=/work/shared/text/austen/persuasion.txt
for kv in bf16 fp8; do
  timeout 60 $F/launch/tidal niah --device cuda --kv-dtype $kv --lengths 16K --needles 5 --policy full,tidal --budget 128,1024 --granularity per-query-head,per-kv-head --layers calibrated --haystack $T > $O/niah16k_$kv.txt 2>&1
  el "niah $kv rc=$?"; grep -E "^  (full|tidal)" $O/niah16k_$kv.txt | awk '{print "niah '$kv'", $1, $2, $4, $(NF-2)}'
  timeout 60 $F/launch/tidal ppl --device cuda --kv-dtype $kv --tokens 8192 --policy full,tidal --budget 128,1024 --granularity per-query-head,per-kv-head --layers calibrated --text $T > $O/ppl_$kv.txt 2>&1
  el "ppl $kv rc=$?"; grep -E "^  (full|tidal)" $O/ppl_$kv.txt | awk '{print "ppl '$kv'", $1, $2, $4, $6}'
done
timeout 60 $F/benchmarks/kernel_bench --op sample_tokens --op head_group_probs --graph-calls 32 --budget-ms 8 > $O/kb_f.txt 2>&1
grep -hE "sample_tokens|head_group_probs" $O/kb_f.txt | awk '{s=""; for(i=2;i<=NF-7;i++) s=s" "$i; printf "%-58s %s us wrong=%s\n", s, $(NF-5), $NF}'
el done
timeout 90 $F/launch/tidal bench --preset llama3-8b --budget 2048 --context 10K,100K --policy full,tidal --granularity per-query-head,per-kv-head --no-breakdown > $O/bench_llama3.txt 2>&1
el "bench rc=$?"; grep -E "^ +NVIDIA" $O/bench_llama3.txt | head -12
