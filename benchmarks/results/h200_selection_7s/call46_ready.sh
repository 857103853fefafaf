#!/bin/bash
# Call 46 (lost: the machine stopped answering; run it first next session): e19 = main + pending/
# 0001-0003 (`git am`; branch next-topk, 0ccabdf, when written: top-k rows shared out on the device, score rows padded to 16 bytes, cluster_attribute()),
# built and packed as .carry/e19.tar.xz; e16 = main's GPU code. Top-k/Quest tests, kernel_bench
# top-k, the real step's top-k under ncu, steps A/B against e16, then every GPU test.
set -u
O=/tmp/o46; mkdir -p $O
trap 'tar -C /tmp/o46 -cJf $OUT/o46.tar.xz .' EXIT
R=$PWD
mkdir -p /work /tmp/a /tmp/b && ln -sfn "$R" /work/bld && ln -sfn "$R" /work/main && ln -sfn "$R/.carry/shared" /work/shared
rm -rf /tmp/a/build /tmp/b/build
tar -xJf .carry/e16.tar.xz -C /tmp/a && tar -xJf .carry/e19.tar.xz -C /tmp/b || { echo "extract failed"; exit 1; }
export LD_LIBRARY_PATH=/tmp/b/lib:${LD_LIBRARY_PATH:-}
A=/tmp/a/build; B=/tmp/b/build
t0=$(date +%s)
el() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
row() { grep -E "^ +NVIDIA" "$1" | awk -v t="$2" '{printf "%-10s %s %s %s ms=%s floor=%s x=%.3f sel=%s\n", t, $4, $6, $7, $10, $(NF-5), $10/$(NF-5), $16}'; }
timeout 200 $B/tests/kernels/kernels_cuda_test --gtest_filter='*Topk*:*Quest*' > $O/tests_topk.txt 2>&1
el "topk tests rc=$?"; grep -E "PASSED|FAILED" $O/tests_topk.txt | tail -6
timeout 100 $B/benchmarks/kernel_bench --op topk_per_row --graph-calls 32 --budget-ms 8 > $O/kb_b.txt 2>&1
grep -E "topk_per_row" $O/kb_b.txt | awk '{s=""; for(i=2;i<=NF-7;i++) s=s" "$i; printf "%-80s %s us wrong=%s\n", s, $(NF-5), $NF}'
for v in b; do
  timeout 200 ncu --clock-control none --metrics gpu__time_duration.sum,launch__grid_size -k regex:'topk_select|head_group' -c 4 /tmp/$v/build/launch/tidal bench --preset llama3-8b --budget 2048 --context 1048576 --kv-dtype fp8 --policy tidal --granularity per-kv-head --eager --no-breakdown --steps 1 --warmup 0 > $O/ncu_step_$v.txt 2>&1
  echo "-- $v"; grep -E "topk_select|head_group|gpu__time|grid_size" $O/ncu_step_$v.txt | paste - - - | awk '{print $1, $(NF-4), $NF}'
done
el ncu
for r in 1 2; do for v in a b; do
  V=/tmp/$v/build
  timeout 100 $V/launch/tidal bench --preset llama3-8b --budget 2048 --context 100K,1048576 --kv-dtype fp8 --policy tidal --granularity per-kv-head --no-breakdown --steps 20 --warmup 3 > $O/fp8_$v$r.txt 2>&1
  row $O/fp8_$v$r.txt "fp8 $v$r"
done; done
for v in a b; do
  timeout 100 /tmp/$v/build/launch/tidal bench --preset llama3-8b --budget 2048 --context 10K,100K --policy tidal --granularity per-kv-head,per-query-head --no-breakdown > $O/bf16_$v.txt 2>&1
  row $O/bf16_$v.txt "bf16 $v"
done
el steps
timeout 280 bash launch/gpu_suite.sh $B $O/tests tests > $O/suite_stdout.txt 2>&1
el "suite rc=$?"; grep -v "failed=0" $O/tests/summary.txt | tail -6; tail -1 $O/tests/summary.txt
