#!/bin/bash
# Call 57 (2026-12-06, thirteenth session): e57 = next-s13 (main 7a70960 + two switches):
#   TIDAL_NORM_ONE (default 1): the norms at hidden <= 4096 (bf16) a vector a thread, the weight
#     loaded before the wait, the row kept in registers; 0 = main's two-pass form.
#   TIDAL_MERGE_PDL (default 0 = main's ordinary merge launch): 1 = a programmatic merge launch
#     that waits, then triggers the o projection.
# Focused GPU tests (norms, decode attention, PDL chain, FP8 KV, engine) then the A/B.
source launch/device_call.sh o57 e57:x
F=/tmp/x/build
nvidia-smi --query-gpu=name --format=csv,noheader | tee $O/gpu.txt
cuobjdump -sass $F/launch/tidal 2>/dev/null | grep -E "Function|ACQBULK|LDG|STG|BAR" | grep -A14 "Function.*rms_norm" > $O/norm_sass.txt
grep -c ACQBULK $O/norm_sass.txt; grep -A8 "Function.*fused_add_rms_norm.*Lb1E" $O/norm_sass.txt | head -20
timeout 200 $F/tests/kernels/kernels_cuda_test --gtest_color=no --gtest_filter='*Norm*:*DecodeAttention*:*PdlChain*:*Fp8Kv*:*Linear*' > $O/tests_default.txt 2>&1
el "kernel tests rc=$?"; grep -hE "^\[  (PASSED|FAILED) " $O/tests_default.txt
TIDAL_MERGE_PDL=1 timeout 200 $F/tests/kernels/kernels_cuda_test --gtest_color=no --gtest_filter='*DecodeAttention*:*PdlChain*:*Fp8Kv*' > $O/tests_merge1.txt 2>&1
el "kernel tests merge1 rc=$?"; grep -hE "^\[  (PASSED|FAILED) " $O/tests_merge1.txt
timeout 90 $F/tests/engine/engine_cuda_test --gtest_color=no > $O/engine_default.txt 2>&1
el "engine rc=$?"; grep -hE "^\[  (PASSED|FAILED) " $O/engine_default.txt
TIDAL_MERGE_PDL=1 timeout 90 $F/tests/engine/engine_cuda_test --gtest_color=no > $O/engine_merge1.txt 2>&1
el "engine merge1 rc=$?"; grep -hE "^\[  (PASSED|FAILED) " $O/engine_merge1.txt
kb() { timeout 60 $F/benchmarks/kernel_bench --graph-calls 32 --budget-ms 30 "$@"; }
TIDAL_NORM_ONE=0 kb --op fused_add_rms_norm --op rms_norm > $O/kb_norm0.txt 2>&1
kb --op fused_add_rms_norm --op rms_norm > $O/kb_norm1.txt 2>&1
paste <(grep -E "rms_norm " $O/kb_norm0.txt | awk '{print $(NF-5)}') <(grep -E "rms_norm " $O/kb_norm1.txt | awk '{s=""; for(i=1;i<=NF-7;i++) s=s" "$i; print $(NF-5), $NF, s}') | head -20
for m in 0 1; do TIDAL_MERGE_PDL=$m kb --op decode_attention --shape 'h=32/8' > $O/kb_merge$m.txt 2>&1; done
paste <(grep -E "decode_attention" $O/kb_merge0.txt | awk '{print $(NF-5)}') <(grep -E "decode_attention" $O/kb_merge1.txt | awk '{s=""; for(i=2;i<=NF-7;i++) s=s" "$i; print $(NF-5), $NF, s}') | head -30
el "kernel_bench done"
cfg() { case $1 in a) echo "TIDAL_NORM_ONE=0 TIDAL_MERGE_PDL=0";; b) echo "TIDAL_NORM_ONE=1 TIDAL_MERGE_PDL=0";; c) echo "TIDAL_NORM_ONE=1 TIDAL_MERGE_PDL=1";; esac; }
for r in 1 2; do for c in a b c; do
  env $(cfg $c) timeout 100 $F/launch/tidal bench --preset llama3-8b --budget 2048 --context 10K,100K --policy full,tidal --granularity per-query-head,per-kv-head --no-breakdown > $O/l3_${c}_r$r.txt 2>&1
  el "l3 $c r$r rc=$?"; row $O/l3_${c}_r$r.txt "l3 $c r$r"
done; done
for c in a b c; do
  env $(cfg $c) timeout 60 $F/launch/tidal bench --preset llama2-7b --budget 2048 --context 10K,100K --policy full,tidal --no-breakdown > $O/l2_${c}.txt 2>&1
  el "l2 $c rc=$?"; row $O/l2_${c}.txt "l2 $c"
done
