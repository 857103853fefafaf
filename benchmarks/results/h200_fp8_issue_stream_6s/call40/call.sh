#!/bin/bash
# Call 40: e17 = main 17d2905 + the FP8 kernel's 16-byte logit stores (through shared memory;
# TIDAL_ATTN_LOGITS_VEC=0: the scalar stores, as 17d2905). Tests, A/B, issue 14's tables, the suite.
set -u
O=/tmp/o40; mkdir -p $O
trap 'tar -C /tmp/o40 -cJf $OUT/o40.tar.xz .' EXIT
R=$PWD
mkdir -p /work /tmp/b && ln -sfn "$R" /work/bld && ln -sfn "$R" /work/main && ln -sfn "$R/.carry/shared" /work/shared
tar -xJf .carry/e17.tar.xz -C /tmp/b || { echo "extract failed"; exit 1; }
export LD_LIBRARY_PATH=/tmp/b/lib:${LD_LIBRARY_PATH:-}
B=/tmp/b/build
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $O/gpu.txt
t0=$(date +%s)
el() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
row() { grep -E "^ +NVIDIA" "$1" | awk -v t="$2" '{printf "%-10s %s %s %s ms=%s floor=%s x=%.3f\n", t, $4, $6, $7, $10, $(NF-5), $10/$(NF-5)}'; }
timeout 120 $B/tests/kernels/kernels_cuda_test --gtest_filter='*DecodeAttention*:*Fp8*' > $O/tests_decode.txt 2>&1
el "decode tests rc=$?"; grep -E "PASSED|FAILED" $O/tests_decode.txt | tail -4
for v in 1 0; do
  TIDAL_ATTN_LOGITS_VEC=$v timeout 60 $B/benchmarks/kernel_bench --op decode_attention --shape fp8 --shape h=32/8 --graph-calls 32 --budget-ms 8 > $O/kb_v$v.txt 2>&1
done
paste -d' ' <(grep decode_attention $O/kb_v1.txt | awk '{s=""; for(i=3;i<=NF-7;i++) s=s" "$i; printf "%-62s vec=%s\n", s, $(NF-5)}') <(grep decode_attention $O/kb_v0.txt | awk '{printf "scalar=%s wrong=%s\n", $(NF-5), $NF}')
el kb
for r in 1 2; do for v in 1 0; do
  TIDAL_ATTN_LOGITS_VEC=$v timeout 60 $B/launch/tidal bench --preset llama3-8b --budget 2048 --context 1048576 --kv-dtype fp8 --policy tidal --granularity per-kv-head --no-breakdown --steps 20 --warmup 3 > $O/fp8_1m_v$v$r.txt 2>&1
  row $O/fp8_1m_v$v$r.txt "fp8 v$v"
done; done
el ab
timeout 150 $B/launch/tidal bench --preset llama3-8b --budget 2048 --context 256K,512K,1048576 --kv-dtype fp8 --policy full,tidal --granularity per-kv-head --no-breakdown --steps 20 --warmup 3 > $O/fp8_long.txt 2>&1
el "fp8 long rc=$?"; row $O/fp8_long.txt fp8
timeout 100 $B/launch/tidal bench --preset llama3-8b --budget 2048 --context 32K,100K --kv-dtype fp8 --policy full,tidal --granularity per-kv-head --no-breakdown > $O/fp8_short.txt 2>&1
el "fp8 short rc=$?"; row $O/fp8_short.txt fp8
timeout 100 $B/launch/tidal bench --preset llama3-8b --budget 2048 --context 32K,100K --policy full,tidal --granularity per-kv-head --no-breakdown > $O/bf16_short.txt 2>&1
el "bf16 rc=$?"; row $O/bf16_short.txt bf16
timeout 60 $B/launch/tidal bench --preset llama3-8b --budget 2048 --context 1048576 --kv-dtype fp8 --policy tidal --granularity per-kv-head --steps 10 --warmup 3 > $O/fp8_1m_breakdown.txt 2>&1
tail -1 $O/fp8_1m_breakdown.txt | cut -c1-200
timeout 250 bash launch/gpu_suite.sh $B $O/tests tests > $O/suite_stdout.txt 2>&1
el "suite rc=$?"; grep -v "failed=0" $O/tests/summary.txt | tail -6; tail -1 $O/tests/summary.txt
