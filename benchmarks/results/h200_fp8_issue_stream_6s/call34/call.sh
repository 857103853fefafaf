#!/bin/bash
# Call 34 (2026-12-04, 6th session, one H200): e14 = e13 + the mma split kernel's stage issue
# without per-copy shuffles for runs of adjacent rows, ex2.approx.ftz, skipped O rescales, the V
# scale's reciprocal by exponent bits. Decode-attention GPU tests; A/B against e13 (main).
set -u
O=/tmp/o34; mkdir -p $O
trap 'tar -C /tmp/o34 -cJf $OUT/o34.tar.xz .' EXIT
R=$PWD
mkdir -p /work /tmp/a /tmp/b && ln -sfn "$R" /work/bld && ln -sfn "$R" /work/main && ln -sfn "$R/.carry/shared" /work/shared
tar -xJf .carry/e13.tar.xz -C /tmp/a && tar -xJf .carry/e14.tar.xz -C /tmp/b || { echo "extract failed"; exit 1; }
export LD_LIBRARY_PATH=/tmp/b/lib:${LD_LIBRARY_PATH:-}
A=/tmp/a/build; B=/tmp/b/build
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $O/gpu.txt
t0=$(date +%s)
el() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
row() { grep -E "^ +NVIDIA" "$1" | awk -v t="$2" '{printf "%-10s %s %s %s ms=%s floor=%s\n", t, $4, $6, $7, $10, $(NF-5)}'; }
timeout 200 $B/tests/kernels/kernels_cuda_test --gtest_filter='*DecodeAttention*:*Fp8*:*PrefillAttention*' > $O/tests.txt 2>&1
el "tests rc=$?"; grep -E "PASSED|FAILED|tests ran" $O/tests.txt | tail -5
for v in a b; do
  V=/tmp/$v/build
  timeout 120 $V/benchmarks/kernel_bench --op decode_attention --graph-calls 32 --budget-ms 8 > $O/kb_$v.txt 2>&1
  el "kb $v rc=$?"
done
paste -d' ' <(grep decode_attention $O/kb_a.txt | awk '{s=""; for(i=3;i<=NF-7;i++) s=s" "$i; printf "%-62s a=%s\n", s, $(NF-5)}') <(grep decode_attention $O/kb_b.txt | awk '{printf "b=%s %s%%\n", $(NF-5), $(NF-2)}')
for r in 1 2; do for v in a b; do
  V=/tmp/$v/build
  timeout 100 $V/launch/tidal bench --preset llama3-8b --budget 2048 --context 1048576 --kv-dtype fp8 --policy tidal --granularity per-kv-head --no-breakdown --steps 20 --warmup 3 > $O/fp8_1m_$v$r.txt 2>&1
  row $O/fp8_1m_$v$r.txt "fp8 $v$r"
  timeout 100 $V/launch/tidal bench --preset llama3-8b --budget 2048 --context 32K,100K --policy full,tidal --granularity per-kv-head --no-breakdown > $O/bf16_$v$r.txt 2>&1
  row $O/bf16_$v$r.txt "bf16 $v$r"
done; done
el "bench done"
timeout 100 $B/launch/tidal bench --preset llama3-8b --budget 2048 --context 32K,100K,256K --kv-dtype fp8 --policy full,tidal --granularity per-kv-head --no-breakdown > $O/fp8_b.txt 2>&1
row $O/fp8_b.txt "fp8 b"
timeout 100 $B/launch/tidal bench --preset llama2-7b --budget 2048 --context 10K,100K --policy full,tidal --no-breakdown > $O/l2_b.txt 2>&1
row $O/l2_b.txt "llama2 b"
timeout 100 $A/launch/tidal bench --preset llama2-7b --budget 2048 --context 10K,100K --policy full,tidal --no-breakdown > $O/l2_a.txt 2>&1
row $O/l2_a.txt "llama2 a"
el "ncu"
timeout 120 ncu --clock-control none --section SpeedOfLight --section WarpStateStats --section InstructionStats --section SchedulerStats -k regex:decode_attention_mma_split -c 1 $B/benchmarks/kernel_bench --reps 1 --warmup 0 --op decode_attention --shape n=1048576 --shape "fp8 dense" > $O/ncu_fp8_dense_b.txt 2>&1
grep -E "Duration|DRAM Throughput|Issue Slots|Executed Instructions  |Warp Cycles Per Issued|L2 Cache Throughput" $O/ncu_fp8_dense_b.txt
el done
