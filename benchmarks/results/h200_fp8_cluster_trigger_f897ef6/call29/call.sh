#!/bin/bash
# Call 29 (2026-12-04, 5th session, one H200): where a split kernel without a merge launch lets
# the o projection in (e10, branch cluster-merge f? : TIDAL_ATTN_TRIGGER), cluster sizes, and the
# own-merge paths (FP8 GQA, MHA) at their exit. A/B in one binary; then every cuda test.
set -u
O=/tmp/o29; mkdir -p $O
trap 'tar -C /tmp/o29 -cJf $OUT/o29.tar.xz .' EXIT
R=$PWD
mkdir -p /work /tmp/c && ln -sfn "$R" /work/bld && ln -sfn "$R" /work/main && ln -sfn "$R/.carry/shared" /work/shared
tar -xJf .carry/e10.tar.xz -C /tmp/c || { echo "extract failed"; exit 1; }
export LD_LIBRARY_PATH=/tmp/c/lib:${LD_LIBRARY_PATH:-}
B=/tmp/c/build
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $O/gpu.txt
t0=$(date +%s)
el() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
row() { grep -E "^ +NVIDIA" "$1" | awk -v t="$2" '{printf "%-10s %s %s %s ms=%s floor=%s\n", t, $4, $6, $7, $10, $(NF-5)}'; }
timeout 150 $B/tests/kernels/kernels_cuda_test --gtest_filter='*DecodeAttention*' > $O/da_tests.txt 2>&1
el "decode attention tests rc=$?"; grep -E "PASSED|FAILED|tests ran" $O/da_tests.txt | tail -8
ab() {  # tag, env...
  local tag=$1; shift
  env "$@" timeout 60 $B/launch/tidal bench --preset llama3-8b --budget 2048 --context 10K,100K --policy tidal --granularity per-query-head,per-kv-head --no-breakdown > $O/l3_$tag.txt 2>&1; row $O/l3_$tag.txt $tag
  env "$@" timeout 60 $B/launch/tidal bench --preset llama3-8b --budget 2048 --context 1048576 --kv-dtype fp8 --policy tidal --granularity per-kv-head --no-breakdown --steps 30 --warmup 5 > $O/fp8_$tag.txt 2>&1; row $O/fp8_$tag.txt $tag
  env "$@" timeout 60 $B/launch/tidal bench --preset llama3-8b --budget 2048 --context 100K --kv-dtype fp8 --policy full,tidal --granularity per-kv-head --no-breakdown > $O/fp8s_$tag.txt 2>&1; row $O/fp8s_$tag.txt $tag
  env "$@" timeout 60 $B/launch/tidal bench --preset llama2-7b --budget 2048 --context 10K,100K --policy full,tidal --no-breakdown > $O/l2_$tag.txt 2>&1; row $O/l2_$tag.txt $tag
}
for r in 1 2; do
  ab off.$r TIDAL_ATTN_CLUSTER=0
  ab c8.$r TIDAL_ATTN_CLUSTER=8
  ab offexit.$r TIDAL_ATTN_CLUSTER=0 TIDAL_ATTN_TRIGGER=exit
  ab allexit.$r TIDAL_ATTN_TRIGGER=exit
  ab c16.$r TIDAL_ATTN_CLUSTER=16
done
el "ab done"
timeout 230 bash launch/gpu_suite.sh $B $O/tests tests > $O/tests_stdout.txt 2>&1
el "tests rc=$?"; grep -v "failed=0" $O/tests/summary.txt | tail -6; tail -1 $O/tests/summary.txt
