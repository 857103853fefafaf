#!/bin/bash
# Call 37: e15 = e14 + TIDAL_ATTN_L2_HINT (0: the tensor-core kernel's K/V cp.async without the L2
# evict-first policy). Tests under both; kernel_bench, ncu and steps A/B in one binary.
set -u
O=/tmp/o37; mkdir -p $O
trap 'tar -C /tmp/o37 -cJf $OUT/o37.tar.xz .' EXIT
R=$PWD
mkdir -p /work /tmp/b && ln -sfn "$R" /work/bld && ln -sfn "$R" /work/main && ln -sfn "$R/.carry/shared" /work/shared
tar -xJf .carry/e15.tar.xz -C /tmp/b || { echo "extract failed"; exit 1; }
export LD_LIBRARY_PATH=/tmp/b/lib:${LD_LIBRARY_PATH:-}
B=/tmp/b/build
t0=$(date +%s)
el() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
row() { grep -E "^ +NVIDIA" "$1" | awk -v t="$2" '{printf "%-10s %s %s %s ms=%s floor=%s\n", t, $4, $6, $7, $10, $(NF-5)}'; }
for h in 1 0; do
  TIDAL_ATTN_L2_HINT=$h timeout 200 $B/tests/kernels/kernels_cuda_test --gtest_filter='*DecodeAttention*:*Fp8*' > $O/tests_h$h.txt 2>&1
  el "tests hint=$h rc=$?"; grep -E "PASSED|FAILED" $O/tests_h$h.txt | tail -3
done
for h in 1 0; do
  TIDAL_ATTN_L2_HINT=$h timeout 120 $B/benchmarks/kernel_bench --op decode_attention --shape h=32/8 --graph-calls 32 --budget-ms 8 > $O/kb_h$h.txt 2>&1
done
paste -d' ' <(grep decode_attention $O/kb_h1.txt | awk '{s=""; for(i=3;i<=NF-7;i++) s=s" "$i; printf "%-62s h1=%s\n", s, $(NF-5)}') <(grep decode_attention $O/kb_h0.txt | awk '{printf "h0=%s %s%%\n", $(NF-5), $(NF-2)}')
el kb
M=dram__bytes_read.sum,lts__t_sectors_srcunit_tex.sum,lts__t_requests_srcunit_tex.sum,lts__throughput.avg.pct_of_peak_sustained_elapsed,gpu__time_duration.sum
for h in 1 0; do
  echo "== ncu FP8 dense 2^20 hint=$h"
  TIDAL_ATTN_L2_HINT=$h ncu --clock-control none --metrics $M -k regex:decode_attention_mma_split -c 1 $B/benchmarks/kernel_bench --reps 1 --warmup 0 --op decode_attention --shape n=1048576 --shape "fp8 dense" 2>&1 | grep -E "dram__|lts__|gpu__time"
done
for r in 1 2; do for h in 1 0; do
  export TIDAL_ATTN_L2_HINT=$h
  timeout 100 $B/launch/tidal bench --preset llama3-8b --budget 2048 --context 100K,1048576 --kv-dtype fp8 --policy full,tidal --granularity per-kv-head --no-breakdown --steps 20 --warmup 3 > $O/fp8_h$h$r.txt 2>&1
  row $O/fp8_h$h$r.txt "fp8 h$h"
  timeout 100 $B/launch/tidal bench --preset llama3-8b --budget 2048 --context 32K,100K --policy full,tidal --granularity per-kv-head --no-breakdown > $O/bf16_h$h$r.txt 2>&1
  row $O/bf16_h$h$r.txt "bf16 h$h"
done; done
unset TIDAL_ATTN_L2_HINT
el done
