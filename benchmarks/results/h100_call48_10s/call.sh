#!/bin/bash
# Call 48 (2026-12-05, ninth session, one H200). e21 = 60e2426's tree (main 5245967's code);
# e22 = main e84524a + head_group_probs' blocks walking several position chunks (branch next-hgp).
# Prediction: head_group_probs at 2^20 (8 lists of 4 heads, f16) 44 -> ~25 us; the 2^20 FP8 tidal
# per-KV step -0.03 to -0.04 ms; 100K unchanged (its grid is the same).
source launch/device_call.sh o48 e22:c e21:b
B=/tmp/b/build; C=/tmp/c/build
timeout 120 $C/tests/kernels/kernels_cuda_test --gtest_filter='*HeadGroup*' > $O/tests_hgp.txt 2>&1
rc=$?; el "hgp tests rc=$rc"; grep -E "PASSED|FAILED" $O/tests_hgp.txt | tail -4
[ $rc -eq 0 ] || { echo "stop: head_group_probs fails"; exit 1; }
for v in b c; do
  V=/tmp/$v/build
  timeout 60 $V/benchmarks/kernel_bench --op head_group_probs --graph-calls 32 --budget-ms 8 > $O/kb_hgp_$v.txt 2>&1
  grep -h "head_group_probs" $O/kb_hgp_$v.txt | awk -v v=$v '{s=""; for(i=2;i<=NF-7;i++) s=s" "$i; printf "%s %-50s %s us wrong=%s\n", v, s, $(NF-5), $NF}'
done
el kernel_bench
LONG=1048576
mem=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits | head -1)
[ "${mem:-0}" -lt 100000 ] && LONG=512K  # an H100: 2^20 FP8 tokens do not fit
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
for r in 1 2; do
  for v in b c; do
    timeout 90 /tmp/$v/build/launch/tidal bench --preset llama3-8b --budget 2048 --context 100K,$LONG --kv-dtype fp8 --policy tidal --granularity per-kv-head --no-breakdown --steps 20 --warmup 3 > $O/fp8_$v$r.txt 2>&1
    row $O/fp8_$v$r.txt "fp8 $v$r"
  done
done
el steps
# Issue 14's accuracy on the embedded model, on the GPU, bf16 against FP8 KV (e22).
T=/work/shared/text/austen/persuasion.txt
for kv in bf16 fp8; do
  timeout 60 $C/launch/tidal niah --device cuda --kv-dtype $kv --lengths 16K --needles 5 --policy full,tidal --budget 128,1024 --granularity per-query-head,per-kv-head --layers calibrated --haystack $T --json $O/niah16k_$kv.json > $O/niah16k_$kv.txt 2>&1
  el "niah $kv rc=$?"
  timeout 60 $C/launch/tidal ppl --device cuda --kv-dtype $kv --tokens 8192 --policy full,tidal --budget 128,1024 --granularity per-query-head,per-kv-head --layers calibrated --text $T --json $O/ppl_$kv.json > $O/ppl_$kv.txt 2>&1
  el "ppl $kv rc=$?"
done
tar -C $O -cJf $OUT/o48_before_suite.tar.xz .
timeout 280 bash launch/gpu_suite.sh $C $O/tests tests > $O/suite_stdout.txt 2>&1
el "suite rc=$?"; grep -v "failed=0" $O/tests/summary.txt | tail -6; tail -1 $O/tests/summary.txt
