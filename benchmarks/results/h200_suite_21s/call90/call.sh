#!/bin/bash
# Call 90 (twenty-first session, 2026-12-06): kr = branch kb-replicas 8d86a27 = main 816ea77 +
# kernel_bench's graph-mode replicas (every binary; its tidal is main's); g87 = b799ac9 (main's GPU
# code, kernel_bench without replicas); abl21 = the TIDAL_SKIP build of main's code (tidal only).
# H200: issue 9's suite on kr, kernel_bench in graphs of 32 with replicas (linear, decode
# attention, top-k), then the per-op ablation with the time left. Other cards: kernel_bench in
# graphs of 32, replicas (kr) against none (g87), then the ablation.
# One pack k90 = kr's files + abl21's tidal (build/launch/tidal_abl) + g87's kernel_bench
# (build/benchmarks/kernel_bench_old).
source launch/device_call.sh o90 k90:k
K=/tmp/k/build
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader | tee $O/gpu.txt
if grep -q H200 $O/gpu.txt; then
  bash benchmarks/suite/run_h200.sh $K $O/suite9 --suite benchmarks/suite/issue9.json --budget-seconds ${SUITE:-200} > $O/suite9.log 2>&1
  el "suite rc=$?"; tail -3 $O/suite9.log
else
  timeout 150 $K/benchmarks/kernel_bench_old --graph-calls 32 --budget-ms 20 --op linear --op linear_qkv_append --op decode_attention > $O/kb_old.txt 2>&1
  el "kb old rc=$?"
fi
timeout 200 $K/benchmarks/kernel_bench --graph-calls 32 --budget-ms 20 --op linear --op linear_qkv_append --op linear_swiglu --op decode_attention --op topk_per_row > $O/kb_rep.txt 2>&1
el "kb replicas rc=$?"; grep -E "copy |4096, 4096\] q/o|6144|12288|h=32/8 d=128 dense |K=2048 per-q|topk.*32 rows x 100000 K=2048" $O/kb_rep.txt | cut -c1-140
grep -q H200 $O/gpu.txt || exit 0  # the H100 ablation is call 70's
for r in 1 2; do for op in none norms qkv attn o gate_up down; do
  [[ $(($(date +%s) - device_call_t0)) -lt 545 ]] || { el "out of time before l3 $op r$r"; break 2; }
  TIDAL_SKIP=$op timeout 40 $K/launch/tidal_abl bench --preset llama3-8b --budget 2048 --context 10K,100K --policy full,tidal --granularity per-query-head,per-kv-head --no-breakdown > $O/a3_${op}_$r.txt 2>&1
  el "l3 skip $op r$r rc=$?"; row $O/a3_${op}_$r.txt "l3 skip $op r$r"
done; done
