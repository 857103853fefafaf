#!/bin/bash
# Call 39: e16 = e14's issue path + the ring's rows unpadded with swizzled chunks (no 16-byte row
# padding: call 38's probe, 4.17 -> 4.56 TB/s). Every GPU test; A/B against e13 (main).
set -u
O=/tmp/o39; mkdir -p $O
trap 'tar -C /tmp/o39 -cJf $OUT/o39.tar.xz .' EXIT
R=$PWD
mkdir -p /work /tmp/a /tmp/b && ln -sfn "$R" /work/bld && ln -sfn "$R" /work/main && ln -sfn "$R/.carry/shared" /work/shared
tar -xJf .carry/e13.tar.xz -C /tmp/a && tar -xJf .carry/e16.tar.xz -C /tmp/b || { echo "extract failed"; exit 1; }
export LD_LIBRARY_PATH=/tmp/b/lib:${LD_LIBRARY_PATH:-}
A=/tmp/a/build; B=/tmp/b/build
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $O/gpu.txt
t0=$(date +%s)
el() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
row() { grep -E "^ +NVIDIA" "$1" | awk -v t="$2" '{printf "%-10s %s %s %s ms=%s floor=%s\n", t, $4, $6, $7, $10, $(NF-5)}'; }
timeout 150 $B/tests/kernels/kernels_cuda_test --gtest_filter='*DecodeAttention*:*Fp8*' > $O/tests_decode.txt 2>&1
el "decode tests rc=$?"; grep -E "PASSED|FAILED" $O/tests_decode.txt | tail -4
M=dram__bytes_read.sum,lts__t_sectors_srcunit_tex.sum,lts__t_requests_srcunit_tex.sum,lts__throughput.avg.pct_of_peak_sustained_elapsed,gpu__time_duration.sum,l1tex__data_bank_conflicts_pipe_lsu_mem_shared.sum
echo "== ncu FP8 dense 2^20 (e16)"
ncu --clock-control none --metrics $M -k regex:decode_attention_mma_split -c 1 $B/benchmarks/kernel_bench --reps 1 --warmup 0 --op decode_attention --shape n=1048576 --shape "fp8 dense" 2>&1 | grep -E "dram__|lts__|gpu__time|l1tex"
for v in a b; do
  timeout 120 /tmp/$v/build/benchmarks/kernel_bench --op decode_attention --graph-calls 32 --budget-ms 8 > $O/kb_$v.txt 2>&1
done
paste -d' ' <(grep decode_attention $O/kb_a.txt | awk '{s=""; for(i=3;i<=NF-7;i++) s=s" "$i; printf "%-62s a=%s\n", s, $(NF-5)}') <(grep decode_attention $O/kb_b.txt | awk '{printf "b=%s %s%% wrong=%s\n", $(NF-5), $(NF-2), $NF}')
el kb
for r in 1 2; do for v in a b; do
  V=/tmp/$v/build
  timeout 100 $V/launch/tidal bench --preset llama3-8b --budget 2048 --context 100K,256K,1048576 --kv-dtype fp8 --policy full,tidal --granularity per-kv-head --no-breakdown --steps 20 --warmup 3 > $O/fp8_$v$r.txt 2>&1
  row $O/fp8_$v$r.txt "fp8 $v$r"
  timeout 100 $V/launch/tidal bench --preset llama3-8b --budget 2048 --context 10K,32K,100K --policy full,tidal --granularity per-kv-head --no-breakdown > $O/bf16_$v$r.txt 2>&1
  row $O/bf16_$v$r.txt "bf16 $v$r"
done; done
el steps
timeout 250 bash launch/gpu_suite.sh $B $O/tests tests > $O/suite_stdout.txt 2>&1
el "suite rc=$?"; grep -v "failed=0" $O/tests/summary.txt | tail -6; tail -1 $O/tests/summary.txt
