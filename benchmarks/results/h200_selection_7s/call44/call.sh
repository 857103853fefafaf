#!/bin/bash
# Call 44: e18 = main + warp-aggregated radix-select histograms (top-k, sampling). Tests, kernel
# A/B (e16 = main), the real step's top-k under ncu, llama3-8b FP8/bf16 steps A/B.
set -u
O=/tmp/o44; mkdir -p $O
trap 'tar -C /tmp/o44 -cJf $OUT/o44.tar.xz .' EXIT
R=$PWD
mkdir -p /work /tmp/a /tmp/b && ln -sfn "$R" /work/bld && ln -sfn "$R" /work/main && ln -sfn "$R/.carry/shared" /work/shared
rm -rf /tmp/a/build /tmp/b/build
tar -xJf .carry/e16.tar.xz -C /tmp/a && tar -xJf .carry/e18.tar.xz -C /tmp/b || { echo "extract failed"; exit 1; }
export LD_LIBRARY_PATH=/tmp/b/lib:${LD_LIBRARY_PATH:-}
A=/tmp/a/build; B=/tmp/b/build
t0=$(date +%s)
el() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
row() { grep -E "^ +NVIDIA" "$1" | awk -v t="$2" '{printf "%-10s %s %s %s ms=%s floor=%s x=%.3f\n", t, $4, $6, $7, $10, $(NF-5), $10/$(NF-5)}'; }
timeout 200 $B/tests/kernels/kernels_cuda_test --gtest_filter='*Topk*:*Sample*:*Quest*' > $O/tests_topk.txt 2>&1
el "topk tests rc=$?"; grep -E "PASSED|FAILED" $O/tests_topk.txt | tail -6
for v in a b; do
  timeout 200 /tmp/$v/build/benchmarks/kernel_bench --op topk_per_row --op sample_tokens --graph-calls 32 --budget-ms 8 > $O/kb_$v.txt 2>&1
done
for v in a b; do echo "-- $v"; grep -E "topk_per_row|sample_tokens" $O/kb_$v.txt | awk '{s=""; for(i=2;i<=NF-7;i++) s=s" "$i; printf "%-80s %s us wrong=%s\n", s, $(NF-5), $NF}'; done
el kb
for v in a b; do
  timeout 200 ncu --clock-control none --metrics gpu__time_duration.sum -k regex:'topk_select|head_group' -c 4 /tmp/$v/build/launch/tidal bench --preset llama3-8b --budget 2048 --context 1048576 --kv-dtype fp8 --policy tidal --granularity per-kv-head --eager --no-breakdown --steps 1 --warmup 0 > $O/ncu_step_$v.txt 2>&1
  echo "-- $v"; grep -E "topk_select|head_group|gpu__time" $O/ncu_step_$v.txt | paste - - | awk '{print $1, $(NF)}'
done
el ncu
for r in 1 2; do for v in a b; do
  V=/tmp/$v/build
  timeout 100 $V/launch/tidal bench --preset llama3-8b --budget 2048 --context 100K,1048576 --kv-dtype fp8 --policy tidal --granularity per-kv-head --no-breakdown --steps 20 --warmup 3 > $O/fp8_$v$r.txt 2>&1
  row $O/fp8_$v$r.txt "fp8 $v$r"
done; done
for v in a b; do
  timeout 100 /tmp/$v/build/launch/tidal bench --preset llama3-8b --budget 2048 --context 10K,32K,100K --policy tidal --granularity per-kv-head,per-query-head --no-breakdown > $O/bf16_$v.txt 2>&1
  row $O/bf16_$v.txt "bf16 $v"
done
el steps
nvcc -O3 -arch=sm_90a -o /tmp/write_probe .carry/write_probe.cu > $O/probe_build.txt 2>&1 && /tmp/write_probe | tee $O/write_probe.txt
el probe
