#!/bin/bash
# Call 27 (2026-12-04, 5th session, one H200): cluster merge for lists-only decode attention
# (branch cluster-merge 135f466, build e8). A/B in one binary: TIDAL_ATTN_CLUSTER=0 (main's
# launch) / default 8 / 16; decode_attention in a graph of 32; then every cuda test.
set -u
O=/tmp/o27; mkdir -p $O
trap 'tar -C /tmp/o27 -cJf $OUT/o27.tar.xz .' EXIT
R=$PWD
mkdir -p /work /tmp/c && ln -sfn "$R" /work/bld && ln -sfn "$R" /work/main && ln -sfn "$R/.carry/shared" /work/shared
tar -xJf .carry/e8.tar.xz -C /tmp/c || { echo "extract failed"; exit 1; }
export LD_LIBRARY_PATH=/tmp/c/lib:${LD_LIBRARY_PATH:-}
B=/tmp/c/build
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $O/gpu.txt
t0=$(date +%s)
el() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
row() { grep -E "^ +NVIDIA" "$1" | awk -v t="$2" '{printf "%-8s %s %s %s K=%s ms=%s floor=%s\n", t, $4, $6, $7, $9, $10, $(NF-5)}'; }
timeout 150 $B/tests/kernels/kernels_cuda_test --gtest_filter='*DecodeAttention*' > $O/da_tests.txt 2>&1
el "decode attention tests rc=$?"; grep -E "PASSED|FAILED|tests ran" $O/da_tests.txt | tail -8
timeout 120 $B/benchmarks/kernel_bench --op decode_attention --graph-calls 32 --budget-ms 8 > $O/kb.txt 2>&1
el "kb rc=$?"; grep -E "(per-kv|per-q)" $O/kb.txt | awk '{print $3,$4,$5,$6,$7,$8,$9,$11}' | head -40
for r in 1 2; do
  for v in 0 8 16; do
    [ $r = 2 ] && [ $v = 16 ] && continue
    TIDAL_ATTN_CLUSTER=$v timeout 60 $B/launch/tidal bench --preset llama3-8b --budget 2048 --context 10K,100K --policy tidal --granularity per-query-head,per-kv-head --no-breakdown > $O/l3_${v}_$r.txt 2>&1; row $O/l3_${v}_$r.txt l3c$v.$r
    TIDAL_ATTN_CLUSTER=$v timeout 60 $B/launch/tidal bench --preset llama3-8b --budget 2048 --context 1048576 --kv-dtype fp8 --policy tidal --granularity per-kv-head --no-breakdown --steps 30 --warmup 5 > $O/fp8_${v}_$r.txt 2>&1; row $O/fp8_${v}_$r.txt fp8c$v.$r
  done
done
el "ab done"
timeout 230 bash launch/gpu_suite.sh $B $O/tests tests > $O/tests_stdout.txt 2>&1
el "tests rc=$?"; grep -v "failed=0" $O/tests/summary.txt | tail -6; tail -2 $O/tests/summary.txt
