#!/bin/bash
# Call 91 (the H200 of call 90, warm): k90 as call 90. The GEMV prefetch A/B on the H200
# (TIDAL_GEMV_PREFETCH=0/1), kernel_bench without replicas (g87's) for the rows call 90 ran with
# them, and llama2-7b's per-op ablation.
source launch/device_call.sh o91 k90:k
K=/tmp/k/build
nvidia-smi --query-gpu=name --format=csv,noheader | tee $O/gpu.txt
for r in 1 2; do for pf in 0 1; do
  TIDAL_GEMV_PREFETCH=$pf timeout 40 $K/launch/tidal bench --preset llama3-8b --budget 2048 --context 10K,32K,100K --policy full,tidal --granularity per-query-head --no-breakdown > $O/l3_pf${pf}_$r.txt 2>&1
  el "l3 pf$pf r$r rc=$?"; row $O/l3_pf${pf}_$r.txt "l3 pf$pf r$r"
done; done
for pf in 0 1; do
  TIDAL_GEMV_PREFETCH=$pf timeout 40 $K/launch/tidal bench --preset llama2-7b --budget 2048 --context 10K,100K --policy full,tidal --granularity per-query-head --no-breakdown > $O/l2_pf${pf}.txt 2>&1
  el "l2 pf$pf rc=$?"; row $O/l2_pf${pf}.txt "l2 pf$pf"
done
for op in none norms qkv attn o gate_up down; do
  TIDAL_SKIP=$op timeout 40 $K/launch/tidal_abl bench --preset llama2-7b --budget 2048 --context 10K,100K --policy full,tidal --granularity per-query-head --no-breakdown > $O/a2_${op}.txt 2>&1
  el "l2 skip $op rc=$?"; row $O/a2_${op}.txt "l2 skip $op"
done
timeout 120 $K/benchmarks/kernel_bench_old --graph-calls 32 --budget-ms 20 --op linear --op linear_qkv_append --op decode_attention > $O/kb_old.txt 2>&1
el "kb old rc=$?"; grep -E "4096, 4096\] q/o|6144|h=32/8 d=128 dense |K=2048 per-q" $O/kb_old.txt | cut -c1-140
