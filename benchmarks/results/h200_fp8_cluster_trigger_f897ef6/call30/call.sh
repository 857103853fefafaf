#!/bin/bash
# Call 30 (2026-12-04, 5th session, one H200): the landed defaults (e11 = branch cluster-merge
# head): clusters for FP8 lists-only launches, FP8 launches without a merge launch triggering at
# their exit. A/B against main's behaviour in the same binary (TIDAL_ATTN_CLUSTER=0
# TIDAL_ATTN_TRIGGER=start); every cuda test; kernel rows.
set -u
O=/tmp/o30; mkdir -p $O
trap 'tar -C /tmp/o30 -cJf $OUT/o30.tar.xz .' EXIT
R=$PWD
mkdir -p /work /tmp/c && ln -sfn "$R" /work/bld && ln -sfn "$R" /work/main && ln -sfn "$R/.carry/shared" /work/shared
tar -xJf .carry/e11.tar.xz -C /tmp/c || { echo "extract failed"; exit 1; }
export LD_LIBRARY_PATH=/tmp/c/lib:${LD_LIBRARY_PATH:-}
B=/tmp/c/build
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $O/gpu.txt
t0=$(date +%s)
el() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
row() { grep -E "^ +NVIDIA" "$1" | awk -v t="$2" '{printf "%-8s %s %s %s %s ms=%s floor=%s\n", t, $4, $5, $6, $7, $10, $(NF-5)}'; }
ab() {  # tag, env...
  local tag=$1; shift
  env "$@" timeout 60 $B/launch/tidal bench --preset llama3-8b --budget 2048 --context 256K,512K,1048576 --kv-dtype fp8 --policy tidal --granularity per-kv-head --no-breakdown --steps 30 --warmup 5 > $O/fp8_$tag.txt 2>&1; row $O/fp8_$tag.txt $tag
  env "$@" timeout 60 $B/launch/tidal bench --preset llama3-8b --budget 2048 --context 32K,100K --kv-dtype fp8 --policy full,tidal --granularity per-kv-head --no-breakdown > $O/fp8s_$tag.txt 2>&1; row $O/fp8s_$tag.txt $tag
  env "$@" timeout 60 $B/launch/tidal bench --preset llama3-8b --budget 2048 --context 10K,100K --policy full,tidal --granularity per-query-head,per-kv-head --no-breakdown > $O/l3_$tag.txt 2>&1; row $O/l3_$tag.txt $tag
  env "$@" timeout 60 $B/launch/tidal bench --preset llama2-7b --budget 2048 --context 10K --policy full,tidal --no-breakdown > $O/l2_$tag.txt 2>&1; row $O/l2_$tag.txt $tag
}
for r in 1 2; do
  ab main.$r TIDAL_ATTN_CLUSTER=0 TIDAL_ATTN_TRIGGER=start
  ab new.$r
done
el "ab done"
timeout 100 $B/benchmarks/kernel_bench --op decode_attention --graph-calls 32 --budget-ms 8 > $O/kb.txt 2>&1
el "kb rc=$?"; grep -E "fp8" $O/kb.txt | cut -c20-130
timeout 240 bash launch/gpu_suite.sh $B $O/tests tests > $O/tests_stdout.txt 2>&1
el "tests rc=$?"; grep -v "failed=0" $O/tests/summary.txt | tail -6; tail -1 $O/tests/summary.txt
