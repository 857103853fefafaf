#!/bin/bash
# Call 50 (2026-12-05, eleventh session). e50 = e21 (b: main 5245967's code, baseline), e23 (c: main
# 7ce4e7e + head_group_probs' chunk loop c56d34c), e25 (d: next-sample2 5a9acae = e23 + sample_tokens
# in clusters of 8 (79f93ef) + row slices past 65535, chunk-tie / padded-row / many-row tests,
# head_group_probs at most 8 chunks a block; and d's kernel_bench_oldcap, c's head_group_probs.cu)
# in one xz stream.
# Prediction (sample): kernel_bench greedy 128256-id row ~15 -> ~3 us; llama3-8b steps -0.010 to
# -0.013 ms (bf16 10K and FP8 alike).
# Prediction (hgp, c vs b): H200 2^20 lists=8 f16 43.7 -> ~38 us (H100 call 48: 47.5 -> 42.7); the
# 2^20 FP8 tidal per-KV step -0.01 to -0.02 ms; 100K flat. d vs c: batch 16, one selecting token,
# 256K: c gives 132*32/256 = 16 blocks a list (128 working blocks, under one an SM), d 256/8 = 32:
# ~1.6-1.9x faster; every batch-1 case the same grid, so the same time.
source launch/device_call.sh o50 e50:x
for v in b c d; do ln -sfn /tmp/x/$v /tmp/$v; done  # e50: e21, e23, e25 in one xz stream
B=/tmp/b/build; C=/tmp/c/build; D=/tmp/d/build
row2() {  # TAG FILE: context, policy, granularity, ms, floor, x floor (any device name)
  grep -E "^ +NVIDIA" "$2" | awk -v t="$1" '{ for (i = 1; i <= NF; ++i) if ($i ~ /^llama/) break;
    printf "%-8s %s %s %s ms=%s floor=%s x=%.3f\n", t, $(i+1), $(i+3), $(i+4), $(i+7), $(NF-5), $(i+7) / $(NF-5) }'
}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $O/gpu.txt
timeout 150 $D/tests/engine/engine_cuda_test --gtest_color=no > $O/engine_tests.txt 2>&1
rc1=$?
timeout 150 $D/tests/kernels/kernels_cuda_test --gtest_color=no > $O/kernel_tests.txt 2>&1
rc2=$?
el "engine tests (e25) rc=$rc1, kernel tests (e25) rc=$rc2"
grep -hE "^\[  (PASSED|FAILED) |fp8 greedy" $O/engine_tests.txt $O/kernel_tests.txt
rc3=$rc2
S=$D; [ $rc3 -eq 0 ] || S=$C
# Issue 14's accuracy on the embedded model, on the GPU, bf16 against FP8 KV (e23).
T=/work/shared/text/austen/persuasion.txt
for kv in bf16 fp8; do
  timeout 60 $C/launch/tidal niah --device cuda --kv-dtype $kv --lengths 16K --needles 5 --policy full,tidal --budget 128,1024 --granularity per-query-head,per-kv-head --layers calibrated --haystack $T --json $O/niah16k_$kv.json > $O/niah16k_$kv.txt 2>&1
  el "niah $kv rc=$?"
  timeout 60 $C/launch/tidal ppl --device cuda --kv-dtype $kv --tokens 8192 --policy full,tidal --budget 128,1024 --granularity per-query-head,per-kv-head --layers calibrated --text $T --json $O/ppl_$kv.json > $O/ppl_$kv.txt 2>&1
  el "ppl $kv rc=$?"
done
for v in c d; do
  timeout 60 /tmp/$v/build/benchmarks/kernel_bench --op sample_tokens --graph-calls 32 --budget-ms 8 > $O/kb_sample_$v.txt 2>&1
  grep -h "sample_tokens" $O/kb_sample_$v.txt | awk -v v=$v '{s=""; for(i=2;i<=NF-7;i++) s=s" "$i; printf "%s %-50s %s us wrong=%s\n", v, s, $(NF-5), $NF}'
done
for v in b c d d_oldcap; do  # d_oldcap: e25's kernel_bench built with c's head_group_probs.cu
  kb=/tmp/${v%_oldcap}/build/benchmarks/kernel_bench; [ $v = d_oldcap ] && kb=${kb}_oldcap
  timeout 60 $kb --op head_group_probs --graph-calls 32 --budget-ms 8 > $O/kb_hgp_$v.txt 2>&1
  grep -h "head_group_probs" $O/kb_hgp_$v.txt | awk -v v=$v '{s=""; for(i=2;i<=NF-7;i++) s=s" "$i; printf "%s %-50s %s us wrong=%s\n", v, s, $(NF-5), $NF}'
done
el kernel_bench
LONG=1048576
mem=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits | head -1)
[ "${mem:-0}" -lt 100000 ] && LONG=512K  # an H100: 2^20 FP8 tokens do not fit
for r in 1 2; do
  for v in c d; do
    timeout 60 /tmp/$v/build/launch/tidal bench --preset llama3-8b --budget 2048 --context 10K --policy full,tidal --granularity per-kv-head --no-breakdown > $O/bf16_$v$r.txt 2>&1
    row2 "bf16 $v$r" $O/bf16_$v$r.txt
  done
  for v in b c d; do
    timeout 90 /tmp/$v/build/launch/tidal bench --preset llama3-8b --budget 2048 --context 100K,$LONG --kv-dtype fp8 --policy tidal --granularity per-kv-head --no-breakdown --steps 20 --warmup 3 > $O/fp8_$v$r.txt 2>&1
    row2 "fp8 $v$r" $O/fp8_$v$r.txt
  done
done
el steps
tar -C $O -cJf $OUT/o50_before_suite.tar.xz .
left=$((540 - ($(date +%s) - device_call_t0)))
[ $left -lt 60 ] && { el "no time left for the suite"; exit 0; }
timeout $((left + 10)) bash benchmarks/suite/run_h200.sh $S $O/issue9 --budget-seconds $left --suite benchmarks/suite/issue9.json > $O/issue9_stdout.txt 2>&1
el "issue9 suite on $S rc=$?"; grep -A14 "^### llama2-7b, batch 1" $O/issue9/report.md | tail -10
